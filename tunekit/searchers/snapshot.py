"""``SnapshotContinuationSearcher``: weight decay by snapshot-restart continuations (Fig. 12).

1. One base trial at the middle value trains until its validation loss runs horizontal
   (``train.stop_when_horizontal``: the trial ends itself with a checkpoint).
2. The searcher copies that checkpoint somewhere immutable (``CheckpointConfig(num_to_keep)``
   could delete it) — next to the experiment, or under ``snapshot_storage``.
3. Continuation trials restore the snapshot (``restore_from``), each with one candidate value,
   and train ``continuation_epochs`` more epochs on the same schedule; they are judged like
   full runs, and the exponent bisection goes on from the same snapshot.

Cheaper than full runs: the epochs up to the snapshot are paid once. On a multi-node cluster the
snapshot must live on shared storage (a URI, or a mount declared with ``shared_storage=True``);
a local path there is refused before any trial starts when ``storage_path`` is given, else when
the snapshot is taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray.tune.search import Searcher

from tunekit import storage
from tunekit.core.storage import check_shared_storage, join, located, parent
from tunekit.runner import alive_nodes
from tunekit.searchers.bisection import ExponentBisectionSearcher

#: The trial-config key of a continuation: the snapshot (checkpoint folder or URI) it starts from.
RESTORE_KEY = "restore_from"
#: The override that makes a trial a snapshot base run: it ends itself, with a checkpoint, once
#: its validation loss runs horizontal.
BASE_RUN_KEY = "train.stop_when_horizontal"


def is_continuation(config: Mapping[str, Any]) -> bool:
    """A trial that starts from another trial's snapshot (its config carries :data:`RESTORE_KEY`)."""
    return bool(config.get(RESTORE_KEY))


def is_base_run(config: Mapping[str, Any]) -> bool:
    """The trial whose snapshot the continuations start from (:data:`BASE_RUN_KEY` set, not itself a continuation)."""
    return bool(config.get(BASE_RUN_KEY)) and not is_continuation(config)


def middle_value(values: list[float]) -> float:
    """The middle of a grid on the exponent axis (positive values only): 1e-3, 1e-4, 1e-5, 0 → 1e-4."""
    positive = sorted(v for v in values if v > 0)
    if not positive:
        raise ValueError(f"no positive value to start a snapshot run from in {values}")
    return positive[len(positive) // 2]


class SnapshotContinuationSearcher(ExponentBisectionSearcher):
    """One base run to a horizontal validation loss, then continuations from its snapshot, bisecting the value.

    An :class:`~tunekit.searchers.bisection.ExponentBisectionSearcher` whose trials continue from
    one snapshot instead of starting from scratch; it takes all of that searcher's keyword
    arguments (``grid``, ``guess``, ``scale``, ``resolution``, ``max_trials`` — counting
    continuations, not the base run — ``tie_tolerance``, ``judge``).

    Args:
        param: the config key searched (``weight_decay``).
        base_config: the trial config every suggestion starts from.
        middle: the base run's value; default the middle of the grid.
        continuation_epochs: epochs each continuation trains after the snapshot (None: to the end
            of the schedule, ``train.epochs``).
        snapshot_storage: where the snapshot copy goes (folder or URI); default next to the experiment.
        storage_path: the experiment's storage, to refuse a local path on a multi-node cluster up front.
        shared_storage: the (local-looking) storage is a mount every node sees.
    """

    def __init__(
        self,
        param: str = "weight_decay",
        base_config: dict[str, Any] | None = None,
        *,
        middle: float | None = None,
        continuation_epochs: int | None = 3,
        snapshot_storage: str | None = None,
        storage_path: str | None = None,
        shared_storage: bool = False,
        **bisection: Any,
    ) -> None:
        super().__init__(param, base_config, **bisection)
        if continuation_epochs is not None and continuation_epochs < 1:
            raise ValueError(f"continuation_epochs must be ≥ 1, got {continuation_epochs=}")
        self.middle = middle if middle is not None else middle_value(self.bisection.initial)
        self.continuation_epochs = continuation_epochs
        self.snapshot_storage = snapshot_storage
        self.storage_path = storage_path
        self.shared_storage = shared_storage
        self.base_trial: str | None = None
        self.snapshot: str | None = None  # immutable copy of the base run's checkpoint
        self.snapshot_epoch: int | None = None
        self.failed: str | None = None

    # ------------------------------------------------------------------ Ray hooks

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # Ray allows FINISHED
        if self.failed:
            return Searcher.FINISHED
        if self.base_trial is None:
            if self.storage_path is not None:
                check_shared_storage(self.storage_path, alive_nodes(), self.shared_storage)
            self.base_trial = trial_id
            return self.config_with(**{self.param: self.middle, BASE_RUN_KEY: True})
        if self.snapshot is None:
            return None  # the base run is still on its way to a horizontal validation loss
        return super().suggest(trial_id)

    def trial_config(self, value: float) -> dict[str, Any]:
        assert self.snapshot is not None
        assert self.snapshot_epoch is not None
        overrides: dict[str, Any] = {self.param: value, RESTORE_KEY: self.snapshot}
        if self.continuation_epochs is not None:
            overrides["train.stop_at_epoch"] = self.snapshot_epoch + self.continuation_epochs
        return self.config_with(**overrides)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id == self.base_trial:
            self._take_snapshot(result, error)
            return
        super().on_trial_complete(trial_id, result, error)

    def _base_awaited(self) -> set[str]:
        """The base run, while its snapshot is still to come (once taken, the continuations need nothing more of it)."""
        waiting = self.base_trial is not None and self.snapshot is None and self.failed is None
        return {self.base_trial} if waiting and self.base_trial else set()

    def suggested(self) -> set[str]:
        return super().suggested() | self._base_awaited()

    def awaited(self) -> set[str]:
        return super().awaited() | self._base_awaited()

    def known(self) -> set[str]:
        return super().known() | ({self.base_trial} if self.base_trial else set())

    def forget(self, trial_id: str) -> None:
        if trial_id == self.base_trial:
            self.base_trial = None  # the base run is suggested again
            self.rows.pop(trial_id, None)
            return
        super().forget(trial_id)

    # ------------------------------------------------------------------ the snapshot

    def _take_snapshot(self, result: dict[str, Any] | None, error: bool) -> None:
        if error or not result or not result.get("checkpoint_dir_name") or not result.get("trial_dir"):
            self.failed = "the base run failed or left no checkpoint: nothing to continue from"
            return
        trial_dir = located(self.storage_path or "", str(result["trial_dir"]))  # Ray's path, on the experiment's storage
        source = join(trial_dir, str(result["checkpoint_dir_name"]))
        check_shared_storage(source, alive_nodes(), self.shared_storage)
        folder = self.snapshot_storage or join(parent(trial_dir), "snapshots")
        self.snapshot = storage.copy_tree(source, join(folder, f"{self.base_trial}-epoch{int(result['epoch'])}"))
        self.snapshot_epoch = int(result["epoch"])

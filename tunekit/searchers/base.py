"""What every tunekit searcher shares: the results of each trial, one judge, plain-data state.

A tunekit searcher proposes configs ``{**base_config, <its values>}`` for
:func:`tunekit.trainable.train_fn`, learns from results, and keeps its state as plain data
(``get_state``/``set_state``), so ``save``/``restore`` — and with them ``Tuner.restore`` —
bring it back exactly. It judges finished trials with a :class:`~tunekit.core.judge.Judge`,
the same object the search phase hands its ``decide``: what the searcher ranks best while the
trials run is what the phase decides from the records. Ray 2.60 keeps only one pending trial
of a custom searcher unless it is wrapped in ``ConcurrencyLimiter(searcher, max_concurrent=N,
batch=False)``: use :func:`limited` (ARCHITECTURE.md).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Literal

from ray.tune.search import ConcurrencyLimiter, Searcher

from tunekit._state import PickledState
from tunekit.core.decisions import Candidate
from tunekit.core.judge import Judge

#: How a candidate read from an earlier phase's trial is named among the trials (never one Tune runs).
REUSED = "reused:"

#: The result fields a judge reads besides its metric and step.
#: What a searcher keeps of each result besides its judged metric (the losses: the learning-rate tie side reads them).
JUDGED_FIELDS = ("chance_loss", "diverged", "stopped_by", "val_loss_se", "val_loss", "train_loss")


def _every_result(metric: str) -> str | None:
    """The metric Tune may demand of every result: not a ``test_*`` one, which only a run's last result carries."""
    return None if metric.startswith("test_") else metric


class TunekitSearcher(PickledState, Searcher):
    """Base class: keeps each trial's judged results and turns a finished trial into a candidate.

    Args:
        base_config: the trial config every suggestion starts from (``{"preset": …}``).
        judge: how finished trials are compared (metric, mode, window, judging step); default the
            median validation loss of the last three results. A ``metric``/``mode`` that Tune passes
            through ``set_search_properties`` replaces the judge's.
    """

    def __init__(self, base_config: dict[str, Any] | None = None, judge: Judge | None = None) -> None:
        self.judge = judge if judge is not None else Judge(window=3)
        super().__init__(metric=_every_result(self.judge.metric), mode=self.judge.mode)
        self.base_config: dict[str, Any] = copy.deepcopy(base_config or {})
        self.rows: dict[str, list[dict[str, Any]]] = {}  # trial id → the judged fields of each result
        self.trial_values: dict[str, Any] = {}  # trial id → the value it evaluates
        self.finished: set[str] = set()

    # ------------------------------------------------------------------ Ray hooks

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any) -> bool:
        if mode not in (None, "min", "max"):
            return False
        direction: Literal["min", "max"] = "max" if (mode or self.judge.mode) == "max" else "min"
        self.judge = dataclasses.replace(self.judge, metric=metric or self.judge.metric, mode=direction)
        self._metric, self._mode = _every_result(self.judge.metric), self.judge.mode
        return True

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if self.judge.metric not in result:
            return
        kept = (self.judge.metric, self.judge.time_attr, *JUDGED_FIELDS)
        self.rows.setdefault(trial_id, []).append({k: result[k] for k in kept if k in result})

    def get_state(self) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("__")}

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(copy.deepcopy(self.upgrade(state)))

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Tuner.restore unpickles the searcher of an experiment an earlier release wrote
        self.__dict__.update(self.upgrade(state))

    def upgrade(self, state: dict[str, Any]) -> dict[str, Any]:
        """A state pickled by tunekit 0.1.0 (``curves``, ``judge_window``, …) in today's terms (``judge``, ``rows``)."""
        if "curves" not in state:
            return state
        state = dict(state)
        judge = Judge(
            state.get("_metric") or "test_loss",
            state.get("_mode") or "min",
            window=state.pop("judge_window", 3),
            step=state.pop("judge_step", None),
            time_attr=state.pop("time_attr", "training_iteration"),
        )
        chance = state.pop("chance", {})
        state["rows"] = {
            trial_id: [
                {
                    judge.time_attr: step,
                    judge.metric: judge.sign * value,
                    **({"chance_loss": chance[trial_id]} if trial_id in chance else {}),
                }
                for step, value in zip(steps, values, strict=True)
            ]
            for trial_id, (steps, values) in state.pop("curves").items()
        }
        state["judge"] = judge
        return state

    # ------------------------------------------------------------------ after a killed driver (tunekit.core.resume)

    def suggested(self) -> set[str]:
        """The trials this searcher suggested to Tune."""
        return {t for t in self.trial_values if not t.startswith(REUSED)}

    def awaited(self) -> set[str]:
        """The suggested trials whose end this searcher still waits for."""
        return {t for t in self.suggested() if t not in self.finished}

    def known(self) -> set[str]:
        """Every trial this searcher suggested, those it no longer counts among :meth:`suggested` too."""
        return self.suggested()

    def catch_up(self, trial_id: str, results: list[dict[str, Any]], error: bool) -> None:
        """Take the end of a trial Tune ended but whose end this (saved) searcher missed, from its ``results``."""
        self.rows.pop(trial_id, None)  # what it saw before is among them
        for result in results:
            self.on_trial_result(trial_id, result)
        self.on_trial_complete(trial_id, results[-1] if results else None, error=error or not results)

    def adopt(self, trial_id: str, config: Mapping[str, Any]) -> bool:
        """Take a trial Tune recorded after this (saved) searcher's state was saved as its own suggestion, if
        ``config`` (the trial's, as Tune saved it) is what it suggests next; else leave it as it was (False)."""
        from ray.tune.utils.serialization import TuneFunctionEncoder

        from tunekit.core.resume import recorded_as_suggested

        before = self.get_state()
        suggestion = self.suggest(trial_id)
        if isinstance(suggestion, dict):
            saved = json.loads(json.dumps(suggestion, cls=TuneFunctionEncoder))  # as Tune saves a config
            if recorded_as_suggested(saved, config):
                return True
        self.set_state(before)
        return False

    def forget(self, trial_id: str) -> None:
        """Drop a suggested trial Tune never recorded, as if it had never been suggested (the phase decides from
        Tune's trials, so what it reported is dropped too); its value is suggested again."""
        value = self.trial_values.pop(trial_id)
        self.rows.pop(trial_id, None)
        if trial_id in self.finished:
            self.finished.discard(trial_id)
            self.unobserve(trial_id, value)
        self.requeue(value)

    def unobserve(self, trial_id: str, value: Any) -> None:
        """Drop what the end of ``trial_id`` (which evaluated ``value``) taught this searcher."""
        raise NotImplementedError

    def requeue(self, value: Any) -> None:
        """Suggest ``value`` (as this searcher's ``trial_values`` hold it) again, before anything new."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers

    def candidate(self, trial_id: str, result: dict[str, Any] | None, error: bool, label: str | None = None) -> Candidate:
        """A finished trial judged (labelled ``label``, default its id); an error or divergence is worst."""
        if result is not None and self.judge.metric in result:
            rows = self.rows.get(trial_id, [])
            step = result.get(self.judge.time_attr)
            if not rows or rows[-1].get(self.judge.time_attr) != step:
                self.on_trial_result(trial_id, result)  # Tune does not send a stopping result to searchers
        return self.judge.candidate(label or trial_id, self.rows.get(trial_id, []), error)

    def config_with(self, **values: Any) -> dict[str, Any]:
        """``base_config`` with ``values`` as overrides (dotted paths or aliases)."""
        config = copy.deepcopy(self.base_config)
        config.update(values)
        return config


class _RestorableLimiter(ConcurrencyLimiter):
    """Ray's ``ConcurrencyLimiter``, made to come back whole from ``Tuner.restore`` after a killed driver.

    Its set of live trials is saved in a file of its own, which can be older or newer than the
    trials Tune resumes (:mod:`tunekit.core.resume`):

    * a trial it does not count as live still reaches the searcher when it ends — Ray's limiter
      dropped that end, and a searcher that waits for one (the snapshot searcher for its
      continuations) waited for ever. Tune calls this only for trials of this experiment, all of
      them the searcher's, and tunekit's searchers ignore an end they already have;
    * a trial it counts as live that its searcher no longer awaits (ended and caught up, or
      forgotten) frees its slot.
    """

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # Ray allows FINISHED
        awaited = getattr(self.searcher, "awaited", None)
        if awaited is not None:  # restored: a trial saved as live that its searcher no longer awaits holds no slot
            self.live_trials &= awaited()
            self.num_unfinished_live_trials = len(self.live_trials)
        return super().suggest(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id not in self.live_trials:  # restored by Tuner.restore: the limiter forgot it, its searcher did not
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        super().on_trial_complete(trial_id, result=result, error=error)


def limited(searcher: Searcher, max_concurrent: int) -> ConcurrencyLimiter:
    """Wrap a searcher so Tune runs up to ``max_concurrent`` of its trials at once (batch=False), and so that
    trials running when a driver died still report their end to it after ``Tuner.restore``."""
    return _RestorableLimiter(searcher, max_concurrent=max_concurrent, batch=False)

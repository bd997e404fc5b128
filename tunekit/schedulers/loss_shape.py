"""``LossShapeScheduler``: stop trials by the shape of their validation loss (a thin Ray adapter).

The rule lives in :func:`tunekit.core.early_stop.decide`; this class only keeps each trial's
curve, finds its peers at the same step, and tells Ray CONTINUE or STOP. Peers are trials
whose results carry the same ``group_attr`` (default ``epochs_total``, the schedule length),
since a 1cycle trial's loss at epoch k depends on its total cycle.

Ray passes schedulers a flattened copy of each result, so a scheduler cannot write into what
loggers see. :class:`DecisionRecorder` — a Tune callback holding the scheduler — stamps
``diagnosis``, ``stopped_by`` and ``decision`` into every result before the loggers (and
MLflow) read it::

    scheduler = LossShapeScheduler(grace_period=3)
    tune.Tuner(trainable, tune_config=tune.TuneConfig(scheduler=scheduler, metric="val_loss", mode="min"),
               run_config=tune.RunConfig(callbacks=[scheduler.recorder()]))
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ray.tune.callback import Callback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from tunekit._state import PickledState
from tunekit.core.early_stop import Decision, StopRule, decide, value_at

if TYPE_CHECKING:
    from ray.tune.experiment import Trial


class LossShapeScheduler(PickledState, FIFOScheduler):
    """Stop diverging trials at once, overfitting ones after the grace period, and clear laggards.

    Args:
        metric: the reported validation loss (or any metric; see ``mode``).
        mode: "min" or "max"; may arrive later through ``set_search_properties``.
        time_attr: the result field that counts steps.
        grace_period: steps before anything but divergence can stop a trial.
        min_peers: other trials needed at the same step for a peer comparison.
        quantile: the peers' quantile a trial must not be clearly worse than.
        group_attr: result field whose value must match for trials to be peers (None: all trials).
        stop_overfitting: stop curves that rise after their minimum.
    """

    def __init__(
        self,
        metric: str | None = "val_loss",
        mode: str | None = "min",
        time_attr: str = "training_iteration",
        grace_period: int = 3,
        min_peers: int = 2,
        quantile: float = 0.5,
        group_attr: str | None = "epochs_total",
        stop_overfitting: bool = True,
    ) -> None:
        super().__init__()
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode=}")
        self._metric = metric
        self._mode = mode
        self._time_attr = time_attr
        self._group_attr = group_attr
        self._rule = StopRule(
            grace_period=grace_period, min_peers=min_peers, quantile=quantile, stop_overfitting=stop_overfitting
        )
        self._curves: dict[str, tuple[list[float], list[float]]] = {}  # trial id → (steps, losses as minimised)
        self._at: dict[tuple[Any, float], dict[str, float]] = {}  # (group, step) → trial id → value there
        self._group: dict[str, Any] = {}
        self._decisions: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ Ray hooks

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        if self._metric not in result or self._time_attr not in result:
            return TrialScheduler.CONTINUE
        decision = self.observe(trial.trial_id, result)
        return TrialScheduler.STOP if decision.stop else TrialScheduler.CONTINUE

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        pass  # keep its curve: a stopped trial is still evidence for its peers

    def debug_string(self) -> str:
        stopped = [d["stopped_by"] for d in self._decisions.values() if d["stopped_by"]]
        counts = {k: stopped.count(k) for k in sorted(set(stopped))}
        return f"LossShapeScheduler: {len(self._curves)} trials, stopped {counts or 'none'}"

    # ------------------------------------------------------------------ plain-data core

    def observe(self, trial_id: str, result: dict[str, Any]) -> Decision:
        """Record one result and decide (usable without Ray: hand-made result dicts)."""
        if self._mode is None or self._metric is None:
            raise ValueError("LossShapeScheduler needs metric and mode: pass them here or in TuneConfig(metric=…, mode=…)")
        sign = 1.0 if self._mode == "min" else -1.0
        raw = result[self._metric]
        value = sign * float(raw) if raw is not None else math.nan
        if result.get("diverged"):
            value = math.nan
        step = float(result[self._time_attr])
        group = result.get(self._group_attr) if self._group_attr else None
        steps, losses = self._curves.setdefault(trial_id, ([], []))
        steps.append(step)
        losses.append(value)
        self._group[trial_id] = group
        at = self._at.setdefault((group, step), {})
        at[trial_id] = value_at(steps, losses, step)
        peers = [v for tid, v in at.items() if tid != trial_id]
        chance = result.get("chance_loss") if self._mode == "min" else None
        decision = decide(steps, losses, peers, self._rule, chance_loss=chance, at_end=_at_end(result))
        self._decisions[trial_id] = {
            "diagnosis": decision.diagnosis.shape.value,
            "stopped_by": decision.stopped_by,
            "decision": decision.reason,
            "step": step,
        }
        return decision

    def decision_for(self, trial_id: str) -> dict[str, Any] | None:
        """The last decision about ``trial_id`` (diagnosis, stopped_by, decision, step)."""
        return self._decisions.get(trial_id)

    def get_state(self) -> dict[str, Any]:
        return {
            "metric": self._metric,
            "mode": self._mode,
            "curves": self._curves,
            "at": self._at,
            "group": self._group,
            "decisions": self._decisions,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._metric, self._mode = state["metric"], state["mode"]
        self._curves, self._at = state["curves"], state["at"]
        self._group, self._decisions = state["group"], state["decisions"]

    def recorder(self) -> DecisionRecorder:
        """The Tune callback that writes this scheduler's decisions into every result."""
        return DecisionRecorder(self)


def _at_end(result: dict[str, Any]) -> bool:
    """Whether ``result`` is its trial's last: the epoch it reports is the schedule's last (``epochs_total``)."""
    epoch, total = result.get("epoch"), result.get("epochs_total")
    return isinstance(epoch, int | float) and isinstance(total, int | float) and epoch >= total


class DecisionRecorder(Callback):
    """Stamps ``diagnosis``, ``stopped_by`` and ``decision`` into each result (before the loggers)."""

    def __init__(self, scheduler: LossShapeScheduler) -> None:
        self.scheduler = scheduler

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any) -> None:
        decision = self.scheduler.decision_for(trial.trial_id)
        if decision is None:
            result.update(diagnosis="", stopped_by="", decision="")
            return
        result.update(diagnosis=decision["diagnosis"], stopped_by=decision["stopped_by"], decision=decision["decision"])

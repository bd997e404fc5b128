"""``LossShapePruner``: the loss-shape early-stopping rule for Optuna users.

Same rule as :class:`tunekit.schedulers.LossShapeScheduler` (:func:`tunekit.core.early_stop.decide`):
prune a diverging trial at once, an overfitting one after ``grace_period`` steps, and one
clearly worse than its peers at the same step unless it is still falling fast. Peers are the
study's other trials that reported the same step; give them equal schedule lengths.

    study = optuna.create_study(direction="minimize", pruner=LossShapePruner(grace_period=3))
    # in the objective: trial.report(val_loss, epoch); if trial.should_prune(): raise optuna.TrialPruned()

The last decision is kept in the trial's user attributes (``diagnosis``, ``stopped_by``).
"""

from __future__ import annotations

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tunekit.core.early_stop import StopRule, decide, value_at


class LossShapePruner(BasePruner):
    """Optuna pruner over the shape of the intermediate values (see module docstring)."""

    def __init__(self, grace_period: int = 3, min_peers: int = 2, quantile: float = 0.5, stop_overfitting: bool = True) -> None:
        self._rule = StopRule(
            grace_period=grace_period, min_peers=min_peers, quantile=quantile, stop_overfitting=stop_overfitting
        )

    def prune(self, study: optuna.study.Study, trial: FrozenTrial) -> bool:
        values = trial.intermediate_values
        if not values:
            return False
        sign = 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0
        steps = sorted(values)
        losses = [sign * values[s] for s in steps]
        step = steps[-1]
        peers = []
        for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)):
            if other.number == trial.number or not other.intermediate_values or max(other.intermediate_values) < step:
                continue
            o_steps = sorted(other.intermediate_values)
            peers.append(value_at(o_steps, [sign * other.intermediate_values[s] for s in o_steps], step))
        decision = decide(steps, losses, peers, self._rule)
        study._storage.set_trial_user_attr(trial._trial_id, "diagnosis", decision.diagnosis.shape.value)
        study._storage.set_trial_user_attr(trial._trial_id, "stopped_by", decision.stopped_by)
        return decision.stop

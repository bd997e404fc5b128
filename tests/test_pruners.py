"""LossShapePruner inside a real Optuna study: same rule as the Ray scheduler."""

from __future__ import annotations

import math

import optuna
import pytest

from tunekit.pruners import LossShapePruner

# in this order: the overfitting curve runs first, alone, so only its own shape can stop it
CURVES = {
    "overfit": [2.0, 1.0, 0.6, 0.55, 0.65, 0.75, 0.85, 0.95],
    "nan": [2.0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan],
    "good": [2.0, 1.0, 0.6, 0.45, 0.40, 0.39, 0.39, 0.38],
    "good2": [2.1, 1.1, 0.62, 0.46, 0.41, 0.40, 0.40, 0.39],
    "slow": [2.2, 2.1, 2.0, 1.9, 1.85, 1.82, 1.80, 1.79],
}


def test_pruner_stops_bad_curves_and_keeps_good_ones() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", pruner=LossShapePruner(grace_period=3, min_peers=1))
    steps_run: dict[str, int] = {}

    def objective(trial: optuna.Trial) -> float:
        name = trial.suggest_categorical("curve", list(CURVES))
        for step, loss in enumerate(CURVES[name], start=1):
            trial.report(loss, step)
            steps_run[name] = step
            if trial.should_prune():
                raise optuna.TrialPruned()
        return CURVES[name][-1]

    for name in CURVES:
        study.enqueue_trial({"curve": name})
    study.optimize(objective, n_trials=len(CURVES))
    states = {t.params["curve"]: t for t in study.trials}
    # NaN pruned at its first NaN; overfitting and the laggard pruned; good curves complete
    assert steps_run["nan"] == 2
    assert states["overfit"].state == optuna.trial.TrialState.PRUNED
    assert states["slow"].state == optuna.trial.TrialState.PRUNED
    assert states["good"].state == optuna.trial.TrialState.COMPLETE
    assert states["good2"].state == optuna.trial.TrialState.COMPLETE
    # the decision is kept on the trial for the user to read
    assert states["overfit"].user_attrs["stopped_by"] == "overfitting"
    assert states["slow"].user_attrs["stopped_by"] == "peers"
    assert states["good"].user_attrs["diagnosis"] in ("horizontal", "underfitting")


def test_pruner_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="grace_period"):
        LossShapePruner(grace_period=0)

"""LossShapeScheduler: driven by hand-made results (no Ray), then in one real Tune run on MNIST-1D."""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ray.tune.schedulers import TrialScheduler

from tests.conftest import tiny_preset_dict
from tunekit.schedulers import DecisionRecorder, LossShapeScheduler

GOOD = [2.0, 1.0, 0.6, 0.45, 0.40, 0.39, 0.39, 0.38]
SLOW = [2.2, 2.1, 2.0, 1.9, 1.85, 1.82, 1.80, 1.79]
OVERFIT = [2.0, 1.0, 0.6, 0.55, 0.65, 0.75, 0.85, 0.95]


@dataclass
class FakeTrial:
    """The one attribute the scheduler reads from a Ray Trial."""

    trial_id: str


def feed(scheduler: LossShapeScheduler, trial: str, losses: list[float], **extra: Any) -> list[str]:
    decisions = []
    for i, loss in enumerate(losses, start=1):
        result = {"val_loss": loss, "training_iteration": i, "epochs_total": 8, **extra}
        decisions.append(scheduler.on_trial_result(None, FakeTrial(trial), result))  # type: ignore[arg-type]
        if decisions[-1] == TrialScheduler.STOP:
            break
    return decisions


def test_diverging_trial_stops_at_once() -> None:
    s = LossShapeScheduler(grace_period=3)
    decisions = feed(s, "a", [2.3, math.nan, math.nan])
    # stopped at the first NaN, inside the grace period
    assert decisions == [TrialScheduler.CONTINUE, TrialScheduler.STOP]
    assert s.decision_for("a")["stopped_by"] == "diverging"  # type: ignore[index]


def test_diverged_flag_from_the_trainable_stops_too() -> None:
    s = LossShapeScheduler()
    result = {"val_loss": 1e20, "training_iteration": 1, "diverged": True}
    assert s.on_trial_result(None, FakeTrial("a"), result) == TrialScheduler.STOP  # type: ignore[arg-type]


def test_overfitting_trial_stops_after_the_grace_period() -> None:
    s = LossShapeScheduler(grace_period=3)
    decisions = feed(s, "o", OVERFIT)
    assert decisions[-1] == TrialScheduler.STOP
    assert s.decision_for("o")["stopped_by"] == "overfitting"  # type: ignore[index]
    # not before its loss had clearly risen
    assert len(decisions) >= 6


def test_laggard_stops_against_its_peers_but_not_the_good_ones() -> None:
    s = LossShapeScheduler(grace_period=3, min_peers=2)
    for name in ("g1", "g2", "g3"):
        assert TrialScheduler.STOP not in feed(s, name, GOOD)
    decisions = feed(s, "slow", SLOW)
    # clearly worse than the peers' median at the same step, and not closing the gap: stopped at
    # step 3, the end of the grace period and the first with enough points (three) to read its shape
    assert decisions[-1] == TrialScheduler.STOP
    assert len(decisions) == 3
    assert s.decision_for("slow")["stopped_by"] == "peers"  # type: ignore[index]


def slow_among_good(epochs_total: int) -> tuple[LossShapeScheduler, list[str]]:
    """Three good trials, then a slow one, three epochs each in a schedule of ``epochs_total``: the slow one's decisions."""
    s = LossShapeScheduler(grace_period=3, min_peers=2)
    for name in ("g1", "g2", "g3"):
        feed(s, name, GOOD[:3], epochs_total=epochs_total)
    decisions = [
        s.on_trial_result(
            None, FakeTrial("slow"), {"val_loss": v, "training_iteration": i, "epoch": i, "epochs_total": epochs_total}
        )  # type: ignore[arg-type]
        for i, v in enumerate(SLOW[:3], start=1)
    ]
    return s, decisions


def test_a_trial_flagged_on_its_last_epoch_finished_and_is_not_marked_stopped() -> None:
    """The scheduler's verdict at a trial's last epoch stops nothing: it ran to its end and ranks with those that did."""
    s, decisions = slow_among_good(epochs_total=3)
    assert decisions[-1] == TrialScheduler.CONTINUE
    decision = s.decision_for("slow")
    assert decision is not None
    assert decision["stopped_by"] == ""
    assert "last epoch" in decision["decision"]
    # the same curve one epoch before its end is stopped (the control)
    assert slow_among_good(epochs_total=4)[1][-1] == TrialScheduler.STOP


def test_peers_must_share_the_schedule_length() -> None:
    s = LossShapeScheduler(grace_period=3, min_peers=2)
    for name in ("g1", "g2", "g3"):
        feed(s, name, GOOD)
    # a trial with a 30-epoch cycle is not compared with 8-epoch ones at epoch 3
    decisions = [
        s.on_trial_result(None, FakeTrial("long"), {"val_loss": v, "training_iteration": i, "epochs_total": 30})  # type: ignore[arg-type]
        for i, v in enumerate(SLOW[:5], start=1)
    ]
    assert TrialScheduler.STOP not in decisions


def test_mode_max_reads_accuracy_upside_down() -> None:
    s = LossShapeScheduler(metric="val_acc", mode="max", grace_period=3)
    accuracies = [0.5, 0.8, 0.9, 0.92, 0.85, 0.78, 0.70, 0.62]
    for i, acc in enumerate(accuracies, start=1):
        decision = s.on_trial_result(None, FakeTrial("a"), {"val_acc": acc, "training_iteration": i})  # type: ignore[arg-type]
    # falling accuracy after its peak is a rising loss: overfitting
    assert decision == TrialScheduler.STOP
    assert s.decision_for("a")["stopped_by"] == "overfitting"  # type: ignore[index]


def test_metric_and_mode_may_arrive_late() -> None:
    s = LossShapeScheduler(metric=None, mode=None)
    s.set_search_properties("val_loss", "min")
    assert feed(s, "a", GOOD[:2]) == [TrialScheduler.CONTINUE] * 2


def test_missing_mode_is_a_clear_error() -> None:
    s = LossShapeScheduler(mode=None)
    with pytest.raises(ValueError, match="metric and mode"):
        feed(s, "a", GOOD[:1])


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match="mode"):
        LossShapeScheduler(mode="up")
    with pytest.raises(ValueError, match="grace_period"):
        LossShapeScheduler(grace_period=0)


def test_contract_add_result_complete_and_pickle_round_trip(tmp_path: Path) -> None:
    s = LossShapeScheduler(grace_period=2)
    trial = FakeTrial("t")
    s.on_trial_add(None, trial)  # type: ignore[arg-type]
    for i, v in enumerate(GOOD[:4], start=1):
        assert s.on_trial_result(None, trial, {"val_loss": v, "training_iteration": i}) in (
            TrialScheduler.CONTINUE,
            TrialScheduler.STOP,
        )  # type: ignore[arg-type]
    s.on_trial_complete(None, trial, {"val_loss": GOOD[3], "training_iteration": 4})  # type: ignore[arg-type]
    # the object pickles (Ray ships it) and save/restore brings back every curve and decision
    clone = pickle.loads(pickle.dumps(s))
    assert clone.get_state() == s.get_state()
    path = str(tmp_path / "scheduler.pkl")
    s.save(path)
    restored = LossShapeScheduler()
    restored.restore(path)
    assert restored.get_state() == s.get_state()
    assert "LossShapeScheduler" in restored.debug_string()


def test_recorder_stamps_decisions_into_results() -> None:
    s = LossShapeScheduler(grace_period=3)
    feed(s, "o", OVERFIT)
    result: dict[str, Any] = {}
    DecisionRecorder(s).on_trial_result(0, [], FakeTrial("o"), result)  # type: ignore[arg-type]
    assert result["stopped_by"] == "overfitting"
    assert result["diagnosis"] == "overfitting"
    # unknown trials get the same keys, empty, so CSV loggers keep a stable header
    other: dict[str, Any] = {}
    DecisionRecorder(s).on_trial_result(0, [], FakeTrial("new"), other)  # type: ignore[arg-type]
    assert other == {"diagnosis": "", "stopped_by": "", "decision": ""}


def test_chance_level_from_results_counts_as_diverging() -> None:
    s = LossShapeScheduler(grace_period=3)
    stuck = [7.0, 4.0, 2.8, 2.45, 2.4, 2.42, 2.41, 2.39]
    decisions = feed(s, "stuck", stuck, chance_loss=math.log(10))
    assert decisions[-1] == TrialScheduler.STOP
    assert s.decision_for("stuck")["stopped_by"] == "diverging"  # type: ignore[index]


SMALL = {"name": "mnist1d", "num_samples": 2000, "train_subset": 200}
VARIANTS: dict[str, dict[str, Any]] = {
    "good": {"policy": {"name": "one_cycle", "max_lr": 0.5}},
    "diverging": {"policy": {"name": "one_cycle", "max_lr": 50.0}},
    "too_slow": {"policy": {"name": "constant", "lr": 0.0005, "momentum": 0.9}},
    "overfitting": {
        "policy": {"name": "constant", "lr": 0.02, "momentum": 0.9},
        "weight_decay": 0.0,
        "dataset": SMALL,
        "train.batch_size": 16,
    },
}


def _variant_fn(config: dict[str, Any]) -> None:
    from tunekit.trainable import train_fn

    train_fn({"preset": config["preset"], **VARIANTS[config["variant"]]})


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_real_tune_run_stops_bad_trials_early_and_keeps_the_best(tmp_path: Path) -> None:
    from ray import tune

    from tunekit.presets import load_preset, preset_to_dict

    epochs = 12
    base = load_preset(tiny_preset_dict(), {"epochs": epochs})
    scheduler = LossShapeScheduler(grace_period=3, min_peers=1)
    tuner = tune.Tuner(
        tune.with_resources(_variant_fn, {"cpu": 1}),
        param_space={"preset": preset_to_dict(base), "variant": tune.grid_search(list(VARIANTS))},
        tune_config=tune.TuneConfig(scheduler=scheduler, metric="val_loss", mode="min"),
        run_config=tune.RunConfig(name="loss-shape", storage_path=str(tmp_path), callbacks=[scheduler.recorder()], verbose=0),
    )
    results = {r.config["variant"]: r for r in tuner.fit()}
    epochs_run = {name: len(r.metrics_dataframe) for name, r in results.items()}
    stopped_by = {name: r.metrics["stopped_by"] for name, r in results.items()}
    print(
        f"trial-epochs with LossShapeScheduler: {sum(epochs_run.values())} vs FIFO {epochs * len(VARIANTS)}; {epochs_run}; {stopped_by}"
    )
    # the diverging trial stopped after its first epoch, the overfitting one before the end
    assert stopped_by["diverging"] == "diverging"
    assert epochs_run["diverging"] == 1
    assert stopped_by["overfitting"] in ("overfitting", "peers")
    assert epochs_run["overfitting"] < epochs
    assert stopped_by["too_slow"] == "peers"
    # the best trial survived to the end, and the whole search cost far fewer trial-epochs
    assert epochs_run["good"] == epochs
    assert stopped_by["good"] == ""
    assert results["good"].metrics["val_loss"] == min(r.metrics["val_loss"] for r in results.values())
    # the scheduler read the validation split; only the run that reached its end reports the test split
    assert math.isfinite(results["good"].metrics["test_loss"])
    assert not math.isfinite(results["diverging"].metrics.get("test_loss", math.nan))
    assert sum(epochs_run.values()) <= 0.7 * epochs * len(VARIANTS)
    # every decision is in the logged results (so it reaches the CSV logs and, later, MLflow)
    assert set(results["good"].metrics_dataframe["diagnosis"].fillna("")) <= {"horizontal", "underfitting", "unknown", ""}
    assert results["overfitting"].metrics_dataframe["stopped_by"].iloc[-1] in ("overfitting", "peers")

"""The line a person watching a search reads when a trial ends."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from tunekit.recipe.progress import Progress
from tunekit.recipe.records import TrialRecord


@dataclass
class Ended:
    """What the progress callback reads of a Tune trial: its id, config, status and last result."""

    trial_id: str
    config: dict[str, Any]
    last_result: dict[str, Any] = field(default_factory=dict)
    status: str = "RUNNING"


def test_a_finished_trial_shows_its_validation_loss_with_its_standard_error(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress("learning_rate", 3, 5)
    lower = Ended("a", {"policy.max_lr": 0.55}, {"val_loss": 0.0946, "val_loss_se": 0.0113, "val_acc": 0.9656, "epoch": 3})
    older = Ended("b", {"policy.max_lr": 1.1}, {"val_loss": 0.1509, "val_acc": 0.9375, "epoch": 3})  # no standard error
    progress.on_trial_complete(1, [lower, older], lower)
    progress.on_trial_complete(2, [lower, older], older)
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("[3/5 learning_rate] done policy.max_lr=0.55: val_loss 0.0946 ± 0.0113, val_acc 0.9656 at epoch 3")
    assert "val_loss_se" not in first
    assert "best so far policy.max_lr=0.55 (0.0946)" in first
    assert second.startswith("[3/5 learning_rate] done policy.max_lr=1.1: val_loss 0.1509, val_acc 0.9375 at epoch 3")
    assert "best so far policy.max_lr=0.55 (0.0946)" in second


def test_a_candidate_read_from_an_earlier_phase_is_said_and_counts_as_a_rival(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress("momentum", 4, 5)
    earlier = TrialRecord("learning_rate", "d093518b", {"momentum": [0.95, 0.85]}, [], None, "/runs/lr/t", None)
    earlier.rows = [{"val_loss": 0.0946, "val_loss_se": 0.0113, "epoch": 3, "epochs_total": 3}]
    progress.reused([replace(earlier, reused_from="learning_rate")])
    worse = Ended("c", {"momentum": [0.99, 0.85]}, {"val_loss": 0.1797, "epoch": 3})
    progress.on_trial_complete(1, [worse], worse)
    read, done = capsys.readouterr().out.splitlines()
    assert read == (
        "[4/5 momentum] read momentum=[0.95,0.85] from learning_rate trial d093518b, the same training: "
        "val_loss 0.0946 ± 0.0113 at epoch 3 (not trained again)"
    )
    assert done.endswith("best so far momentum=[0.95,0.85] (0.0946)")


def test_a_range_test_says_where_on_its_ramp_it_ended_and_whether_its_curve_diverged(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress("range_test", 1, 5)
    ended = Ended(
        "r",
        {"weight_decay": 1e-4},
        {"val_loss": 15.8952, "val_acc": 0.299, "lr": 1.2993, "step": 117, "epoch": 1, "diverged": True},
    )
    ran = Ended(
        "s", {"weight_decay": 1e-5}, {"val_loss": 2.0166, "val_acc": 0.28, "lr": 3.0, "step": 270, "epoch": 3, "diverged": False}
    )
    progress.on_trial_complete(1, [ended, ran], ended)
    progress.on_trial_complete(2, [ended, ran], ran)
    first, second = capsys.readouterr().out.splitlines()
    assert "val_acc 0.2990 at lr 1.299, step 117, diverged: ended there —" in first
    assert "at lr 3, step 270 —" in second
    assert "best so far" not in first + second  # a range test's loss ranks nothing as it ends

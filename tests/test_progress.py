"""The line a person watching a search reads when a trial ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tunekit.recipe.progress import Progress


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

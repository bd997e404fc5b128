"""The trainable inside real Ray Tune runs: learning, retry from checkpoint, continuation, resources."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
from ray import tune
from torch import nn

from tests.conftest import reported, run_crashing_once, tiny_preset_dict
from tunekit.presets import load_preset
from tunekit.runner import run_trial
from tunekit.train.models import CNN1D
from tunekit.trainable import load_state, preset_from_config

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

REPORTED = {"epoch", "step", "val_loss", "val_acc", "train_loss", "lr", "momentum", "samples_per_s", "diverged", "weight_decay"}


def test_one_cycle_trial_learns_and_reports_every_epoch(tmp_path: Path) -> None:
    outcome = run_trial(load_preset(tiny_preset_dict(), {"epochs": 4}), storage=str(tmp_path), name="learn")
    assert outcome.error is None
    # every epoch reported with the loop's metrics
    assert [row["epoch"] for row in outcome.history] == [1, 2, 3, 4]
    assert set(outcome.metrics) >= REPORTED
    # the last result, at the run's end, also reads the test split; no earlier one does
    assert {"test_loss", "test_acc"} <= set(outcome.metrics)
    assert all(not math.isfinite(row.get("test_loss", math.nan)) for row in outcome.history[:-1])
    # well above the 10 % of chance, and a final checkpoint that loads with weights_only
    assert outcome.metrics["val_acc"] > 0.5
    assert outcome.metrics["test_acc"] > 0.5
    assert outcome.checkpoint is not None
    assert load_state(outcome.checkpoint)["epoch"] == 4
    # the trial tells where its files live (the searchers need it for snapshots)
    assert outcome.metrics["trial_dir"] == outcome.path


def test_retry_resumes_from_checkpoint_and_matches_the_unbroken_run(tmp_path: Path) -> None:
    preset = load_preset(tiny_preset_dict(), {"epochs": 4})
    unbroken = run_trial(preset, storage=str(tmp_path), name="unbroken")
    result = run_crashing_once(preset, tmp_path, "flaky", crash_after=2)
    # it crashed once, and the retry finished the run
    assert result.error is None
    # the retry started from the epoch-2 checkpoint: epochs 3 and 4 only, nothing trained twice
    epochs = result.metrics_dataframe["epoch"].tolist()
    assert epochs == [1, 2, 3, 4]
    # and the later epochs equal the unbroken run's (CPU, same seed)
    resumed = result.metrics_dataframe.set_index("epoch")
    for row in unbroken.history[2:]:
        assert resumed.loc[row["epoch"], "val_loss"] == pytest.approx(row["val_loss"], rel=1e-6)
    assert result.metrics["test_loss"] == pytest.approx(unbroken.metrics["test_loss"], rel=1e-6)


class _CrashingCNN(CNN1D):
    """The tiny preset's CNN, which (in a trial) waits until Tune has copied its trial's (empty) ``result.json`` to the storage
    folder ``storage``, then trains and dies at training step ``crash_at`` once, writing to ``marker`` whether
    the storage's copy had epoch 2's row then (``fresh``), did not (``stale``) or was not there (``missing``)."""

    def __init__(self, marker: str, storage: str, crash_at: int) -> None:
        super().__init__(10, (1, 40), 16)
        self.marker, self.storage, self.crash_at, self.steps = Path(marker), Path(storage), crash_at, 0
        deadline = time.monotonic() + 120
        in_trial = tune.get_context().get_trial_id() is not None  # not tunekit's check of the preset, before the run
        while in_trial and not self.marker.exists() and not any(self.storage.glob("*/result.json")):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Tune did not copy the trial's result.json to {self.storage} in 120 s")
            time.sleep(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            self.steps += 1
            if self.steps == self.crash_at and not self.marker.exists():
                copied = any(self.storage.glob("*/result.json"))
                self.marker.write_text("fresh" if reported(self.storage, 2) else "stale" if copied else "missing")
                raise RuntimeError(f"simulated crash at step {self.crash_at}")
        return super().forward(x)


def crashing_cnn(marker: str, storage: str, crash_at: int) -> nn.Module:
    """A model factory (``model: {factory: tests.test_trainable:crashing_cnn}``)."""
    return _CrashingCNN(marker, storage, crash_at)


def test_a_retry_keeps_the_epochs_reported_since_tunes_last_copy_to_the_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tune copies its staging folder to the storage every 30 s here; the first attempt trains once its trial's
    # (empty) result.json has been copied, and dies early in epoch 3 (22 or 23 steps an epoch), before the next copy
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "30")
    marker = tmp_path / "crashed"
    model = {"factory": "tests.test_trainable:crashing_cnn",
             "kwargs": {"marker": str(marker), "storage": str(tmp_path / "stale"), "crash_at": 2 * 23 + 1}}  # fmt: skip
    preset = load_preset(tiny_preset_dict(model=model), {"epochs": 4})
    outcome = run_trial(preset, storage=str(tmp_path), name="stale", track=False)
    assert marker.read_text() == "stale", "the storage's copy was not behind when the trial crashed: no race here"
    # Tune's loggers restore a retried trial's results from the storage's copy, which lacked epochs 1 and 2;
    # tunekit's kept the driver's longer copy: the results file has every epoch once (the retry, from the epoch-2
    # checkpoint, trained 3 and 4 only)
    assert outcome.error is None
    assert [row["epoch"] for row in outcome.history] == [1, 2, 3, 4]


def test_continuation_trial_restores_snapshot_and_uses_new_weight_decay(tmp_path: Path) -> None:
    parent = run_trial(load_preset(tiny_preset_dict(), {"epochs": 2}), storage=str(tmp_path), name="parent")
    assert parent.checkpoint is not None
    child = run_trial(
        load_preset(tiny_preset_dict(), {"epochs": 4, "weight_decay": 3e-2}),
        storage=str(tmp_path),
        name="child",
        config={"restore_from": parent.checkpoint},
    )
    # epochs continue the parent's count; the new weight decay is what the optimiser used
    assert [row["epoch"] for row in child.history] == [3, 4]
    assert all(row["weight_decay"] == pytest.approx(3e-2) for row in child.history)
    assert child.metrics["restored_from"] == parent.checkpoint


def test_resources_from_the_preset_size_torch_threads(tmp_path: Path) -> None:
    preset = load_preset(tiny_preset_dict(), {"epochs": 1, "resources.cpu": 2})
    outcome = run_trial(preset, storage=str(tmp_path), name="threads")
    # tune.with_resources gave the trial 2 CPUs, and torch uses as many threads
    assert outcome.metrics["threads"] == 2
    assert outcome.metrics["device"] == "cpu"


def test_trial_config_overrides_are_applied() -> None:
    preset = preset_from_config({"preset": tiny_preset_dict(), "max_lr": 0.3, "weight_decay": 0.0, "restore_from": "x"})
    assert preset.policy.max_lr == 0.3  # type: ignore[union-attr]
    assert preset.weight_decay == 0.0


def test_trial_config_without_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="'preset'"):
        preset_from_config({"max_lr": 0.3})

"""The trainable in real Ray Tune trials: a time-budgeted retry, and the CPUs a trial was given."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from ray import tune
from torch import nn

from tests.conftest import run_crashing_once, tiny_preset_dict
from tunekit.presets import load_preset, preset_to_dict
from tunekit.trainable import train_fn, trial_cpus

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


def test_a_time_budgeted_trial_retried_from_its_checkpoint_finishes_the_cycle_it_began(tmp_path: Path) -> None:
    # a batch-size phase trial: its epochs sized by a timing probe, then a crash after epoch 1
    preset = load_preset(tiny_preset_dict(), {"epochs": 1, "train.time_budget_s": 3.0, "train.test_at_end": False})
    result = run_crashing_once(preset, tmp_path, "budget", crash_after=1)
    assert result.error is None
    rows = result.metrics_dataframe
    assert rows is not None
    sized = int(rows["budget_epochs"].iloc[0])
    assert sized >= 2, f"the budget fits {sized} epoch(s) here: the crash came at the end"
    # the retry kept the epochs the first attempt's probe decided (no second probe) and ran the cycle to its end
    assert rows["epoch"].tolist() == list(range(1, sized + 1))
    assert set(rows["epochs_total"]) == {sized}
    assert rows["probe_seconds_per_step"].nunique() == 1
    assert rows["lr"].iloc[-1] == pytest.approx(0.5 / 10 / 100, rel=0.05)


class LoggedItems(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Three learnable classes; each process that loads an item leaves a mark ``<pid>-<main|worker>`` in ``folder``."""

    def __init__(self, folder: str, n: int) -> None:
        self.folder, self.n = Path(folder), n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        who = "worker" if torch.utils.data.get_worker_info() is not None else "main"
        (self.folder / f"{os.getpid()}-{who}").touch()
        label = i % 3
        return torch.full((4,), float(label)), torch.tensor(label)


def logged_splits(folder: str) -> tuple[LoggedItems, LoggedItems, LoggedItems]:
    """A user's dataset factory: (train, validation, test) that record who loads them."""
    return LoggedItems(folder, 48), LoggedItems(folder, 12), LoggedItems(folder, 12)


def linear() -> nn.Module:
    """A user's model factory for :func:`logged_splits`."""
    return nn.Linear(4, 3)


def _ray_cpus(config: dict[str, Any]) -> None:
    tune.report({"cpus": trial_cpus(default=99.0)})


def test_trial_cpus_are_the_cpus_ray_gave_the_trial(tmp_path: Path) -> None:
    for cpus in (1, 2):
        tuner = tune.Tuner(
            tune.with_resources(_ray_cpus, {"cpu": cpus}),
            run_config=tune.RunConfig(name=f"cpus{cpus}", storage_path=str(tmp_path), verbose=0),
        )
        metrics = tuner.fit()[0].metrics
        assert metrics is not None
        assert metrics["cpus"] == cpus
    assert trial_cpus(default=3.0) == 3.0  # outside a trial: the caller's default


def test_a_trial_given_one_cpu_starts_no_loader_workers(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    preset = load_preset(
        {
            "name": "streamed",
            "dataset": {
                "factory": "tests.train.test_trials:logged_splits",
                "kwargs": {"folder": str(marks)},
                "in_memory": False,
                "num_workers": 2,
            },
            "model": {"factory": "tests.train.test_trials:linear"},
            "train": {"epochs": 2, "batch_size": 8, "seed": 0},
            "policy": {"name": "one_cycle", "max_lr": 0.1},
            "resources": {"cpu": 4},  # what the preset says; Ray gives this trial one CPU below
        }
    )
    tuner = tune.Tuner(
        tune.with_resources(train_fn, {"cpu": 1}),
        param_space={"preset": preset_to_dict(preset)},
        run_config=tune.RunConfig(name="streamed", storage_path=str(tmp_path), verbose=0),
    )
    result = tuner.fit()[0]
    assert result.error is None
    assert result.metrics is not None
    assert result.metrics["epoch"] == 2
    # every item was loaded in the trial's own process: one CPU leaves none for workers
    assert [p.name.split("-")[1] for p in marks.iterdir()] == ["main"]

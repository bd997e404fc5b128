"""Shared fixtures: one Ray session for every Ray-level test, tiny presets, no network."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")


#: Sizing floors low enough for the tiny presets' deliberately short phases (the defaults would lengthen them).
TINY_RANGE_TEST: dict[str, Any] = {"min_steps": 10, "points": 5}
TINY_SHORT_RUNS: dict[str, Any] = {"min_steps": 10, "min_points": 1}


def tiny_preset_dict(**overrides: Any) -> dict[str, Any]:
    """MNIST-1D with 2 000 samples (1 440 train, 160 validation, 400 test): a real dataset, a real model, seconds per run."""
    preset: dict[str, Any] = {
        "name": "tiny",
        "dataset": {"name": "mnist1d", "num_samples": 2000},
        "model": {"name": "cnn1d", "width": 16},
        "train": {"epochs": 3, "batch_size": 64, "seed": 0},
        "policy": {"name": "one_cycle", "max_lr": 0.5},
        "weight_decay": 1e-4,
        "search": {
            "range_test": {"min_lr": 0.01, "max_lr": 3.0, "epochs": 1, "eval_every": 5, "eval_samples": 200, **TINY_RANGE_TEST}
        },
    }
    preset.update(overrides)
    return preset


@pytest.fixture
def tiny() -> dict[str, Any]:
    return tiny_preset_dict()


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole test session (starting Ray costs ~5 s here)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()

"""Run one preset as one Ray Tune trial (``tunekit train`` and ``tunekit range-test``).

Starts (or joins) Ray, builds a ``Tuner`` around :func:`tunekit.trainable.train_fn` with the
preset's resources, and returns the trial's final metrics and its history.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunekit.presets import Preset, preset_to_dict

DEFAULT_STORAGE = "~/tunekit_runs"


@dataclass
class TrialOutcome:
    """The end of one trial: last metrics, every reported row, where its files are."""

    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    path: str = ""
    checkpoint: str | None = None
    error: str | None = None
    wall_s: float = 0.0


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start a local Ray (or connect to ``address``) unless one is already up.

    The dashboard stays off and nothing listens beyond loopback.
    """
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with RunConfig(verbose=0): no progress tables on stdout
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": False}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", **kwargs)


def storage_path(path: str | None) -> str:
    """An absolute storage path (Ray wants one) or a URI (``s3://…``) unchanged."""
    path = path or os.environ.get("TUNEKIT_STORAGE") or DEFAULT_STORAGE
    if re.match(r"^[a-z][a-z0-9+.-]*://", path):
        return path
    return str(Path(path).expanduser().resolve())


def run_trial(
    preset: Preset,
    *,
    storage: str | None = None,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    max_failures: int = 1,
    address: str | None = None,
    keep_checkpoints: int | None = None,
) -> TrialOutcome:
    """Train ``preset`` as one Tune trial and wait for it.

    Args:
        preset: what to train (a range-test preset runs a range test).
        storage: experiment storage (local folder or URI); default ``~/tunekit_runs``.
        name: experiment name; default ``<preset name>-<timestamp>``.
        config: extra trial-config keys (overrides, ``restore_from``).
        max_failures: retries from the last checkpoint after a crash.
        address: a Ray cluster to use instead of a local one.
        keep_checkpoints: keep only the newest N checkpoints (None: all). Ray forces an
            experiment-state sync every N checkpoints, so a small N costs time every epoch.
    """
    from ray import tune

    from tunekit.trainable import trainable

    ensure_ray(address)
    name = name or f"{preset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    tuner = tune.Tuner(
        trainable(preset),
        param_space={"preset": preset_to_dict(preset), **(config or {})},
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path(storage),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=keep_checkpoints),
            verbose=0,
        ),
    )
    started = time.perf_counter()
    result = tuner.fit()[0]
    history = result.metrics_dataframe.to_dict("records") if result.metrics_dataframe is not None else []
    return TrialOutcome(
        metrics=dict(result.metrics or {}),
        history=history,
        path=result.path,
        checkpoint=result.checkpoint.path if result.checkpoint else None,
        error=str(result.error) if result.error else None,
        wall_s=time.perf_counter() - started,
    )

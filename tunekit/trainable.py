"""The one place torch meets Ray: a function trainable for ``tune.Tuner``.

The trial config is a preset plus overrides::

    {"preset": <preset mapping>,            # a whole preset (see tunekit.presets)
     "max_lr": 0.8, "weight_decay": 1e-4,   # any override: dotted path or alias
     "restore_from": "/…/checkpoint_000002"} # optional: continue from this snapshot

Each epoch (each evaluation in a range test) goes to ``tune.report`` with the loop's
metrics; checkpoints go with it every ``train.checkpoint_every`` epochs and at the end. A
retry or ``Tuner.restore`` resumes from ``tune.get_checkpoint()``; otherwise ``restore_from``
starts a continuation from another trial's snapshot.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ray import tune

from tunekit.presets import Preset, load_preset
from tunekit.searchers.snapshot import RESTORE_KEY, is_continuation
from tunekit.train.loop import Trainer, pick_device

CHECKPOINT_FILE = "state.pt"
#: Config keys that are not preset overrides.
RESERVED_KEYS = frozenset({"preset", RESTORE_KEY})


def preset_from_config(config: Mapping[str, Any]) -> Preset:
    """The validated preset a trial config describes (its ``preset`` plus every override)."""
    if "preset" not in config:
        raise ValueError("trial config needs a 'preset' key holding a preset mapping; see tunekit.trainable")
    overrides = {k: v for k, v in config.items() if k not in RESERVED_KEYS}
    return load_preset(config["preset"], overrides)


def save_state(state: dict[str, Any], directory: str | Path) -> Path:
    """Write a checkpoint state into ``directory``; returns the file."""
    path = Path(directory) / CHECKPOINT_FILE
    torch.save(state, path)
    return path


def load_state(directory: str | Path) -> dict[str, Any]:
    """Read a checkpoint state written by :func:`save_state` (``weights_only=True``: no code runs)."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"restore_from: {directory} holds no {CHECKPOINT_FILE}; point it at a tunekit checkpoint folder")
    return torch.load(path, map_location="cpu", weights_only=True)


def _report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
    if state is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        save_state(state, tmp)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def train_fn(config: dict[str, Any]) -> None:
    """Function trainable: train ``config``'s preset and report every epoch (see module docstring)."""
    preset = preset_from_config(config)
    context = tune.get_context()
    cpus = context.get_trial_resources().required_resources.get("CPU", preset.resources.cpu) if context else preset.resources.cpu
    torch.set_num_threads(max(1, int(cpus)))
    trainer = Trainer(preset, pick_device(preset.resources.gpu))
    own = tune.get_checkpoint()
    if own is not None:  # a retry or Tuner.restore: our own checkpoint wins over restore_from
        with own.as_directory() as folder:
            trainer.load_state_dict(load_state(folder))
    elif is_continuation(config):
        source = str(config[RESTORE_KEY])
        with tune.Checkpoint(source).as_directory() as folder:
            trainer.load_snapshot(load_state(folder), source)
    started = time.perf_counter()
    node = _node_id()
    extras = {"trial_dir": _trial_dir(), "node_id": node, "device": str(trainer.device), "threads": torch.get_num_threads()}
    if trainer.restored_from:
        extras["restored_from"] = trainer.restored_from

    overhead = 0.0  # seconds spent in tune.report and checkpoint writes, reported for transparency

    def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        nonlocal overhead
        entered = time.perf_counter()
        _report({**metrics, **extras, "train_time_s": entered - started, "report_overhead_s": overhead}, state)
        overhead += time.perf_counter() - entered

    trainer.run(report)


def _trial_dir() -> str:
    try:
        return str(tune.get_context().get_storage().trial_fs_path)
    except Exception:  # outside a Tune session
        return ""


def _node_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())
    except Exception:
        return os.uname().nodename


def trainable(preset: Preset) -> Any:
    """``train_fn`` wrapped with the preset's resources (``tune.with_resources``).

    ``{"gpu": 0.25}`` lets four trials share one GPU; a CPU count is always given, since a
    GPU-only request asks Ray for zero CPUs.
    """
    resources: dict[str, float] = {"cpu": preset.resources.cpu}
    if preset.resources.gpu:
        resources["gpu"] = preset.resources.gpu
    return tune.with_resources(train_fn, resources)

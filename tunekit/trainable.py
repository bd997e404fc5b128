"""The one place torch meets Ray: a function trainable for ``tune.Tuner``.

The trial config is a preset plus overrides::

    {"preset": <preset mapping>,            # a whole preset (see tunekit.presets)
     "max_lr": 0.8, "weight_decay": 1e-4,   # any override: dotted path or alias
     "restore_from": "/…/checkpoint_000002"} # optional: continue from this snapshot

Each epoch (each evaluation in a range test) goes to ``tune.report`` with the loop's
metrics; checkpoints go with it every ``train.checkpoint_every`` epochs and at the end. A
retry or ``Tuner.restore`` resumes from ``tune.get_checkpoint()``; otherwise ``restore_from``
starts a continuation from another trial's snapshot.

Every result carries ``world_size``: 1 here, the number of workers for a preset with
``resources.workers > 1``, whose trial the same function hands to Ray Train
(:mod:`tunekit.data_parallel`) — same config, same metric keys, same checkpoints.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping
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
    """Function trainable: train ``config``'s preset and report every epoch (see module docstring).

    A preset with ``loop:`` runs the user's own loop instead (:func:`tunekit.own_loop.run_loop`),
    from the same restore point and through the same report.
    """
    preset = preset_from_config(config)
    if preset.resources.workers > 1:  # data-parallel: Ray Train's workers train, this function reports
        from tunekit.data_parallel import train_data_parallel

        resources = preset.resources
        train_data_parallel(config, resources.workers, resources.cpu, resources.gpu)
        return
    cpus = trial_cpus(preset.resources.cpu)
    torch.set_num_threads(max(1, int(cpus)))
    state, source = _restore_point(config)
    if preset.loop is not None:
        from tunekit.own_loop import run_loop

        device = pick_device(preset.resources.gpu)
        run_loop(preset, _reporter(device, source), state=state, device=device, restored_from=source)
        return
    trainer = Trainer(preset, pick_device(preset.resources.gpu), token=data_token(), cpus=cpus)
    if state is not None and source is None:
        trainer.load_state_dict(state)
    elif state is not None and source is not None:
        trainer.load_snapshot(state, source)
    trainer.run(_reporter(trainer.device, trainer.restored_from))


def trial_cpus(default: float) -> float:
    """The CPUs Ray gave this trial's process (they size torch's threads and cap DataLoader workers).

    Ray's own word for the process: ``get_assigned_resources`` of the trial's actor (its share of
    the trial's resource request); ``default`` outside a Ray worker, or for an actor given no CPU.
    """
    try:
        import ray

        assigned = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # not a Ray worker (the driver, a plain process)
        return default
    return float(assigned) if assigned else default


def _restore_point(config: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The checkpoint state a trial starts from, and the snapshot it came from (None: a retry, or a fresh start).

    A retry or ``Tuner.restore`` resumes from ``tune.get_checkpoint()``: our own checkpoint wins
    over ``restore_from``, which starts a continuation from another trial's snapshot.
    """
    own = tune.get_checkpoint()
    if own is not None:
        with own.as_directory() as folder:
            return load_state(folder), None
    if is_continuation(config):
        source = str(config[RESTORE_KEY])
        with tune.Checkpoint(source).as_directory() as folder:
            return load_state(folder), source
    return None, None


def _reporter(device: torch.device, restored_from: str | None) -> Callable[[dict[str, Any], dict[str, Any] | None], None]:
    """The report callback both loops call: ``tune.report`` with where and how long the trial ran."""
    started = time.perf_counter()
    extras: dict[str, Any] = {
        "trial_dir": _trial_dir(),
        "node_id": _node_id(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "world_size": 1,  # one process trained (a data-parallel trial reports its workers)
    }
    if restored_from:
        extras["restored_from"] = restored_from
    overhead = 0.0  # seconds spent in tune.report and checkpoint writes, reported for transparency

    def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        nonlocal overhead
        entered = time.perf_counter()
        _report({**metrics, **extras, "train_time_s": entered - started, "report_overhead_s": overhead}, state)
        overhead += time.perf_counter() - entered

    return report


def data_token() -> str | None:
    """The key under which trials share a node-local copy of an in-memory user dataset: their Tune experiment.

    One per phase of a search (or per ``tunekit train``), so a node builds the data once per phase
    and never serves one experiment another's data. None outside a Tune session: nothing cached.
    """
    try:
        return str(tune.get_context().get_storage().experiment_fs_path)
    except Exception:  # outside a Tune session
        return None


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
    GPU-only request asks Ray for zero CPUs. A data-parallel trial (``resources.workers > 1``)
    asks for next to nothing itself: its Ray Train workers hold the CPUs and GPUs.
    """
    if preset.resources.workers > 1:
        from tunekit import data_parallel

        return tune.with_resources(data_parallel.train_fn, data_parallel.DRIVER_RESOURCES)
    resources: dict[str, float] = {"cpu": preset.resources.cpu}
    if preset.resources.gpu:
        resources["gpu"] = preset.resources.gpu
    return tune.with_resources(train_fn, resources)

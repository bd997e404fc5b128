"""Data-parallel trials: one Tune trial trained by ``resources.workers`` Ray Train workers with DDP.

The pattern Ray documents for Tune with Ray Train V2 (``ray/tune/integration/ray_train.py``,
``ray/train/v2/api/data_parallel_trainer.py``): the Tune trial's function builds a
``TorchTrainer`` and calls ``fit``; Ray Train starts the workers (a placement group of its own,
``ScalingConfig(num_workers, resources_per_worker)``), sets up ``torch.distributed`` (gloo on CPUs,
NCCL on GPUs) and runs :func:`_worker` on each. A Train ``UserCallback`` on the controller hands
every report to the Tune function — Ray's own ``TuneReportCallback`` does the same, but forwards
only a checkpoint's path, so here the Tune function reports rank 0's metrics *and* its checkpoint
with ``tune.report``: Tune sees one trial, with the config, metric keys and ``state.pt``
checkpoints (in its own trial folder) of a one-worker trial.

Faults and stops are Tune's, as for every trial:

* A retry (Tune's ``FailureConfig``) or ``Tuner.restore`` starts a new ``TorchTrainer`` from
  ``tune.get_checkpoint()``; a continuation from ``restore_from``. Ray Train itself never retries
  (its ``FailureConfig(max_failures=0)``): a worker that dies fails the run, and Tune retries it
  from the trial's last checkpoint — one retry budget, one place checkpoints live.
* A stop (the loss-shape scheduler, a Tune stopper) ends the Tune trial: its ``cleanup`` aborts the
  Ray Train run first (:class:`_EndsTrainRun`), which ends every worker together and gives back
  their placement group. (Ray Train's own cleaner of an orphaned placement group asks the State
  API, which needs the dashboard that tunekit's Ray runs without; and a placement group outlives
  the actor that made it — the workers' CPUs would stay taken for the rest of the search.) A stop
  the loop decides itself (divergence, a horizontal curve, the end) is agreed by the workers
  before any of them acts on it (:mod:`tunekit.train.distributed`).

The Tune trial itself asks Ray for no CPU (a byte of memory: Tune needs a non-empty request); the
workers' resources are Ray Train's, checked against the cluster before anything starts
(:func:`check_cluster`).
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import ray
import ray.train
import torch
from ray import tune
from ray.train import UserCallback

#: The Ray Train run's folder inside the Tune trial's folder (its checkpoints pass through on the way to Tune's).
TRAIN_RUN = "ddp"
#: What the Tune trial of a data-parallel trial asks Ray for: no CPU (the workers hold them), but Tune needs something.
DRIVER_RESOURCES: dict[str, float] = {"cpu": 0, "memory": 1}
#: The Ray Train controller of the trial this process runs (a Tune trial's actor runs one at a time).
_RUNNING: dict[str, Any] = {}


class _EndsTrainRun:
    """Mixed into Tune's trainable class of a data-parallel trial (``__mixins__``): stopping the trial aborts its
    Ray Train run — workers and placement group — before the trial's actor goes."""

    def cleanup(self) -> None:
        end_train_run()
        super().cleanup()  # type: ignore[misc]


def train_fn(config: dict[str, Any]) -> None:
    """The Tune function of a data-parallel trial: :func:`tunekit.trainable.train_fn` (named alike, so trial folders
    read the same), in a trainable that ends its Ray Train run when Tune stops it."""
    from tunekit.trainable import train_fn as one_trial

    one_trial(config)


train_fn.__mixins__ = (_EndsTrainRun,)  # type: ignore[attr-defined]


def end_train_run() -> None:
    """Abort this process's running Ray Train run, if any: its workers end together and its placement group goes."""
    controller = _RUNNING.pop("controller", None)
    if controller is None:
        return
    with contextlib.suppress(Exception):  # abort ends the controller's actor: its reply is an actor error
        ray.get(controller.abort.remote(), timeout=60)


def _alive_node_resources() -> list[dict[str, float]]:
    """Each alive node's resource totals, as Ray reports them (``CPU``, ``GPU``, …)."""
    return [dict(node.get("Resources", {})) for node in ray.nodes() if node.get("Alive")]


def check_cluster(workers: int, cpu: float, gpu: float) -> None:
    """Raise :class:`~tunekit.presets.PresetError` (one line) when the connected Ray cluster cannot hold the workers.

    Ray Train would otherwise wait for them for ever; this says so before anything starts. Reads
    every alive node's resource totals (``ray.nodes()``).
    """
    from tunekit.core.data_parallel import cluster_problem
    from tunekit.presets import PresetError

    nodes = _alive_node_resources()
    problem = cluster_problem(workers, cpu, gpu, nodes)
    if problem:
        raise PresetError(problem)


def concurrent_trials(workers: int, cpu: float, gpu: float, most: int = 64) -> int:
    """How many trials a phase may run at once on the connected cluster: ``most`` for single-worker trials,
    else as many data-parallel trials as its nodes hold (:func:`~tunekit.core.data_parallel.trials_at_once`)."""
    from tunekit.core.data_parallel import trials_at_once

    if workers <= 1:
        return most
    nodes = _alive_node_resources()
    return trials_at_once(nodes, workers, cpu, gpu, most)


def train_data_parallel(config: Mapping[str, Any], workers: int, cpu: float, gpu: float) -> None:
    """The Tune function of a data-parallel trial: ``fit`` a ``TorchTrainer`` and report what rank 0 reports.

    Args:
        config: the trial config (a preset and overrides, maybe ``restore_from``), as :func:`tunekit.trainable.train_fn` takes it.
        workers, cpu, gpu: ``resources.workers`` and each worker's ``cpu`` and ``gpu``.
    """
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Empty, Queue

    from tunekit.trainable import _trial_dir, data_token

    checkpoint, source = _start_point(config)
    storage = tune.get_context().get_storage()
    _remove(storage.storage_filesystem, f"{storage.trial_fs_path}/{TRAIN_RUN}")  # an earlier attempt's
    reports: Any = Queue(actor_options={"num_cpus": 0})
    resources = {"CPU": cpu, **({"GPU": gpu} if gpu else {})}
    trainer = TorchTrainer(
        _worker,
        train_loop_config={
            "config": dict(config),
            "checkpoint": checkpoint,
            "restored_from": source,
            "token": data_token(),
            "trial_dir": _trial_dir(),
        },
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=gpu > 0, resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=TRAIN_RUN,
            storage_path=storage.trial_fs_path,
            storage_filesystem=storage.storage_filesystem,
            failure_config=ray.train.FailureConfig(max_failures=0),  # Tune retries, from Tune's checkpoint
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=None),  # each is removed once Tune holds it
            callbacks=[_ToTune(reports)],  # type: ignore[list-item]
        ),
    )
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # handed to the Tune function, after the reports that came before it
            failure.append(exc)

    runner = threading.Thread(target=fit, name="tunekit-ddp-fit", daemon=True)
    runner.start()
    try:
        while True:
            try:
                metrics, train_checkpoint, _RUNNING["controller"] = reports.get(timeout=0.5)
            except Empty:
                if runner.is_alive():
                    continue
                if reports.empty():
                    break
                continue
            if train_checkpoint is None:
                tune.report(metrics)
                continue
            path, filesystem = train_checkpoint
            tune.report(metrics, checkpoint=tune.Checkpoint(path, filesystem))  # copied into the trial's folder
            _remove(filesystem, path)
        runner.join()
        _RUNNING.pop("controller", None)
        if failure:
            raise failure[0]
    finally:
        if runner.is_alive():  # left early (a stop, an error here): the run must not outlive the trial
            end_train_run()
        _remove(storage.storage_filesystem, f"{storage.trial_fs_path}/{TRAIN_RUN}")


def _start_point(config: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The checkpoint the workers start from, and the snapshot it is (None: a retry of this trial, or a fresh start).

    As :func:`tunekit.trainable._restore_point`, but the workers read the files themselves.
    """
    from tunekit.searchers.snapshot import RESTORE_KEY, is_continuation

    own = tune.get_checkpoint()
    if own is not None:
        return own, None
    if is_continuation(config):
        source = str(config[RESTORE_KEY])
        return tune.Checkpoint(source), source
    return None, None


def _remove(filesystem: Any, path: str) -> None:
    with contextlib.suppress(Exception):  # already gone, or never written
        filesystem.delete_dir(path)


class _ToTune(UserCallback):
    """Runs on the Ray Train controller: each report — rank 0's metrics, every worker's node, the checkpoint's
    ``(path, filesystem)`` — into the queue the Tune function reads (as Ray's ``TuneReportCallback``, plus the checkpoint)."""

    def __init__(self, reports: Any) -> None:
        self.reports = reports

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        row = dict(metrics[0])
        row["worker_node_ids"] = ",".join(str(m.get("node_id", "")) for m in metrics)
        controller = ray.get_runtime_context().current_actor  # this controller: how the trial aborts it when stopped
        self.reports.put((row, (checkpoint.path, checkpoint.filesystem) if checkpoint else None, controller))


def _worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: tunekit's loop on this rank's share of every total batch."""
    import ray.train.torch

    from tunekit.train.distributed import Group
    from tunekit.train.loop import Trainer
    from tunekit.trainable import load_state, preset_from_config, trial_cpus

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    preset = preset_from_config(loop_config["config"])
    cpus = trial_cpus(preset.resources.cpu)
    torch.set_num_threads(max(1, int(cpus)))
    device = ray.train.torch.get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    trainer = Trainer(preset, device, token=loop_config["token"], cpus=cpus, group=Group(rank, world, device))
    checkpoint, source = loop_config["checkpoint"], loop_config["restored_from"]
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = load_state(folder)
        if source is None:
            trainer.load_state_dict(state)
        else:
            trainer.load_snapshot(state, source)
    trainer.run(_worker_reporter(rank, world, trainer.device, loop_config["trial_dir"], trainer.restored_from))


def _worker_reporter(
    rank: int, world: int, device: Any, trial_dir: str, restored_from: str | None
) -> Callable[[dict[str, Any], dict[str, Any] | None], None]:
    """The loop's report callback on a worker: ``ray.train.report`` on every rank (it is a barrier), rank 0's
    metrics and checkpoint, with what :func:`tunekit.trainable._reporter` adds on one worker."""
    from tunekit.trainable import save_state

    started = time.perf_counter()
    node = str(ray.get_runtime_context().get_node_id())
    extras: dict[str, Any] = {
        "trial_dir": trial_dir,
        "node_id": node,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "world_size": world,
    }
    if restored_from:
        extras["restored_from"] = restored_from
    overhead = 0.0

    def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        nonlocal overhead
        entered = time.perf_counter()
        if rank != 0:  # the others only say where they ran; rank 0 holds the same weights and reports them
            ray.train.report({"node_id": node, "rank": rank})
        elif state is None:
            ray.train.report({**metrics, **extras, "train_time_s": entered - started, "report_overhead_s": overhead})
        else:
            row = {**metrics, **extras, "train_time_s": entered - started, "report_overhead_s": overhead}
            with tempfile.TemporaryDirectory() as tmp:
                save_state(state, tmp)
                ray.train.report(row, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        overhead += time.perf_counter() - entered

    return report

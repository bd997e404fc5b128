"""Data-parallel trials: ``resources.workers: 2`` trains one Tune trial on two Ray Train workers (gloo, CPUs).

What makes two workers draw one worker's loss curve at the same total batch: each optimizer step
sees the same samples (each worker takes its half of the one-worker batch), DDP averages the two
halves' gradients (= the whole batch's mean gradient), and evaluations are summed over both halves.
What would not: BatchNorm normalises each half with its own statistics unless synchronised, and
SyncBatchNorm runs on CUDA only — so the equality test trains an MLP (no BatchNorm, no dropout,
MNIST-1D has no augmentation), and the loop's BN-specific paths are checked for agreement between
the workers rather than equality with one worker.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import yaml
from torch import nn
from typer.testing import CliRunner

from tests.conftest import reported, tiny_preset_dict
from tunekit.presets import PresetError, load_preset, preset_to_dict
from tunekit.train.data import LoaderData, TensorData, crop_flip
from tunekit.train.models import MLP

#: An MLP preset: no BatchNorm, no dropout, no augmentation — one and two workers must agree.
MLP_MODEL = {"name": "mlp", "width": 32}
#: Agreed between the workers (and, for the MLP, equal to one worker's): what every decision reads.
CURVE_KEYS = ("epoch", "step", "train_loss", "val_loss", "val_acc", "lr", "diverged", "epochs_total", "batch_size")


def ddp_preset(workers: int = 2, **overrides: Any) -> dict[str, Any]:
    return tiny_preset_dict(**{"model": MLP_MODEL, "resources": {"workers": workers}, **overrides})


# ------------------------------------------------------------------ shards (no Ray)


def test_the_workers_shares_of_a_total_batch_are_the_one_worker_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (50, 3, 8, 8), dtype=torch.uint8, generator=gen)
    y = torch.arange(50) % 5
    for augment in (None, crop_flip):  # crop+flip: each share is augmented with the whole batch's random draws
        data = TensorData(x, y, x[:10], y[:10], x[:7], y[:7], num_classes=5, augment=augment)
        whole = list(data.train_batches(16, seed=3, epoch=1))
        halves = [list(data.train_batches(16, seed=3, epoch=1, shard=(r, 2))) for r in range(2)]
        assert len(whole) == len(halves[0]) == len(halves[1]) == 3  # 50 // 16 total batches, the rest dropped
        for (xw, yw), (x0, y0), (x1, y1) in zip(whole, *halves, strict=True):
            assert torch.equal(torch.cat([x0, x1]), xw)
            assert torch.equal(torch.cat([y0, y1]), yw)
        # evaluation: contiguous shares of the split (7 test samples over 2 workers: 3 and 4)
        shares = [list(data.batches("test", 256, shard=(r, 2))) for r in range(2)]
        assert [len(s[0][1]) for s in shares] == [3, 4]
        assert torch.equal(torch.cat([s[0][1] for s in shares]), next(data.batches("test", 256))[1])


def test_a_streamed_dataset_loads_only_each_workers_share() -> None:
    x, y = torch.randn(50, 4), torch.arange(50)
    dataset = torch.utils.data.TensorDataset(x, y)
    data = LoaderData(dataset, dataset, dataset, 5, (4,), torch.device("cpu"), num_workers=0)
    whole = list(data.train_batches(16, seed=1, epoch=2))
    halves = [list(data.train_batches(16, seed=1, epoch=2, shard=(r, 2))) for r in range(2)]
    assert [len(b[1]) for b in halves[0]] == [8, 8, 8]
    for (_, yw), (_, y0), (_, y1) in zip(whole, *halves, strict=True):
        assert torch.equal(torch.cat([y0, y1]), yw)
    shares = [torch.cat([b[1] for b in data.batches("val", 20, shard=(r, 2))]) for r in range(2)]
    assert torch.equal(torch.cat(shares), y)


def test_data_parallel_presets_say_what_they_cannot_do_in_one_line() -> None:
    # the final replicates' jittered batch sizes are off unless asked for (each must divide by the workers)
    assert load_preset(ddp_preset()).search.final.batch_jitter == 0  # type: ignore[union-attr]
    assert load_preset(tiny_preset_dict()).search.final.batch_jitter == 12  # type: ignore[union-attr]
    bad = {
        "train.batch_size: 64 is not divisible by resources.workers=3": ddp_preset(3),
        "resources.workers: 2 data-parallel workers need tunekit's own loop": ddp_preset(loop={"factory": "x.y:z"}),
        "train.sync_bn: torch's SyncBatchNorm runs on CUDA only": ddp_preset(train={"batch_size": 64, "sync_bn": True}),
    }
    for line, raw in bad.items():
        with pytest.raises(PresetError) as error:
            load_preset(raw)
        assert str(error.value).startswith(f"preset: {line}"), str(error.value)
        assert "\n" not in str(error.value)


def test_a_batch_the_workers_do_not_divide_exits_2_before_anything_starts(tmp_path: Path) -> None:
    preset = tmp_path / "ddp.yaml"
    preset.write_text(yaml.safe_dump(ddp_preset()))
    storage = tmp_path / "runs"
    command = [sys.executable, "-m", "tunekit.cli", "train", str(preset), "--set", "batch_size=63", "--storage", str(storage)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "train.batch_size: 63 is not divisible by resources.workers=2" in done.stderr
    assert not storage.exists()


# ------------------------------------------------------------------ the loop's agreement, torch.distributed alone


def _agreeing_rank(rank: int, world: int, store: str, runs: dict[str, dict[str, Any]], out: str) -> None:
    """One gloo worker: run each preset through the loop with a Group; write its rows to ``out``.

    The workers meet through a file (no free port to race other tests for) and leave together (a
    barrier before tearing the group down), so only the loop's own agreement is under test."""
    from tunekit.train.distributed import Group
    from tunekit.train.loop import Trainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    rows: dict[str, list[dict[str, Any]]] = {}
    for name, raw in runs.items():
        rows[name] = []
        trainer = Trainer(load_preset(raw), "cpu", group=Group(rank, world))
        trainer.run(lambda metrics, state, rows=rows[name]: rows.append(dict(metrics)))  # type: ignore[misc]
    Path(out).write_text(json.dumps(rows))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_the_workers_agree_on_every_stop_and_every_evaluation(tmp_path: Path) -> None:
    """BatchNorm networks (not equal to one worker), a range test, a time budget, a divergence: every rank
    reports the same rows, so none waits in a collective the others have left."""
    import torch.multiprocessing as mp

    cnn = {"name": "cnn1d", "width": 8}
    runs = {
        "range_test": tiny_preset_dict(
            model=cnn,
            policy={"name": "range_test", "min_lr": 0.01, "max_lr": 3.0, "epochs": 1, "eval_every": 5, "eval_samples": 100},
        ),
        "budget": tiny_preset_dict(model=cnn, train={"batch_size": 64, "epochs": 50, "time_budget_s": 3.0}),
        "diverges": tiny_preset_dict(model=cnn, policy={"name": "one_cycle", "max_lr": 1e6}),
        "horizontal": tiny_preset_dict(model=cnn, train={"batch_size": 64, "epochs": 30, "stop_when_horizontal": True}),
    }
    outs = [str(tmp_path / f"rank{r}.json") for r in range(2)]
    store = str(tmp_path / "rendezvous")
    mp.start_processes(_both_ranks, args=(2, store, runs, outs), nprocs=2, join=True, start_method="spawn")
    rank0, rank1 = (json.loads(Path(o).read_text()) for o in outs)
    for name in runs:
        assert rank0[name], name
        assert [_curve(r) for r in rank0[name]] == [_curve(r) for r in rank1[name]], name
    assert [r["step"] for r in rank0["range_test"]] == [5, 10, 15, 20, 22]  # every 5 steps, and the last
    assert rank0["budget"][-1]["budget_epochs"] == rank1["budget"][-1]["budget_epochs"]  # rank 0's probe decided
    assert rank0["diverges"][-1]["diverged"] is True
    assert len(rank0["diverges"]) == len(rank1["diverges"])
    assert rank0["horizontal"][-1]["snapshot"] is True
    assert len(rank0["horizontal"]) < 30


def _both_ranks(rank: int, world: int, store: str, runs: dict[str, dict[str, Any]], outs: list[str]) -> None:
    _agreeing_rank(rank, world, store, runs, outs[rank])


def _curve(row: dict[str, Any]) -> tuple[Any, ...]:
    """A row's agreed values (NaN made comparable)."""
    return tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in (row.get(k) for k in CURVE_KEYS))


# ------------------------------------------------------------------ Ray: TorchTrainer inside a Tune trial


def _tune(preset: dict[str, Any], folder: Path, name: str, config: dict[str, Any] | None = None, **run: Any) -> Any:
    from ray import tune

    from tunekit.trainable import trainable

    loaded = load_preset(preset)
    tuner = tune.Tuner(
        trainable(loaded),
        param_space={"preset": preset_to_dict(loaded), **(config or {})},
        run_config=tune.RunConfig(name=name, storage_path=str(folder), verbose=0, **run),
    )
    return tuner.fit()[0]


def _rows(result: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (Path(result.path) / "result.json").read_text().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_two_workers_draw_the_one_worker_loss_curve(tmp_path: Path) -> None:
    from tunekit.trainable import load_state

    one = _tune(ddp_preset(1), tmp_path, "one")
    two = _tune(ddp_preset(2), tmp_path, "two")
    assert one.error is None, one.error
    assert two.error is None, two.error
    rows1, rows2 = _rows(one), _rows(two)
    assert [r["epoch"] for r in rows2] == [r["epoch"] for r in rows1] == [1, 2, 3]
    # the same curve at the same total batch, within floating-point tolerance (measured: ~1e-6)
    for a, b in zip(rows1, rows2, strict=True):
        for key in ("train_loss", "val_loss", "val_acc", "lr", "momentum"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), key
        assert (a["step"], a["batch_size"], a["diverged"]) == (b["step"], b["batch_size"], b["diverged"])
    assert rows2[-1]["test_loss"] == pytest.approx(rows1[-1]["test_loss"], rel=1e-4)
    # results say how many workers trained; the rest of the keys are the one-worker trial's
    assert {r["world_size"] for r in rows1} == {1}
    assert {r["world_size"] for r in rows2} == {2}
    assert set(rows2[-1]) - set(rows1[-1]) == {"worker_node_ids"}
    assert set(rows1[-1]) <= set(rows2[-1])
    # rank 0's checkpoints, Tune's own, in the state.pt layout: the same weights as one worker's
    assert two.checkpoint is not None
    assert Path(two.checkpoint.path).parent == Path(two.path)
    state1, state2 = load_state(one.checkpoint.path), load_state(two.checkpoint.path)
    assert set(state2) == set(state1)
    assert state2["epoch"] == 3
    for key, weight in state1["model"].items():
        assert torch.allclose(state2["model"][key], weight, atol=1e-5), key
    assert rows2[-1]["trial_dir"] == two.path
    assert rows2[-1]["checkpoint_dir_name"] == "checkpoint_000002"
    assert not (Path(two.path) / "ddp").exists()  # Ray Train's copies went once Tune held them
    # a snapshot continuation (restore_from) of the two-worker trial from epoch 2 draws its epoch 3
    snapshot = str(Path(two.path) / "checkpoint_000001")
    continued = _rows(_tune(ddp_preset(2), tmp_path, "continued", config={"restore_from": snapshot}))
    assert [r["epoch"] for r in continued] == [3]
    assert continued[0]["restored_from"] == snapshot
    assert continued[0]["val_loss"] == pytest.approx(rows2[-1]["val_loss"], rel=1e-4)


class _CrashingMLP(MLP):
    """MNIST-1D's MLP whose rank 1 dies (``os._exit``) at training step ``crash_at``, once (``marker``), after Tune
    recorded epoch ``after`` (a ``result.json`` under ``reported`` says so)."""

    def __init__(self, marker: str, crash_at: int, reported: str, after: int, width: int = 32) -> None:
        super().__init__(10, (1, 40), width)
        self.marker, self.crash_at, self.steps = marker, crash_at, 0
        self.reported, self.after = Path(reported), after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            self.steps += 1
            if self.steps == self.crash_at and dist.get_rank() == 1 and not os.path.exists(self.marker):
                # the epochs before reach Tune first: Ray Train collects reports every 2 s, later on a loaded machine
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and not reported(self.reported, self.after):
                    time.sleep(0.5)
                Path(self.marker).touch()
                os._exit(1)
        return super().forward(x)


def crashing_mlp(marker: str, crash_at: int, reported: str, after: int, width: int = 32) -> nn.Module:
    """A model factory (``model: {factory: tests.test_ddp:crashing_mlp}``)."""
    return _CrashingMLP(marker, crash_at, reported, after, width)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_worker_killed_mid_trial_is_retried_from_its_checkpoint(tmp_path: Path) -> None:
    from ray import tune

    marker = tmp_path / "rank1-died"
    # 22 steps an epoch: rank 1 dies 3 steps into epoch 3, after epoch 2's checkpoint
    kwargs = {"marker": str(marker), "crash_at": 2 * 22 + 3, "reported": str(tmp_path / "crash"), "after": 2}
    model = {"factory": "tests.test_ddp:crashing_mlp", "kwargs": kwargs}
    result = _tune(ddp_preset(model=model, train={"epochs": 4, "batch_size": 64}), tmp_path, "crash",
                   failure_config=tune.FailureConfig(max_failures=1))  # fmt: skip
    assert marker.exists(), "rank 1 never died"
    assert result.error is None, result.error
    rows = _rows(result)
    attempts = [r["pid"] for r in rows]
    retry = next(i for i, pid in enumerate(attempts) if pid != attempts[0])
    before, after = rows[:retry], rows[retry:]
    assert [r["epoch"] for r in before] == [1, 2]
    # continued from epoch 2's checkpoint: epoch 3 is the retry's first, nothing trained again
    assert [r["epoch"] for r in after] == [3, 4]
    assert all(r["world_size"] == 2 for r in rows)
    assert result.metrics["epoch"] == 4


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_tune_stop_ends_every_worker_together(tmp_path: Path) -> None:
    """Tune stops the trial (as the loss-shape scheduler does): the workers go with it, and their CPUs come back."""
    import ray

    result = _tune(ddp_preset(train={"epochs": 30, "batch_size": 64}), tmp_path, "stopped", stop={"epoch": 2})
    assert result.error is None
    assert result.metrics["epoch"] == 2
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == 2, "a worker outlived its stopped trial"


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_more_workers_than_the_cluster_holds_exits_2_before_anything_starts(tmp_path: Path) -> None:
    from tunekit.cli import app

    preset = tmp_path / "ddp.yaml"
    preset.write_text(yaml.safe_dump(ddp_preset(4)))  # 4 workers of 1 CPU; the test session's Ray has 2
    storage = tmp_path / "runs"
    out = CliRunner().invoke(app, ["train", str(preset), "--storage", str(storage), "--no-tracking"])
    assert out.exit_code == 2, out.output
    assert out.output.strip().splitlines() == [
        "error: resources.workers: 4 workers of 1 CPU each do not fit: the Ray cluster has 1 node with 2 CPUs and "
        "0 GPUs (room for 2); lower resources.workers or resources.cpu, or add nodes"
    ]
    assert not any(storage.glob("*/*")) if storage.exists() else True

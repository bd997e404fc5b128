"""CIFAR-10-shaped resnet-56 1cycle epochs on a GPU: epoch time and GPU utilisation.

The real loop (``tunekit.train.loop.Trainer``) on the ``cifar10-resnet56`` preset (paper
Table 1: batch 512, 1cycle 0.08–0.8, cyclical momentum 0.95–0.8, weight decay 1e-4), with
the dataset held whole on the GPU as uint8 and normalised, cropped and flipped per batch
there — no DataLoader, no host-to-device copy per step. The 1cycle schedule spans
``--epochs``; the first epoch (cuDNN autotuning, allocator warm-up) is not timed.

Without ``--root`` it writes CIFAR-10-shaped files (50 000 + 10 000 32×32×3 images in
torchvision's pickled format, random pixels with a class-dependent bar) to a temporary
folder and reads them through the same torchvision loader a real CIFAR-10 goes through: the
timings are CIFAR-10's, the accuracy is not.

Side by side in one run: each ``--amp`` mode (bf16 autocast vs fp32 by default). GPU
utilisation is ``nvidia-smi``'s (share of time a kernel was running), sampled every 100 ms
over the timed epochs. ``--trials N`` also runs N trials at once as Ray Tune trials asking
for ``1/N`` GPU each (fractional GPUs) and compares their total samples/s with one trial.

    python bench/gpu_epoch.py [--root ~/data] [--epochs 4] [--amp auto,off] [--trials 2] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fabricate import write_cifar10
from tunekit.presets import Preset, load_preset
from tunekit.train.loop import Trainer


class GpuSampler:
    """``nvidia-smi`` utilisation and memory samples every ``interval_ms`` while running."""

    def __init__(self, interval_ms: int = 100) -> None:
        self.interval_ms = interval_ms
        self.samples: list[tuple[float, float, float]] = []  # (time, util %, memory MiB)
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi") is None:
            return self
        query = ["--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", f"-lms={self.interval_ms}"]
        self._proc = subprocess.Popen(["nvidia-smi", *query], stdout=subprocess.PIPE, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 2 and parts[0].isdigit():
                self.samples.append((time.perf_counter(), float(parts[0]), float(parts[1])))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()

    def between(self, start: float, end: float) -> tuple[float | None, float | None]:
        """(mean utilisation %, peak memory MiB) of the samples taken in [start, end]."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if not inside:
            return None, None
        return statistics.mean(s[1] for s in inside), max(s[2] for s in inside)


LAYOUTS = {"nhwc": True, "nchw": False}


def cifar_preset(root: Path, epochs: int, batch_size: int, amp: str, layout: str = "nhwc") -> Preset:
    return load_preset(
        "cifar10_resnet56",
        {
            "dataset.root": str(root),
            "dataset.verify_checksums": False,
            "epochs": epochs,
            "train.batch_size": batch_size,
            "train.amp": amp,
            "train.channels_last": LAYOUTS[layout],
            "resources.gpu": 1.0,
        },
    )


def bare(preset: Preset, sampler: GpuSampler) -> dict[str, Any]:
    """One run of the loop on cuda:0; epoch times after the first, utilisation over them."""
    torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(preset, "cuda")
    marks: list[float] = [time.perf_counter()]
    results: list[dict[str, Any]] = []

    def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        results.append(metrics)
        marks.append(time.perf_counter())

    trainer.run(report)
    epoch_walls = [b - a for a, b in itertools.pairwise(marks[1:])]  # epochs 2..n, eval included
    train_s = [preset.train.batch_size * trainer.steps_per_epoch / r["samples_per_s"] for r in results[1:]]
    util, memory = sampler.between(marks[1], marks[-1])
    return {
        "amp": str(trainer.amp).replace("torch.", "") if trainer.amp else "fp32",
        "layout": "nhwc" if trainer.memory_format == torch.channels_last else "nchw",
        "epoch_train_s": statistics.median(train_s),
        "epoch_wall_s": statistics.median(epoch_walls),
        "samples_per_s": statistics.median(r["samples_per_s"] for r in results[1:]),
        "gpu_util_pct": util,
        "gpu_memory_mib": memory,
        "torch_peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        "test_acc": results[-1]["test_acc"],
    }


def in_tune(preset: Preset, trials: int, storage: str, sampler: GpuSampler) -> dict[str, Any]:
    """``trials`` Tune trials at once, each asking for 1/trials GPU; their total samples/s."""
    from ray import tune

    from tunekit.presets import preset_to_dict
    from tunekit.runner import ensure_ray
    from tunekit.trainable import trainable

    ensure_ray(num_cpus=max(2, 2 * trials))
    shared = preset.model_copy(update={"resources": preset.resources.model_copy(update={"gpu": 1.0 / trials, "cpu": 1.0})})
    tuner = tune.Tuner(
        trainable(shared),
        param_space={"preset": preset_to_dict(shared), "train.seed": tune.grid_search(list(range(trials)))},
        run_config=tune.RunConfig(name=f"gpu-share-{trials}", storage_path=storage, verbose=0),
    )
    started = time.perf_counter()
    grid = tuner.fit()
    results = [grid[i] for i in range(len(grid))]
    wall = time.perf_counter() - started
    errors = [str(r.error) for r in results if r.error or r.metrics_dataframe is None]
    if errors:
        raise RuntimeError(f"a GPU-sharing trial failed: {errors}")
    frames = [r.metrics_dataframe for r in results if r.metrics_dataframe is not None]
    per_trial = [statistics.median(f["samples_per_s"].iloc[1:]) for f in frames]
    devices = sorted({str(d) for f in frames for d in f["device"]})
    util, memory = sampler.between(started, started + wall)
    return {
        "trials": trials,
        "gpu_per_trial": 1.0 / trials,
        "devices": devices,
        "samples_per_s_each": per_trial,
        "samples_per_s_total": sum(per_trial),
        "gpu_util_pct": util,
        "gpu_memory_mib": memory,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="a folder holding cifar-10-batches-py/ (default: fabricate one)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is not timed")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--amp", default="auto,off", help="comma-separated train.amp modes to compare")
    parser.add_argument("--layout", default="nhwc,nchw", help="comma-separated memory layouts to compare (nhwc, nchw)")
    parser.add_argument("--trials", type=int, default=0, help="also run N Tune trials sharing the GPU (needs Ray)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if unknown := set(args.layout.split(",")) - set(LAYOUTS):
        parser.error(f"--layout: {sorted(unknown)} unknown; use nhwc and/or nchw")
    if not torch.cuda.is_available():
        parser.error("no CUDA device visible: run this on a GPU machine")
    if args.epochs < 2:
        parser.error("--epochs: at least 2 (the first is warm-up)")

    with tempfile.TemporaryDirectory() as tmp, GpuSampler() as sampler:
        root = args.root
        if root is None:
            root = write_cifar10(Path(tmp) / "data", per_batch=10_000, n_test=10_000)
        runs = [
            bare(cifar_preset(root, args.epochs, args.batch_size, amp, layout), sampler)
            for layout in args.layout.split(",")
            for amp in args.amp.split(",")
        ]
        shared: list[dict[str, Any]] = []
        if args.trials > 1:
            preset = cifar_preset(root, args.epochs, args.batch_size, args.amp.split(",")[0], args.layout.split(",")[0])
            shared = [in_tune(preset, 1, tmp, sampler), in_tune(preset, args.trials, tmp, sampler)]
    summary = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "fabricated_data": args.root is None,
        "runs": runs,
        "shared": shared,
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(f"resnet-56, CIFAR-10-shaped, batch {args.batch_size}, 1cycle over {args.epochs} epochs on {summary['gpu']}")
    print(f"{'amp':>9} {'layout':>6} {'train s/epoch':>14} {'wall s/epoch':>13} {'samples/s':>10} {'GPU util':>9} {'GPU MiB':>8}")
    for r in runs:
        util = f"{r['gpu_util_pct']:.0f} %" if r["gpu_util_pct"] is not None else "n/a"
        mem = f"{r['gpu_memory_mib']:.0f}" if r["gpu_memory_mib"] is not None else "n/a"
        print(
            f"{r['amp']:>9} {r['layout']:>6} {r['epoch_train_s']:>14.2f} {r['epoch_wall_s']:>13.2f} {r['samples_per_s']:>10.0f} {util:>9} {mem:>8}"
        )
    for r in runs[1:]:
        speedup = runs[0]["samples_per_s"] / r["samples_per_s"]
        print(f"{runs[0]['amp']} {runs[0]['layout']} vs {r['amp']} {r['layout']}: {speedup:.2f}× the samples/s")
    if shared:
        one, many = shared
        print(
            f"Tune trials sharing the GPU: 1 trial {one['samples_per_s_total']:.0f} samples/s; "
            f"{many['trials']} trials at {many['gpu_per_trial']:.2f} GPU each {many['samples_per_s_total']:.0f} samples/s in all "
            f"({many['samples_per_s_total'] / one['samples_per_s_total']:.2f}×), devices {many['devices']}"
        )


if __name__ == "__main__":
    main()

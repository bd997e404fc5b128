"""Overhead of running the training loop inside a Ray Tune trial, measured side by side.

The same preset (MNIST-1D, the embedded default), the same data, the same number of torch
threads, run alternately bare (``Trainer.run`` in this process) and as a Tune trial
(``tunekit.runner.run_trial``). Two ratios, Tune ÷ bare (1.0 = no overhead):

* ``throughput``: training samples/s within epochs (the loop's own ``samples_per_s``);
* ``end_to_end``: samples trained ÷ loop wall time up to the last report, which in the trial
  includes every ``tune.report`` and every epoch's checkpoint write.

Ray's start-up and the trial's process launch are fixed costs, printed separately.

    python bench/overhead.py [--epochs 6] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import Any

import torch

from tunekit.presets import load_preset
from tunekit.runner import ensure_ray, run_trial
from tunekit.train.loop import Trainer


def bare(preset: Any, threads: int) -> tuple[float, float]:
    """(mean samples/s over epochs after the first, loop samples/s end to end)."""
    torch.set_num_threads(threads)
    trainer = Trainer(preset, "cpu")
    speeds: list[float] = []
    started = time.perf_counter()
    elapsed = 0.0

    def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        nonlocal elapsed
        speeds.append(metrics["samples_per_s"])
        elapsed = time.perf_counter() - started

    trainer.run(report)
    samples = trainer.steps_per_epoch * preset.train.batch_size * preset.train.epochs
    return statistics.mean(speeds[1:]), samples / elapsed


def in_tune(preset: Any, storage: str, name: str) -> tuple[float, float, float]:
    """(mean samples/s over epochs after the first, loop samples/s end to end, trial wall s)."""
    outcome = run_trial(preset, storage=storage, name=name, max_failures=0)
    history = outcome.history
    samples = (history[-1]["step"]) * preset.train.batch_size
    return statistics.mean(r["samples_per_s"] for r in history[1:]), samples / history[-1]["train_time_s"], outcome.wall_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=32, help="cnn1d width: 32 is the preset; larger means heavier steps")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    preset = load_preset(
        "mnist1d", {"dataset.num_samples": 10000, "epochs": args.epochs, "resources.cpu": args.threads, "model.width": args.width}
    )
    t0 = time.perf_counter()
    ensure_ray(num_cpus=max(2, args.threads))
    ray_start = time.perf_counter() - t0
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as storage:
        bare(preset, args.threads)  # warm-up: dataset cache, kernels
        for i in range(args.repeats):
            b_tp, b_e2e = bare(preset, args.threads)
            t_tp, t_e2e, wall = in_tune(preset, storage, f"overhead-{i}")
            rows.append({"bare_tp": b_tp, "tune_tp": t_tp, "bare_e2e": b_e2e, "tune_e2e": t_e2e, "trial_wall_s": wall})
    throughput = statistics.median(r["tune_tp"] / r["bare_tp"] for r in rows)
    end_to_end = statistics.median(r["tune_e2e"] / r["bare_e2e"] for r in rows)
    summary = {
        "throughput_ratio": round(throughput, 3),
        "end_to_end_ratio": round(end_to_end, 3),
        "bare_samples_per_s": round(statistics.median(r["bare_tp"] for r in rows)),
        "tune_samples_per_s": round(statistics.median(r["tune_tp"] for r in rows)),
        "ray_start_s": round(ray_start, 2),
        "trial_wall_s": round(statistics.median(r["trial_wall_s"] for r in rows), 2),
        "epochs": args.epochs,
        "repeats": args.repeats,
        "threads": args.threads,
        "width": args.width,
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(
        f"MNIST-1D cnn1d (width {args.width}), {args.epochs} epochs, {args.threads} thread(s), median of {args.repeats} interleaved pairs"
    )
    print(
        f"  training samples/s   bare {summary['bare_samples_per_s']:>8}   in Tune {summary['tune_samples_per_s']:>8}   ratio {throughput:.3f}"
    )
    print(f"  end to end (reports + checkpoints)                                  ratio {end_to_end:.3f}")
    print(f"  fixed costs: Ray start {ray_start:.1f} s, one trial's wall time {summary['trial_wall_s']:.1f} s")
    floor = 0.95
    print(f"  floor ≥ {floor}: {'met' if min(throughput, end_to_end) >= floor else 'NOT met'}")


if __name__ == "__main__":
    main()

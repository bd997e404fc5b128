"""Record the real MNIST-1D test-loss curves under tests/data/curves/ (run once; results committed).

Each run is the bare tunekit training loop (the same loop a Tune trial runs) on the embedded
MNIST-1D preset, varied to produce every shape the paper describes: too-small, good and
too-large learning rates; small training sets that overfit; LR range tests at several weight
decays. The label of each curve is given by hand in labels.csv after looking at the plots
(``python tests/data/record_curves.py --plot`` writes curves.png); it is not the classifier's
output.

    python tests/data/record_curves.py            # record (a few minutes on 2 cores)
    python tests/data/record_curves.py --plot     # draw every curve with its label
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent / "curves"

BASE: dict[str, Any] = {
    "name": "mnist1d-curves",
    "dataset": {"name": "mnist1d", "num_samples": 10000},
    "model": {"name": "cnn1d", "width": 32},
    "train": {"epochs": 15, "batch_size": 128, "seed": 0},
    "weight_decay": 1e-4,
    "search": {"range_test": {"min_lr": 0.01, "max_lr": 3.0, "epochs": 3, "eval_every": 5, "eval_samples": 1000}},
}


def constant(lr: float, momentum: float = 0.9, **extra: Any) -> dict[str, Any]:
    return {"policy": {"name": "constant", "lr": lr, "momentum": momentum}, **extra}


RUNS: dict[str, dict[str, Any]] = {
    # learning rate too small, right, too large (constant LR, 15 epochs)
    "const_lr0.0005": constant(0.0005),
    "const_lr0.001": constant(0.001),
    "const_lr0.003": constant(0.003),
    "const_lr0.01": constant(0.01),
    "const_lr0.05": constant(0.05),
    "const_lr0.1": constant(0.1),
    "const_lr0.3": constant(0.3),
    "const_lr3": constant(3.0),
    "const_lr10": constant(10.0),
    "const_lr30": constant(30.0, momentum=0.99),
    # 1cycle at several maximum LRs
    "onecycle_max0.02": {"policy": {"name": "one_cycle", "max_lr": 0.02}},
    "onecycle_max0.2": {"policy": {"name": "one_cycle", "max_lr": 0.2}},
    "onecycle_max1": {"policy": {"name": "one_cycle", "max_lr": 1.0}},
    "onecycle_max3": {"policy": {"name": "one_cycle", "max_lr": 3.0}},
    # small training sets, no weight decay: overfitting
    "small400_lr0.05": constant(
        0.05,
        dataset={"name": "mnist1d", "num_samples": 10000, "train_subset": 400},
        weight_decay=0.0,
        train={"epochs": 30, "batch_size": 32, "seed": 0},
    ),
    "small800_lr0.1": constant(
        0.1,
        dataset={"name": "mnist1d", "num_samples": 10000, "train_subset": 800},
        weight_decay=0.0,
        train={"epochs": 30, "batch_size": 32, "seed": 1},
    ),
    "small400_lr0.01": constant(
        0.01,
        dataset={"name": "mnist1d", "num_samples": 10000, "train_subset": 400},
        weight_decay=0.0,
        train={"epochs": 30, "batch_size": 32, "seed": 2},
    ),
    "small1500_adam": {
        "policy": {"name": "constant", "lr": 0.003, "momentum": 0.9},
        "optimizer": {"name": "adam"},
        "dataset": {"name": "mnist1d", "num_samples": 10000, "train_subset": 1500},
        "weight_decay": 0.0,
        "train": {"epochs": 25, "batch_size": 64, "seed": 0},
    },
}
RANGE_TESTS: dict[str, dict[str, Any]] = {f"range_wd{wd:g}": {"weight_decay": wd} for wd in (1e-3, 1e-4, 1e-5, 0.0)}
RANGE_TESTS["range_short_max0.3"] = {
    "search": {"range_test": {"min_lr": 0.001, "max_lr": 0.3, "epochs": 3, "eval_every": 5, "eval_samples": 1000}}
}
RANGE_TESTS["range_to1_wd1e-4"] = {
    "search": {"range_test": {"min_lr": 0.01, "max_lr": 1.0, "epochs": 3, "eval_every": 5, "eval_samples": 1000}}
}
RANGE_TESTS["range_adam_wd1e-4"] = {
    "optimizer": {"name": "adam"},
    "search": {"range_test": {"min_lr": 0.0001, "max_lr": 0.1, "epochs": 3, "eval_every": 5, "eval_samples": 1000}},
}
RANGE_TESTS["range_nobn_recal_wd1e-4"] = {
    "search": {
        "range_test": {
            "min_lr": 0.01,
            "max_lr": 3.0,
            "epochs": 3,
            "eval_every": 5,
            "eval_samples": 1000,
            "bn_recalibration_batches": 0,
        }
    }
}


def record() -> None:
    import torch

    from tunekit.presets import load_preset, range_test_preset
    from tunekit.train.loop import train

    torch.set_num_threads(2)
    HERE.mkdir(parents=True, exist_ok=True)
    jobs = [(name, change, False) for name, change in RUNS.items()] + [
        (name, change, True) for name, change in RANGE_TESTS.items()
    ]
    for name, change, is_range in jobs:
        path = HERE / f"{name}.csv"
        if path.exists():
            continue
        placeholder = {"policy": {"name": "one_cycle", "max_lr": 1.0}}  # replaced by the range test's own
        preset = load_preset({**BASE, **change} if not is_range else {**BASE, **placeholder, **change})
        if is_range:
            preset = range_test_preset(preset)
        rows = train(preset)
        key = "step" if is_range else "epoch"
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["step", "lr", "test_loss", "test_acc"])
            for r in rows:
                writer.writerow([r[key], f"{r['lr']:.6g}", f"{r['test_loss']:.6g}", f"{r['test_acc']:.4f}"])
        print(f"{name}: {len(rows)} points, last test_loss {rows[-1]['test_loss']:.4f}, acc {rows[-1]['test_acc']:.4f}")


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = (
        {row["curve"]: row["label"] for row in csv.DictReader((HERE / "labels.csv").open())}
        if (HERE / "labels.csv").exists()
        else {}
    )
    files = sorted(HERE.glob("*.csv"))
    files = [f for f in files if f.name != "labels.csv"]
    cols = 5
    fig, axes = plt.subplots((len(files) + cols - 1) // cols, cols, figsize=(4 * cols, 3 * ((len(files) + cols - 1) // cols)))
    for ax, f in zip(axes.flat, files, strict=False):
        rows = list(csv.DictReader(f.open()))
        x = [float(r["step"]) for r in rows]
        y = [float(r["test_loss"]) for r in rows]
        ax.plot(x, y, ".-")
        ax.set_title(f"{f.stem}\n{labels.get(f.stem, '?')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(HERE.parent / "curves.png", dpi=70)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--plot", action="store_true")
    if parser.parse_args().plot:
        plot()
    else:
        record()

"""The whole recipe on a GPU: ``tunekit.search`` on the resnet-56 CIFAR-10 preset, trials sharing the GPU.

A smoke run of the GPU path end to end — range test, momentum, weight decay (snapshot-restart),
final replicates — with ``resources.gpu`` fractional so that several trials train on one GPU at
once, and short phases so it fits in a few minutes. Without ``--root`` the data is
CIFAR-10-shaped (fabricated in torchvision's format): the timings are real, the decisions are not.

    python bench/gpu_search.py [--root ~/data] [--gpu 0.5] [--epochs 6]
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fabricate import write_cifar10
from tunekit.recipe import search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="a folder holding cifar-10-batches-py/ (default: fabricate one)")
    parser.add_argument("--gpu", type=float, default=0.5, help="GPU share per trial")
    parser.add_argument("--epochs", type=int, default=6, help="the schedule length of search trials")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("no CUDA device visible: run this on a GPU machine")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or write_cifar10(Path(tmp) / "data", per_batch=10_000, n_test=10_000)
        started = time.perf_counter()
        result = search(
            "cifar10_resnet56",
            name="gpu-search",
            storage=f"{tmp}/runs",
            track=False,
            phases=["range_test", "momentum", "weight_decay", "final"],
            overrides={
                "dataset.root": str(root),
                "dataset.verify_checksums": False,
                "epochs": args.epochs,
                "resources.gpu": args.gpu,
                "resources.cpu": 2,
                "search.range_test.epochs": 2,
                "search.momentum.epochs": 2,
                "search.weight_decay.epochs": 2,
                "search.momentum.min_points": 2,  # 2-epoch short runs, as measured (the default floor is 3)
                "search.weight_decay.min_points": 2,
                "search.final.epochs": 4,
                "search.final.replicates": 2,
            },
        )
        wall = time.perf_counter() - started
        import pandas as pd

        progress = glob.glob(f"{tmp}/runs/gpu-search/*/trial_*/progress.csv")
        devices = sorted({str(d) for f in progress for d in pd.read_csv(f)["device"]})
    print(json.dumps({"wall_s": wall, "trials": len(progress), "devices": devices, "trial_epochs": result.trial_epochs}))


if __name__ == "__main__":
    main()

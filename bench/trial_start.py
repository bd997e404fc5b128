"""Per-trial start cost of a user dataset: built by every trial vs. once per node (the node cache).

A user's image ``Dataset`` that decodes PNG files (scikit-learn's digits, upscaled to 32×32 and
written as PNGs into a temporary folder) is loaded the way a trial loads it — ``Trainer(preset)``
builds the data, carves the validation split and builds the model — measured side by side:

* ``per_trial``: no data token, as before this cache: every trial calls the factory and stacks
  every item (decoding every PNG);
* ``cached``: the trials of one experiment share a token: the first on a node builds and writes the
  stacked tensors under a file lock, the others read them.

Prints the start cost of the first trial and of each later one, and the ratio per_trial ÷ cached
for the later ones (how many times cheaper a trial starts once its node has the data).

    python bench/trial_start.py [--images 3000] [--trials 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_png_data below is the "user's" module


def write_pngs(root: Path, images: int) -> None:
    """``images`` PNGs of digits (upscaled 8×8 → 32×32), one folder per class."""
    from PIL import Image
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    for i in range(images):
        folder = root / str(int(y[i % len(y)]))
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (x[i % len(y)].reshape(8, 8) / 16.0 * 255).astype(np.uint8)
        Image.fromarray(pixels).resize((32, 32)).save(folder / f"{i}.png")


def start_cost(root: Path, token: str | None) -> float:
    from tunekit.presets import load_preset
    from tunekit.train.loop import Trainer

    preset = load_preset(
        {
            "name": "bench-trial-start",
            "dataset": {"factory": "bench_png_data:load", "kwargs": {"root": str(root)}},
            "model": {"factory": "bench_png_data:model"},
            "train": {"epochs": 1, "batch_size": 64},
            "policy": {"name": "one_cycle", "max_lr": 0.1},
        }
    )
    started = time.perf_counter()
    Trainer(preset, "cpu", token=token)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TUNEKIT_CACHE"] = str(Path(tmp) / "cache")  # a fresh node cache
        root = Path(tmp) / "pngs"
        write_pngs(root, args.images)
        start_cost(root, None)  # imports and allocator warm-up: not a trial's cost
        per_trial = [start_cost(root, None) for _ in range(args.trials)]
        token = f"experiment-{time.time()}"
        cached = [start_cost(root, token) for _ in range(args.trials)]
    later_per_trial, later_cached = statistics.median(per_trial[1:]), statistics.median(cached[1:])
    out: dict[str, Any] = {
        "images": args.images,
        "per_trial_first_s": per_trial[0],
        "per_trial_later_s": later_per_trial,
        "cached_first_s": cached[0],
        "cached_later_s": later_cached,
        "ratio_later": later_per_trial / later_cached,
    }
    if args.json:
        print(json.dumps(out))
        return
    print(f"user PNG dataset, {args.images} images, {args.trials} trials per contender (1 CPU thread)")
    print(f"  factory in every trial : first {per_trial[0]:.2f} s, later {later_per_trial:.2f} s each")
    print(f"  built once per node    : first {cached[0]:.2f} s (builds and writes), later {later_cached:.2f} s each")
    print(f"  later trials start {out['ratio_later']:.1f}× faster with the node cache")


if __name__ == "__main__":
    main()

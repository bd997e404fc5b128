"""The final training over a small grid of max_lr × weight decay: which one explains an accuracy gap?

``bench/search_efficiency.py`` compares the configurations four methods choose; when two differ in
both LR and weight decay, this trains the crossings the same way (the embedded MNIST-1D preset, or
one of the benchmark suite's tasks with ``--task``; ``--epochs`` of 1cycle, momentum ``--momentum``,
every seed) and prints the test metric's mean ± std per cell.

    python bench/final_grid.py [--task NAME] [--max-lr 0.3,0.6,1.2] [--weight-decay 5.7e-5,2e-4] [--seeds 0,1,2] [--json]

With ``--task`` (a name from ``bench/suite_tasks.py``) the base is that task's preset: its final
epochs and momentum unless ``--epochs`` / ``--momentum`` are given; ``--num-samples`` is ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script: bench.*, examples.* from the repository root


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", help="a benchmark-suite task (bench/suite_tasks.py) instead of the embedded MNIST-1D preset")
    parser.add_argument("--max-lr", type=floats, default=[0.3, 0.6, 1.2])
    parser.add_argument("--weight-decay", type=floats, default=[5.7e-5, 2e-4])
    parser.add_argument("--momentum", type=floats, help="max,min of the cyclical momentum (default 0.9,0.85; a task's own)")
    parser.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")], default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="1cycle length (default 30; a task's final epochs)")
    parser.add_argument("--num-samples", type=int, default=16000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if len(args.seeds) < 2:
        parser.error("--seeds: at least two, for a standard deviation")

    from ray import tune

    from tunekit.presets import load_preset
    from tunekit.runner import ensure_ray
    from tunekit.trainable import train_fn

    base = grid_base(args)
    name, metric = base["name"], load_preset(base).metric_name or "acc"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
    )
    ensure_ray(num_cpus=2)
    with tempfile.TemporaryDirectory() as storage:
        grid = tune.Tuner(
            tune.with_resources(train_fn, {"cpu": 1}),
            param_space={
                "preset": base,
                "policy.max_lr": tune.grid_search(args.max_lr),
                "weight_decay": tune.grid_search(args.weight_decay),
                "train.seed": tune.grid_search(args.seeds),
            },
            run_config=tune.RunConfig(name="final-grid", storage_path=storage, verbose=0),
        ).fit()
        cells: dict[tuple[float, float], list[float]] = {}
        for i in range(len(grid)):
            result = grid[i]
            if result.error:
                raise SystemExit(f"a grid run failed: {result.error}")
            config, metrics = result.config or {}, result.metrics or {}
            key = (config["policy.max_lr"], config["weight_decay"])
            cells.setdefault(key, []).append(float(metrics[f"test_{metric}"]))
    rows = {
        f"{lr:g}/{wd:g}": {
            "max_lr": lr,
            "weight_decay": wd,
            f"{metric}_mean": statistics.mean(v),
            f"{metric}_std": statistics.stdev(v),
        }
        for (lr, wd), v in sorted(cells.items())
    }
    if args.json:
        print(json.dumps(rows))
        return
    print(
        f"{name}, {base['train']['epochs']} epochs of 1cycle, momentum {base['policy']['momentum']}, seeds {args.seeds}: test {metric}"
    )
    print("max_lr".rjust(8) + "".join(f"wd {wd:g}".rjust(18) for wd in args.weight_decay))
    scale, unit = (100, " %") if metric == "acc" else (1, "")
    for lr in args.max_lr:
        line = f"{lr:8g}"
        for wd in args.weight_decay:
            v = cells[(lr, wd)]
            line += (
                f"{scale * statistics.mean(v):10.{2 if unit else 3}f}{unit} ± {scale * statistics.stdev(v):.{2 if unit else 3}f}"
            )
        print(line)


def grid_base(args: argparse.Namespace) -> dict[str, Any]:
    """The preset every cell trains: the embedded MNIST-1D one, or a suite task's, with the grid's epochs and momentum."""
    from tunekit.presets import load_preset, preset_to_dict

    if args.task is None:
        momentum = args.momentum or [0.9, 0.85]
        overrides = {"dataset.num_samples": args.num_samples, "epochs": args.epochs or 30, "policy.momentum": momentum}
        return preset_to_dict(load_preset("mnist1d", overrides))
    from bench.suite_tasks import TASKS

    if args.task not in TASKS:
        raise SystemExit(f"--task: {args.task!r} is not a suite task; choose from {', '.join(TASKS)}")
    task = TASKS[args.task]
    base = task.build(False)
    overrides: dict[str, Any] = {"train.epochs": args.epochs or task.full.final_epochs, "train.test_at_end": True}
    if args.momentum:
        overrides["policy.momentum"] = args.momentum
    return preset_to_dict(load_preset(base, overrides))


if __name__ == "__main__":
    main()

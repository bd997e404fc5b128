"""The final training over a small grid of max_lr × weight decay: which one explains an accuracy gap?

``bench/search_efficiency.py`` compares the configurations four methods choose; when two differ in
both LR and weight decay, this trains the crossings the same way (the embedded MNIST-1D preset,
``--epochs`` of 1cycle, momentum ``--momentum``, every seed) and prints mean ± std per cell.

    python bench/final_grid.py [--max-lr 0.3,0.6,1.2] [--weight-decay 5.7e-5,2e-4] [--seeds 0,1,2] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-lr", type=floats, default=[0.3, 0.6, 1.2])
    parser.add_argument("--weight-decay", type=floats, default=[5.7e-5, 2e-4])
    parser.add_argument("--momentum", type=floats, default=[0.9, 0.85], help="max,min of the cyclical momentum")
    parser.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")], default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--num-samples", type=int, default=16000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if len(args.seeds) < 2:
        parser.error("--seeds: at least two, for a standard deviation")

    from ray import tune

    from tunekit.presets import load_preset, preset_to_dict
    from tunekit.runner import ensure_ray
    from tunekit.trainable import train_fn

    ensure_ray(num_cpus=2)
    base = preset_to_dict(
        load_preset("mnist1d", {"dataset.num_samples": args.num_samples, "epochs": args.epochs, "policy.momentum": args.momentum})
    )
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
            cells.setdefault(key, []).append(float(metrics["test_acc"]))
    rows = {
        f"{lr:g}/{wd:g}": {
            "max_lr": lr,
            "weight_decay": wd,
            "accuracy_mean": statistics.mean(v),
            "accuracy_std": statistics.stdev(v),
        }
        for (lr, wd), v in sorted(cells.items())
    }
    if args.json:
        print(json.dumps(rows))
        return
    print(f"MNIST-1D, {args.epochs} epochs of 1cycle, momentum {args.momentum}, seeds {args.seeds}")
    print("max_lr".rjust(8) + "".join(f"wd {wd:g}".rjust(18) for wd in args.weight_decay))
    for lr in args.max_lr:
        line = f"{lr:8g}"
        for wd in args.weight_decay:
            v = cells[(lr, wd)]
            line += f"{100 * statistics.mean(v):10.2f} % ± {100 * statistics.stdev(v):.2f}"
        print(line)


if __name__ == "__main__":
    main()

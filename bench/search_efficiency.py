"""Does the disciplined search beat Optuna + ASHA, random search + ASHA and the fastai habit?

One run, one machine, one task: MNIST-1D with the embedded preset's model (cnn1d, BatchNorm,
SGD), two trials at a time, one CPU and one torch thread each. Four ways to choose the
hyper-parameters:

* ``tunekit`` — ``tunekit.search`` (range test → momentum → weight decay), the whole recipe;
* ``optuna_asha`` — Ray Tune + ``OptunaSearch`` (TPE, 2 trials in flight) + ``ASHAScheduler``
  over LR (log 0.01–3), momentum (0.8–0.99, cycling down to 0.85) and weight decay (log 1e-7–1e-2,
  under 1e-6 counts as 0), each trial a 1cycle run of ``--peer-epochs`` epochs;
* ``random_asha`` — the same space and budget, random search;
* ``fastai`` — one exponential training-loss LR finder (``lr_find``), its ``valley``
  suggestion, then ``fit_one_cycle``'s defaults (Adam with decoupled WD 1e-2, cosine, div 25).

Every contender's chosen configuration is then trained the same way: the final-training epochs,
three seeds, the preset's batch size. Reported: test accuracy mean ± std over the seeds,
trial-epochs and wall time spent choosing, and that cost divided by one final training.

    python bench/search_efficiency.py [--quick] [--json] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from peers import FASTAI_ONE_CYCLE, lr_find, peer_overrides, steep, valley  # bench/ is the script's folder

from tunekit.presets import load_preset, preset_to_dict

BENCH = Path(__file__).resolve().parent
CONTENDERS = ("tunekit", "optuna_asha", "random_asha", "fastai")
NUM_IT = 100  # fastai lr_find's default number of iterations


@dataclass(frozen=True)
class Settings:
    num_samples: int  # MNIST-1D samples generated (80 % train)
    final_epochs: int  # every contender's chosen configuration trains this long
    seeds: tuple[int, ...]
    peer_trials: int  # Optuna / random samples
    peer_epochs: int  # a peer trial's 1cycle length (ASHA's max_t)
    peer_grace: int  # ASHA's grace period (epochs)
    reduction_factor: int = 3
    concurrency: int = 2


FULL = Settings(num_samples=16000, final_epochs=30, seeds=(0, 1, 2), peer_trials=48, peer_epochs=15, peer_grace=2)
QUICK = Settings(num_samples=8000, final_epochs=12, seeds=(0, 1, 2), peer_trials=16, peer_epochs=6, peer_grace=1)


@dataclass
class Choice:
    """One contender's search: what it chose and what choosing cost."""

    contender: str
    preset: dict[str, Any]  # the chosen configuration, a whole preset
    summary: str
    trial_epochs: float
    wall_s: float
    trials: int
    accuracies: list[float] = field(default_factory=list)
    final_wall_s: float = math.nan  # one final training's wall time (median over seeds)


def base_preset(settings: Settings, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The embedded preset at this run's data size, with ``overrides`` (dotted paths) applied."""
    return preset_to_dict(load_preset("mnist1d", {"dataset.num_samples": settings.num_samples, **(overrides or {})}))


def describe(preset: dict[str, Any]) -> str:
    policy, optimizer = preset["policy"], preset["optimizer"]
    m = policy.get("momentum")
    momentum = f"{m[0]:.3g}→{m[1]:.3g}" if isinstance(m, list | tuple) else f"{m:.3g}"
    return (
        f"{optimizer['name']} max_lr {policy['max_lr']:.3g} (div {policy['div']:.3g}), "
        f"momentum {momentum}, wd {preset['weight_decay']:.2g}"
    )


# ----------------------------------------------------------------------------- contenders


def run_tunekit(settings: Settings, storage: str) -> Choice:
    from tunekit.recipe import search

    started = time.perf_counter()
    result = search(
        "mnist1d",
        name="tunekit",
        storage=storage,
        overrides={"dataset.num_samples": settings.num_samples},
        phases=["range_test", "momentum", "weight_decay"],
        track=False,
        progress=False,
    )
    wall = time.perf_counter() - started
    chosen = preset_to_dict(result.preset)
    trials = sum(p.trials for p in result.phases.values())
    return Choice("tunekit", chosen, describe(chosen), result.trial_epochs, wall, trials)


def peer_fn(config: dict[str, Any]) -> None:
    """A peer trial: the sampled (lr, momentum, wd) as overrides of the preset, then tunekit's loop."""
    from tunekit.trainable import train_fn

    overrides = peer_overrides(config["lr"], config["momentum"], config["wd"])
    train_fn({"preset": config["preset"], **overrides})


def run_peer(kind: str, settings: Settings, storage: str) -> Choice:
    """Optuna (TPE) or random search, with ASHA, over the same space and budget."""
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    base = base_preset(settings, {"train.epochs": settings.peer_epochs})
    space = {"lr": tune.loguniform(0.01, 3.0), "momentum": tune.uniform(0.8, 0.99), "wd": tune.loguniform(1e-7, 1e-2)}
    algorithm: Any
    if kind == "optuna_asha":
        sampler = optuna.samplers.TPESampler(seed=0)
        algorithm = ConcurrencyLimiter(OptunaSearch(sampler=sampler), max_concurrent=settings.concurrency)
    else:
        algorithm = BasicVariantGenerator(random_state=0, max_concurrent=settings.concurrency)
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=settings.peer_epochs,
        grace_period=settings.peer_grace,
        reduction_factor=settings.reduction_factor,
    )
    tuner = tune.Tuner(
        tune.with_resources(peer_fn, {"cpu": 1}),
        param_space={"preset": base, **space},
        tune_config=tune.TuneConfig(
            metric="val_loss", mode="min", search_alg=algorithm, scheduler=scheduler, num_samples=settings.peer_trials
        ),
        run_config=tune.RunConfig(name=kind, storage_path=storage, verbose=0),
    )
    started = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - started
    results = [grid[i] for i in range(len(grid))]
    finished = [r for r in results if r.metrics and r.metrics.get("epoch") == settings.peer_epochs]
    if not finished:
        raise RuntimeError(f"{kind}: no trial reached epoch {settings.peer_epochs}; errors: {[str(r.error) for r in results]}")
    best = min(finished, key=lambda r: (r.metrics or {})["val_loss"])  # chosen on validation, reported on test
    picked = best.config or {}
    chosen = base_preset(settings, peer_overrides(picked["lr"], picked["momentum"], picked["wd"]))
    spent = sum(float(r.metrics.get("trial_epochs", r.metrics.get("training_iteration", 0))) for r in results if r.metrics)
    return Choice(kind, chosen, describe(chosen), spent, wall, len(results))


def run_fastai(settings: Settings) -> Choice:
    """``lr_find()`` → ``valley`` → ``fit_one_cycle`` defaults; the finder runs bare, like in a notebook."""
    chosen = base_preset(settings)
    chosen.update(copy.deepcopy(FASTAI_ONE_CYCLE))
    chosen["policy"]["max_lr"] = 1e-3  # replaced by the finder's suggestion
    finder = load_preset(chosen, {"policy.momentum": 0.9})  # lr_find leaves Adam's β1 at its default
    torch.set_num_threads(1)
    started = time.perf_counter()
    curve, epochs = lr_find(finder, num_it=NUM_IT)
    lrs, losses = curve.trimmed(NUM_IT)
    suggestion = valley(lrs, losses)
    wall = time.perf_counter() - started
    chosen["policy"]["max_lr"] = suggestion
    summary = f"{describe(chosen)} (valley; steep {steep(lrs, losses):.3g})"
    return Choice("fastai", chosen, summary, epochs, wall, 1)


# ----------------------------------------------------------------------------- the common final training


def retrain(choices: list[Choice], settings: Settings, storage: str) -> None:
    """Every chosen configuration × every seed, as one Tune experiment; fills in accuracies."""
    from ray import tune

    from tunekit.trainable import train_fn

    presets = []
    for choice in choices:
        preset = copy.deepcopy(choice.preset)
        preset["name"] = choice.contender
        preset["train"]["epochs"] = settings.final_epochs
        presets.append(preset)
    tuner = tune.Tuner(
        tune.with_resources(train_fn, {"cpu": 1}),
        param_space={"preset": tune.grid_search(presets), "train.seed": tune.grid_search(list(settings.seeds))},
        run_config=tune.RunConfig(name="final", storage_path=storage, verbose=0),
    )
    grid = tuner.fit()
    by_name = {c.contender: c for c in choices}
    walls: dict[str, list[float]] = {c.contender: [] for c in choices}
    for i in range(len(grid)):
        result = grid[i]
        if result.error or not result.metrics:
            raise RuntimeError(f"final training failed: {result.error}")
        name = (result.config or {})["preset"]["name"]
        by_name[name].accuracies.append(float(result.metrics["test_acc"]))
        walls[name].append(float(result.metrics["time_total_s"]))
    for choice in choices:
        choice.final_wall_s = statistics.median(walls[choice.contender])


# ----------------------------------------------------------------------------- report


def summarise(choices: list[Choice], settings: Settings) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for c in choices:
        out[c.contender] = {
            "accuracy_mean": statistics.mean(c.accuracies),
            "accuracy_std": statistics.stdev(c.accuracies) if len(c.accuracies) > 1 else 0.0,
            "trial_epochs": c.trial_epochs,
            "wall_s": c.wall_s,
            "accuracies": c.accuracies,
            "trials": c.trials,
            "config": c.summary,
            "cost_in_final_trainings": c.trial_epochs / settings.final_epochs,
            "wall_in_final_trainings": c.wall_s / c.final_wall_s,
        }
    return out


def floors(summary: dict[str, dict[str, Any]]) -> list[tuple[str, bool, str]]:
    """The issue's floors, each with whether it is met and the measured figures."""
    ours = summary["tunekit"]
    peers = {k: v for k, v in summary.items() if k != "tunekit"}
    best_peer = max(peers, key=lambda k: peers[k]["accuracy_mean"])
    ratio = ours["trial_epochs"] / summary["optuna_asha"]["trial_epochs"]
    return [
        (
            "accuracy ≥ best peer's",
            ours["accuracy_mean"] >= peers[best_peer]["accuracy_mean"],
            f"{100 * ours['accuracy_mean']:.2f} % vs {best_peer} {100 * peers[best_peer]['accuracy_mean']:.2f} %",
        ),
        ("trial-epochs ≤ 25 % of Optuna+ASHA's", ratio <= 0.25, f"{100 * ratio:.0f} %"),
        ("search cost ≤ 3 final trainings", ours["cost_in_final_trainings"] <= 3, f"{ours['cost_in_final_trainings']:.2f}"),
    ]


def table(summary: dict[str, dict[str, Any]]) -> str:
    rows = [("contender", "test accuracy", "trial-epochs", "search wall", "cost ÷ final training", "chosen")]
    for name, s in summary.items():
        rows.append(
            (
                name,
                f"{100 * s['accuracy_mean']:.2f} % ± {100 * s['accuracy_std']:.2f}",
                f"{s['trial_epochs']:.0f}",
                f"{s['wall_s']:.0f} s",
                f"{s['cost_in_final_trainings']:.2f} (wall {s['wall_in_final_trainings']:.2f})",
                s["config"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(summary: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| contender | test accuracy (3 seeds) | trial-epochs | search wall | cost ÷ one final training | chosen |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {100 * s['accuracy_mean']:.2f} % ± {100 * s['accuracy_std']:.2f} | {s['trial_epochs']:.0f} | "
            f"{s['wall_s']:.0f} s | {s['cost_in_final_trainings']:.2f} (wall {s['wall_in_final_trainings']:.2f}) | {s['config']} |"
        )
    return "\n".join(lines)


def plot(summary: dict[str, dict[str, Any]], settings: Settings, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in summary.items():
        ax.errorbar(s["trial_epochs"], 100 * s["accuracy_mean"], yerr=100 * s["accuracy_std"], fmt="o", capsize=4, label=name)
        ax.annotate(name, (s["trial_epochs"], 100 * s["accuracy_mean"]), textcoords="offset points", xytext=(6, 6))
    ax.axvline(settings.final_epochs, color="grey", linestyle="--", linewidth=1)
    ax.annotate("one final training", (settings.final_epochs, ax.get_ylim()[0]), textcoords="offset points", xytext=(4, 4))
    ax.set_xscale("log")
    epochs = [max(s["trial_epochs"], 0.5) for s in summary.values()]
    ax.set_xlim(min(epochs) / 2, max(epochs) * 4)  # room for the labels
    ax.set_xlabel("compute spent choosing (trial-epochs, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"MNIST-1D: the choice trained {len(settings.seeds)}× (mean ± std) vs search compute", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller data, fewer peer trials, shorter trainings")
    parser.add_argument(
        "--json", action="store_true", help="print {contender: {accuracy_mean, accuracy_std, trial_epochs, wall_s, …}}"
    )
    parser.add_argument("--out", type=Path, help="also write search_efficiency.{json,md,png} into this folder")
    parser.add_argument(
        "--contenders", default=",".join(CONTENDERS), help="comma-separated subset (tunekit is needed for the floors)"
    )
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    wanted = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if unknown := set(wanted) - set(CONTENDERS):
        parser.error(f"--contenders: {sorted(unknown)} unknown; choose from {', '.join(CONTENDERS)}")

    # peer trials import bench/peers.py in Ray's worker processes: they inherit this environment
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))
    from tunekit.runner import ensure_ray

    ensure_ray(num_cpus=settings.concurrency)
    started = time.perf_counter()
    choices: list[Choice] = []
    with tempfile.TemporaryDirectory() as storage:
        for name in wanted:
            if name == "tunekit":
                choices.append(run_tunekit(settings, storage))
            elif name == "fastai":
                choices.append(run_fastai(settings))
            else:
                choices.append(run_peer(name, settings, storage))
            c = choices[-1]
            print(f"[{name}] chose {c.summary} — {c.trial_epochs:.0f} trial-epochs, {c.wall_s:.0f} s", file=sys.stderr)
        retrain(choices, settings, storage)
    summary = summarise(choices, settings)
    total = time.perf_counter() - started
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        record = {"settings": asdict(settings), "total_wall_s": total, "contenders": summary}
        (args.out / "search_efficiency.json").write_text(json.dumps(record, indent=2))
        (args.out / "search_efficiency.md").write_text(markdown(summary) + "\n")
        plot(summary, settings, args.out / "search_efficiency.png")
    if args.json:
        print(json.dumps(summary))
        return
    print(
        f"MNIST-1D ({settings.num_samples} samples), {settings.concurrency} trials at a time; every choice trained "
        f"{settings.final_epochs} epochs × {len(settings.seeds)} seeds; total {total / 60:.1f} min"
    )
    print(table(summary))
    if {"tunekit", "optuna_asha"} <= summary.keys():
        if args.quick:
            print("  (a --quick run: peers get 16 short trials, so the floors below are judged on the full run)")
        for what, met, figures in floors(summary):
            print(f"  floor: {what}: {'met' if met else 'NOT met'} ({figures})")


if __name__ == "__main__":
    main()

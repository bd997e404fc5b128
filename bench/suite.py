"""Does the disciplined search beat Optuna + ASHA, random search + ASHA and the fastai habit — on five tasks?

One command, one table. For every task of ``bench/suite_tasks.py`` (MNIST-1D with a BatchNorm CNN
and with a plain MLP, digits with a user CNN and with an AdamW MLP, diabetes regression through
user components — see that module for what each is and why it is there), four contenders choose
the hyper-parameters, all of them driving tunekit's own trainable, so the training code is the same:

* ``tunekit`` — ``tunekit.recipe.search`` with every phase that applies to the preset except
  ``final`` (read from the phase registry, so phases added later run too);
* ``optuna_asha`` — Ray Tune + ``OptunaSearch`` (TPE, seeded) + ``ASHAScheduler`` over LR
  (log-uniform over the task's range-test span), momentum or β1 (0.8–0.99, cycling down to the
  preset's ``search.momentum.min``) and weight decay (log-uniform 1e-7–1e-2, under 1e-6 is 0); each
  trial a 1cycle run of the task's peer epochs; the best trial by validation loss among those that
  ran all epochs;
* ``random_asha`` — the same space, scheduler and budget, random search (seeded);
* ``fastai`` — ``lr_find`` (training loss, exponential 1e-7 → 10), its ``valley`` suggestion, then
  ``fit_one_cycle``'s defaults (AdamW with weight decay 1e-2, cosine, div 25).

Each contender chooses on the validation split. Every choice is then retrained the same way — the
task's final-training epochs, five seeds (three with ``--quick``) — and reported on the TEST split:
mean ± standard error (std/√n). A final training that diverges scores as a constant prediction (10 % accuracy, R² 0).
Search cost: trial-epochs, wall time, and both divided by one final training. Two trials at a
time, one CPU and one torch thread each.

Wall times: the peers' Tune experiments (and the common retraining) reuse Ray's worker processes
(``reuse_actors=True``), as a Tune user would for many short trials; tunekit's phases start one
process per trial (its runner's choice), 3–5 s each on an idle two-core machine and several
times that on a busy one. Trial-epochs, not wall time, are what the cost floor compares.

    python bench/suite.py [--quick] [--tasks a,b] [--contenders a,b] [--search-seed N] [--json] [--out DIR]

``--search-seed N`` (default 0) seeds every contender's search — Optuna's and random search's samplers and
the training of every search trial, tunekit's and fastai's included — and leaves the final trainings' seeds
as they are: the same command with 1 and 2 shows how much of a task's verdict is one draw of the searches.

``--out DIR`` writes ``suite.json``, ``suite.md`` and ``suite.png`` (metric against trial-epochs,
one subplot per task). Progress goes to stderr. ``--quick`` (smaller data, 12 peer trials, shorter
trainings) checks the harness: 14 minutes on an idle two-core machine, 27 while a test run shared
it (two thirds of it tunekit's searches). The floors are judged on the full run (48 peer trials,
full data, longer trainings): 13 minutes on an idle two-core machine (2026-12-05; 22 before
tunekit's search runs were capped at a fifth of the final training), 25 while the test suite shared it.
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script: bench.*, examples.* from the repository root

import torch

from bench.peers import FASTAI_ONE_CYCLE, PeerSpace, lr_find, peer_overrides, peer_space, peer_trial, steep, valley
from bench.suite_report import floor_lines, markdown, plot, score_summary, table
from bench.suite_tasks import ROOT, TASKS, Budget, Task
from tunekit.presets import Preset, load_preset, preset_to_dict

CONTENDERS = ("tunekit", "optuna_asha", "random_asha", "fastai")
NUM_IT = 100  # fastai lr_find's default number of iterations
STARTED = time.perf_counter()


@dataclass(frozen=True)
class Settings:
    """What the whole run shares; each task's epochs are in its :class:`~bench.suite_tasks.Budget`."""

    peer_trials: int  # Optuna / random samples per task
    seeds: tuple[int, ...]  # every choice is retrained once per seed
    quick: bool = False
    reduction_factor: int = 3  # ASHA's
    concurrency: int = 2  # trials at a time
    search_seed: int = 0  # every contender's search: the searchers' seed and the search trials' train.seed


# five seeds: with three, fastai's choice on digits-cnn misclassified the same 2 of 360 test images every
# time, a standard error of 0 — no estimate of the noise a floor of "− 1 SE" reads (BENCHMARKS.md)
FULL = Settings(peer_trials=48, seeds=(0, 1, 2, 3, 4))
QUICK = Settings(peer_trials=12, seeds=(0, 1, 2), quick=True)


@dataclass
class Choice:
    """One contender's search on one task: what it chose, what choosing cost, and its retrained scores."""

    contender: str
    preset: dict[str, Any]  # the chosen configuration, a whole preset
    summary: str
    trial_epochs: float
    wall_s: float
    trials: int
    scores: list[float] = field(default_factory=list)
    failed: int = 0  # final trainings that diverged (scored as the task's failed_score)
    final_wall_s: float = math.nan  # one final training's wall time (median over seeds)
    details: dict[str, Any] = field(default_factory=dict)  # how it chose (tunekit: each phase), for suite.json


def say(message: str) -> None:
    """A progress line on stderr, stamped with the time since the run began."""
    elapsed = int(time.perf_counter() - STARTED)
    print(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {message}", file=sys.stderr, flush=True)


def describe(preset: dict[str, Any]) -> str:
    """The chosen values in one line: optimizer, max LR (div), momentum, weight decay."""
    policy, optimizer = preset["policy"], preset["optimizer"]
    m = policy.get("momentum")
    momentum = f"{m[0]:.3g}→{m[1]:.3g}" if isinstance(m, list | tuple) else f"{m:.3g}"
    return (
        f"{optimizer['name']} max_lr {policy['max_lr']:.3g} (div {policy['div']:.3g}), "
        f"momentum {momentum}, wd {preset['weight_decay']:.2g}"
    )


def with_overrides(preset: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``preset`` with dotted-path ``overrides`` applied, validated, as a plain mapping."""
    return preset_to_dict(load_preset(preset, overrides))


# ----------------------------------------------------------------------------- contenders


def tunekit_phases(preset: Preset) -> list[str]:
    """Every registered phase that applies to ``preset``, except the final training (the suite's own)."""
    from tunekit.recipe.phases import REGISTRY

    return [p.name for p in REGISTRY if p.applies(preset) and p.name != "final"]


def run_tunekit(task: Task, preset: dict[str, Any], storage: str) -> Choice:
    """tunekit's whole search, every phase but ``final``."""
    from tunekit.recipe import search

    phases = tunekit_phases(load_preset(preset))
    say(f"{task.name} · tunekit: phases {', '.join(phases)}")
    started = time.perf_counter()
    result = search(preset, name=f"{task.name}-tunekit", storage=storage, phases=phases, track=False, progress=False)
    wall = time.perf_counter() - started
    for p in result.phases.values():
        decided = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in p.values.items())
        say(f"{task.name} · tunekit · {p.phase}: {decided} — {p.trials} trials, {p.trial_epochs:.1f} trial-epochs")
    chosen = preset_to_dict(result.preset)
    trials = sum(p.trials for p in result.phases.values())
    phase_details = {
        p.phase: {
            "values": p.values,
            "trials": p.trials,
            "trial_epochs": p.trial_epochs,
            "evidence": p.evidence,
            "reason": p.reason,
        }
        for p in result.phases.values()
    }
    return Choice("tunekit", chosen, describe(chosen), result.trial_epochs, wall, trials, details={"phases": phase_details})


def search_algorithm(kind: str, settings: Settings) -> Any:
    """Optuna's TPE or random search, two trials in flight, seeded."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    if kind == "optuna_asha":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        sampler = optuna.samplers.TPESampler(seed=settings.search_seed)
        return ConcurrencyLimiter(OptunaSearch(sampler=sampler), max_concurrent=settings.concurrency)
    return BasicVariantGenerator(random_state=settings.search_seed, max_concurrent=settings.concurrency)


def tune_space(space: PeerSpace) -> dict[str, Any]:
    """The peers' :class:`~bench.peers.PeerSpace` as Tune distributions."""
    from ray import tune

    return {
        "lr": tune.loguniform(*space.lr),
        "momentum": tune.uniform(*space.momentum),
        "wd": tune.loguniform(*space.weight_decay),
        "momentum_min": space.momentum_min,
    }


def run_peer(kind: str, task: Task, preset: dict[str, Any], budget: Budget, settings: Settings, storage: str) -> Choice:
    """Optuna (TPE) or random search, with ASHA, over the task's space; chosen on validation loss."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    space = peer_space(load_preset(preset))
    base = with_overrides(preset, {"train.epochs": budget.peer_epochs, "train.test_at_end": False})
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=budget.peer_epochs,
        grace_period=budget.peer_grace,
        reduction_factor=settings.reduction_factor,
    )
    tuner = tune.Tuner(
        tune.with_resources(peer_trial, {"cpu": 1}),
        param_space={"preset": base, **tune_space(space)},
        tune_config=tune.TuneConfig(
            metric="val_loss",
            mode="min",
            search_alg=search_algorithm(kind, settings),
            scheduler=scheduler,
            num_samples=settings.peer_trials,
            reuse_actors=True,  # a trial starts in the last one's worker process (see the module docstring)
        ),
        run_config=tune.RunConfig(name=f"{task.name}-{kind}", storage_path=storage, verbose=0),
    )
    say(
        f"{task.name} · {kind}: {settings.peer_trials} trials of ≤ {budget.peer_epochs} epochs, LR {space.lr[0]:g}–{space.lr[1]:g}"
    )
    started = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - started
    results = [grid[i] for i in range(len(grid))]
    picked = best_config(kind, results, budget.peer_epochs)
    finished = len(ran_every_epoch(results, budget.peer_epochs))
    chosen = with_overrides(preset, peer_overrides(picked["lr"], picked["momentum"], picked["wd"], space.momentum_min))
    spent = sum(float(r.metrics.get("trial_epochs", r.metrics.get("training_iteration", 0))) for r in results if r.metrics)
    details = {"picked": {k: picked[k] for k in ("lr", "momentum", "wd")}, "ran_every_epoch": finished}
    return Choice(kind, chosen, describe(chosen), spent, wall, len(results), details=details)


def ran_every_epoch(results: Sequence[Any], epochs: int) -> list[Any]:
    """The trials that ran all ``epochs`` (not stopped by ASHA) and ended with a finite validation loss."""
    return [
        r
        for r in results
        if r.metrics and r.metrics.get("epoch") == epochs and math.isfinite(float(r.metrics.get("val_loss", math.nan)))
    ]


def best_config(kind: str, results: Sequence[Any], epochs: int) -> dict[str, Any]:
    """The config of the trial with the lowest final validation loss among those that ran all ``epochs``."""
    finished = ran_every_epoch(results, epochs)
    if not finished:
        raise RuntimeError(f"{kind}: no trial reached epoch {epochs}; errors: {[str(r.error) for r in results]}")
    best = min(finished, key=lambda r: float(r.metrics["val_loss"]))  # chosen on validation, reported on test
    return dict(best.config or {})


def run_fastai(task: Task, preset: dict[str, Any]) -> Choice:
    """``lr_find()`` → ``valley`` → ``fit_one_cycle`` defaults; the finder runs bare, like in a notebook."""
    chosen = copy.deepcopy(preset)
    chosen.update(copy.deepcopy(FASTAI_ONE_CYCLE))
    chosen["policy"]["max_lr"] = 1e-3  # replaced by the finder's suggestion
    finder = load_preset(chosen, {"policy.momentum": 0.9})  # lr_find leaves Adam's β1 at its default
    torch.set_num_threads(1)
    say(f"{task.name} · fastai: lr_find ({NUM_IT} iterations)")
    started = time.perf_counter()
    curve, epochs = lr_find(finder, num_it=NUM_IT)
    lrs, losses = curve.trimmed(NUM_IT)
    suggestion = valley(lrs, losses)
    wall = time.perf_counter() - started
    chosen["policy"]["max_lr"] = suggestion
    chosen = with_overrides(chosen, {})
    summary = f"{describe(chosen)} (valley; steep {steep(lrs, losses):.3g})"
    return Choice("fastai", chosen, summary, epochs, wall, 1)


def choose(name: str, task: Task, preset: dict[str, Any], budget: Budget, settings: Settings, storage: str) -> Choice:
    """Run contender ``name`` on ``task``."""
    if name == "tunekit":
        return run_tunekit(task, preset, storage)
    if name == "fastai":
        return run_fastai(task, preset)
    return run_peer(name, task, preset, budget, settings, storage)


# ----------------------------------------------------------------------------- the common final training


def final_preset(preset: dict[str, Any], contender: str, epochs: int) -> dict[str, Any]:
    """A choice as its final training: ``epochs`` long, tested at the end, no early stop, one checkpoint (at the end)."""
    out = copy.deepcopy(preset)
    out["name"] = contender  # how the results find their contender again
    train = out["train"]
    train.update({"epochs": epochs, "test_at_end": True, "stop_when_horizontal": False, "checkpoint_every": epochs})
    for key in ("stop_at_epoch", "time_budget_s"):
        train.pop(key, None)
    return out


def retrain(choices: list[Choice], task: Task, metric: str, budget: Budget, settings: Settings, storage: str) -> None:
    """Every choice × every seed, as one Tune experiment; fills in each choice's test scores."""
    from ray import tune

    from tunekit.trainable import train_fn

    presets = [final_preset(c.preset, c.contender, budget.final_epochs) for c in choices]
    say(f"{task.name} · retraining {len(choices)} choices × {len(settings.seeds)} seeds, {budget.final_epochs} epochs")
    tuner = tune.Tuner(
        tune.with_resources(train_fn, {"cpu": 1}),
        param_space={"preset": tune.grid_search(presets), "train.seed": tune.grid_search(list(settings.seeds))},
        tune_config=tune.TuneConfig(reuse_actors=True),  # the same work for every contender: no process start per run
        run_config=tune.RunConfig(name=f"{task.name}-final", storage_path=storage, verbose=0),
    )
    grid = tuner.fit()
    by_name = {c.contender: c for c in choices}
    walls: dict[str, list[float]] = {c.contender: [] for c in choices}
    for i in range(len(grid)):
        result = grid[i]
        if result.error or not result.metrics:
            raise RuntimeError(f"{task.name}: a final training failed: {result.error}")
        choice = by_name[(result.config or {})["preset"]["name"]]
        score = result.metrics.get(f"test_{metric}")
        if score is None or not math.isfinite(float(score)):
            choice.failed += 1
            score = task.failed_score
        choice.scores.append(float(score))
        walls[choice.contender].append(float(result.metrics["time_total_s"]))
    for choice in choices:
        choice.final_wall_s = statistics.median(walls[choice.contender])


# ----------------------------------------------------------------------------- one task, the suite


def contender_summary(choice: Choice, budget: Budget) -> dict[str, Any]:
    """One choice's plain summary (see :mod:`bench.suite_report`)."""
    return {
        **score_summary(choice.scores),
        "failed": choice.failed,
        "trial_epochs": choice.trial_epochs,
        "wall_s": choice.wall_s,
        "trials": choice.trials,
        "config": choice.summary,
        "cost_in_final_trainings": choice.trial_epochs / budget.final_epochs,
        "wall_in_final_trainings": choice.wall_s / choice.final_wall_s,
        "details": choice.details,
        "preset": choice.preset,
    }


def searched_with_seed(preset: dict[str, Any], seed: int) -> dict[str, Any]:
    """``preset`` as every contender's search trains it: with ``train.seed`` ``seed`` (the final trainings
    override it with theirs); the seed the task's preset has already (0) leaves it as the task built it."""
    return preset if seed == preset.get("train", {}).get("seed", 0) else with_overrides(preset, {"train.seed": seed})


def run_task(task: Task, contenders: Sequence[str], settings: Settings, storage: str) -> dict[str, Any]:
    """Every contender chooses on ``task``, every choice is retrained; the task's summary."""
    started = time.perf_counter()
    budget = task.budget(settings.quick)
    preset = searched_with_seed(task.build(settings.quick), settings.search_seed)
    loaded = load_preset(preset)
    metric = loaded.metric_name or "loss"
    say(f"{task.name}: {task.why}")
    choices = []
    for name in contenders:
        choice = choose(name, task, preset, budget, settings, storage)
        say(f"{task.name} · {name} chose {choice.summary} — {choice.trial_epochs:.0f} trial-epochs, {choice.wall_s:.0f} s")
        choices.append(choice)
    retrain(choices, task, metric, budget, settings, storage)
    contenders_summary = {c.contender: contender_summary(c, budget) for c in choices}
    summary: dict[str, Any] = {
        "task": task.name,
        "why": task.why,
        "metric": metric,
        "mode": loaded.metric_mode if loaded.metric_name else "min",
        "final_epochs": budget.final_epochs,
        "budget": asdict(budget),
        "seeds": list(settings.seeds),
        "contenders": contenders_summary,
        "wall_s": time.perf_counter() - started,
    }
    for name, c in contenders_summary.items():
        say(f"{task.name} · {name}: test {metric} {c['mean']:.4f} ± {c['se']:.4f} (SE, {c['n']} seeds)")
    say(f"{task.name}: done in {summary['wall_s'] / 60:.1f} min")
    return summary


def run_suite(tasks: Sequence[Task], contenders: Sequence[str], settings: Settings) -> dict[str, Any]:
    """Every task in turn on a local Ray of ``settings.concurrency`` CPUs; the whole record."""
    # the workers import bench.* and examples.* (peer trials, user components): they inherit this environment
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    from tunekit.runner import ensure_ray

    ensure_ray(num_cpus=settings.concurrency)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as storage:
        summaries = [run_task(task, contenders, settings, storage) for task in tasks]
    return {"settings": asdict(settings), "total_wall_s": time.perf_counter() - started, "tasks": summaries}


# ----------------------------------------------------------------------------- output


def heading(record: dict[str, Any]) -> str:
    """What was run, in one line."""
    settings, tasks = record["settings"], record["tasks"]
    return (
        f"{len(tasks)} tasks, {settings['concurrency']} trials at a time, {settings['peer_trials']} trials per peer, "
        f"search seed {settings.get('search_seed', 0)}; every choice retrained {len(settings['seeds'])} seeds, reported on the test split; total {record['total_wall_s'] / 60:.1f} min"
    )


def notes(record: dict[str, Any]) -> list[str]:
    """Each task's wall time, the floors (per task, averaged) and, for a quick run, why they do not count."""
    walls = ", ".join(f"{t['task']} {t['wall_s'] / 60:.1f} min" for t in record["tasks"])
    quick = ["a --quick run: smaller data, fewer and shorter peer trials — the floors are judged on the full run"]
    return [f"wall per task: {walls}", *(quick if record["settings"]["quick"] else []), *floor_lines(record["tasks"])]


def report(record: dict[str, Any]) -> str:
    """The table and the floors, as printed."""
    return "\n".join([heading(record), "", table(record["tasks"]), "", *notes(record)])


def write_outputs(record: dict[str, Any], out: Path, stem: str = "suite") -> None:
    """``<stem>.json`` (everything), ``<stem>.md`` (the table and floors), ``<stem>.png`` (the figure)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2))
    tasks = [f"* `{t['task']}` ({t['final_epochs']} final epochs): {t['why']}" for t in record["tasks"]]
    md = [heading(record), "", *tasks, "", markdown(record["tasks"]), "", *[f"* {line}" for line in notes(record)]]
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    plot(record["tasks"], out / f"{stem}.png")


def parse_list(text: str, known: Sequence[str], flag: str, parser: argparse.ArgumentParser) -> list[str]:
    """A comma-separated subset of ``known``, in the order given."""
    wanted = [item.strip() for item in text.split(",") if item.strip()]
    if unknown := sorted(set(wanted) - set(known)):
        parser.error(f"{flag}: {unknown} unknown; choose from {', '.join(known)}")
    return wanted


def main(argv: Sequence[str] | None = None, stem: str = "suite") -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller data, 12 peer trials, shorter trainings (~20 min)")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {', '.join(TASKS)}")
    parser.add_argument(
        "--contenders", default=",".join(CONTENDERS), help="comma-separated subset (the floors need tunekit and a peer)"
    )
    parser.add_argument(
        "--search-seed",
        type=int,
        default=0,
        help="seed of every contender's search: Optuna's and random search's, and the training seed of every search trial "
        "(the final trainings keep their own seeds); run 1 and 2 besides the default 0 to see how much a verdict is one draw",
    )
    parser.add_argument("--json", action="store_true", help="print the whole record as JSON instead of the table")
    parser.add_argument("--out", type=Path, help=f"also write {stem}.json, {stem}.md and {stem}.png into this folder")
    args = parser.parse_args(argv)
    tasks = [TASKS[name] for name in parse_list(args.tasks, list(TASKS), "--tasks", parser)]
    contenders = parse_list(args.contenders, CONTENDERS, "--contenders", parser)
    if args.search_seed < 0:
        parser.error(f"--search-seed: {args.search_seed} is negative; give a seed ≥ 0")
    record = run_suite(tasks, contenders, replace(QUICK if args.quick else FULL, search_seed=args.search_seed))
    if args.out:
        write_outputs(record, args.out, stem)
    print(json.dumps(record) if args.json else report(record))


if __name__ == "__main__":
    main()

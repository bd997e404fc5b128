"""How often does each short-run phase choose what full trainings would choose? The suite's tasks.

tunekit's learning_rate, momentum and weight_decay phases rank candidates on short runs (a fifth of a
final training or less; weight decay may continue from one snapshot instead), judged by the
validation loss at the end of each run. This checks that reading against the thing it stands in for.
For each task of ``bench/suite_tasks.py``, tunekit's search runs as in ``bench/suite.py`` (every
phase but ``final``). Then every candidate a phase tried is trained as a final training would be —
the task's final epochs, the search's other decisions, ``--seeds`` — and judged the same way: the
lowest validation loss at the end (mean over seeds). The phase **agrees** when its choice is the
full runs' choice; otherwise the table gives its rank among the full runs, and what choosing it cost
on the test split (the phase's pick minus the full runs' pick, mean over seeds; positive: better).

    python bench/agreement.py [--tasks a,b] [--phases learning_rate,momentum,weight_decay] [--seeds 0,1] [--out DIR]

``--out DIR`` writes ``agreement.json`` and ``agreement.md``. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script: bench.*, examples.* from the repository root

from bench.suite import final_preset, parse_list, run_tunekit, say, with_overrides
from bench.suite_tasks import ROOT, TASKS, Task
from tunekit.presets import load_preset

#: Each checked phase: how its candidate labels (the phase's evidence) become preset overrides.
PHASES: dict[str, Callable[[float, dict[str, Any]], dict[str, Any]]] = {
    "learning_rate": lambda value, preset: {"policy.max_lr": value},
    "momentum": lambda value, preset: {"policy.momentum": [value, preset["policy"]["momentum"][1]]},
    "weight_decay": lambda value, preset: {"weight_decay": value},
}
#: Where each phase's chosen value is in its decision.
CHOSEN = {"learning_rate": "refined_max_lr", "momentum": "momentum_max", "weight_decay": "weight_decay"}


def closest(labels: Sequence[str], value: float) -> str:
    """The candidate label nearest ``value`` (labels are rounded; the decision is exact)."""
    return min(labels, key=lambda label: abs(math.log(max(float(label), 1e-12)) - math.log(max(value, 1e-12))))


def full_runs(
    task: Task, preset: dict[str, Any], runs: list[tuple[str, str, dict[str, Any]]], seeds: Sequence[int], storage: str
) -> dict[tuple[str, str], dict[str, list[float]]]:
    """Every (phase, label, overrides) as a final training × every seed, as one Tune experiment: val loss and test metric."""
    from ray import tune

    from tunekit.trainable import train_fn

    epochs = task.full.final_epochs
    presets = []
    for phase, label, overrides in runs:
        p = final_preset(with_overrides(preset, overrides), f"{phase}={label}", epochs)
        presets.append(p)
    metric = load_preset(preset).metric_name or "loss"
    say(f"{task.name}: {len(presets)} candidates × {len(seeds)} seeds as {epochs}-epoch final trainings")
    grid = tune.Tuner(
        tune.with_resources(train_fn, {"cpu": 1}),
        param_space={"preset": tune.grid_search(presets), "train.seed": tune.grid_search(list(seeds))},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(name=f"{task.name}-agreement", storage_path=storage, verbose=0),
    ).fit()
    out: dict[tuple[str, str], dict[str, list[float]]] = {}
    for i in range(len(grid)):
        result = grid[i]
        if result.error or not result.metrics:
            raise RuntimeError(f"{task.name}: a full run failed: {result.error}")
        phase, label = (result.config or {})["preset"]["name"].split("=", 1)
        cell = out.setdefault((phase, label), {"val_loss": [], "test": []})
        val = float(result.metrics.get("val_loss", math.nan))
        cell["val_loss"].append(val if math.isfinite(val) else math.inf)
        score = result.metrics.get(f"test_{metric}")
        cell["test"].append(float(score) if score is not None and math.isfinite(float(score)) else math.nan)
    return out


def judge_phase(phase: str, details: dict[str, Any], cells: dict[str, dict[str, list[float]]], mode: str) -> dict[str, Any]:
    """The phase's pick against the full runs' pick (lowest mean validation loss)."""
    labels = list(cells)
    picked = closest(labels, float(details["values"][CHOSEN[phase]]))
    val = {label: statistics.mean(cells[label]["val_loss"]) for label in labels}
    test = {label: statistics.mean(cells[label]["test"]) for label in labels}
    ranked = sorted(labels, key=lambda label: val[label])
    best = ranked[0]
    sign = 1.0 if mode == "max" else -1.0
    return {
        "candidates": labels,
        "short_run_loss": {label: details["evidence"].get(label) for label in labels},
        "full_run_val_loss": val,
        "full_run_test": test,
        "phase_pick": picked,
        "full_pick": best,
        "agrees": picked == best,
        "rank": ranked.index(picked) + 1,
        "test_cost": sign * (test[picked] - test[best]),  # positive: the phase's pick scored better on test
        "short_run_order": sorted(labels, key=lambda label: details["evidence"].get(label, math.inf)),
        "full_run_order": ranked,
    }


def run_task(task: Task, phases: Sequence[str], seeds: Sequence[int], storage: str) -> dict[str, Any]:
    started = time.perf_counter()
    preset = task.build(False)
    loaded = load_preset(preset)
    mode = loaded.metric_mode if loaded.metric_name else "min"
    choice = run_tunekit(task, preset, storage)
    searched = choice.details["phases"]
    checked = [p for p in phases if p in searched and searched[p]["evidence"]]
    runs = [(p, label, PHASES[p](float(label), choice.preset)) for p in checked for label in searched[p]["evidence"]]
    cells = full_runs(task, choice.preset, runs, seeds, storage)
    verdicts = {p: judge_phase(p, searched[p], {lb: cells[(p, lb)] for (q, lb) in cells if q == p}, mode) for p in checked}
    for p, v in verdicts.items():
        verdict = "agrees" if v["agrees"] else f"rank {v['rank']} of {len(v['candidates'])}"
        say(f"{task.name} · {p}: phase {v['phase_pick']}, full runs {v['full_pick']} — {verdict}, test {v['test_cost']:+.4f}")
    return {
        "task": task.name,
        "metric": loaded.metric_name or "loss",
        "mode": mode,
        "final_epochs": task.full.final_epochs,
        "search_trial_epochs": choice.trial_epochs,
        "phases": verdicts,
        "wall_s": time.perf_counter() - started,
    }


def markdown(record: dict[str, Any]) -> str:
    rows = [
        f"{len(record['tasks'])} tasks; every candidate retrained as a final training × seeds {record['seeds']}, "
        f"judged on the mean validation loss at the end; total {record['total_wall_s'] / 60:.1f} min",
        "",
        "| task | phase | short runs chose | full runs chose | agrees | rank | test: phase − full | short-run order | full-run order |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in record["tasks"]:
        for p, v in t["phases"].items():
            rows.append(
                f"| {t['task']} | {p} | {v['phase_pick']} | {v['full_pick']} | {'yes' if v['agrees'] else 'no'} | "
                f"{v['rank']} of {len(v['candidates'])} | {v['test_cost']:+.4f} | {', '.join(v['short_run_order'])} | "
                f"{', '.join(v['full_run_order'])} |"
            )
    rows.append("")
    for p in sorted({p for t in record["tasks"] for p in t["phases"]}):
        verdicts = [t["phases"][p] for t in record["tasks"] if p in t["phases"]]
        agree = sum(v["agrees"] for v in verdicts)
        cost = statistics.mean(v["test_cost"] for v in verdicts)
        rows.append(f"* {p}: agrees on {agree} of {len(verdicts)} tasks; mean test difference (phase − full) {cost:+.4f}")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {', '.join(TASKS)}")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {', '.join(PHASES)}")
    parser.add_argument("--seeds", default="0,1", help="seeds of every full run (their validation losses are averaged)")
    parser.add_argument("--out", type=Path, help="also write agreement.json and agreement.md into this folder")
    args = parser.parse_args(argv)
    tasks = [TASKS[name] for name in parse_list(args.tasks, list(TASKS), "--tasks", parser)]
    phases = parse_list(args.phases, list(PHASES), "--phases", parser)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds: {args.seeds!r} is not a comma-separated list of integers, e.g. 0,1")
    if not seeds:
        parser.error("--seeds: give at least one seed, e.g. 0,1")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    from tunekit.runner import ensure_ray

    ensure_ray(num_cpus=2)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as storage:
        summaries = [run_task(task, phases, seeds, storage) for task in tasks]
    record = {"seeds": seeds, "total_wall_s": time.perf_counter() - started, "tasks": summaries}
    text = markdown(record)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "agreement.json").write_text(json.dumps(record, indent=2))
        (args.out / "agreement.md").write_text(text + "\n")


if __name__ == "__main__":
    main()

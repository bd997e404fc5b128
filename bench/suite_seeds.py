"""Is a suite's verdict one draw of the searches? Runs of ``bench/suite.py --search-seed N``, side by side.

Every contender's search is one draw: Optuna's and random search's samplers, the order of the search
trials' batches and their initial weights all follow the search seed. This reads several ``suite.json``
records (each ``bench/suite.py --out`` writes one; ``settings.search_seed`` says which draw it is, and
records of the same seed with different tasks are read as one run) and, per task and contender, sets
each search seed's retrained test metric beside the others: their mean over the search seeds ± the
standard error across them, and the mean trial-epochs. The floors are judged twice: on each search seed
(on how many tunekit met them) and on the means over the seeds, with the best peer's standard error
across its seeds.

    python bench/suite_seeds.py bench/results/suite.json bench/results/suite-seed1.json ... [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script: bench.* from the repository root

from bench.suite_report import (
    AVERAGING,
    Summary,
    average_floors,
    fmt_metric,
    fmt_spread,
    markdown_table,
    score_summary,
    task_floors,
)


def read_record(path: Path) -> Summary:
    """One ``suite.json``; a ValueError naming ``path`` when it is not one."""
    fix = "give the suite.json that bench/suite.py --out wrote"
    if not path.is_file():
        raise ValueError(f"{path} is not a file; {fix}")
    try:
        record = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not JSON ({error}); {fix}") from None
    if not isinstance(record, dict) or not {"settings", "tasks"} <= record.keys():
        raise ValueError(f"{path} has no settings and tasks; {fix}")
    return record


def by_seed(records: Sequence[Summary]) -> dict[int, dict[str, Summary]]:
    """Each search seed's task summaries, by task name; a task run twice with one seed is an error."""
    seeds: dict[int, dict[str, Summary]] = {}
    for record in records:
        seed = int(record["settings"].get("search_seed", 0))
        tasks = seeds.setdefault(seed, {})
        for task in record["tasks"]:
            if task["task"] in tasks:
                raise ValueError(f"task {task['task']} appears twice with search seed {seed}; give each run once")
            tasks[task["task"]] = task
    return dict(sorted(seeds.items()))


def combine(seeds: dict[int, dict[str, Summary]]) -> list[dict[str, Any]]:
    """Per task that every seed ran (in the first seed's order): a task summary whose contenders' scores
    are the search seeds' means (so ``mean`` and ``se`` are over and across search seeds), with each
    seed's own summary kept under ``per_seed``."""
    first, *others = seeds.values()
    combined = []
    for name, task in first.items():
        if not all(name in tasks for tasks in others):
            continue
        runs = [tasks[name] for tasks in seeds.values()]
        contenders = {}
        for contender in task["contenders"]:
            if not all(contender in run["contenders"] for run in runs):
                continue
            per_seed = [run["contenders"][contender] for run in runs]
            contenders[contender] = {
                **score_summary([c["mean"] for c in per_seed]),
                "trial_epochs": statistics.mean(c["trial_epochs"] for c in per_seed),
                "per_seed": per_seed,
            }
        combined.append({**{k: task[k] for k in ("task", "metric", "mode")}, "seeds": list(seeds), "contenders": contenders})
    return combined


def rows(combined: Sequence[Summary]) -> list[tuple[str, ...]]:
    """task, contender, each seed's mean ± SE over its final trainings, the mean over seeds ± SE across them, trial-epochs."""
    out = []
    for task in combined:
        metric = task["metric"]
        for name, c in task["contenders"].items():
            seeds = [f"{fmt_metric(metric, s['mean'])} ± {fmt_spread(metric, s['se'])}" for s in c["per_seed"]]
            over = f"{fmt_metric(metric, c['mean'])} ± {fmt_spread(metric, c['se'])}"
            out.append((task["task"], name, *seeds, over, f"{c['trial_epochs']:.0f}"))
    return out


def markdown(combined: Sequence[Summary]) -> str:
    """The side-by-side table in Markdown."""
    seeds = combined[0]["seeds"] if combined else []
    header = ("task", "contender", *(f"search seed {s}" for s in seeds), "over the seeds (± SE across)", "trial-epochs")
    return markdown_table(header, rows(combined))


def floor_lines(seeds: dict[int, dict[str, Summary]], combined: Sequence[Summary]) -> list[str]:
    """Per task, on how many search seeds each floor was met, then the floors on the means over the seeds."""
    lines = []
    for task in combined:
        runs = [tasks[task["task"]] for tasks in seeds.values()]
        for i, what in enumerate(("metric", "cost")):
            verdicts = [task_floors(run)[i].met for run in runs]
            lines.append(f"{task['task']}: {what} floor met on {sum(v is True for v in verdicts)} of {len(runs)} search seeds")
        lines.append(f"{task['task']}, over the seeds: {task_floors(task)[0].line()}")
    lines += [f"all tasks, over the seeds: {f.line()}" for f in average_floors(combined)]
    lines.append(f"({AVERAGING})")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", nargs="+", type=Path, help="suite.json files written by bench/suite.py --out")
    parser.add_argument("--out", type=Path, help="also write the table and the floors to this Markdown file")
    args = parser.parse_args(argv)
    try:
        seeds = by_seed([read_record(path) for path in args.records])
    except ValueError as error:
        parser.error(f"records: {error}")
    combined = combine(seeds)
    if not combined:
        parser.error("records: no task was run with every search seed given")
    heading = (
        f"{len(combined)} tasks, search seeds {', '.join(map(str, seeds))}: each seed's choice retrained and tested "
        "(mean ± SE over its final trainings); over the seeds, the mean of those ± their SE"
    )
    text = "\n".join([heading, "", markdown(combined), "", *[f"* {line}" for line in floor_lines(seeds, combined)]])
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""bench/suite_seeds.py: several ``bench/suite.py --search-seed`` records side by side, checked on hand-made records."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from bench.suite_seeds import by_seed, combine, floor_lines, main, markdown


def contender(mean: float, trial_epochs: float = 100.0, se: float = 0.001) -> dict[str, Any]:
    return {"mean": mean, "se": se, "scores": [mean] * 5, "trial_epochs": trial_epochs}


def record(seed: int, **tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "settings": {"search_seed": seed},
        "tasks": [{"task": name, "metric": "acc", "mode": "max", "contenders": c} for name, c in tasks.items()],
    }


RECORDS = [
    record(0, a={"tunekit": contender(0.99, 40), "optuna_asha": contender(0.98, 200)}),
    record(1, a={"tunekit": contender(0.97, 36), "optuna_asha": contender(0.985, 240)}),
    record(2, a={"tunekit": contender(0.98, 38), "optuna_asha": contender(0.99, 220)}),
]


def test_each_contenders_seeds_are_averaged_with_the_standard_error_across_them() -> None:
    [task] = combine(by_seed(RECORDS))
    ours, optuna = task["contenders"]["tunekit"], task["contenders"]["optuna_asha"]
    assert ours["mean"] == pytest.approx(0.98)
    assert ours["se"] == pytest.approx(statistics.stdev([0.99, 0.97, 0.98]) / math.sqrt(3))
    assert ours["trial_epochs"] == pytest.approx(38)
    assert optuna["mean"] == pytest.approx(0.985)
    assert [s["mean"] for s in ours["per_seed"]] == [0.99, 0.97, 0.98]
    assert "| a | tunekit | 99.00 % ± 0.10 | 97.00 % ± 0.10 | 98.00 % ± 0.10 | 98.00 % ± 0.58 | 38 |" in markdown([task])


def test_floors_are_counted_per_seed_and_judged_on_the_means() -> None:
    seeds = by_seed(RECORDS)
    lines = floor_lines(seeds, combine(seeds))
    assert "a: metric floor met on 1 of 3 search seeds" in lines  # seed 0 only: 0.99 against 0.98
    assert "a: cost floor met on 3 of 3 search seeds" in lines  # 40/200, 36/240, 38/220
    # over the seeds: 98.00 against 98.50 ± 0.29 (the peer's SE across its seeds) is more than one SE short
    over = next(line for line in lines if line.startswith("a, over the seeds"))
    assert "NOT met" in over
    assert "98.00 % vs optuna_asha 98.50 % ± 0.29" in over


def test_runs_of_one_seed_on_different_tasks_are_one_run_and_a_task_twice_is_refused() -> None:
    split = [
        record(0, a={"tunekit": contender(0.9)}),
        record(0, b={"tunekit": contender(0.8)}),
        record(1, b={"tunekit": contender(0.7)}),
    ]
    seeds = by_seed(split)
    assert list(seeds[0]) == ["a", "b"]
    assert [t["task"] for t in combine(seeds)] == ["b"]  # only b was run with both seeds
    with pytest.raises(ValueError, match="task a appears twice with search seed 0"):
        by_seed([record(0, a={}), record(0, a={})])


def test_the_command_writes_the_table_and_says_what_is_wrong_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for i, r in enumerate(RECORDS):
        paths.append(tmp_path / f"suite-{i}.json")
        paths[-1].write_text(json.dumps(r))
    main([*map(str, paths), "--out", str(tmp_path / "seeds.md")])
    assert "| a | optuna_asha |" in (tmp_path / "seeds.md").read_text()
    capsys.readouterr()
    not_json, not_a_record = tmp_path / "notes.json", tmp_path / "other.json"
    not_json.write_text("not json")
    not_a_record.write_text('{"tasks": []}')
    for argv, message in [
        ([str(tmp_path / "missing.json")], "is not a file; give the suite.json that bench/suite.py --out wrote"),
        ([str(paths[0]), str(paths[0])], "task a appears twice with search seed 0"),
        ([str(not_json)], "is not JSON (Expecting value: line 1 column 1 (char 0)); give the suite.json"),
        ([str(not_a_record)], "has no settings and tasks; give the suite.json that bench/suite.py --out wrote"),
    ]:
        with pytest.raises(SystemExit) as raised:
            main(argv)
        assert raised.value.code == 2
        assert message in capsys.readouterr().err

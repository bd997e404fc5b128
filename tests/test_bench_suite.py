"""The benchmark suite's pure parts (bench/suite.py, suite_report.py, suite_tasks.py), checked without Ray.

Floors met and not met on hand-made summaries, the standard error, the Markdown table, the peers'
space derived from each task, and every task's preset valid with its components importable.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.peers import PeerSpace, peer_overrides, peer_space
from bench.suite import (
    FULL,
    best_config,
    final_preset,
    main,
    report,
    search_algorithm,
    searched_with_seed,
    tune_space,
    tunekit_phases,
    with_overrides,
    write_outputs,
)
from bench.suite_report import (
    average_floors,
    best_peer,
    fmt_score,
    margin,
    markdown,
    plot,
    score_summary,
    standard_error,
    table,
    task_floors,
)
from bench.suite_tasks import TASKS
from tunekit.components import check_components
from tunekit.presets import load_preset


def contender(mean: float, se: float = 0.01, trial_epochs: float = 100.0, **extra: Any) -> dict[str, Any]:
    return {
        "mean": mean,
        "std": se * math.sqrt(3),
        "se": se,
        "n": 3,
        "failed": 0,
        "scores": [mean] * 3,
        "trial_epochs": trial_epochs,
        "wall_s": 60.0,
        "trials": 10,
        "config": "sgd max_lr 0.5 (div 10), momentum 0.95→0.85, wd 1e-4",
        "cost_in_final_trainings": trial_epochs / 30,
        "wall_in_final_trainings": 2.0,
        **extra,
    }


def task(name: str = "t", metric: str = "acc", mode: str = "max", **contenders: dict[str, Any]) -> dict[str, Any]:
    return {"task": name, "metric": metric, "mode": mode, "final_epochs": 30, "seeds": [0, 1, 2], "contenders": contenders}


# ----------------------------------------------------------------------------- statistics


def test_standard_error_is_the_sample_std_over_root_n() -> None:
    assert standard_error([1.0, 2.0, 3.0]) == pytest.approx(1.0 / math.sqrt(3))
    assert standard_error([0.5]) == 0.0
    summary = score_summary([0.9, 0.92, 0.94])
    assert summary["mean"] == pytest.approx(0.92)
    assert summary["std"] == pytest.approx(0.02)
    assert summary["se"] == pytest.approx(0.02 / math.sqrt(3))
    assert summary["n"] == 3
    assert math.isnan(score_summary([])["mean"])


# ----------------------------------------------------------------------------- floors


def test_floors_met_within_one_standard_error_and_under_a_quarter_of_optunas_cost() -> None:
    t = task(
        tunekit=contender(0.975, trial_epochs=40),
        optuna_asha=contender(0.980, se=0.01, trial_epochs=200),
        random_asha=contender(0.970, trial_epochs=210),
        fastai=contender(0.95, trial_epochs=1),
    )
    assert best_peer(t) == "optuna_asha"
    assert margin(t) == pytest.approx(-0.005)
    quality, cost = task_floors(t)
    assert quality.met is True  # 0.5 points below, the best peer's SE is 1 point
    assert cost.met is True  # 40 / 200 = 20 %
    assert "20 %" in cost.figures


def test_floors_not_met_beyond_one_standard_error_or_above_a_quarter() -> None:
    t = task(
        tunekit=contender(0.96, trial_epochs=60),
        optuna_asha=contender(0.98, se=0.005, trial_epochs=200),
        random_asha=contender(0.99, se=0.005, trial_epochs=200),
    )
    assert best_peer(t) == "random_asha"
    quality, cost = task_floors(t)
    assert quality.met is False  # 3 points below, SE 0.5
    assert cost.met is False  # 30 %
    assert "NOT met" in quality.line()


def test_floors_follow_the_metric_mode_and_cannot_be_judged_without_contenders() -> None:
    lower_is_better = task(metric="loss", mode="min", tunekit=contender(0.30), optuna_asha=contender(0.35))
    assert margin(lower_is_better) == pytest.approx(0.05)  # positive: tunekit's loss is lower
    assert task_floors(lower_is_better)[0].met is True
    alone = task(tunekit=contender(0.9))
    assert [f.met for f in task_floors(alone)] == [None, None]
    assert math.isnan(margin(alone))


def test_average_floors_over_tasks() -> None:
    ahead = task("a", tunekit=contender(0.99, trial_epochs=20), optuna_asha=contender(0.97, trial_epochs=200))
    behind = task("b", metric="r2", tunekit=contender(0.40, trial_epochs=100), optuna_asha=contender(0.41, trial_epochs=200))
    quality, cost, level = average_floors([ahead, behind])
    assert quality.met is True  # mean difference +0.005 ≥ −SE
    assert "met on 2/2 tasks" in quality.figures
    assert cost.met is False  # (10 % + 50 %) / 2 = 30 %
    assert "met on 1/2 tasks" in cost.figures
    assert level.met is True  # +0.02 and −0.01: +0.005 on average
    _, _, level = average_floors([behind])
    assert level.met is False


# ----------------------------------------------------------------------------- the table


def test_markdown_table_has_one_row_per_task_and_contender() -> None:
    tasks = [
        task("mnist1d-cnn", tunekit=contender(0.9878, se=0.0008), fastai=contender(0.9781, failed=1)),
        task("diabetes-regression", metric="r2", tunekit=contender(0.4391, se=0.0226)),
    ]
    md = markdown(tasks).splitlines()
    assert md[0].startswith("| task | contender | test metric")
    assert md[1] == "|---|---|---|---|---|---|---|"
    assert len(md) == 2 + 3
    assert all(line.count("|") == 8 for line in md)
    assert "| mnist1d-cnn | tunekit | acc 98.78 % ± 0.08 | 100 | 60 s | 3.33 (wall 2.00) |" in md[2]
    assert "(1/3 diverged)" in md[3]
    assert "r2 0.439 ± 0.023" in md[4]
    assert "mnist1d-cnn" in table(tasks)
    assert fmt_score("acc", contender(math.nan)).startswith("n/a")


# ----------------------------------------------------------------------------- tasks, their presets and spaces


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_preset_loads_and_its_components_import(name: str) -> None:
    task_ = TASKS[name]
    for quick in (False, True):
        preset = load_preset(task_.build(quick))
        check_components(preset)
        budget = task_.budget(quick)
        assert preset.name == name
        assert preset.train.epochs == budget.final_epochs
        assert preset.search is not None
        assert preset.search.final.epochs == budget.final_epochs
        assert 0 < budget.peer_grace < budget.peer_epochs <= budget.final_epochs
        assert preset.metric_name in ("acc", "r2")
        assert preset.metric_mode == "max"


def test_the_tasks_cover_the_kinds_the_suite_promises() -> None:
    presets = {name: load_preset(t.build()) for name, t in TASKS.items()}
    assert len(presets) >= 5
    assert presets["mnist1d-cnn"].search == load_preset("mnist1d").search  # the embedded search section, as is
    assert presets["diabetes-regression"].metric_name == "r2"
    assert presets["digits-mlp-adamw"].optimizer.name == "adamw"
    assert presets["digits-cnn"].model.factory == "examples.image_cnn.models:build"
    assert presets["mnist1d-mlp"].model.name == "mlp"


@pytest.mark.parametrize("name", list(TASKS))
def test_peer_space_is_the_tasks_range_test_span(name: str) -> None:
    preset = load_preset(TASKS[name].build())
    assert preset.search is not None
    space = peer_space(preset)
    assert space == PeerSpace(
        lr=(preset.search.range_test.min_lr, preset.search.range_test.max_lr), momentum_min=preset.search.momentum.min
    )
    assert space.momentum == (0.8, 0.99)
    assert space.weight_decay == (1e-7, 1e-2)
    # the top of the space is a valid preset, as the peers' trials make it
    high = peer_overrides(space.lr[1], space.momentum[1], space.weight_decay[1], space.momentum_min)
    assert load_preset(TASKS[name].build(), high).policy.momentum == (0.99, space.momentum_min)


def test_tunekit_runs_every_applicable_phase_but_final() -> None:
    phases = tunekit_phases(load_preset(TASKS["mnist1d-cnn"].build()))
    assert phases[0] == "range_test"
    assert {"momentum", "weight_decay"} <= set(phases)
    assert "final" not in phases
    assert "dropout" not in phases  # no search.dropout section


# ----------------------------------------------------------------------------- the runners' pure helpers


def test_final_preset_trains_the_budget_and_tests_at_the_end() -> None:
    base = with_overrides(TASKS["digits-cnn"].build(), {"train.test_at_end": False, "train.stop_at_epoch": 3})
    out = final_preset(base, "optuna_asha", 17)
    assert out["name"] == "optuna_asha"
    assert out["train"]["epochs"] == 17
    assert out["train"]["test_at_end"] is True
    assert out["train"]["checkpoint_every"] == 17
    assert "stop_at_epoch" not in out["train"]
    assert base["train"]["stop_at_epoch"] == 3  # the choice itself is left alone
    load_preset(out)


def test_peers_choose_on_validation_among_trials_that_ran_every_epoch() -> None:
    def trial(lr: float, epoch: int, val_loss: float, test_loss: float = 0.0) -> SimpleNamespace:
        return SimpleNamespace(
            config={"lr": lr}, metrics={"epoch": epoch, "val_loss": val_loss, "test_loss": test_loss}, error=None
        )

    results = [
        trial(0.1, 10, 0.30, test_loss=0.9),
        trial(0.2, 10, 0.25, test_loss=1.0),  # best on validation, worst on test: still chosen
        trial(0.3, 4, 0.10),  # stopped by ASHA
        trial(0.4, 10, math.nan),  # diverged at the end
    ]
    assert best_config("optuna_asha", results, 10)["lr"] == 0.2
    with pytest.raises(RuntimeError, match="no trial reached epoch 10"):
        best_config("random_asha", results[2:3], 10)


def test_the_figure_has_one_subplot_per_task(tmp_path: Path) -> None:
    tasks = [
        task("a", tunekit=contender(0.98, trial_epochs=40), optuna_asha=contender(0.97, trial_epochs=200)),
        task("b", metric="r2", tunekit=contender(0.4, trial_epochs=0.0), fastai=contender(0.3, trial_epochs=1)),
    ]
    plot(tasks, tmp_path / "suite.png")
    assert (tmp_path / "suite.png").stat().st_size > 1000


def test_the_outputs_hold_the_table_the_floors_and_the_quick_caveat(tmp_path: Path) -> None:
    first = task("a", tunekit=contender(0.98, trial_epochs=40), optuna_asha=contender(0.97, trial_epochs=200))
    record = {
        "settings": {"peer_trials": 12, "seeds": [0, 1, 2], "quick": True, "reduction_factor": 3, "concurrency": 2},
        "total_wall_s": 600.0,
        "tasks": [{**first, "why": "because", "wall_s": 300.0}],
    }
    text = report(record)
    assert "total 10.0 min" in text
    assert "wall per task: a 5.0 min" in text
    assert "floors are judged on the full run" in text
    assert "a: floor: test acc ≥ best peer's − 1 SE: met" in text
    write_outputs(record, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "suite.json").read_text()) == record
    md = (tmp_path / "out" / "suite.md").read_text()
    assert "* `a` (30 final epochs): because" in md
    assert "| a | tunekit | acc 98.00 % ± 1.00 |" in md
    assert (tmp_path / "out" / "suite.png").is_file()


# ----------------------------------------------------------------------------- the search seed


def test_the_search_seed_reaches_every_contenders_search() -> None:
    from ray import tune

    built = TASKS["digits-cnn"].build(False)
    assert searched_with_seed(built, 0) is built  # the default run searches exactly as before
    seeded = searched_with_seed(built, 2)
    assert load_preset(seeded).train.seed == 2  # tunekit's and fastai's search trials, the peers' trials
    assert with_overrides(seeded, {"train.seed": 0}) == with_overrides(built, {})  # nothing else moved
    space = tune_space(peer_space(load_preset(built)))
    tune.register_trainable("seeded_peer", lambda config: None)

    def first_lr(kind: str, seed: int) -> float:
        searcher = search_algorithm(kind, replace(FULL, search_seed=seed))
        if kind == "optuna_asha":
            searcher.set_search_properties("val_loss", "min", space)
            return float(searcher.suggest("t0")["lr"])
        searcher.add_configurations({"peers": {"run": "seeded_peer", "config": space, "num_samples": 2}})
        return float(searcher.next_trial().config["lr"])

    for kind in ("optuna_asha", "random_asha"):
        assert first_lr(kind, 1) == first_lr(kind, 1), kind  # seeded: the same draw again
        assert first_lr(kind, 1) != first_lr(kind, 0), kind  # and the seed is what moves it


def test_a_negative_search_seed_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--search-seed", "-1"])
    assert raised.value.code == 2
    assert "--search-seed: -1 is negative; give a seed ≥ 0" in capsys.readouterr().err

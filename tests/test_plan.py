"""A search section that fits any dataset size: the plan, --dry-run, and what an unreadable range test says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tunekit.cli import app
from tunekit.presets import load_preset, preset_to_dict
from tunekit.recipe import SearchError, TrialRecord, plan_phases, plan_search
from tunekit.recipe.phases import RangeTest

EMBEDDED = load_preset("mnist1d")


def on_digits(**train: Any) -> dict[str, Any]:
    """The embedded preset's search section, unchanged, on scikit-learn's digits with an MLP."""
    return {
        "name": "digits-mlp",
        "dataset": {"name": "digits"},
        "model": {"name": "mlp"},
        "train": {"epochs": 15, "batch_size": 64, "seed": 0, **train},
        "policy": {"name": "one_cycle", "max_lr": 0.5},
        "weight_decay": 1e-4,
        "search": preset_to_dict(EMBEDDED)["search"],
    }


def test_the_embedded_section_is_left_as_it_is_on_the_data_it_was_written_for() -> None:
    plan = plan_search(EMBEDDED, plan_phases(EMBEDDED, None), train_samples=12_800)
    # make demo runs exactly the trials it ran before sizing existed
    assert preset_to_dict(plan.preset) == preset_to_dict(EMBEDDED)
    assert (plan.sizes["range_test"].steps, plan.sizes["range_test"].points) == (300, 30)
    assert all(not size.note for size in plan.sizes.values())


@pytest.mark.parametrize(
    ("phases", "sweep", "weight_decays"),
    [
        # the default: the grid, whatever follows
        (["range_test", "weight_decay", "learning_rate", "momentum", "final"], "grid", [1e-3, 1e-4, 1e-5, 0.0]),
        # auto: the weight_decay phase searches weight decay, so one range test, at the preset's
        (["range_test", "weight_decay", "learning_rate", "momentum", "final"], "auto", [1e-4]),
        # nothing searches it later: the range tests rank the grid (Fig. 10) and the best one trains
        (["range_test", "learning_rate", "momentum", "final"], "auto", [1e-3, 1e-4, 1e-5, 0.0]),
        (["range_test", "final"], "preset", [1e-4]),
    ],
)
def test_the_range_tests_run_at_the_weight_decays_their_sweep_names(
    phases: list[str], sweep: str, weight_decays: list[float], tmp_path: Path
) -> None:
    from tunekit.recipe import PhaseContext

    preset = load_preset("mnist1d", {"search.range_test.sweep": sweep})
    plan = plan_search(preset, phases, train_samples=12_800)
    assert plan.sizes["range_test"].trials == str(len(weight_decays))
    searcher = RangeTest().plan(plan.preset, PhaseContext(str(tmp_path))).searcher
    assert [c["weight_decay"] for c in searcher.candidates.values()] == weight_decays


def test_the_same_section_on_digits_gets_enough_steps_and_evaluations() -> None:
    preset = load_preset(on_digits())
    plan = plan_search(preset, plan_phases(preset, None))
    # 1 437 training images (80 % of 1 797), less the 10 % validation carve (144): 1 293 train
    assert plan.train_samples == 1293
    rt = plan.sizes["range_test"]
    # 3 epochs would be 60 steps and 6 evaluations: raised towards 200 steps, but no search run is more
    # than a fifth of the 30-epoch final training (600 steps): 120 steps, ≥ 30 evaluations
    assert rt.steps == 120
    assert rt.points >= 30
    assert plan.preset.search.range_test.eval_every * rt.points <= rt.steps
    # the short runs: ⌈200 / 20⌉ = 10 epochs by min_steps, cut to ⌊120 / 20⌋ = 6
    assert plan.preset.search.momentum.epochs == plan.preset.search.weight_decay.epochs == 6
    assert "raised to 6 for min_steps 200, within max_fraction 0.2" in plan.table()
    # the ceiling off: the step floors alone
    alone = plan_search(
        load_preset(on_digits(), {"search.range_test.max_fraction": None, "search.momentum.max_fraction": None}),
        ["range_test", "momentum"],
    )
    assert alone.sizes["range_test"].steps == 200
    assert alone.preset.search.momentum.epochs == 10


def adamw_on_digits(**range_test: Any) -> dict[str, Any]:
    """The benchmark suite's AdamW digits MLP: range tests from 1e-4 to 0.3 at an AdamW weight-decay grid."""
    return {
        "name": "digits-mlp-adamw",
        "dataset": {"name": "digits"},
        "model": {"name": "mlp"},
        "optimizer": {"name": "adamw"},
        "train": {"epochs": 30, "batch_size": 64, "seed": 0},
        "policy": {"name": "one_cycle", "max_lr": 3e-3, "div": 10},
        "weight_decay": 1e-3,
        "search": {
            "range_test": {"min_lr": 1e-4, "max_lr": 0.3, "epochs": 10, "weight_decays": [1e-2, 1e-3, 1e-4, 0], **range_test}
        },
    }


def test_an_adamw_plan_leaves_out_the_weight_decays_its_range_tests_cannot_see(tmp_path: Path) -> None:
    from tunekit.recipe import PhaseContext

    preset = load_preset(adamw_on_digits())
    plan = plan_search(preset, ["range_test", "weight_decay"], train_samples=1293)
    # 120 steps from 1e-4 to 0.3: the LRs sum to 18; decoupled weight decay 1e-4 removes 0.18 % of the weights
    assert plan.sizes["range_test"].steps == 120
    assert plan.sizes["range_test"].trials == "3"
    assert plan.sizes["range_test"].trial_epochs == 3 * 6
    assert "weight decay 0.0001 (0.18%) not run" in plan.table()
    assert list(plan.preset.search.range_test.weight_decays) == [1e-2, 1e-3, 1e-4, 0]  # the section is left as written
    searcher = RangeTest().plan(plan.preset, PhaseContext(str(tmp_path), train_samples=plan.train_samples)).searcher
    assert [c["weight_decay"] for c in searcher.candidates.values()] == [1e-2, 1e-3, 0]
    # SGD's L2 term is not a fixed share of the weights: its grid runs whole; and the setting turns it off
    for overrides in ({"optimizer.name": "sgd"}, {"search.range_test.min_shrink": 0}):
        whole = plan_search(load_preset(adamw_on_digits(), overrides), ["range_test", "weight_decay"], train_samples=1293)
        assert whole.sizes["range_test"].trials == "4"
        assert "not run" not in whole.table()
    # a longer test sees more: at 3 000 steps 1e-4 removes 4 % of the weights
    longer = plan_search(load_preset(adamw_on_digits(steps=3000)), ["range_test", "weight_decay"], train_samples=1293)
    assert longer.sizes["range_test"].trials == "4"


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_an_adamw_search_runs_the_range_tests_it_planned_and_says_which_it_left_out(tmp_path: Path) -> None:
    from tunekit.recipe import phase_records, search

    result = search(adamw_on_digits(), name="a", storage=str(tmp_path), phases=["range_test"], track=False, progress=False)
    ran = sorted(float(r.config["weight_decay"]) for r in phase_records(str(tmp_path / "a"), "range_test"))
    assert ran == [0.0, 1e-3, 1e-2]
    decided = result.phases["range_test"]
    assert sorted(decided.evidence) == ["0", "0.001", "0.01"]
    assert "weight decay 0.0001 (0.18%) not run" in decided.reason
    assert 0.01 < decided.values["max_lr"] < 0.3


def test_sizing_twice_changes_nothing() -> None:
    preset = load_preset(on_digits())
    once = plan_search(preset, ["range_test", "momentum", "weight_decay", "final"], train_samples=1293)
    twice = plan_search(once.preset, ["range_test", "momentum", "weight_decay", "final"], train_samples=1293)
    # a resumed search re-reads the sized preset: it must size to itself
    assert preset_to_dict(twice.preset) == preset_to_dict(once.preset)


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(on_digits()))
    result = CliRunner().invoke(app, ["search", str(path), "--dry-run", "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    for phase in ("range_test", "momentum", "weight_decay", "final"):
        assert phase in result.output
    assert "steps/trial" in result.output
    assert "evaluations/trial" in result.output
    # nothing ran, nothing was written
    assert not (tmp_path / "runs").exists()
    as_json = json.loads(CliRunner().invoke(app, ["search", str(path), "--dry-run", "--json"]).stdout)
    assert as_json["phases"]["range_test"]["steps"] == 120


def test_a_sized_phase_that_no_longer_fits_is_one_line_before_anything_runs(tmp_path: Path) -> None:
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(on_digits(epochs=5)))
    result = CliRunner().invoke(app, ["search", str(path), "--dry-run"])
    # 6-epoch continuations do not fit a 5-epoch schedule: say which fields to change
    assert result.exit_code == 2
    assert "search.weight_decay" in result.output
    assert "train.epochs" in result.output
    assert "Traceback" not in result.output


def flat_range_test(steps: int, every: int, wd: float) -> TrialRecord:
    """A range test that learned nothing: its loss stays at chance level."""
    rows = [
        {"training_iteration": i, "step": i * every, "lr": 0.01 + i * 0.1, "val_loss": 2.31, "chance_loss": 2.302585}
        for i in range(1, steps // every + 1)
    ]
    return TrialRecord("range_test", f"t{wd}", {"weight_decay": wd}, rows, None, "", None)


@pytest.mark.parametrize(
    ("steps", "every", "cause", "advice"),
    [
        (66, 11, "evaluation points", "search.range_test.eval_every="),
        (66, 3, "optimizer steps", "search.range_test.steps=200"),
    ],
)
def test_an_unreadable_range_test_names_its_cause_and_the_field_to_change(
    steps: int, every: int, cause: str, advice: str
) -> None:
    from tunekit.recipe import PhaseContext

    preset = load_preset(on_digits())
    records = [flat_range_test(steps, every, wd) for wd in (1e-3, 1e-4)]
    with pytest.raises(SearchError) as error:
        RangeTest().decide(preset, records, PhaseContext("/tmp", RangeTest().judge(preset)))
    message = str(error.value)
    assert cause in message
    assert advice in message


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_the_embedded_search_section_unchanged_runs_to_a_decision_on_digits(tmp_path: Path) -> None:
    """Every searching phase's section as written for MNIST-1D; only the final replicates are fewer
    (one, not three: they are not sized, and their number is not what this test is about)."""
    preset = on_digits()
    preset["search"]["final"] = {**preset["search"]["final"], "replicates": 1}
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(preset))
    result = CliRunner().invoke(
        app, ["search", str(path), "--storage", str(tmp_path / "runs"), "--name", "d", "--no-tracking", "--json"]
    )
    assert result.exit_code == 0, result.output[-3000:]
    summary = json.loads(result.stdout)
    # every phase decided, where 3-epoch phases could not read a range test at all
    assert list(summary["phases"]) == ["range_test", "weight_decay", "learning_rate", "momentum", "final"]
    assert 0.01 < summary["phases"]["range_test"]["values"]["max_lr"] < 3.0
    assert summary["accuracy_mean"] > 0.9
    # the range tests were sized to 120 steps evaluated every 4 (30 points) and ran them, or ended where
    # their curve diverged
    from tunekit.recipe import phase_records

    for record in phase_records(str(tmp_path / "runs" / "d"), "range_test"):
        assert record.rows[0]["step"] == 4
        assert record.last["epochs_total"] == 6  # 120 steps: 200 by min_steps, within a fifth of the 600-step final training
        if not record.last["diverged"]:
            assert len(record.rows) >= 30
            assert record.last["step"] == 120

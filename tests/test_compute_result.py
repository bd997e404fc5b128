"""A search's compute as part of its result: trial-epochs and wall time of the search and of the
final replicates, and the search in final trainings — the arithmetic on hand-made phases, its
formatting, ``--json``, the Markdown report, and ``search.json`` files written before it was kept."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import tiny_preset_dict
from tunekit.cli import app
from tunekit.presets import load_preset
from tunekit.recipe import read_state
from tunekit.recipe.results import (
    Compute,
    PhaseResult,
    SearchResult,
    compute_of,
    duration,
    final_epochs_of,
    wall_of_trial,
)

V1 = Path(__file__).parent / "data" / "search_v1"


def phase(name: str, trials: int, trial_epochs: float, wall_s: float, walls: list[float] | None = None) -> PhaseResult:
    return PhaseResult(
        name, {}, {}, f"{name} decided", trials=trials, trial_epochs=trial_epochs, wall_s=wall_s, trial_wall_s=walls or []
    )


def searched(final_walls: tuple[float, ...] | None = (24.0, 30.0, 26.0)) -> dict[str, PhaseResult]:
    """Three search phases (48 trial-epochs in 65 s) and 3 final replicates of 30 epochs."""
    return {
        "range_test": phase("range_test", 4, 12.0, 20.0),
        "momentum": phase("momentum", 4, 12.0, 25.0),
        "weight_decay": phase("weight_decay", 7, 24.0, 20.0),
        "final": phase("final", 3, 90.0, 75.0, list(final_walls) if final_walls else None),
    }


# ---------------------------------------------------------------- the arithmetic


def test_compute_splits_the_search_from_the_final_replicates() -> None:
    compute = compute_of(searched(), final_epochs=30)
    assert (compute.search_trials, compute.search_trial_epochs, compute.search_wall_s) == (15, 48.0, 65.0)
    assert (compute.final_replicates, compute.final_trial_epochs, compute.final_wall_s) == (3, 90.0, 75.0)
    assert compute.final_epochs == 30.0
    assert compute.final_replicate_wall_s == 26.0  # the median replicate, not the phase's wall time
    assert compute.search_cost_in_final_trainings == pytest.approx(48 / 30)
    assert compute.search_wall_in_final_trainings == pytest.approx(65 / 26)


def test_the_median_replicate_ignores_unknown_wall_times() -> None:
    compute = compute_of(searched((10.0, math.nan, 20.0, 0.0)), final_epochs=30)
    assert compute.final_replicate_wall_s == 15.0


def test_without_a_final_phase_the_wall_ratio_is_unknown() -> None:
    phases = searched()
    del phases["final"]
    compute = compute_of(phases, final_epochs=20)
    assert (compute.final_replicates, compute.final_trial_epochs, compute.final_wall_s) == (0, 0.0, None)
    assert compute.search_cost_in_final_trainings == pytest.approx(48 / 20)  # one final training: its epochs still
    assert compute.search_wall_in_final_trainings is None
    assert compute.metrics() == {
        "search_trials": 15.0,
        "search_trial_epochs": 48.0,
        "search_wall_s": 65.0,
        "final_replicates": 0.0,
        "final_trial_epochs": 0.0,
        "final_epochs": 20.0,
        "search_cost_in_final_trainings": pytest.approx(2.4),
    }


def test_a_final_phase_recorded_without_replicate_wall_times_leaves_the_wall_ratio_unknown() -> None:
    compute = compute_of(searched(final_walls=None), final_epochs=30)
    assert compute.final_replicate_wall_s is None
    assert compute.search_wall_in_final_trainings is None
    assert compute.search_cost_in_final_trainings == pytest.approx(1.6)
    assert "wall time not recorded" in compute.summary()


def test_one_final_training_is_the_final_sections_epochs_else_the_training_epochs() -> None:
    with_final = load_preset(tiny_preset_dict(search={**tiny_preset_dict()["search"], "final": {"epochs": 7}}))
    assert final_epochs_of(with_final) == 7.0
    assert final_epochs_of(load_preset(tiny_preset_dict())) == 3.0  # train.epochs


def test_a_trials_wall_time_is_rays_total_else_its_training_time() -> None:
    assert wall_of_trial([{"time_total_s": 2.0, "train_time_s": 1.0}, {"time_total_s": 5.5, "train_time_s": 4.0}]) == 5.5
    assert wall_of_trial([{"train_time_s": 1.0}, {"train_time_s": 3.0}]) == 3.0
    assert wall_of_trial([{"time_total_s": math.nan, "train_time_s": 2.0}]) == 2.0
    assert math.isnan(wall_of_trial([]))


# ---------------------------------------------------------------- the words


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(4.26, "4.3 s"), (48.4, "48 s"), (65, "1 min 5 s"), (59.6, "1 min 0 s"), (7384, "2 h 3 min"), (None, "unknown")],
)
def test_durations_read_as_a_person_says_them(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_the_summary_line_gives_both_costs_in_final_trainings() -> None:
    assert compute_of(searched(), final_epochs=30).summary() == (
        "search 48 trial-epochs (1.6 final trainings), 1 min 5 s (2.5 final trainings of wall time); "
        "final 3 × 30 epochs (90 trial-epochs), 1 min 15 s (median replicate 26 s)"
    )
    no_final = searched()
    del no_final["final"]
    assert compute_of(no_final, final_epochs=30).summary() == (
        "search 48 trial-epochs (1.6 final trainings), 1 min 5 s; no final replicates (one final training: 30 epochs)"
    )
    only_final = {"final": searched()["final"]}
    assert compute_of(only_final, 30).summary().startswith("no search phase; final 3 × 30 epochs")
    assert "(1 final training)" in compute_of({"x": phase("x", 1, 30.0, 1.0)}, 30).summary()


def result(phases: dict[str, PhaseResult]) -> SearchResult:
    preset = load_preset(tiny_preset_dict(search={**tiny_preset_dict()["search"], "final": {"epochs": 30, "replicates": 3}}))
    return SearchResult("s", "/tmp/s", preset, phases, 0.9882, 0.0014, [0.987, 0.9882, 0.9894], metric="test_acc")


def test_the_result_its_table_and_its_json_carry_the_compute() -> None:
    found = result(searched())
    assert found.trial_epochs == 138.0  # every phase, the final replicates included, as before
    assert found.compute == compute_of(searched(), 30)
    data = found.to_dict()
    assert data["trial_epochs"] == 138.0
    assert (data["search_trial_epochs"], data["search_wall_s"], data["final_trial_epochs"]) == (48.0, 65.0, 90.0)
    assert data["final_replicate_wall_s"] == 26.0
    assert data["search_cost_in_final_trainings"] == pytest.approx(1.6)
    assert data["search_wall_in_final_trainings"] == pytest.approx(2.5)
    assert data["phases"]["final"]["trial_wall_s"] == [24.0, 30.0, 26.0]
    json.dumps(data)  # plain data
    lines = found.table().splitlines()
    assert lines[-2].startswith("final test accuracy 98.82 % ± 0.14 on the test split (3 replicates")
    assert lines[-1] == f"compute: {found.compute.summary()}"


# ---------------------------------------------------------------- the Markdown report


def test_the_markdown_report_has_a_compute_section() -> None:
    from tunekit.report_page import ReportPage, render_html, render_markdown

    compute = compute_of(searched(), 30)
    page = ReportPage(
        "s", "tiny", ["final"], metrics={"test_acc": 0.98}, compute=compute.metrics(), compute_summary=compute.summary()
    )
    text = render_markdown(page)
    section = text[text.index("## Compute") :]
    assert "Search 48 trial-epochs (1.6 final trainings), 1 min 5 s (2.5 final trainings of wall time)" in section
    assert "- search_cost_in_final_trainings: 1.6" in section
    assert "- search_wall_in_final_trainings: 2.5" in section
    assert "2.5 final trainings of wall time" in render_html(page)
    bare = ReportPage("s", "tiny", ["final"], metrics={"test_acc": 0.98})
    assert "## Compute" not in render_markdown(bare)
    assert "Compute" not in render_html(bare)


# ---------------------------------------------------------------- search.json, old and new


def copy_reference(tmp_path: Path) -> Path:
    folder = tmp_path / "reference"
    shutil.copytree(V1 / "reference", folder)
    return folder


def resume_json(folder: Path) -> dict[str, Any]:
    out = CliRunner().invoke(app, ["resume", str(folder), "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_a_search_written_before_the_compute_was_kept_reports_what_it_can(tmp_path: Path) -> None:
    """tunekit 0.1.0's search.json: trial-epochs and phase wall times, no replicate wall time."""
    data = resume_json(copy_reference(tmp_path))
    assert data["trial_epochs"] == 24.0  # unchanged
    assert (data["search_trial_epochs"], data["final_trial_epochs"], data["final_replicates"]) == (18.0, 6.0, 2)
    assert data["search_wall_s"] == pytest.approx(17.927737729 + 14.289590672000031 + 29.882653776999973)
    assert data["search_cost_in_final_trainings"] == pytest.approx(18 / 3)  # search.final.epochs 3
    assert data["final_replicate_wall_s"] is None  # unknown: shown as null
    assert data["search_wall_in_final_trainings"] is None


def test_a_search_with_replicate_wall_times_gives_the_wall_ratio(tmp_path: Path) -> None:
    folder = copy_reference(tmp_path)
    state = read_state(str(folder))
    state.done["final"].trial_wall_s = [8.0, 12.0]
    state.save()
    assert json.loads((folder / "search.json").read_text())["done"]["final"]["trial_wall_s"] == [8.0, 12.0]
    data = resume_json(folder)
    assert data["final_replicate_wall_s"] == 10.0
    assert data["search_wall_in_final_trainings"] == pytest.approx(data["search_wall_s"] / 10.0)
    shown = CliRunner().invoke(app, ["resume", str(folder)])
    assert shown.exit_code == 0, shown.output
    assert "compute: search 18 trial-epochs (6 final trainings), 1 min 2 s (6.2 final trainings of wall time)" in shown.output


def test_report_ends_with_the_compute(tmp_path: Path) -> None:
    from tunekit.recipe.report import report_compute

    folder = copy_reference(tmp_path)
    compute = report_compute(str(folder))
    assert isinstance(compute, Compute)
    assert (compute.search_trial_epochs, compute.final_epochs) == (18.0, 3.0)
    out = CliRunner().invoke(app, ["report", str(folder)])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[-1] == f"compute: {compute.summary()}"

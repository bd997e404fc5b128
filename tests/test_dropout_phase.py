"""Dropout, a keyword of the user's own model factory, searched like weight decay (Sec. 4.4) — on a linear scale.

The model factory lives in this module (the workers import it by its import string, as they would a
user's package); the data is scikit-learn's digits, bundled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from torch import nn

from tests.conftest import TINY_RANGE_TEST, TINY_SHORT_RUNS
from tunekit.presets import load_preset
from tunekit.recipe import SearchError, plan_phases


def mlp(hidden: int = 64, dropout: float = 0.0) -> nn.Module:
    """A user's model factory: the dropout rate is one of its keywords."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10))


def preset_dict(**search: Any) -> dict[str, Any]:
    return {
        "name": "digits-dropout",
        "dataset": {"name": "digits"},
        "model": {"factory": "tests.test_dropout_phase:mlp", "kwargs": {"hidden": 64}},
        "train": {"epochs": 3, "batch_size": 64},
        "policy": {"name": "one_cycle", "max_lr": 0.3},
        "search": {"range_test": {"min_lr": 0.01, "max_lr": 3.0, "epochs": 1, **TINY_RANGE_TEST}, **search},
    }


def test_the_phase_runs_only_when_the_preset_asks_for_it() -> None:
    assert "dropout" not in plan_phases(load_preset(preset_dict()), None)
    with_section = load_preset(preset_dict(dropout={"candidates": [0.0, 0.5]}))
    assert plan_phases(with_section, None) == ["range_test", "weight_decay", "learning_rate", "momentum", "dropout", "final"]


def test_a_bundled_model_has_no_dropout_keyword_to_search() -> None:
    bundled = {**preset_dict(dropout={"candidates": [0.0, 0.5]}), "model": {"name": "mlp"}}
    with pytest.raises(SearchError, match=r"search.dropout.path: model.kwargs.dropout .* bundled"):
        plan_phases(load_preset(bundled), ["dropout"])


def test_too_few_candidates_is_one_clear_line() -> None:
    from tunekit.presets import PresetError

    with pytest.raises(PresetError, match=r"search\.dropout: candidates: give at least two values"):
        load_preset(preset_dict(dropout={"candidates": [0.3]}))


@pytest.mark.slow
def test_dropout_is_bisected_on_a_linear_scale_and_reaches_the_final_training(tmp_path: Path) -> None:
    from tests.test_recipe import cli

    section = {"candidates": [0.0, 0.4, 0.8], "max_trials": 5, "resolution": 0.1, "epochs": 2, **TINY_SHORT_RUNS}
    preset = tmp_path / "preset.yaml"
    preset.write_text(yaml.safe_dump(preset_dict(dropout=section, final={"epochs": 3, "replicates": 1})))
    result = cli(
        "search", str(preset), "--phases", "dropout,final", "--storage", str(tmp_path / "runs"),
        "--name", "drop", "--json", "--no-tracking",
    )  # fmt: skip
    summary = json.loads(result.stdout)
    decision = summary["phases"]["dropout"]
    values = sorted(float(v) for v in decision["evidence"])
    # the grid, then at least one value bisected between the best two (a midpoint: linear, not geometric)
    assert {0.0, 0.4, 0.8} <= set(values)
    new = [v for v in values if v not in (0.0, 0.4, 0.8)]
    assert new, "the bisection proposed nothing between the grid's values"
    assert all(round(v * 10, 6) == round(v * 10) or round(v * 20, 6) == round(v * 20) for v in new)  # midpoints 0.2, 0.6, …
    chosen = decision["values"]["dropout"]
    assert decision["values"]["path"] == "model.kwargs.dropout"
    assert chosen in values
    assert decision["overrides"] == {"model.kwargs.dropout": chosen}
    # the final training's model is built with the chosen rate
    assert summary["preset"]["model"]["kwargs"] == {"hidden": 64, "dropout": chosen}
    assert summary["metric_name"] == "acc"
    assert summary["metric_mean"] > 0.5

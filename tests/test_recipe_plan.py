"""Which phases a search runs, decided before anything starts (no Ray, no training)."""

from __future__ import annotations

import pytest

from tunekit.presets import bundled_presets, load_preset
from tunekit.recipe import PHASES, SearchError, plan_phases


@pytest.mark.parametrize("name", sorted(bundled_presets()))
def test_every_bundled_preset_can_be_searched(name: str) -> None:
    preset = load_preset(name)
    assert preset.search is not None
    phases = plan_phases(preset, None)
    assert phases[0] == "range_test"
    assert phases[-1] == "final"
    assert ("batch_size" in phases) == (preset.search.batch_size is not None)


def test_phases_keep_the_recipe_order_whatever_order_they_are_asked_in() -> None:
    assert plan_phases(load_preset("mnist1d"), ["final", "range_test", "momentum"]) == ["range_test", "momentum", "final"]
    assert PHASES == ("range_test", "weight_decay", "learning_rate", "momentum", "dropout", "batch_size", "final")
    # dropout runs only when the preset has a search.dropout section (no bundled one has)
    assert "dropout" not in plan_phases(load_preset("mnist1d"), None)


def test_the_papers_range_test_rule_leaves_out_the_learning_rate_phase() -> None:
    assert "learning_rate" in plan_phases(load_preset("mnist1d"), None)
    paper = load_preset("mnist1d", {"search.range_test.rule": "paper"})
    assert "learning_rate" not in plan_phases(paper, None)
    with pytest.raises(SearchError, match=r"search.range_test.rule is 'paper'.*drop learning_rate"):
        plan_phases(paper, ["range_test", "learning_rate"])


def test_without_a_range_test_the_preset_must_bring_its_own_1cycle() -> None:
    constant = load_preset("mnist1d", {"policy": {"name": "constant", "lr": 0.1}})
    with pytest.raises(SearchError, match="one_cycle"):
        plan_phases(constant, ["momentum", "final"])
    assert plan_phases(constant, ["range_test", "final"]) == ["range_test", "final"]


def test_a_preset_without_a_search_section_is_refused() -> None:
    raw = load_preset("mnist1d").model_copy(update={"search": None})
    with pytest.raises(SearchError, match="no search section"):
        plan_phases(raw, None)


def test_snapshot_continuations_need_room_in_the_schedule() -> None:
    short = load_preset(
        "mnist1d", {"train.epochs": 3, "search.weight_decay.strategy": "snapshot", "search.weight_decay.epochs": 3}
    )
    with pytest.raises(SearchError, match="longer schedule"):
        plan_phases(short, None)
    assert "weight_decay" not in plan_phases(short, ["range_test", "final"])

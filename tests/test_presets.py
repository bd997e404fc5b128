"""Presets validate strictly; overrides work; the paper's recipes carry the paper's numbers."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import tiny_preset_dict
from tunekit.presets import (
    OneCyclePolicy,
    PresetError,
    apply_overrides,
    bundled_presets,
    load_preset,
    parse_overrides,
    preset_to_dict,
    preset_to_yaml,
    range_test_preset,
)

PAPER_PRESETS = [
    "mnist_lenet",
    "cifar10_resnet56",
    "cifar10_wrn32",
    "cifar10_densenet40",
    "cifar100_resnet56",
    "imagenet_resnet50",
]


def test_every_bundled_preset_validates() -> None:
    names = set(bundled_presets())
    # the embedded default and the paper's recipes are all shipped
    assert {"mnist1d", *PAPER_PRESETS} <= names
    for name in names:
        load_preset(name)


@pytest.mark.parametrize(
    ("name", "max_lr", "div", "momentum", "wd", "batch", "epochs"),
    [
        ("cifar10_resnet56", 0.8, 10, (0.95, 0.8), 1e-4, 512, 95),  # Table 1
        ("cifar10_wrn32", 1.0, 10, (0.95, 0.85), 1e-4, 512, 100),  # Table 2
        ("cifar10_densenet40", 4.0, 40, (0.9, 0.85), 1e-6, 512, 100),  # Table 2
        ("cifar100_resnet56", 0.9, 10, (0.95, 0.85), 1e-4, 512, 100),  # Table 2
        ("mnist_lenet", 0.1, 10, (0.95, 0.8), 5e-4, 512, 12),  # Table 2
        ("imagenet_resnet50", 1.0, 20, (0.95, 0.85), 3e-6, 256, 20),  # Sec. 5.5
    ],
)
def test_paper_presets_carry_the_papers_numbers(
    name: str, max_lr: float, div: float, momentum: tuple[float, float], wd: float, batch: int, epochs: int
) -> None:
    preset = load_preset(name)
    policy = preset.policy
    assert isinstance(policy, OneCyclePolicy)
    assert (policy.max_lr, policy.div, policy.momentum) == (max_lr, div, momentum)
    assert (preset.weight_decay, preset.train.batch_size, preset.train.epochs) == (wd, batch, epochs)


def test_imagenet_preset_anneals_to_the_papers_final_lr() -> None:
    policy = load_preset("imagenet_resnet50").policy
    assert isinstance(policy, OneCyclePolicy)
    # 0.05 → 1.0 → 0.00005 (Sec. 5.5)
    assert policy.min_lr == pytest.approx(0.05)
    assert policy.min_lr / policy.annihilation == pytest.approx(0.00005)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"policy": {"name": "one_cycle", "max_lr": -0.1}}, "policy.max_lr"),
        ({"policy": {"name": "clr", "min_lr": 1.0, "max_lr": 0.5, "stepsize": 2}}, "min_lr must be < max_lr"),
        ({"policy": {"name": "one_cycle", "max_lr": 0.1, "momentum": [0.8, 0.95]}}, "policy.momentum"),
        ({"policy": {"name": "warp", "lr": 1}}, "policy"),
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"train": {"epoch": 3}}, "train.epoch: unknown key"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"dataset": {"name": "svhn"}}, "dataset.name"),
        ({"model": {"name": "cnn1d", "init": "orthogonal"}}, "model.init"),
        ({"resources": {"cpu": 0}}, "resources.cpu"),
        ({"colour": "blue"}, "colour: unknown key"),
        ({"search": {"range_test": {"min_lr": 0.1, "max_lr": 1.0, "weight_decays": []}}}, "weight_decays is empty"),
        ({"search": {"range_test": {"min_lr": 1.0, "max_lr": 0.1}}}, "min_lr must be < max_lr"),
        ({"search": {"range_test": {"min_lr": 0.1, "max_lr": 1.0, "sweep": "some"}}}, "search.range_test.sweep"),
        (
            {"search": {"range_test": {"min_lr": 0.1, "max_lr": 1.0}, "learning_rate": {"lowest_factor": 0.5}}},
            "search.learning_rate: lowest_factor",
        ),
        ({"search": {"range_test": {"min_lr": 0.1, "max_lr": 1.0, "max_fraction": 0}}}, "search.range_test.max_fraction"),
        (
            {"search": {"range_test": {"min_lr": 0.1, "max_lr": 1.0}, "momentum": {"max_fraction": 1.5}}},
            "search.momentum.max_fraction",
        ),
        (
            {"search": {"range_test": {"min_lr": 0.1, "max_lr": 1.0}, "momentum": {"prefer": "highest"}}},
            "search.momentum.prefer",
        ),
    ],
)
def test_bad_preset_raises_one_error_naming_the_field(change: dict[str, Any], field: str) -> None:
    raw = tiny_preset_dict(**change)
    with pytest.raises(PresetError, match=field.replace(".", r"\.").replace("[", r"\[")):
        load_preset(raw)


def test_a_null_that_turns_a_default_off_survives_the_round_trip() -> None:
    # max_fraction: null (no ceiling) and max_steps: null (no cap) have non-null defaults: a trial config,
    # search.json or a resumed search must not bring those defaults back
    preset = load_preset(tiny_preset_dict(), {"search.range_test.max_fraction": None, "search.range_test.max_steps": None})
    again = load_preset(preset_to_dict(preset))
    assert again.search is not None
    assert (again.search.range_test.max_fraction, again.search.range_test.max_steps) == (None, None)
    assert preset_to_dict(again) == preset_to_dict(preset)
    # and a preset without such a null is written exactly as before: no None anywhere
    assert "None" not in repr(preset_to_dict(load_preset("mnist1d")))


def test_unknown_key_error_lists_the_allowed_keys() -> None:
    with pytest.raises(PresetError, match=r"allowed here: .*batch_size.*epochs"):
        load_preset(tiny_preset_dict(train={"epoch": 3}))


def test_missing_file_and_unknown_name_say_what_exists() -> None:
    with pytest.raises(PresetError, match="mnist1d"):
        load_preset("no_such_preset")


def test_non_mapping_yaml_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(PresetError, match="YAML mapping"):
        load_preset(path)


def test_overrides_accept_aliases_dotted_paths_and_yaml_values() -> None:
    overrides = parse_overrides(["max_lr=0.8", "train.epochs=7", "policy.momentum=[0.97, 0.85]", "model.init=xavier"])
    preset = load_preset(tiny_preset_dict(), overrides)
    assert isinstance(preset.policy, OneCyclePolicy)
    assert preset.policy.max_lr == 0.8
    assert preset.train.epochs == 7
    assert preset.policy.momentum == (0.97, 0.85)
    assert preset.model.init == "xavier"


def test_a_later_dotted_override_leaves_an_earlier_sections_value_as_given() -> None:
    """search.json keeps each phase's overrides; the range test's {"policy": {...}} is applied before the LR phase's
    "policy.max_lr", which once wrote into the range test's own dict (its record then showed the LR phase's value)."""
    policy = {"name": "one_cycle", "max_lr": 0.938, "div": 10.0, "momentum": [0.95, 0.85]}
    raw = apply_overrides({"policy": {"name": "one_cycle", "max_lr": 0.1}}, {"policy": policy, "policy.max_lr": 0.469})
    assert raw["policy"]["max_lr"] == 0.469
    assert policy["max_lr"] == 0.938


@pytest.mark.parametrize("pair", ["max_lr", "=3", ""])
def test_malformed_override_is_rejected(pair: str) -> None:
    with pytest.raises(PresetError, match="key=value"):
        parse_overrides([pair])


def test_override_into_a_value_is_rejected() -> None:
    with pytest.raises(PresetError, match="weight_decay is a value"):
        apply_overrides(tiny_preset_dict(), {"weight_decay.x": 1})


def test_override_values_are_validated_too() -> None:
    with pytest.raises(PresetError, match=r"policy\.max_lr"):
        load_preset(tiny_preset_dict(), {"max_lr": 0})


def test_yaml_round_trip_gives_the_same_preset(tmp_path: Path) -> None:
    preset = load_preset("cifar10_resnet56")
    path = tmp_path / "again.yaml"
    path.write_text(preset_to_yaml(preset))
    assert load_preset(path) == preset


def test_range_test_preset_uses_the_search_section() -> None:
    preset = load_preset(tiny_preset_dict())
    test = range_test_preset(preset, weight_decay=1e-3)
    assert test.policy.name == "range_test"
    assert (test.policy.min_lr, test.policy.max_lr, test.weight_decay) == (0.01, 3.0, 1e-3)  # type: ignore[union-attr]


def test_range_test_preset_without_search_section_says_how_to_add_one() -> None:
    raw = tiny_preset_dict()
    raw.pop("search")
    with pytest.raises(PresetError, match=r"search\.range_test"):
        range_test_preset(load_preset(raw))


@pytest.mark.slow
def test_presets_ship_in_the_wheel(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("tunekit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    # a plain `pip install tunekit` has every bundled preset, not only a checkout
    for preset in ["mnist1d", *PAPER_PRESETS]:
        assert f"tunekit/search_spaces/{preset}.yaml" in names


def test_a_bundled_dataset_needs_a_validation_split_to_decide_on() -> None:
    with pytest.raises(PresetError, match=r"dataset: validation_fraction: mnist1d has no validation split .* above 0"):
        load_preset("mnist1d", {"dataset.validation_fraction": 0})


def test_components_take_a_bundled_name_or_a_factory_string_and_exactly_one() -> None:
    preset = load_preset("mnist1d", {"model": "pkg.models:build", "loss": "torch.nn:MSELoss"})
    assert (preset.model.factory, preset.model.name, preset.loss.factory) == ("pkg.models:build", None, "torch.nn:MSELoss")
    assert preset.metric_name is None  # a regression loss: no accuracy, decisions read the loss
    with pytest.raises(PresetError, match=r"model: give a bundled name .* or a factory"):
        load_preset("mnist1d", {"model": {"name": "cnn1d", "factory": "pkg.models:build"}})
    with pytest.raises(PresetError, match=r"metric\.mode: required; add mode: max"):
        load_preset("mnist1d", {"metric": {"factory": "pkg.metrics:r2"}})

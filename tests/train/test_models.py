"""Every registered architecture builds, runs forward, and initialises as asked."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tunekit.presets import ModelConfig
from tunekit.train.models import MODELS, build_model

SHAPES = {
    "cnn1d": (1, 40),
    "mlp": (1, 8, 8),
    "shallow3": (3, 32, 32),
    "lenet": (1, 28, 28),
    "resnet20": (3, 32, 32),
    "resnet56": (3, 32, 32),
    "wrn32x4": (3, 32, 32),
    "densenet40": (3, 32, 32),
    "resnet50": (3, 64, 64),
}

# Parameter counts of the published architectures (millions), as a check that depth/width are right.
PARAMS_M = {
    "resnet20": (0.26, 0.30),
    "resnet56": (0.84, 0.90),
    "densenet40": (0.95, 1.1),
    "resnet50": (25.5, 25.6),
    "wrn32x4": (7.3, 7.6),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_builds_and_maps_inputs_to_class_logits(name: str) -> None:
    model = build_model(ModelConfig(name=name), num_classes=7, input_shape=SHAPES[name])  # type: ignore[arg-type]
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, *SHAPES[name]))
    assert out.shape == (2, 7)


@pytest.mark.parametrize(("name", "bounds"), sorted(PARAMS_M.items()))
def test_model_size_matches_the_published_architecture(name: str, bounds: tuple[float, float]) -> None:
    model = build_model(ModelConfig(name=name), num_classes=10 if name != "resnet50" else 1000, input_shape=SHAPES[name])  # type: ignore[arg-type]
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert bounds[0] <= millions <= bounds[1]


def _first_conv(model: nn.Module) -> torch.Tensor:
    return next(m.weight for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d))


def test_msra_and_xavier_give_their_own_weight_scales() -> None:
    torch.manual_seed(0)
    msra = _first_conv(build_model(ModelConfig(name="resnet20", init="msra"), 10, (3, 32, 32)))
    xavier = _first_conv(build_model(ModelConfig(name="resnet20", init="xavier"), 10, (3, 32, 32)))
    fan_in, fan_out = 3 * 9, 16 * 9
    # He: std = sqrt(2 / fan_in); Glorot uniform: std = sqrt(2 / (fan_in + fan_out))
    assert float(msra.detach().std()) == pytest.approx((2 / fan_in) ** 0.5, rel=0.15)
    assert float(xavier.detach().std()) == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.15)


def test_a_bundled_model_without_an_init_is_initialised_msra() -> None:
    # init defaults to None (a user model keeps its own); a bundled model's effective init is msra
    default = ModelConfig(name="resnet20")
    assert default.init is None
    assert default.effective_init == "msra"
    assert ModelConfig(name="resnet20", init="xavier").effective_init == "xavier"
    torch.manual_seed(0)
    implicit = _first_conv(build_model(default, 10, (3, 32, 32)))
    torch.manual_seed(0)
    explicit = _first_conv(build_model(ModelConfig(name="resnet20", init="msra"), 10, (3, 32, 32)))
    assert torch.equal(implicit, explicit)


def test_a_bundled_model_needs_the_classes_of_a_classification_dataset() -> None:
    # a user dataset has no num_classes: a bundled classifier cannot be sized for it
    with pytest.raises(ValueError, match="classifier"):
        build_model(ModelConfig(name="mlp"), None, (1, 8, 8))


def test_width_override_changes_the_model() -> None:
    narrow = build_model(ModelConfig(name="cnn1d", width=8), 10, (1, 40))
    wide = build_model(ModelConfig(name="cnn1d", width=64), 10, (1, 40))
    assert sum(p.numel() for p in wide.parameters()) > 10 * sum(p.numel() for p in narrow.parameters())

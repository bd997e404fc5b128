"""Device decisions: memory layout and autocast precision (pure; no torch)."""

from __future__ import annotations

import pytest

from tunekit.core.devices import autocast_precision, use_channels_last


@pytest.mark.parametrize(
    ("setting", "on_gpu", "shape", "expected"),
    [
        (None, True, (3, 32, 32), True),  # image model on a GPU: NHWC by default
        (None, False, (3, 32, 32), False),  # CPU: the default layout
        (None, True, (1, 40), False),  # 1-D convolutions have no NHWC
        (True, False, (1, 8, 8), True),  # asked for explicitly
        (False, True, (3, 32, 32), False),  # refused explicitly
        (True, True, (64,), False),  # an MLP's input: never
    ],
)
def test_channels_last_for_image_models_on_a_gpu_unless_told(
    setting: bool | None, on_gpu: bool, shape: tuple[int, ...], expected: bool
) -> None:
    assert use_channels_last(setting, on_gpu, shape) is expected


@pytest.mark.parametrize(
    ("mode", "on_gpu", "bf16", "expected"),
    [
        ("auto", True, True, "bf16"),
        ("auto", True, False, "fp16"),  # older GPUs: fp16 with loss scaling
        ("fp16", True, True, "fp16"),
        ("bf16", True, True, "bf16"),
        ("off", True, True, None),
        ("auto", False, False, None),  # never on the CPU
        ("bf16", False, False, None),
    ],
)
def test_autocast_precision(mode: str, on_gpu: bool, bf16: bool, expected: str | None) -> None:
    assert autocast_precision(mode, on_gpu, bf16) == expected

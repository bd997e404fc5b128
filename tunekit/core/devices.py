"""How a run uses its device: memory layout and autocast precision, as pure decisions.

``tunekit.train.loop`` turns these answers into torch objects (``torch.channels_last``,
``torch.bfloat16``); the reasons and the measurements behind them are here and in
``bench/gpu_epoch.py``.
"""

from __future__ import annotations

from typing import Literal

Precision = Literal["bf16", "fp16"]


def use_channels_last(setting: bool | None, on_gpu: bool, input_shape: tuple[int, ...]) -> bool:
    """NHWC for image models on a GPU unless ``train.channels_last`` says otherwise.

    cuDNN's tensor-core convolutions work in NHWC: with NCHW every convolution pays a layout
    transpose (resnet-56 on an H100: 1.7× the samples/s in NHWC). Only 2-D convolutions have the
    layout: inputs of shape ``(C, H, W)``.
    """
    is_image = len(input_shape) == 3
    return is_image and (on_gpu if setting is None else setting)


def autocast_precision(mode: str, on_gpu: bool, bf16_supported: bool) -> Precision | None:
    """``train.amp`` → the autocast precision: bf16 where the GPU has it, else fp16; none on CPU or when off."""
    if not on_gpu or mode == "off":
        return None
    if mode == "fp16" or (mode == "auto" and not bf16_supported):
        return "fp16"
    return "bf16"

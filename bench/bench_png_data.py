"""The "user's" module of bench/trial_start.py: an image Dataset that decodes PNGs, and a small CNN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset


class PNGFolder(Dataset[tuple[torch.Tensor, int]]):
    """``root/<class>/*.png`` → (1×H×W float tensor in [0, 1], class index); decodes on every access."""

    def __init__(self, files: list[tuple[Path, int]]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.files[i]
        pixels = np.asarray(Image.open(path), dtype=np.float32) / 255.0
        return torch.from_numpy(pixels).unsqueeze(0), label


def load(root: str) -> tuple[Any, None, Any]:
    files = sorted((p, int(p.parent.name)) for p in Path(root).glob("*/*.png"))
    split = int(0.8 * len(files))
    return PNGFolder(files[:split]), None, PNGFolder(files[split:])


def model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16 * 16, 10))

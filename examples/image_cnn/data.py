"""The data: a folder of PNG files, one sub-folder per class, read by the user's own ``Dataset``.

    root/train/<class>/*.png
    root/test/<class>/*.png

``load`` is what the preset names (``dataset: {factory: "data:load", kwargs: {root: …}}``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


class PngFolder(Dataset[tuple[torch.Tensor, int]]):
    """Every ``<class>/*.png`` under ``folder`` as a (1, H, W) float tensor scaled to [-1, 1], and its class index.

    Classes are the sub-folder names in sorted order (``classes``); images are converted to grayscale.
    """

    def __init__(self, folder: str | Path, classes: list[str] | None = None) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder; write the images first (python make_images.py ROOT)")
        self.classes = classes or sorted(p.name for p in folder.iterdir() if p.is_dir())
        self.files = [(path, index) for index, name in enumerate(self.classes) for path in sorted((folder / name).glob("*.png"))]
        if not self.files:
            raise FileNotFoundError(f"no PNG files under {folder}/<class>/")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[i]
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        return torch.from_numpy(pixels).unsqueeze(0).sub_(0.5).div_(0.5), label


def load(root: str) -> tuple[PngFolder, None, PngFolder]:
    """(train, None, test) from ``root/train`` and ``root/test``; tunekit carves the validation split from train."""
    train = PngFolder(Path(root).expanduser() / "train")
    test = PngFolder(Path(root).expanduser() / "test", classes=train.classes)
    return train, None, test

"""Write a small PNG image folder from scikit-learn's bundled digits (8x8, 10 classes), so the example needs no download.

    python make_images.py /tmp/digits-png            # every digit: ~1440 train / ~360 test PNGs of 16x16
    python make_images.py /tmp/digits-png --per-class 40 --size 16

The layout is the usual one for image classification, ``root/{train,test}/<class>/<index>.png``,
which ``data.PngFolder`` reads; put your own images in the same layout to use them instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def make_images(
    root: str | Path, n_per_class: int | None = None, size: int = 16, test_fraction: float = 0.2, seed: int = 0
) -> Path:
    """Write up to ``n_per_class`` digits of each class (None: all ~180) as ``size``x``size`` grayscale PNGs.

    Each class is split ``test_fraction`` into ``test/``, the rest into ``train/``, after a seeded shuffle.
    Returns ``root``.
    """
    root = Path(root)
    digits = load_digits()
    rng = np.random.default_rng(seed)
    for label in range(10):
        indices = rng.permutation(np.flatnonzero(digits.target == label))[:n_per_class]
        n_test = max(1, round(len(indices) * test_fraction))
        for split, chosen in (("test", indices[:n_test]), ("train", indices[n_test:])):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                pixels = (digits.images[i] * (255.0 / 16.0)).round().astype(np.uint8)  # 0..16 → 0..255
                image = Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR)
                image.save(folder / f"{i:04d}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder to write root/{train,test}/<class>/*.png into")
    parser.add_argument("--per-class", type=int, default=None, help="images per class (default: all, about 180)")
    parser.add_argument("--size", type=int, default=16, help="side of the written images in pixels (default 16)")
    args = parser.parse_args()
    root = make_images(args.root, args.per_class, args.size)
    counts = {split: len(list((root / split).glob("*/*.png"))) for split in ("train", "test")}
    print(f"wrote {counts['train']} training and {counts['test']} test PNGs under {root}")


if __name__ == "__main__":
    main()

"""Tiny datasets written in the exact on-disk formats torchvision reads (no network)."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def write_mnist(root: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """``<root>/MNIST/raw/*-ubyte`` in the idx format (big-endian magic, dims, then uint8 data)."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        images = rng.integers(0, 40, (n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):  # a class-dependent bright bar, so the data is learnable
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
    return root


def _cifar_batch(rng: np.random.Generator, n: int, classes: int, label_key: str) -> dict[str, object]:
    labels = rng.integers(0, classes, n)
    data = rng.integers(0, 60, (n, 3, 32, 32), dtype=np.uint8)
    for i, label in enumerate(labels):
        data[i, label % 3, (label % 8) * 4 : (label % 8) * 4 + 4, :] = 250
    return {"data": data.reshape(n, 3072), label_key: labels.tolist(), "batch_label": b"fabricated"}


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 40, seed: int = 0) -> Path:
    """``<root>/cifar-10-batches-py/`` with five pickled training batches, a test batch and the meta file."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(_cifar_batch(rng, per_batch, 10, "labels")))
    (folder / "test_batch").write_bytes(pickle.dumps(_cifar_batch(rng, n_test, 10, "labels")))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names, "num_cases_per_batch": per_batch}))
    return root


def write_cifar100(root: Path, n_train: int = 100, n_test: int = 40, seed: int = 0) -> Path:
    """``<root>/cifar-100-python/`` with ``train``, ``test`` and ``meta`` pickles."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train").write_bytes(pickle.dumps(_cifar_batch(rng, n_train, 100, "fine_labels")))
    (folder / "test").write_bytes(pickle.dumps(_cifar_batch(rng, n_test, 100, "fine_labels")))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"class{i}" for i in range(100)], "coarse_label_names": []}))
    return root


def write_image_folder(root: Path, classes: int = 3, per_class: int = 6, size: int = 40, seed: int = 0) -> Path:
    """``<root>/train/<class>/*.png`` and ``<root>/val/<class>/*.png``, as ImageFolder reads ImageNet."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"img_{i}.png")
    return root

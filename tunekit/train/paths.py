"""Where folder-based datasets live, checked without importing torch (fast CLI errors)."""

from __future__ import annotations

import os
from pathlib import Path

from tunekit.presets import DatasetConfig

#: Datasets read from a local folder (the others are generated or bundled).
FOLDER_DATASETS = frozenset({"mnist", "cifar10", "cifar100", "imagenet"})


class DatasetError(ValueError):
    """The data cannot be found or read; the message says where it looked and what to do."""


def require_root(cfg: DatasetConfig) -> Path:
    """The dataset's local folder, or a :class:`DatasetError` naming ``dataset.root``."""
    if cfg.root is None:
        raise DatasetError(
            f"dataset.root: {cfg.name} is read from a local folder; set dataset.root "
            f"(e.g. --set dataset.root=/data/{cfg.name}), or dataset.download=true on a machine with internet"
        )
    root = Path(os.path.expanduser(cfg.root))
    if not root.is_dir() and not cfg.download:
        raise DatasetError(f"dataset.root: {root} is not a folder; point it at the {cfg.name} files")
    return root


def preflight(cfg: DatasetConfig) -> None:
    """Cheap checks that the data can be found, run before any trial starts.

    Raises:
        DatasetError: a folder-based dataset has no ``root``, or the folder is missing.
    """
    if cfg.name in FOLDER_DATASETS:
        require_root(cfg)

"""Datasets by name, delivered as batches on the training device.

Small datasets (MNIST-1D, digits, MNIST, CIFAR) are held whole as tensors on the device and
sliced into batches there: no DataLoader, no per-batch host-to-device copy. Large ones
(ImageNet) stream through a ``DataLoader`` with workers. Both shuffle with a generator seeded
by ``(seed, epoch)``, so an epoch's order does not depend on what ran before it — a resumed
run sees the same batches as an unbroken one.

MNIST, CIFAR-10/100 and ImageNet are read by torchvision from a local ``root``; they are
downloaded only when the preset says ``download: true``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from tunekit.presets import DatasetConfig
from tunekit.train.paths import DatasetError, preflight, require_root

__all__ = ["Data", "DatasetError", "LoaderData", "TensorData", "crop_flip", "load_data", "preflight"]

Batch = tuple[torch.Tensor, torch.Tensor]

_CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
_CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class Data(Protocol):
    """What the training loop needs from a dataset."""

    @property
    def num_classes(self) -> int: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    @property
    def num_train(self) -> int: ...

    @property
    def num_test(self) -> int: ...

    def train_batches(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]: ...

    def test_batches(self, batch_size: int, limit: int | None = None) -> Iterator[Batch]: ...


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator that shuffles and augments epoch ``epoch`` of a run seeded ``seed``."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


# --------------------------------------------------------------------------- in-memory data


@dataclass
class TensorData:
    """A dataset held whole on ``device``; inputs are stored compactly and normalised per batch."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: torch.Tensor | None = None  # per-channel, applied after scaling uint8 to [0, 1]
    std: torch.Tensor | None = None
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])

    def to(self, device: torch.device) -> TensorData:
        return TensorData(
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
            num_classes=self.num_classes,
            mean=None if self.mean is None else self.mean.to(device),
            std=None if self.std is None else self.std.to(device),
            augment=self.augment,
        )

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        return x

    def train_batches(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        gen = epoch_generator(seed, epoch)
        order = torch.randperm(self.num_train, generator=gen).to(self.x_train.device)
        # Drop the last partial batch: batch statistics of a handful of samples are noise.
        usable = (self.num_train // batch_size) * batch_size or self.num_train
        for start in range(0, usable, batch_size):
            idx = order[start : start + batch_size]
            x = self._prepare(self.x_train[idx])
            if self.augment is not None:
                x = self.augment(x, gen)
            yield x, self.y_train[idx]

    def test_batches(self, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
        end = self.num_test if limit is None else min(limit, self.num_test)
        for start in range(0, end, batch_size):
            stop = min(start + batch_size, end)
            yield self._prepare(self.x_test[start:stop]), self.y_test[start:stop]


def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """CIFAR augmentation on a batch: random crop after zero padding by ``pad``, random h-flip.

    Runs on whatever device ``x`` lives on; the random offsets come from the CPU ``gen``.
    """
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)[None, :]  # (n, h)
    cols = dx[:, None] + torch.arange(w, device=x.device)[None, :]  # (n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()


def cache_dir() -> Path:
    """Where generated datasets are cached: ``$TUNEKIT_CACHE`` or ``~/.cache/tunekit``."""
    return Path(os.environ.get("TUNEKIT_CACHE", Path.home() / ".cache" / "tunekit")).expanduser()


def _mnist1d_arrays(num_samples: int) -> dict[str, np.ndarray]:
    # Generating 10 000 samples takes seconds; every trial of a search needs them. Cache on disk.
    path = cache_dir() / f"mnist1d-{num_samples}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return {k: cached[k] for k in ("x", "y", "x_test", "y_test")}
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    state = np.random.get_state()  # make_dataset seeds numpy's global RNG; keep the caller's stream
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    arrays = {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, x=arrays["x"], y=arrays["y"], x_test=arrays["x_test"], y_test=arrays["y_test"])
        os.replace(tmp, path)  # atomic: concurrent trials never read half a file
    except OSError:
        pass  # a read-only home is no reason to fail; we just regenerate next time
    return arrays


def _mnist1d(cfg: DatasetConfig, seed: int) -> TensorData:
    data = _mnist1d_arrays(cfg.num_samples or 5000)
    return TensorData(
        x_train=torch.from_numpy(data["x"]).float().unsqueeze(1),
        y_train=torch.from_numpy(data["y"]).long(),
        x_test=torch.from_numpy(data["x_test"]).float().unsqueeze(1),
        y_test=torch.from_numpy(data["y_test"]).long(),
        num_classes=10,
    )


def _digits(cfg: DatasetConfig, seed: int) -> TensorData:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))  # a fixed split, independent of the run's seed
    x = (x[order] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = y[order]
    split = int(0.8 * len(y))
    return TensorData(
        x_train=torch.from_numpy(x[:split]),
        y_train=torch.from_numpy(y[:split]).long(),
        x_test=torch.from_numpy(x[split:]),
        y_test=torch.from_numpy(y[split:]).long(),
        num_classes=10,
        mean=torch.tensor(0.3),
        std=torch.tensor(0.4),
    )


def _torchvision_error(cfg: DatasetConfig, root: Path, exc: Exception) -> DatasetError:
    return DatasetError(
        f"dataset.root: no readable {cfg.name} under {root} ({exc}); put the torchvision files there "
        f"or set dataset.download=true on a machine with internet"
    )


def _mnist(cfg: DatasetConfig, seed: int) -> TensorData:
    from torchvision.datasets import MNIST

    root = require_root(cfg)
    try:
        train = MNIST(str(root), train=True, download=cfg.download)
        test = MNIST(str(root), train=False, download=cfg.download)
    except RuntimeError as exc:
        raise _torchvision_error(cfg, root, exc) from None
    return TensorData(
        x_train=train.data.unsqueeze(1).contiguous(),  # uint8 (n, 1, 28, 28)
        y_train=train.targets.long(),
        x_test=test.data.unsqueeze(1).contiguous(),
        y_test=test.targets.long(),
        num_classes=10,
        mean=torch.tensor(0.1307),
        std=torch.tensor(0.3081),
    )


def _without_md5(cls: Any) -> Any:
    # torchvision checks the md5 of every CIFAR file; with md5=None it checks that the file exists.
    return type(
        cls.__name__,
        (cls,),
        {
            "train_list": [[name, None] for name, _ in cls.train_list],
            "test_list": [[name, None] for name, _ in cls.test_list],
            "meta": {**cls.meta, "md5": None},
        },
    )


def _cifar(cfg: DatasetConfig, seed: int) -> TensorData:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls: Any = CIFAR10 if cfg.name == "cifar10" else CIFAR100
    if not cfg.verify_checksums:
        cls = _without_md5(cls)
    root = require_root(cfg)
    try:
        train = cls(str(root), train=True, download=cfg.download)
        test = cls(str(root), train=False, download=cfg.download)
    except RuntimeError as exc:
        raise _torchvision_error(cfg, root, exc) from None
    augment = cfg.augment if cfg.augment is not None else True
    return TensorData(
        x_train=torch.from_numpy(train.data).permute(0, 3, 1, 2).contiguous(),  # uint8 (n, 3, 32, 32)
        y_train=torch.tensor(train.targets).long(),
        x_test=torch.from_numpy(test.data).permute(0, 3, 1, 2).contiguous(),
        y_test=torch.tensor(test.targets).long(),
        num_classes=len(train.classes),
        mean=torch.tensor(_CIFAR_MEAN[cfg.name]).view(1, 3, 1, 1),
        std=torch.tensor(_CIFAR_STD[cfg.name]).view(1, 3, 1, 1),
        augment=crop_flip if augment else None,
    )


# --------------------------------------------------------------------------- streamed data


class LoaderData:
    """A folder dataset streamed by a ``DataLoader`` with workers (ImageNet-sized data)."""

    def __init__(
        self, train: Any, test: Any, num_classes: int, input_shape: tuple[int, ...], device: torch.device, num_workers: int
    ) -> None:
        self.train, self.test = train, test
        self.num_classes, self.input_shape = num_classes, input_shape
        self.num_train, self.num_test = len(train), len(test)
        self.device, self.num_workers = device, num_workers

    def _loader(self, dataset: Any, batch_size: int, **kwargs: Any) -> torch.utils.data.DataLoader[Any]:
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            **kwargs,
        )

    def _to_device(self, batches: Any) -> Iterator[Batch]:
        for x, y in batches:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def train_batches(self, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
        gen = epoch_generator(seed, epoch)
        sampler = torch.utils.data.RandomSampler(self.train, generator=gen)
        yield from self._to_device(self._loader(self.train, batch_size, sampler=sampler, drop_last=True))

    def test_batches(self, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
        dataset = self.test if limit is None else torch.utils.data.Subset(self.test, range(min(limit, self.num_test)))
        yield from self._to_device(self._loader(dataset, batch_size, shuffle=False))


def _imagenet(cfg: DatasetConfig, device: torch.device) -> LoaderData:
    from torchvision import datasets, transforms

    root = require_root(cfg)
    size = cfg.image_size
    normalize = transforms.Normalize(_IMAGENET_MEAN, _IMAGENET_STD)
    augment = cfg.augment if cfg.augment is not None else True
    train_tf = (
        [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
        if augment
        else [transforms.Resize(size), transforms.CenterCrop(size)]
    )
    test_tf = [transforms.Resize(int(size * 256 / 224)), transforms.CenterCrop(size)]
    folders = {split: root / split for split in ("train", "val")}
    for folder in folders.values():
        if not folder.is_dir():
            raise DatasetError(
                f"dataset.root: ImageNet needs {folder} (one sub-folder per class, as ImageFolder reads); it is missing"
            )
    train = datasets.ImageFolder(str(folders["train"]), transforms.Compose([*train_tf, transforms.ToTensor(), normalize]))
    test = datasets.ImageFolder(str(folders["val"]), transforms.Compose([*test_tf, transforms.ToTensor(), normalize]))
    if cfg.train_subset:
        train = torch.utils.data.Subset(train, range(min(cfg.train_subset, len(train))))
    if cfg.test_subset:
        test = torch.utils.data.Subset(test, range(min(cfg.test_subset, len(test))))
    num_classes = len(train.classes) if hasattr(train, "classes") else len(train.dataset.classes)
    return LoaderData(train, test, num_classes, (3, size, size), device, cfg.num_workers)


_TENSOR_LOADERS: dict[str, Callable[[DatasetConfig, int], TensorData]] = {
    "mnist1d": _mnist1d,
    "digits": _digits,
    "mnist": _mnist,
    "cifar10": _cifar,
    "cifar100": _cifar,
}


def train_samples(cfg: DatasetConfig, seed: int = 0) -> int:
    """How many training samples ``cfg`` yields (what sizes a search's phases); loads the data once, on the CPU."""
    return load_data(cfg, "cpu", seed).num_train


def load_data(cfg: DatasetConfig, device: torch.device | str = "cpu", seed: int = 0) -> Data:
    """Load the dataset ``cfg`` names, ready to batch on ``device``.

    Raises:
        DatasetError: the files are missing or unreadable (the message names ``dataset.root``).
    """
    device = torch.device(device)
    if cfg.name == "imagenet":
        return _imagenet(cfg, device)
    data = _TENSOR_LOADERS[cfg.name](cfg, seed)
    if cfg.train_subset:
        data.x_train, data.y_train = data.x_train[: cfg.train_subset], data.y_train[: cfg.train_subset]
    if cfg.test_subset:
        data.x_test, data.y_test = data.x_test[: cfg.test_subset], data.y_test[: cfg.test_subset]
    return data.to(device)

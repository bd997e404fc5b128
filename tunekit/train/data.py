"""Datasets — bundled by name or the user's own factory — delivered as batches on the training device.

Every dataset has three splits: train, validation and test. Decisions read validation; the
final numbers are reported on test. A dataset without a validation split gets one carved from
its training data with a fixed seed (``dataset.validation_fraction`` of it, ``dataset.split_seed``),
so every trial of a search sees the same split whatever its own seed.

Small datasets (MNIST-1D, digits, MNIST, CIFAR, a user dataset under 2 GiB) are held whole as
tensors on the device and sliced into batches there: no DataLoader, no per-batch host-to-device
copy. Large ones (ImageNet, big user datasets) stream through a ``DataLoader`` with workers —
at most one fewer than the CPUs the trial was given, kept alive from one epoch or evaluation to
the next. Both shuffle with a generator seeded by ``(seed, epoch)``, and a streamed item's random
augmentation is seeded by the same generator, so an epoch does not depend on what ran before it
(or on the workers) — a resumed run sees the same batches as an unbroken one.

Subsets — ImageNet's ``train_subset`` and ``test_subset``, and the ``limit`` of an evaluation (a
range test's ``eval_samples``) — are seeded samples of every class (:mod:`tunekit.core.subsets`),
the same for every trial of a search: a folder-per-class dataset's first N samples are its first
classes. (The in-memory bundled datasets are stored in no class order; their ``train_subset`` and
``test_subset`` keep their first N samples.)

A data-parallel worker (``shard=(rank, world_size)``) takes its contiguous share of every total
batch: the batches of a one-worker run, each split across the workers, with the same augmentation
(:func:`tunekit.core.data_parallel.shard`); a streamed dataset loads only its share. Evaluations
split the split the same way.

A user dataset held in memory is built once per node, not once per trial: the first trial on a
node calls the factory and writes the stacked tensors to a node-local cache under a file lock;
the others read them (:func:`cached_user_tensors`).

MNIST, CIFAR-10/100 and ImageNet are read by torchvision from a local ``root``; they are
downloaded only when the preset says ``download: true``.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from tunekit.core.data_parallel import shard as share_of
from tunekit.core.splits import carve_indices
from tunekit.core.subsets import stratified_sample
from tunekit.core.workers import loader_workers
from tunekit.presets import DatasetConfig
from tunekit.train.paths import DatasetError, preflight, require_root

__all__ = [
    "Data",
    "DatasetError",
    "LoaderData",
    "TensorData",
    "available_cpus",
    "carve_indices",
    "crop_flip",
    "dataset_labels",
    "load_data",
    "load_splits",
    "preflight",
    "stratified_subset",
]

Batch = tuple[torch.Tensor, torch.Tensor]
#: ``(rank, world_size)`` of a data-parallel worker: it takes its share of every total batch (None: all of it).
Shard = tuple[int, int]
#: The evaluation splits.
Split = Literal["val", "test"]
#: A user dataset at most this large (estimated from its first item) is held whole on the device.
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3

_CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
_CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class Data(Protocol):
    """What the training loop needs from a dataset."""

    @property
    def num_classes(self) -> int | None:
        """Classes of a bundled classification dataset (bundled models are built for them); None otherwise."""

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    @property
    def num_train(self) -> int: ...

    def size(self, split: Split) -> int:
        """Samples in the validation or test split."""

    def train_batches(self, batch_size: int, seed: int, epoch: int, shard: Shard | None = None) -> Iterator[Batch]:
        """One epoch of total batches of ``batch_size``; with ``shard``, this worker's share of each (see below)."""

    def batches(self, split: Split, batch_size: int, limit: int | None = None, shard: Shard | None = None) -> Iterator[Batch]:
        """The validation or test split in order (or a fixed, class-stratified sample of ``limit`` of it).

        With ``shard`` (``(rank, world_size)``), only this worker's contiguous share of it.
        """


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator that shuffles and augments epoch ``epoch`` of a run seeded ``seed``."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def available_cpus() -> int:
    """The CPUs this process may run on (outside Ray: what caps a streamed dataset's workers)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def dataset_labels(dataset: Any) -> np.ndarray | None:
    """The class of every item of ``dataset``, read without loading an item; None when the dataset does not say.

    Knows torchvision's ``targets`` (ImageFolder, MNIST, CIFAR), a ``TensorDataset`` of (input,
    integer class) and ``Subset``s of those.
    """
    if isinstance(dataset, torch.utils.data.Subset):
        parent = dataset_labels(dataset.dataset)
        return None if parent is None else parent[np.asarray(dataset.indices, dtype=np.int64)]
    tensors = getattr(dataset, "tensors", None)
    return class_labels(tensors[-1] if isinstance(tensors, tuple) and len(tensors) == 2 else getattr(dataset, "targets", None))


def class_labels(targets: Any) -> np.ndarray | None:
    """``targets`` as a numpy array when they are one integer class per item, else None."""
    if targets is None:
        return None
    labels = targets.detach().cpu().numpy() if isinstance(targets, torch.Tensor) else np.asarray(targets)
    return labels if labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer) else None


def stratified_subset(dataset: Any, k: int, seed: int) -> Any:
    """``k`` items of ``dataset``: a seeded sample of every class (:func:`~tunekit.core.subsets.stratified_sample`).

    The dataset itself when it has no more than ``k`` items; a ``TensorDataset`` stays one (batched
    by indexing), anything else becomes a ``Subset``.
    """
    if k >= len(dataset):
        return dataset
    picked = stratified_sample(dataset_labels(dataset), k, seed, n=len(dataset))
    if isinstance(dataset, torch.utils.data.TensorDataset):
        index = torch.from_numpy(picked)
        return torch.utils.data.TensorDataset(*(t[index.to(t.device)] for t in dataset.tensors))
    return torch.utils.data.Subset(dataset, picked.tolist())


# --------------------------------------------------------------------------- in-memory data


@dataclass
class TensorData:
    """A dataset held whole on ``device``; inputs are stored compactly and normalised per batch."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int | None = None
    mean: torch.Tensor | None = None  # per-channel, applied after scaling uint8 to [0, 1]
    std: torch.Tensor | None = None
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    split_seed: int = 0  # seeds the evaluation subsets (the dataset's split_seed: one subset for every trial)
    _subsets: dict[tuple[Split, int], torch.Tensor] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    def size(self, split: Split) -> int:
        return int(self._split(split)[0].shape[0])

    def _split(self, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.x_val, self.y_val) if split == "val" else (self.x_test, self.y_test)

    def to(self, device: torch.device) -> TensorData:
        tensors = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        return TensorData(
            **tensors,
            num_classes=self.num_classes,
            mean=None if self.mean is None else self.mean.to(device),
            std=None if self.std is None else self.std.to(device),
            augment=self.augment,
            split_seed=self.split_seed,
        )

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        return x

    def train_batches(self, batch_size: int, seed: int, epoch: int, shard: Shard | None = None) -> Iterator[Batch]:
        gen = epoch_generator(seed, epoch)
        order = torch.randperm(self.num_train, generator=gen).to(self.x_train.device)
        # Drop the last partial batch: batch statistics of a handful of samples are noise.
        usable = (self.num_train // batch_size) * batch_size or self.num_train
        for start in range(0, usable, batch_size):
            idx = order[start : start + batch_size]
            if shard is not None:
                yield self._share(idx, gen, share_of(len(idx), *shard))
                continue
            x = self._prepare(self.x_train[idx])
            if self.augment is not None:
                x = self.augment(x, gen)
            yield x, self.y_train[idx]

    def _share(self, idx: torch.Tensor, gen: torch.Generator, bounds: tuple[int, int]) -> Batch:
        """A worker's share of the total batch ``idx``: augmented as the whole batch is (same random draws), then cut."""
        lo, hi = bounds
        if self.augment is None:
            return self._prepare(self.x_train[idx[lo:hi]]), self.y_train[idx[lo:hi]]
        return self.augment(self._prepare(self.x_train[idx]), gen)[lo:hi], self.y_train[idx[lo:hi]]

    def batches(self, split: Split, batch_size: int, limit: int | None = None, shard: Shard | None = None) -> Iterator[Batch]:
        x_all, y_all = self._split(split)
        if limit is not None and limit < len(x_all):
            index = self._subset(split, limit)
            x_all, y_all = x_all[index], y_all[index]
        if shard is not None:
            lo, hi = share_of(len(x_all), *shard)
            x_all, y_all = x_all[lo:hi], y_all[lo:hi]
        for start in range(0, len(x_all), batch_size):
            stop = min(start + batch_size, len(x_all))
            yield self._prepare(x_all[start:stop]), y_all[start:stop]

    def _subset(self, split: Split, limit: int) -> torch.Tensor:
        """The indices of ``limit`` samples of ``split``: a seeded sample of every class, computed once."""
        if (split, limit) not in self._subsets:
            _, y_all = self._split(split)
            picked = stratified_sample(class_labels(y_all), limit, self.split_seed, n=len(y_all))
            self._subsets[split, limit] = torch.from_numpy(picked).to(y_all.device)
        return self._subsets[split, limit]

    def carve(self, fraction: float, seed: int) -> TensorData:
        """This dataset with a validation split carved from its training data (see :func:`carve_indices`)."""
        keep, held = carve_indices(self.num_train, fraction, seed)
        keep_t, held_t = torch.from_numpy(keep), torch.from_numpy(held)
        x, y = self.x_train, self.y_train
        self.x_train, self.y_train, self.x_val, self.y_val = x[keep_t], y[keep_t], x[held_t], y[held_t]
        return self


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


def _bundled(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, **kw: Any) -> TensorData:
    # a bundled dataset comes without a validation split: load_data carves one
    return TensorData(x_train, y_train, x_train[:0], y_train[:0], x_test, y_test, **kw)


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
    return _bundled(
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
    return _bundled(
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
    return _bundled(
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
    return _bundled(
        x_train=torch.from_numpy(train.data).permute(0, 3, 1, 2).contiguous(),  # uint8 (n, 3, 32, 32)
        y_train=torch.tensor(train.targets).long(),
        x_test=torch.from_numpy(test.data).permute(0, 3, 1, 2).contiguous(),
        y_test=torch.tensor(test.targets).long(),
        num_classes=len(train.classes),
        mean=torch.tensor(_CIFAR_MEAN[str(cfg.name)]).view(1, 3, 1, 1),
        std=torch.tensor(_CIFAR_STD[str(cfg.name)]).view(1, 3, 1, 1),
        augment=crop_flip if augment else None,
    )


# --------------------------------------------------------------------------- streamed data


class _EpochSampler(torch.utils.data.Sampler[tuple[int, int]]):
    """One epoch of ``(index, item seed)``: the order ``epoch_generator(seed, epoch)`` shuffles, set before each pass.

    The order is ``RandomSampler``'s with that generator; each item's seed comes from the same
    generator, so an item's augmentation depends on ``(seed, epoch)`` only — not on the workers,
    nor on what they loaded before (they persist across epochs).
    """

    def __init__(self, size: int, batch_size: int = 1, shard: Shard | None = None) -> None:
        self.size, self.seed, self.epoch = size, 0, 0
        self.batch_size, self.shard = batch_size, shard

    def set_epoch(self, seed: int, epoch: int) -> None:
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        if self.shard is None:
            return self.size
        return sum(hi - lo for lo, hi in self._bounds())

    def __iter__(self) -> Iterator[tuple[int, int]]:
        gen = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(self.size, generator=gen).tolist()
        seeds = torch.randint(0, 2**62, (self.size,), generator=gen).tolist()
        if self.shard is None:
            return iter(zip(order, seeds, strict=True))
        # a data-parallel worker: its share of each total batch of the one-worker order (the last partial one dropped)
        mine = [i for lo, hi in self._bounds() for i in range(lo, hi)]
        return iter([(order[i], seeds[i]) for i in mine])

    def _bounds(self) -> list[tuple[int, int]]:
        """This worker's ``[lo, hi)`` positions in the epoch's order, one range per total batch."""
        assert self.shard is not None
        batch = self.batch_size if self.size >= self.batch_size else self.size
        usable = (self.size // batch) * batch
        out = []
        for start in range(0, usable, batch):
            lo, hi = share_of(batch, *self.shard)
            out.append((start + lo, start + hi))
        return out


class _SeededItems(torch.utils.data.Dataset[Any]):
    """``dataset``'s items, each loaded with torch's, numpy's and Python's RNGs seeded by its key's seed."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        if torch.utils.data.get_worker_info() is not None:  # a worker's random state is its own
            _seed_rngs(seed)
            return self.dataset[index]
        with _rngs_kept():  # in the training process: leave its streams (dropout, …) as they were
            _seed_rngs(seed)
            return self.dataset[index]


def _seed_rngs(seed: int) -> None:
    torch.default_generator.manual_seed(seed)  # the CPU generator only: a GPU's streams are the training's
    random.seed(seed)
    np.random.seed(seed % 2**32)


@contextlib.contextmanager
def _rngs_kept() -> Iterator[None]:
    saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        random.setstate(saved[1])
        np.random.set_state(saved[2])


@dataclass
class _Pooled:
    """A ``DataLoader`` kept for reuse (its workers persist), and whether a pass over it is under way."""

    loader: torch.utils.data.DataLoader[Any]
    busy: bool = False


class LoaderData:
    """Map-style datasets streamed by a ``DataLoader`` with workers (ImageNet-sized or non-tensor data).

    Loaders are kept and reused, so their workers (``persistent_workers``) start once: one for
    training (a second when training batches are drawn during a pass, as a range test's BatchNorm
    re-estimation does), one per evaluation size. The test split, read once, gets a loader of its own.
    """

    def __init__(
        self,
        train: Any,
        val: Any,
        test: Any,
        num_classes: int | None,
        input_shape: tuple[int, ...],
        device: torch.device,
        num_workers: int,
        split_seed: int = 0,
    ) -> None:
        self.train, self.val, self.test = train, val, test
        self.num_classes, self.input_shape = num_classes, input_shape
        self.num_train = len(train)
        self.device, self.num_workers, self.split_seed = device, num_workers, split_seed
        self._pool: dict[tuple[Any, ...], _Pooled] = {}
        self._subsets: dict[tuple[Split, int], Any] = {}

    def size(self, split: Split) -> int:
        return len(self.val if split == "val" else self.test)

    def _loader(self, dataset: Any, batch_size: int, persistent: bool, **kwargs: Any) -> torch.utils.data.DataLoader[Any]:
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=persistent and self.num_workers > 0,
            **kwargs,
        )

    @contextlib.contextmanager
    def _lease(
        self, kind: tuple[Any, ...], slots: int, make: Callable[[bool], torch.utils.data.DataLoader[Any]]
    ) -> Iterator[torch.utils.data.DataLoader[Any]]:
        """A loader of ``kind`` that no pass is using: a kept one (of ``slots``), or a one-off when all are in use."""
        for slot in range(slots):
            entry = self._pool.get((*kind, slot))
            if entry is None:
                entry = self._pool[(*kind, slot)] = _Pooled(make(True))
            if not entry.busy:
                break
        else:
            yield make(False)
            return
        entry.busy = True
        try:
            yield entry.loader
        finally:
            entry.busy = False

    def _to_device(self, batches: Any) -> Iterator[Batch]:
        for x, y in batches:
            x = _to(x, self.device)
            if isinstance(x, torch.Tensor) and x.dtype == torch.uint8:  # as TensorData does: bytes become [0, 1]
                x = x.float().div_(255.0)
            yield x, _to(y, self.device)

    def train_batches(self, batch_size: int, seed: int, epoch: int, shard: Shard | None = None) -> Iterator[Batch]:
        drop = len(self.train) >= batch_size  # as TensorData: a dataset smaller than a batch is one batch
        # a data-parallel worker loads only its share of each total batch
        per_worker = batch_size
        if shard is not None:
            lo, hi = share_of(min(batch_size, len(self.train)), *shard)
            per_worker = max(1, hi - lo)

        def make(persistent: bool) -> torch.utils.data.DataLoader[Any]:
            sampler = _EpochSampler(len(self.train), batch_size, shard)
            return self._loader(_SeededItems(self.train), per_worker, persistent, sampler=sampler, drop_last=drop)

        with self._lease(("train", batch_size, shard), 2, make) as loader:
            assert isinstance(loader.sampler, _EpochSampler)
            loader.sampler.set_epoch(seed, epoch)
            yield from self._to_device(loader)

    def batches(self, split: Split, batch_size: int, limit: int | None = None, shard: Shard | None = None) -> Iterator[Batch]:
        dataset = self.val if split == "val" else self.test
        if limit is not None and limit < len(dataset):
            if (split, limit) not in self._subsets:
                self._subsets[split, limit] = stratified_subset(dataset, limit, self.split_seed)
            dataset = self._subsets[split, limit]
        if shard is not None:
            dataset = torch.utils.data.Subset(dataset, range(*share_of(len(dataset), *shard)))
        slots = 0 if split == "test" else 1  # the test split is read once, at the end: no workers kept for it

        def make(persistent: bool) -> torch.utils.data.DataLoader[Any]:
            return self._loader(dataset, batch_size, persistent, shuffle=False)

        with self._lease((split, batch_size, limit, shard), slots, make) as loader:
            yield from self._to_device(loader)


def _to(value: Any, device: torch.device) -> Any:
    """A batch part on ``device``: tensors moved, tuples/lists/dicts of tensors walked."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, tuple | list):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def _subsets(cfg: DatasetConfig, train: Any, plain_train: Any, test: Any) -> tuple[Any, Any, Any]:
    """(train, validation, test) of a streamed bundled dataset: subsets sampled, validation carved from train.

    A subset is a seeded sample of every class (``split_seed``): the same for every trial.
    """
    Subset = torch.utils.data.Subset
    if cfg.train_subset:
        picked = stratified_sample(dataset_labels(train), cfg.train_subset, cfg.split_seed, n=len(train))
    else:
        picked = np.arange(len(train))
    keep, held = carve_indices(len(picked), cfg.validation_fraction, cfg.split_seed)
    if cfg.test_subset:
        test = stratified_subset(test, cfg.test_subset, cfg.split_seed)
    return Subset(train, picked[keep].tolist()), Subset(plain_train, picked[held].tolist()), test


def _imagenet(cfg: DatasetConfig, device: torch.device, workers: int) -> LoaderData:
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
    num_classes = len(train.classes)
    # the validation split comes from the (un-augmented) training images, so it reads like the test split
    plain = datasets.ImageFolder(str(folders["train"]), transforms.Compose([*test_tf, transforms.ToTensor(), normalize]))
    train_part, val_part, test = _subsets(cfg, train, plain, test)
    return LoaderData(train_part, val_part, test, num_classes, (3, size, size), device, workers, cfg.split_seed)


_TENSOR_LOADERS: dict[str, Callable[[DatasetConfig, int], TensorData]] = {
    "mnist1d": _mnist1d,
    "digits": _digits,
    "mnist": _mnist,
    "cifar10": _cifar,
    "cifar100": _cifar,
}


# --------------------------------------------------------------------------- user datasets


def call_dataset_factory(cfg: DatasetConfig) -> tuple[Any, Any, Any]:
    """Call the user's factory and check what it returned: three splits, non-empty, of (input, target) pairs.

    A missing validation split is carved from train (``validation_fraction``, ``split_seed``).

    Raises:
        ComponentError: the factory raised, returned no three splits, an empty split or items that are no pairs.
    """
    from tunekit.components import ComponentError, factory_name, resolve

    assert cfg.factory is not None
    fn = resolve(cfg.factory, "dataset.factory")
    try:
        splits = fn(**cfg.kwargs)
    except ComponentError:
        raise
    except Exception as exc:
        raise ComponentError(f"dataset.factory: {factory_name(fn)}(**kwargs) raised {type(exc).__name__}: {exc}") from None
    if not isinstance(splits, tuple | list) or len(splits) != 3:
        got = f"a {type(splits).__name__}" + (f" of {len(splits)}" if isinstance(splits, tuple | list) else "")
        raise ComponentError(
            f"dataset.factory: {factory_name(fn)} returned {got}; return three splits (train, validation, test), "
            "validation may be None"
        )
    train, val, test = splits
    for name, split in (("train", train), ("validation", val), ("test", test)):
        if split is None and name == "validation":
            continue
        _check_split(split, name)
    if val is None:
        keep, held = carve_indices(len(train), cfg.validation_fraction, cfg.split_seed)
        if len(held) == 0:
            raise ComponentError(
                "dataset.validation_fraction: the factory returns no validation split and the fraction carves none; "
                "set validation_fraction above 0 (default 0.1) or return a validation split"
            )
        train, val = torch.utils.data.Subset(train, keep.tolist()), torch.utils.data.Subset(train, held.tolist())
    return train, val, test


def _check_split(split: Any, name: str) -> None:
    from tunekit.components import ComponentError

    if not hasattr(split, "__getitem__") or not hasattr(split, "__len__"):
        raise ComponentError(
            f"dataset.factory: the {name} split is a {type(split).__name__}, not a map-style Dataset; "
            "return objects with __len__ and __getitem__ (torch.utils.data.Dataset, TensorDataset)"
        )
    if len(split) == 0:
        raise ComponentError(f"dataset.factory: the {name} split is empty; every split needs samples")
    item = split[0]
    if not isinstance(item, tuple | list) or len(item) != 2:
        raise ComponentError(
            f"dataset.factory: item 0 of the {name} split is a {type(item).__name__}"
            + (f" of {len(item)}" if isinstance(item, tuple | list) else "")
            + "; each item must be an (input, target) pair"
        )


def _as_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray | np.generic | int | float | bool):
        return torch.as_tensor(value)
    return None


def stack_split(split: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """All (input, target) pairs of ``split`` as two stacked tensors, or None when an item is no tensor/number."""
    tensors = getattr(split, "tensors", None)
    if tensors is not None and len(tensors) == 2:  # a TensorDataset: no need to walk it
        return tensors[0], tensors[1]
    xs, ys = [], []
    for i in range(len(split)):
        x, y = (_as_tensor(v) for v in split[i])
        if x is None or y is None:
            return None
        xs.append(x)
        ys.append(y)
    try:
        return torch.stack(xs), torch.stack(ys)
    except RuntimeError:  # items of different shapes
        return None


def _fits_in_memory(cfg: DatasetConfig, splits: tuple[Any, Any, Any]) -> bool:
    if cfg.in_memory is not None:
        return cfg.in_memory
    first = [_as_tensor(v) for v in splits[0][0]]
    if any(t is None for t in first):
        return False
    per_item = sum(t.numel() * t.element_size() for t in first if t is not None)
    return per_item * sum(len(s) for s in splits) <= IN_MEMORY_LIMIT_BYTES


def cache_key(cfg: DatasetConfig, token: str) -> str:
    """The node-cache key of a user dataset: its factory, kwargs and split, and the search's ``token``."""
    import hashlib
    import json

    from tunekit.components import portable

    assert cfg.factory is not None
    described = {
        "factory": portable(cfg.factory),
        "kwargs": cfg.kwargs,
        "validation_fraction": cfg.validation_fraction,
        "split_seed": cfg.split_seed,
        "token": token,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:24]


def cached_user_tensors(cfg: DatasetConfig, token: str | None) -> TensorData | None:
    """The user dataset as tensors, built once per node under a lock and read from the node's cache after.

    Without a ``token`` (a bare run, not one of a search's trials) nothing is cached. Returns None
    when the dataset does not fit in memory (it is then streamed).
    """
    if token is None:
        return _user_tensors(cfg)
    import fcntl

    folder = cache_dir() / "data"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cache_key(cfg, token)}.pt"
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first trial on this node builds; the others wait, then read
        if path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            return None if saved.get("streamed") else TensorData(**saved["tensors"])
        data = _user_tensors(cfg)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        names = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
        torch.save({"streamed": data is None, "tensors": {k: getattr(data, k) for k in names} if data else {}}, tmp)
        os.replace(tmp, path)
        _prune(folder, keep=path)
        return data


#: Node-cache entries older than this are deleted when a new one is written (one per experiment and node).
CACHE_MAX_AGE_S = 24 * 3600


def _prune(folder: Path, keep: Path) -> None:
    now = time.time()
    for old in folder.glob("*.pt"):
        with contextlib.suppress(OSError):
            if old != keep and now - old.stat().st_mtime > CACHE_MAX_AGE_S:
                old.unlink()
                old.with_suffix(".lock").unlink(missing_ok=True)


def _user_tensors(cfg: DatasetConfig) -> TensorData | None:
    splits = call_dataset_factory(cfg)
    if not _fits_in_memory(cfg, splits):
        return None
    stacked = [stack_split(s) for s in splits]
    if any(s is None for s in stacked):
        return None
    (xt, yt), (xv, yv), (xs, ys) = (s for s in stacked if s is not None)
    return TensorData(xt, yt, xv, yv, xs, ys)


def _user_data(cfg: DatasetConfig, device: torch.device, token: str | None, workers: int) -> Data:
    tensors = cached_user_tensors(cfg, token)
    if tensors is not None:
        tensors.split_seed = cfg.split_seed
        return tensors.to(device)
    train, val, test = call_dataset_factory(cfg)
    x = train[0][0]
    shape = tuple(x.shape) if hasattr(x, "shape") else ()
    return LoaderData(train, val, test, None, shape, device, workers, cfg.split_seed)


# --------------------------------------------------------------------------- entry points


def train_samples(cfg: DatasetConfig, seed: int = 0) -> int:
    """How many training samples ``cfg`` yields after the validation carve (what sizes a search's phases).

    Loads the data once, on the CPU; a search asks the pre-flight probe (a Ray task) instead.
    """
    return load_data(cfg, "cpu", seed).num_train


def load_data(
    cfg: DatasetConfig, device: torch.device | str = "cpu", seed: int = 0, token: str | None = None, cpus: float | None = None
) -> Data:
    """Load the dataset ``cfg`` names (or builds with its factory), ready to batch on ``device``.

    Args:
        token: a search's data token; a user dataset held in memory is cached per node under it.
        cpus: the CPUs the run was given (a Ray trial's); a streamed dataset starts at most one fewer
            ``DataLoader`` workers than that (:func:`~tunekit.core.workers.loader_workers`). None: the
            CPUs this process may run on.

    Raises:
        DatasetError: the files are missing or unreadable (the message names ``dataset.root``).
        ComponentError: the user's dataset factory fails or returns something unusable.
    """
    device = torch.device(device)
    workers = loader_workers(cfg.num_workers, available_cpus() if cpus is None else cpus)
    if cfg.factory is not None:
        return _user_data(cfg, device, token, workers)
    if cfg.name == "imagenet":
        return _imagenet(cfg, device, workers)
    assert cfg.name is not None
    data = _TENSOR_LOADERS[cfg.name](cfg, seed)
    if cfg.train_subset:  # stored in no class order: the first N are a fair sample
        data.x_train, data.y_train = data.x_train[: cfg.train_subset], data.y_train[: cfg.train_subset]
    if cfg.test_subset:
        data.x_test, data.y_test = data.x_test[: cfg.test_subset], data.y_test[: cfg.test_subset]
    data.split_seed = cfg.split_seed
    return data.carve(cfg.validation_fraction, cfg.split_seed).to(device)


def load_splits(cfg: DatasetConfig, seed: int = 0) -> tuple[Any, Any, Any]:
    """(train, validation, test) as map-style datasets of (input, target) — what a user's own loop iterates.

    A user factory's splits come back as it returned them (validation carved when missing); a
    bundled dataset's tensors come as ``TensorDataset``s, normalised as tunekit's loop sees them.
    """
    if cfg.factory is not None:
        return call_dataset_factory(cfg)
    data = load_data(cfg, "cpu", seed)
    if isinstance(data, LoaderData):
        return data.train, data.val, data.test
    assert isinstance(data, TensorData)
    TensorDataset = torch.utils.data.TensorDataset
    return (
        TensorDataset(data._prepare(data.x_train), data.y_train),
        TensorDataset(data._prepare(data.x_val), data.y_val),
        TensorDataset(data._prepare(data.x_test), data.y_test),
    )

"""Datasets load through the real code paths: mnist1d's generator, scikit-learn, torchvision, a user factory.

Every dataset has train, validation and test splits; a bundled one's validation split is carved
from its training data (``dataset.validation_fraction``, default 0.1, seeded by ``split_seed``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fabricate import write_cifar10, write_cifar100, write_image_folder, write_mnist
from tunekit.core.subsets import stratified_sample
from tunekit.core.workers import loader_workers
from tunekit.presets import DatasetConfig
from tunekit.train.data import (
    _TENSOR_LOADERS,
    DatasetError,
    LoaderData,
    TensorData,
    available_cpus,
    carve_indices,
    crop_flip,
    load_data,
    load_splits,
    preflight,
    stratified_subset,
)


def sizes(data: object) -> tuple[int, int, int]:
    """(train, validation, test) samples."""
    return (data.num_train, data.size("val"), data.size("test"))  # type: ignore[attr-defined]


def test_mnist1d_is_generated_without_network() -> None:
    data = load_data(DatasetConfig(name="mnist1d", num_samples=1000))
    # mnist1d splits 80/20 (800/200), then 10 % of the 800 training samples become the validation split
    assert sizes(data) == (720, 80, 200)
    assert data.input_shape == (1, 40)
    assert data.num_classes == 10


def test_mnist1d_generation_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = []
    for node in ("a", "b"):  # two empty caches: each load generates the data itself (as on two nodes)
        cache = tmp_path / node
        monkeypatch.setenv("TUNEKIT_CACHE", str(cache))
        assert not cache.exists()
        loaded.append(load_data(DatasetConfig(name="mnist1d", num_samples=500)))
        assert (cache / "mnist1d-500.npz").is_file()  # generated here, then cached for the next trial
    loaded.append(load_data(DatasetConfig(name="mnist1d", num_samples=500)))  # read from cache "b"
    # the same samples every time, generated or cached: a search's trials see one dataset
    for data in loaded[1:]:
        assert isinstance(data, TensorData)
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            assert torch.equal(getattr(loaded[0], name), getattr(data, name)), name


def test_digits_loads_from_scikit_learn() -> None:
    data = load_data(DatasetConfig(name="digits"))
    assert data.input_shape == (1, 8, 8)
    # 80/20 (1437/360), then 144 of the 1437 carved for validation
    assert sizes(data) == (1293, 144, 360)
    assert sum(sizes(data)) == 1797


def test_train_batches_depend_only_on_seed_and_epoch() -> None:
    data = load_data(DatasetConfig(name="mnist1d", num_samples=500))
    first = [y for _, y in data.train_batches(32, seed=3, epoch=2)]
    again = [y for _, y in data.train_batches(32, seed=3, epoch=2)]
    other = [y for _, y in data.train_batches(32, seed=3, epoch=3)]
    # a resumed run replays the same order; the next epoch is shuffled differently
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    # the partial last batch is dropped (400 train less the 40 carved for validation)
    assert len(first) == 360 // 32


def test_fabricated_mnist_reads_through_torchvision(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_train=64, n_test=32)
    data = load_data(DatasetConfig(name="mnist", root=str(tmp_path)))
    # 6 of the 64 training images carved for validation
    assert (*sizes(data), data.input_shape) == (58, 6, 32, (1, 28, 28))
    x, y = next(data.batches("test", 8))
    # normalised with MNIST's mean and std: the bright bar is far above zero
    assert x.dtype == torch.float32
    assert float(x.max()) == pytest.approx((1.0 - 0.1307) / 0.3081, rel=1e-4)
    assert y.dtype == torch.long
    # the validation split is normalised the same way
    x_val, _ = next(data.batches("val", 8))
    assert x_val.shape == (6, 1, 28, 28)
    assert float(x_val.max()) == pytest.approx((1.0 - 0.1307) / 0.3081, rel=1e-4)


def test_fabricated_cifar10_reads_through_torchvision(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_batch=20, n_test=40)
    data = load_data(DatasetConfig(name="cifar10", root=str(tmp_path), verify_checksums=False))
    assert (*sizes(data), data.input_shape, data.num_classes) == (90, 10, 40, (3, 32, 32), 10)
    x, _ = next(data.train_batches(16, seed=0, epoch=0))
    assert x.shape == (16, 3, 32, 32)


def test_fabricated_cifar10_fails_md5_check_with_a_clear_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    # torchvision's checksums do not match fabricated files: the error names the field to look at
    with pytest.raises(DatasetError, match=r"dataset\.root"):
        load_data(DatasetConfig(name="cifar10", root=str(tmp_path)))


def test_fabricated_cifar100_reads_through_torchvision(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    data = load_data(DatasetConfig(name="cifar100", root=str(tmp_path), verify_checksums=False))
    assert data.num_classes == 100
    assert sizes(data) == (90, 10, 40)


def test_fabricated_imagenet_streams_through_image_folder(tmp_path: Path) -> None:
    write_image_folder(tmp_path, classes=3, per_class=6)
    data = load_data(DatasetConfig(name="imagenet", root=str(tmp_path), image_size=32, num_workers=1))
    # 2 of the 18 training images carved for validation; the val/ folder is the test split
    assert (data.num_classes, *sizes(data), data.input_shape) == (3, 16, 2, 18, (3, 32, 32))
    batches = list(data.train_batches(4, seed=0, epoch=0))
    # drop_last: 16 samples in batches of 4
    assert len(batches) == 4
    assert batches[0][0].shape == (4, 3, 32, 32)
    assert sum(len(y) for _, y in data.batches("test", 5)) == 18
    val = list(data.batches("val", 5))
    assert sum(len(y) for _, y in val) == 2
    assert val[0][0].shape == (2, 3, 32, 32)  # read like the test split: resized and centre-cropped


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "imagenet"])
def test_folder_datasets_without_root_name_the_field(name: str) -> None:
    with pytest.raises(DatasetError, match=r"dataset\.root"):
        preflight(DatasetConfig(name=name))  # type: ignore[arg-type]


def test_missing_root_folder_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"dataset\.root: .*not a folder"):
        preflight(DatasetConfig(name="cifar10", root=str(tmp_path / "nope")))


def test_crop_flip_keeps_shape_and_moves_pixels() -> None:
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    gen = torch.Generator().manual_seed(0)
    out = crop_flip(x, gen)
    assert out.shape == x.shape
    # an augmented image is a shifted/flipped copy padded with zeros, never new values
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0.0}


def test_crop_flip_zero_shift_without_flip_is_identity() -> None:
    # with pad=0 the crop is the image itself; flips mirror columns exactly
    x = torch.randn(64, 3, 8, 8)
    out = crop_flip(x, torch.Generator().manual_seed(1), pad=0)
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 10 < int(mirrored.sum()) < 54


# --------------------------------------------------------------------------- the validation carve


def test_the_carve_is_the_same_whatever_the_runs_seed_and_disjoint_from_what_trains() -> None:
    cfg = DatasetConfig(name="mnist1d", num_samples=1000)
    a, b = load_data(cfg, seed=0), load_data(cfg, seed=7)
    assert isinstance(a, TensorData)
    assert isinstance(b, TensorData)
    # every trial of a search validates on the same samples, whatever its own seed
    assert torch.equal(a.x_val, b.x_val)
    assert torch.equal(a.y_val, b.y_val)
    assert torch.equal(a.x_train, b.x_train)
    # the carve takes rows out of the training data: train and validation partition it
    uncarved = _TENSOR_LOADERS["mnist1d"](DatasetConfig(name="mnist1d", num_samples=1000), 0)  # before the carve
    assert (uncarved.num_train, uncarved.size("val")) == (800, 0)
    keep, held = carve_indices(800, 0.1, 0)
    assert set(keep.tolist()).isdisjoint(held.tolist())
    assert sorted([*keep.tolist(), *held.tolist()]) == list(range(800))
    assert torch.equal(a.x_train, uncarved.x_train[torch.from_numpy(keep)])
    assert torch.equal(a.x_val, uncarved.x_train[torch.from_numpy(held)])
    # no validation signal is also a training signal
    assert not (a.x_val.flatten(1)[:, None, :] == a.x_train.flatten(1)[None, :, :]).all(-1).any()
    # the test split is left alone
    assert torch.equal(a.x_test, uncarved.x_test)
    # another split_seed carves another validation split of the same size
    other = load_data(DatasetConfig(name="mnist1d", num_samples=1000, split_seed=1))
    assert isinstance(other, TensorData)
    assert other.size("val") == 80
    assert not torch.equal(other.x_val, a.x_val)


def test_carve_indices_hold_out_at_least_one_and_keep_at_least_one() -> None:
    keep, held = carve_indices(10, 0.1, 0)
    assert (len(keep), len(held)) == (9, 1)
    assert [len(part) for part in carve_indices(10, 0.01, 0)] == [9, 1]  # rounds to 0: still one held out
    assert [len(part) for part in carve_indices(10, 0.0, 0)] == [10, 0]  # no fraction, no carve
    assert list(keep) == sorted(keep)  # ascending: the training order is the dataset's own
    assert np.array_equal(carve_indices(10, 0.1, 3)[1], carve_indices(10, 0.1, 3)[1])


def test_a_validation_fraction_of_a_fifth_changes_the_sizes() -> None:
    data = load_data(DatasetConfig(name="mnist1d", num_samples=1000, validation_fraction=0.2))
    # 160 of the 800 training samples; the test split keeps its 200
    assert sizes(data) == (640, 160, 200)
    digits = load_data(DatasetConfig(name="digits", validation_fraction=0.2))
    assert sizes(digits) == (1150, 287, 360)


def test_train_and_test_subsets_apply_before_the_carve() -> None:
    data = load_data(DatasetConfig(name="mnist1d", num_samples=1000, train_subset=100, test_subset=50))
    assert sizes(data) == (90, 10, 50)


# --------------------------------------------------------------------------- a user dataset factory


def factory(n: int = 50, with_validation: bool = False) -> tuple[object, object, object]:
    """A user's dataset factory: (train, validation or None, test) TensorDatasets of a toy regression."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n + 20, 3, generator=gen)
    y = x.sum(1, keepdim=True)
    TensorDataset = torch.utils.data.TensorDataset
    train, test = TensorDataset(x[:n], y[:n]), TensorDataset(x[n:], y[n:])
    validation = TensorDataset(x[n:][:5], y[n:][:5]) if with_validation else None
    return train, validation, test


FACTORY = "tests.train.test_data:factory"


def test_a_user_factory_is_stacked_in_memory_and_its_validation_carved() -> None:
    data = load_data(DatasetConfig(factory=FACTORY, kwargs={"n": 50}))
    # small tensors: held whole as TensorData, not streamed
    assert isinstance(data, TensorData)
    # no validation split returned: 5 of the 50 training samples carved (the bundled datasets' rule)
    assert sizes(data) == (45, 5, 20)
    assert data.num_classes is None  # not a bundled classification dataset
    assert data.input_shape == (3,)
    train, _, test = factory(50)
    keep, held = carve_indices(50, 0.1, 0)
    assert torch.equal(data.x_train, train.tensors[0][torch.from_numpy(keep)])  # type: ignore[attr-defined]
    assert torch.equal(data.x_val, train.tensors[0][torch.from_numpy(held)])  # type: ignore[attr-defined]
    assert torch.equal(data.y_val, train.tensors[1][torch.from_numpy(held)])  # type: ignore[attr-defined]
    assert torch.equal(data.x_test, test.tensors[0])  # type: ignore[attr-defined]
    # the carve follows validation_fraction and split_seed, not the run's seed
    assert sizes(load_data(DatasetConfig(factory=FACTORY, kwargs={"n": 50}, validation_fraction=0.2))) == (40, 10, 20)
    again = load_data(DatasetConfig(factory=FACTORY, kwargs={"n": 50}), seed=5)
    assert isinstance(again, TensorData)
    assert torch.equal(again.x_val, data.x_val)
    # batches of a split, in order
    assert sum(len(y) for _, y in data.batches("val", 2)) == 5


def test_a_user_factory_that_returns_a_validation_split_keeps_it() -> None:
    data = load_data(DatasetConfig(factory=FACTORY, kwargs={"n": 50, "with_validation": True}))
    assert isinstance(data, TensorData)
    assert sizes(data) == (50, 5, 20)  # nothing carved from train


def test_a_user_factory_not_held_in_memory_streams_the_same_splits() -> None:
    data = load_data(DatasetConfig(factory=FACTORY, kwargs={"n": 50}, in_memory=False, num_workers=0))
    assert isinstance(data, LoaderData)
    assert sizes(data) == (45, 5, 20)
    train, val, test = load_splits(DatasetConfig(factory=FACTORY, kwargs={"n": 50}))
    assert (len(train), len(val), len(test)) == (45, 5, 20)


# --------------------------------------------------------------------------- issue 17: subsets and workers


def _labels(batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> list[int]:
    return [int(v) for _, y in batches for v in y]


def test_imagenet_subsets_are_seeded_samples_of_every_class(tmp_path: Path) -> None:
    # ImageFolder sorts by class: the first 10 of 30 training images are classes 0 and 1 only
    write_image_folder(tmp_path, classes=5, per_class=6, size=8)
    cfg = DatasetConfig(name="imagenet", root=str(tmp_path), image_size=8, num_workers=0, train_subset=10, test_subset=10)
    data = load_data(cfg)
    assert isinstance(data, LoaderData)
    assert sizes(data) == (9, 1, 10)  # 1 of the 10 sampled training images carved for validation
    train = _labels(data.train_batches(9, seed=0, epoch=0))
    val = _labels(data.batches("val", 4))
    # the sample is stratified: two images of every class, in train and validation together and in test
    assert Counter(train + val) == {c: 2 for c in range(5)}
    assert Counter(_labels(data.batches("test", 4))) == {c: 2 for c in range(5)}
    # and the same for every trial of a search, whatever the trial's seed
    again = load_data(cfg, seed=7)
    assert isinstance(again, LoaderData)
    assert again.train.indices == data.train.indices
    assert again.val.indices == data.val.indices
    assert again.test.indices == data.test.indices
    # another split_seed samples other images of the same classes
    other = load_data(cfg.model_copy(update={"split_seed": 1}))
    assert isinstance(other, LoaderData)
    assert sorted(other.train.indices + other.val.indices) != sorted(data.train.indices + data.val.indices)


def test_a_range_tests_evaluation_subset_covers_every_class(tmp_path: Path) -> None:
    write_image_folder(tmp_path, classes=4, per_class=10, size=8)
    cfg = DatasetConfig(name="imagenet", root=str(tmp_path), image_size=8, num_workers=0, validation_fraction=0.5)
    data = load_data(cfg)
    assert data.size("val") == 20  # carved in ascending order: class-sorted
    first = _labels(data.batches("val", 3, limit=8))
    # eval_samples = 8 of 20: every class, in proportion, the same subset at every evaluation
    assert len(first) == 8
    assert set(first) == {0, 1, 2, 3}
    assert max(Counter(first).values()) <= 3
    assert _labels(data.batches("val", 5, limit=8)) == first
    assert len(_labels(data.batches("val", 5))) == 20  # no limit: the whole split


def sorted_classes(n: int = 60, classes: int = 3) -> tuple[object, object, object]:
    """A user's factory whose splits are sorted by class (as a folder-per-class dataset reads)."""
    TensorDataset = torch.utils.data.TensorDataset
    y = torch.arange(n) * classes // n
    x = y.float()[:, None].repeat(1, 4)
    return TensorDataset(x, y), TensorDataset(x, y), TensorDataset(x, y)


def linear() -> torch.nn.Module:
    """A user's model factory for :func:`sorted_classes`."""
    return torch.nn.Linear(4, 3)


def test_an_in_memory_evaluation_subset_covers_every_class() -> None:
    data = load_data(DatasetConfig(factory="tests.train.test_data:sorted_classes"))
    assert isinstance(data, TensorData)
    labels = _labels(data.batches("val", 4, limit=6))
    assert Counter(labels) == {0: 2, 1: 2, 2: 2}
    assert _labels(data.batches("val", 4, limit=6)) == labels
    # what a user's own loop reads in a range test: the same kind of subset
    _, val, _ = sorted_classes()
    head = stratified_subset(val, 6, seed=0)
    assert isinstance(head, torch.utils.data.TensorDataset)  # still batched by indexing
    assert Counter(int(v) for v in head.tensors[1]) == {0: 2, 1: 2, 2: 2}
    assert stratified_subset(val, 60, seed=0) is val


def test_the_own_loops_range_test_reads_a_sample_of_every_class_like_tunekits_loop() -> None:
    from tunekit.own_loop import Control
    from tunekit.presets import load_preset, range_test_preset
    from tunekit.train.loop import Trainer

    section = {"min_lr": 0.01, "max_lr": 1.0, "epochs": 1, "eval_samples": 30, "min_steps": 10, "points": 5}
    preset = range_test_preset(load_preset({
        "name": "sorted", "dataset": {"factory": "tests.train.test_data:sorted_classes"},
        "model": {"factory": "tests.train.test_data:linear"}, "policy": {"name": "one_cycle", "max_lr": 0.1},
        "search": {"range_test": section},
    }))  # fmt: skip
    own = [int(v) for _, y in Control(preset).loader("validation") for v in y]
    assert Counter(own) == {0: 10, 1: 10, 2: 10}
    ours = Trainer(preset, "cpu").data.batches("val", 256, limit=30)
    assert own == _labels(ours)


def test_stratified_samples_are_proportional_seeded_and_ascending() -> None:
    labels = np.repeat([0, 1, 2, 3], [50, 30, 15, 5])
    picked = stratified_sample(labels, 20, seed=0)
    assert list(picked) == sorted(picked)
    assert len(set(picked.tolist())) == 20
    assert Counter(labels[picked].tolist()) == {0: 10, 1: 6, 2: 3, 3: 1}
    assert np.array_equal(stratified_sample(labels, 20, seed=0), picked)
    assert not np.array_equal(stratified_sample(labels, 20, seed=1), picked)
    # fewer samples than classes: distinct classes; no labels: a seeded uniform sample
    assert len(set(labels[stratified_sample(labels, 3, seed=0)].tolist())) == 3
    plain = stratified_sample(None, 5, seed=0, n=100)
    assert len(plain) == 5
    assert np.array_equal(plain, stratified_sample(None, 5, seed=0, n=100))
    assert np.array_equal(stratified_sample(labels, 200, seed=0), np.arange(100))


@pytest.mark.parametrize(
    ("requested", "cpus", "expected"),
    [(2, 1.0, 0), (2, 2.0, 1), (2, 8.0, 2), (0, 8.0, 0), (4, 2.5, 1), (8, 0.5, 0)],
)
def test_loader_workers_leave_the_trials_own_process_a_cpu(requested: int, cpus: float, expected: int) -> None:
    assert loader_workers(requested, cpus) == expected


def test_load_data_caps_workers_by_the_cpus_it_is_given() -> None:
    cfg = DatasetConfig(factory=FACTORY, kwargs={"n": 50}, in_memory=False, num_workers=3)
    assert load_data(cfg, cpus=2).num_workers == 1  # type: ignore[attr-defined]
    assert load_data(cfg, cpus=16).num_workers == 3  # type: ignore[attr-defined]
    # outside Ray: the CPUs this process may run on
    assert load_data(cfg).num_workers == min(3, available_cpus() - 1)  # type: ignore[attr-defined]


class WhoLoaded(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Items whose target is the process id that loaded them, and whose input is random (an augmentation)."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(2), torch.tensor(os.getpid())


def _streamed(workers: int) -> LoaderData:
    return LoaderData(WhoLoaded(), WhoLoaded(), WhoLoaded(), None, (2,), torch.device("cpu"), workers)


def test_streamed_data_keeps_its_workers_between_evaluations_and_epochs() -> None:
    data = _streamed(1)
    evaluations = [set(_labels(data.batches("val", 4))) for _ in range(3)]
    epochs = [set(_labels(data.train_batches(4, seed=0, epoch=e))) for e in range(3)]
    # one worker process serves every evaluation, another every epoch: none respawned
    assert len({frozenset(p) for p in evaluations}) == 1
    assert len({frozenset(p) for p in epochs}) == 1
    assert os.getpid() not in evaluations[0] | epochs[0]
    assert len(evaluations[0] | epochs[0]) == 2


def test_a_streamed_epoch_depends_only_on_seed_and_epoch_with_persistent_workers() -> None:
    def epoch(data: LoaderData, e: int) -> list[torch.Tensor]:
        return [x for x, _ in data.train_batches(4, seed=3, epoch=e)]

    unbroken = _streamed(1)
    epoch(unbroken, 0)
    resumed = _streamed(1)  # a retry starts at epoch 1 with fresh workers
    in_process = _streamed(0)
    expected = epoch(unbroken, 1)
    # the same order and the same random "augmentations", whoever loads them
    assert all(torch.equal(a, b) for a, b in zip(expected, epoch(resumed, 1), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(expected, epoch(in_process, 1), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(expected, epoch(resumed, 2), strict=True))

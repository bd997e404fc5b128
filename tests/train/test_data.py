"""Datasets load through the real code paths: mnist1d's generator, scikit-learn, torchvision."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.fabricate import write_cifar10, write_cifar100, write_image_folder, write_mnist
from tunekit.presets import DatasetConfig
from tunekit.train.data import DatasetError, TensorData, crop_flip, load_data, preflight


def test_mnist1d_is_generated_without_network() -> None:
    data = load_data(DatasetConfig(name="mnist1d", num_samples=1000))
    # mnist1d splits 80/20 and yields 40-sample 1-D signals
    assert (data.num_train, data.num_test) == (800, 200)
    assert data.input_shape == (1, 40)
    assert data.num_classes == 10


def test_mnist1d_generation_is_deterministic() -> None:
    a = load_data(DatasetConfig(name="mnist1d", num_samples=500))
    b = load_data(DatasetConfig(name="mnist1d", num_samples=500))
    assert isinstance(a, TensorData)
    assert isinstance(b, TensorData)
    # the same samples every time: a search's trials see one dataset
    assert torch.equal(a.x_train, b.x_train)


def test_digits_loads_from_scikit_learn() -> None:
    data = load_data(DatasetConfig(name="digits"))
    assert data.input_shape == (1, 8, 8)
    assert data.num_train + data.num_test == 1797


def test_train_batches_depend_only_on_seed_and_epoch() -> None:
    data = load_data(DatasetConfig(name="mnist1d", num_samples=500))
    first = [y for _, y in data.train_batches(32, seed=3, epoch=2)]
    again = [y for _, y in data.train_batches(32, seed=3, epoch=2)]
    other = [y for _, y in data.train_batches(32, seed=3, epoch=3)]
    # a resumed run replays the same order; the next epoch is shuffled differently
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    # the partial last batch is dropped
    assert len(first) == 400 // 32


def test_fabricated_mnist_reads_through_torchvision(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_train=64, n_test=32)
    data = load_data(DatasetConfig(name="mnist", root=str(tmp_path)))
    assert (data.num_train, data.num_test, data.input_shape) == (64, 32, (1, 28, 28))
    x, y = next(data.test_batches(8))
    # normalised with MNIST's mean and std: the bright bar is far above zero
    assert x.dtype == torch.float32
    assert float(x.max()) == pytest.approx((1.0 - 0.1307) / 0.3081, rel=1e-4)
    assert y.dtype == torch.long


def test_fabricated_cifar10_reads_through_torchvision(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_batch=20, n_test=40)
    data = load_data(DatasetConfig(name="cifar10", root=str(tmp_path), verify_checksums=False))
    assert (data.num_train, data.num_test, data.input_shape, data.num_classes) == (100, 40, (3, 32, 32), 10)
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
    assert data.num_train == 100


def test_fabricated_imagenet_streams_through_image_folder(tmp_path: Path) -> None:
    write_image_folder(tmp_path, classes=3, per_class=6)
    data = load_data(DatasetConfig(name="imagenet", root=str(tmp_path), image_size=32, num_workers=1))
    assert (data.num_classes, data.num_train, data.input_shape) == (3, 18, (3, 32, 32))
    batches = list(data.train_batches(4, seed=0, epoch=0))
    # drop_last: 18 samples in batches of 4
    assert len(batches) == 4
    assert batches[0][0].shape == (4, 3, 32, 32)
    assert sum(len(y) for _, y in data.test_batches(5)) == 18


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

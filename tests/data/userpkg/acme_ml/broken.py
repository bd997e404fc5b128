"""Deliberately broken components: each one is a mistake tunekit must refuse before any trial starts."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from acme_ml.data import diabetes, wine


def raising_model(**kwargs: object) -> torch.nn.Module:
    """A model factory that raises."""
    raise RuntimeError("acme out of widgets")


def not_a_module(**kwargs: object) -> object:
    """A model factory that returns something that is no nn.Module."""
    return {"weights": [1, 2, 3]}


def two_splits() -> tuple[TensorDataset, TensorDataset]:
    """A dataset factory that returns (train, test) only."""
    train, _, test = wine()
    return train, test


def empty_test() -> tuple[TensorDataset, None, TensorDataset]:
    """A dataset factory whose test split has no samples."""
    train, _, test = wine()
    return train, None, TensorDataset(test.tensors[0][:0], test.tensors[1][:0])


def inputs_only() -> tuple[TensorDataset, None, TensorDataset]:
    """A dataset factory whose items are bare inputs (1-tuples), not (input, target) pairs."""
    train, _, test = wine()
    return TensorDataset(train.tensors[0]), None, TensorDataset(test.tensors[0])


def vector_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """A loss that forgets to reduce: one value per sample."""
    return ((outputs - targets) ** 2).reshape(len(outputs), -1).mean(1)


def nan_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """A loss that is NaN from the first batch (0/0)."""
    return ((outputs - targets) ** 2).mean() * torch.tensor(float("nan"))


__all__ = [
    "diabetes",
    "empty_test",
    "inputs_only",
    "nan_loss",
    "not_a_module",
    "raising_model",
    "two_splits",
    "vector_loss",
    "wine",
]

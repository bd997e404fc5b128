"""Dataset factories on scikit-learn's bundled data: (train, validation | None, test) TensorDatasets.

Inputs are standardised with the training split's mean and std; so are the regression targets.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(0), train.std(0) + 1e-8
    return [(a - mean) / std for a in (train, *others)]


def wine(test_fraction: float = 0.3, seed: int = 0) -> tuple[TensorDataset, None, TensorDataset]:
    """Wine (178 samples, 13 features, 3 classes): train and test; tunekit carves the validation split."""
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(test_fraction * len(x))
    test, train = order[:n_test], order[n_test:]
    x_train, x_test = _standardise(x[train], x[test])
    as_x = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.long)  # noqa: E731
    return TensorDataset(as_x(x_train), as_y(y[train])), None, TensorDataset(as_x(x_test), as_y(y[test]))


def diabetes(
    val_fraction: float = 0.15, test_fraction: float = 0.2, seed: int = 0
) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """Diabetes (442 samples, 10 features): disease progression, a regression with targets of shape (N, 1)."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test, n_val = round(test_fraction * len(x)), round(val_fraction * len(x))
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    x_train, x_val, x_test = _standardise(x[train], x[val], x[test])
    y_train, y_val, y_test = _standardise(y[train, None], y[val, None], y[test, None])
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return (
        TensorDataset(as_t(x_train), as_t(y_train)),
        TensorDataset(as_t(x_val), as_t(y_val)),
        TensorDataset(as_t(x_test), as_t(y_test)),
    )

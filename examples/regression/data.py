"""The data: scikit-learn's diabetes regression set (442 patients, 10 features), bundled, no download."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_diabetes
from torch.utils.data import TensorDataset


def load(test_fraction: float = 0.2, seed: int = 0) -> tuple[TensorDataset, None, TensorDataset]:
    """(train, None, test): inputs and targets standardised with the training split's mean and std.

    Targets are shaped ``(n, 1)`` to match the model's output (``MSELoss`` would broadcast a
    ``(n,)`` target against ``(n, 1)`` outputs into an ``(n, n)`` matrix). The validation split is
    None: tunekit carves one from train (``dataset.validation_fraction``, 10 % by default).
    """
    x, y = load_diabetes(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    x_mean, x_std = x[train].mean(0), x[train].std(0)
    y_mean, y_std = y[train].mean(), y[train].std()

    def split(idx: np.ndarray) -> TensorDataset:
        inputs = torch.tensor((x[idx] - x_mean) / x_std, dtype=torch.float32)
        targets = torch.tensor((y[idx] - y_mean) / y_std, dtype=torch.float32).unsqueeze(1)
        return TensorDataset(inputs, targets)

    return split(train), None, split(test)

"""Model factories: each returns a fresh ``torch.nn.Module``."""

from __future__ import annotations

from torch import nn


def mlp(in_features: int = 13, hidden: int = 32, classes: int = 3, dropout: float = 0.0) -> nn.Module:
    """A one-hidden-layer classifier: logits for ``classes`` classes."""
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, classes),
    )


def regressor(in_features: int = 10, hidden: int = 32) -> nn.Module:
    """A regression MLP: one tanh hidden layer (no dead units at high LR), one output per sample, shape (N, 1)."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))

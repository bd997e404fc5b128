"""The network: a small MLP from the 10 diabetes features to one number (the standardised target)."""

from __future__ import annotations

from torch import nn


def build(inputs: int = 10, hidden: int = 64, depth: int = 2, dropout: float = 0.0) -> nn.Module:
    """``depth`` hidden layers of ``hidden`` units (Linear, BatchNorm, ReLU, Dropout), then one output.

    The output is shaped ``(batch, 1)``, like the targets ``data.load`` returns. BatchNorm's running
    statistics follow the batches closely (``momentum=0.5``, PyTorch's default is 0.1): an epoch here is
    only 9 optimizer steps, and every evaluation, at any point of the 1cycle, uses those statistics.
    """
    layers: list[nn.Module] = []
    width = inputs
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden, momentum=0.5), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)

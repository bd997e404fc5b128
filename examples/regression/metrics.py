"""The metric: the coefficient of determination R² over a whole split (1 is perfect, 0 predicts the mean)."""

from __future__ import annotations

import torch


def r2(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """1 − (residual sum of squares) / (total sum of squares), over every sample of the split."""
    outputs, targets = outputs.reshape(targets.shape).double(), targets.double()
    residual = ((targets - outputs) ** 2).sum()
    total = ((targets - targets.mean()) ** 2).sum()
    return float(1.0 - residual / total.clamp_min(1e-12))

"""Metrics over a whole split: ``fn(outputs, targets) -> float``."""

from __future__ import annotations

import torch


def r2(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """The coefficient of determination: 1 - SS_res / SS_tot (1 is perfect, 0 predicts the mean)."""
    pred, true = outputs.detach().float().reshape(-1), targets.detach().float().reshape(-1)
    ss_res = torch.sum((true - pred) ** 2)
    ss_tot = torch.sum((true - true.mean()) ** 2)
    return float(1.0 - ss_res / ss_tot.clamp_min(1e-12))

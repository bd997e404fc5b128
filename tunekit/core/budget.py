"""Batch size at constant wall time (Smith 2018, Sec. 4.2, Remark 4).

Comparing batch sizes at a constant number of epochs penalises large batches; at a constant
number of iterations it favours them. The paper compares at near-constant execution time: a
short timing probe measures each candidate's cost, and its 1cycle schedule is sized to what
fits the budget. Larger batches also get proportionally larger LR bounds (Fig. 6).
"""

from __future__ import annotations

import math
from typing import Literal


def epochs_for_budget(
    time_budget_s: float, seconds_per_step: float, steps_per_epoch: int, eval_seconds: float = 0.0, min_epochs: int = 1
) -> int:
    """Whole epochs (training plus one evaluation each) that fit in ``time_budget_s``, at least ``min_epochs``.

    Raises:
        ValueError: a non-positive budget or step time.
    """
    if time_budget_s <= 0:
        raise ValueError(f"time_budget_s must be > 0, got {time_budget_s=}")
    if seconds_per_step <= 0 or steps_per_epoch < 1:
        raise ValueError(f"need seconds_per_step > 0 and steps_per_epoch ≥ 1, got {seconds_per_step=}, {steps_per_epoch=}")
    per_epoch = seconds_per_step * steps_per_epoch + max(0.0, eval_seconds)
    return max(min_epochs, math.floor(time_budget_s / per_epoch))


def scaled_lr(lr: float, base_batch: int, batch: int, rule: Literal["linear", "sqrt", "none"] = "linear") -> float:
    """An LR bound for ``batch`` given the one tuned at ``base_batch``: linear (Fig. 6), square-root, or unchanged."""
    if base_batch < 1 or batch < 1:
        raise ValueError(f"batch sizes must be ≥ 1, got {base_batch=}, {batch=}")
    ratio = batch / base_batch
    if rule == "linear":
        return lr * ratio
    if rule == "sqrt":
        return lr * math.sqrt(ratio)
    return lr

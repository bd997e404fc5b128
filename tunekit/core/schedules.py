"""Learning-rate and momentum schedules as pure functions of the iteration.

Each function maps an iteration index (0-based: the value used by the *first* optimizer
step is ``f(0)``) to a number. They know nothing of optimisers or epochs; ``tunekit.train``
turns them into torch schedulers. 1cycle itself is delegated to
``torch.optim.lr_scheduler.OneCycleLR``; :func:`one_cycle_lr` and :func:`one_cycle_momentum`
restate its formula so that tests and plots can check it independently.

Paper: Smith (2018), Sec. 4.1 (CLR, range test, 1cycle), Sec. 4.3 (cyclical momentum).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def linear(pos: float, start: float, end: float) -> float:
    """Interpolate linearly from ``start`` (pos=0) to ``end`` (pos=1); pos is clamped to [0, 1]."""
    pos = min(1.0, max(0.0, pos))
    return start + (end - start) * pos


def range_test_lr(step: int, total_steps: int, min_lr: float, max_lr: float) -> float:
    """LR of the range test: linear from ``min_lr`` at step 0 to ``max_lr`` at the last step.

    Linear, not exponential, as in the paper (Sec. 4.1); the last step (``total_steps - 1``)
    uses exactly ``max_lr``. A one-step test uses ``max_lr``.
    """
    if total_steps <= 1:
        return max_lr
    return linear(step / (total_steps - 1), min_lr, max_lr)


def range_test_momentum(step: int, total_steps: int, start: float, end: float) -> float:
    """Momentum during a range test: linear from ``start`` to ``end`` (e.g. 0.95 → 0.85, Fig. 10)."""
    if total_steps <= 1:
        return end
    return linear(step / (total_steps - 1), start, end)


def clr_triangular(step: int, stepsize: int, min_lr: float, max_lr: float) -> float:
    """Triangular cyclical LR (Smith 2015): ``min → max`` over ``stepsize`` iterations, then back.

    A cycle is two steps; the pattern repeats for as long as training lasts.
    """
    if stepsize < 1:
        raise ValueError(f"stepsize must be ≥ 1 iteration, got {stepsize=}")
    cycle = math.floor(1 + step / (2 * stepsize))
    x = abs(step / stepsize - 2 * cycle + 1)
    return min_lr + (max_lr - min_lr) * max(0.0, 1.0 - x)


def step_factor(epoch: float, milestones: Sequence[float], factor: float) -> float:
    """Multiplier of the step policy: ``factor ** (number of milestones ≤ epoch)``."""
    return float(factor ** sum(1 for m in milestones if epoch >= m))


def cosine(pos: float, start: float, end: float) -> float:
    """``start`` at ``pos`` 0, ``end`` at 1, along half a cosine (torch's ``anneal_strategy="cos"``)."""
    pos = min(1.0, max(0.0, pos))
    return end + (start - end) / 2.0 * (math.cos(math.pi * pos) + 1)


def _one_cycle_phases(total_steps: int, pct_start: float, three_phase: bool = True) -> tuple[float, float, float]:
    # OneCycleLR: phase ends at these step indices (two phases: the descent ends at the last step).
    end_up = float(pct_start * total_steps) - 1
    end_all = float(total_steps - 1)
    end_down = float(2 * pct_start * total_steps) - 2 if three_phase else end_all
    return end_up, end_down, end_all


def one_cycle_lr(
    step: int,
    total_steps: int,
    max_lr: float,
    div: float = 10.0,
    annihilation: float = 100.0,
    pct_start: float = 0.45,
    anneal: str = "linear",
    three_phase: bool = True,
) -> float:
    """1cycle LR, as torch's ``OneCycleLR`` computes it.

    Three phases (the paper's, default): climb from ``max_lr/div`` to ``max_lr``, return to
    ``max_lr/div`` in as many steps, anneal to ``max_lr/div/annihilation`` over what remains.
    Two phases (fastai's ``fit_one_cycle``): climb, then one descent to the final LR.
    ``anneal`` is the interpolation within a phase: ``linear`` or ``cos``.
    """
    move = cosine if anneal == "cos" else linear
    initial = max_lr / div
    final = initial / annihilation
    end_up, end_down, end_all = _one_cycle_phases(total_steps, pct_start, three_phase)
    if step <= end_up:
        return move(step / end_up, initial, max_lr)
    if not three_phase:
        return move((step - end_up) / (end_all - end_up), max_lr, final)
    if step <= end_down:
        return move((step - end_up) / (end_down - end_up), max_lr, initial)
    return move((step - end_down) / (end_all - end_down), initial, final)


def one_cycle_momentum(
    step: int,
    total_steps: int,
    max_momentum: float,
    min_momentum: float,
    pct_start: float = 0.45,
    anneal: str = "linear",
    three_phase: bool = True,
) -> float:
    """Cyclical momentum inverse to the 1cycle LR: ``max → min → max`` (then held at ``max``)."""
    move = cosine if anneal == "cos" else linear
    end_up, end_down, _ = _one_cycle_phases(total_steps, pct_start, three_phase)
    if step <= end_up:
        return move(step / end_up, max_momentum, min_momentum)
    if step <= end_down:
        return move((step - end_up) / (end_down - end_up), min_momentum, max_momentum)
    return max_momentum

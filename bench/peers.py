"""What a user would do instead of tunekit, written out so ``bench/suite.py`` can run it.

* The fastai habit: ``learn.lr_find()`` — an exponential LR sweep over ~100 iterations that
  records the *training* loss (smoothed), stops once it exceeds 4× its minimum, and suggests
  ``valley`` (fastai's default since 2.5) or ``steep`` — then ``fit_one_cycle`` with its
  defaults: Adam with decoupled weight decay 1e-2 (β2 0.99, ε 1e-5), div 25, div_final 1e5,
  pct_start 0.25, cosine annealing, momentum 0.95 → 0.85 → 0.95.
* Ray Tune + Optuna (TPE) or random search, with ASHA, over LR (log, the task's range-test
  span), momentum (or Adam's β1) and weight decay (log, with 0 reachable through a floor) — the
  space :class:`PeerSpace` holds, :func:`peer_space` derives from a preset and
  :func:`peer_overrides` maps back onto it; :func:`peer_trial` is one such trial.

The suggestion rules are fastai's (``fastai/callback/schedule.py``), restated here as pure
functions of the recorded curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunekit.core.lr_range import valley_lr
from tunekit.presets import Preset

#: fastai's ``fit_one_cycle`` defaults, as tunekit preset overrides (the LR is the finder's).
FASTAI_ONE_CYCLE: dict[str, Any] = {
    "optimizer": {"name": "adamw", "beta2": 0.99, "eps": 1e-5},
    "weight_decay": 1e-2,
    "policy": {
        "name": "one_cycle",
        "div": 25.0,
        "annihilation": 1e5 / 25.0,  # div_final 1e5 counts from max_lr; tunekit's from max_lr / div
        "pct_start": 0.25,
        "anneal": "cos",
        "three_phase": False,
        "momentum": [0.95, 0.85],
    },
}

#: Below this a sampled weight decay counts as 0 (the bottom decade of the log-uniform range).
WEIGHT_DECAY_FLOOR = 1e-6


@dataclass(frozen=True)
class PeerSpace:
    """What a Tune user searches: LR (log), maximum momentum or β1, weight decay (log; under the floor is 0)."""

    lr: tuple[float, float]  # the range test's span: the same LRs tunekit's range test sweeps
    momentum: tuple[float, float] = (0.8, 0.99)
    weight_decay: tuple[float, float] = (1e-7, 1e-2)
    momentum_min: float = 0.85  # where cyclical momentum turns (the preset's search.momentum.min)


def peer_space(preset: Preset) -> PeerSpace:
    """The peers' space for a loaded preset: its ``search.range_test`` LR span, its momentum's low point."""
    if preset.search is None:
        raise ValueError(f"peer_space: preset {preset.name!r} has no search section to take the LR span from")
    rt = preset.search.range_test
    return PeerSpace(lr=(rt.min_lr, rt.max_lr), momentum_min=preset.search.momentum.min)


def valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """fastai's ``valley``: the LR two thirds down the longest stretch of falling loss.

    Longest decreasing subsequence of the loss (O(n²), as fastai does it); the suggestion
    sits ``int(s) + int(s / 2)`` points into it, ``s`` a third of its length. tunekit's range-test
    analysis computes the same rule (:func:`tunekit.core.lr_range.valley_lr`) for comparison.
    """
    if len(losses) == 0 or len(lrs) != len(losses):
        raise ValueError(f"valley: need as many LRs as losses (got {len(lrs)} and {len(losses)}), at least one")
    return valley_lr(lrs, losses)


def steep(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """fastai's ``steep``: the LR where the loss falls fastest per unit of log LR."""
    lr = np.asarray(lrs, dtype=float)
    loss = np.asarray(losses, dtype=float)
    if len(lr) < 2 or len(lr) != len(loss):
        raise ValueError(f"steep: need at least two (LR, loss) points, got {len(lr)} LRs and {len(loss)} losses")
    slopes = np.diff(loss) / np.diff(np.log(lr))
    return float(lr[int(np.argmin(slopes))])


@dataclass
class LRFinderCurve:
    """What ``lr_find`` recorded: the LR and smoothed training loss of every iteration."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    stopped_early: bool = False

    def trimmed(self, num_it: int) -> tuple[list[float], list[float]]:
        """The points fastai suggests from: the first ``num_it // 10`` and the last 5 dropped."""
        return self.lrs[num_it // 10 : -5], self.losses[num_it // 10 : -5]


def finder_lr(step: int, num_it: int, start: float, end: float) -> float:
    """fastai's exponential sweep: ``start`` at step 0, ``end`` at step ``num_it - 1``."""
    return start * (end / start) ** (step / max(1, num_it - 1))


class LossSmoother:
    """fastai's ``AvgSmoothLoss``: an exponential moving average, debiased like Adam's moments."""

    def __init__(self, beta: float = 0.98) -> None:
        self.beta, self.value, self.count = beta, 0.0, 0

    def __call__(self, loss: float) -> float:
        self.count += 1
        self.value = self.beta * self.value + (1 - self.beta) * loss
        return self.value / (1 - self.beta**self.count)


def peer_overrides(lr: float, momentum: float, weight_decay: float, momentum_min: float = 0.85) -> dict[str, Any]:
    """A Tune/Optuna sample as preset overrides: 1cycle to ``lr``, cyclical momentum from ``momentum``.

    Momentum cycles from the sampled value down to ``momentum_min`` (the preset's low end) and
    back, or stays constant when the sample is already below it; a weight decay under
    :data:`WEIGHT_DECAY_FLOOR` is 0.
    """
    low = min(momentum, momentum_min)
    return {
        "policy.max_lr": float(lr),
        "policy.momentum": [float(momentum), float(low)] if momentum > low else float(momentum),
        "weight_decay": 0.0 if weight_decay < WEIGHT_DECAY_FLOOR else float(weight_decay),
    }


def peer_trial(config: dict[str, Any]) -> None:
    """One peer trial: the sampled ``lr``/``momentum``/``wd`` as overrides of ``preset``, then tunekit's own loop."""
    from tunekit.trainable import train_fn

    overrides = peer_overrides(config["lr"], config["momentum"], config["wd"], config.get("momentum_min", 0.85))
    train_fn({"preset": config["preset"], **overrides})


def lr_find(
    preset: Any, start: float = 1e-7, end: float = 10.0, num_it: int = 100, stop_div: float = 4.0
) -> tuple[LRFinderCurve, float]:
    """Run fastai's LR finder on ``preset`` (bare, on the CPU); returns the curve and the epochs it cost."""
    from tunekit.train.loop import Trainer

    trainer = Trainer(preset, "cpu")
    curve = LRFinderCurve()
    smooth = LossSmoother()
    best = math.inf
    step = 0
    epoch = 0
    while step < num_it:
        for x, y in trainer.data.train_batches(preset.train.batch_size, preset.train.seed, epoch):
            lr = finder_lr(step, num_it, start, end)
            for group in trainer.optimizer.param_groups:
                group["lr"] = lr
            loss = smooth(float(trainer.train_step(x, y, advance=False)))
            step += 1
            curve.lrs.append(lr)
            curve.losses.append(loss)
            best = min(best, loss)
            if not math.isfinite(loss) or loss > stop_div * best:
                curve.stopped_early = True
                return curve, step / trainer.steps_per_epoch
            if step >= num_it:
                break
        epoch += 1
    return curve, step / trainer.steps_per_epoch

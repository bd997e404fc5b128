"""When to stop a trial early, from the shape of its validation loss and its peers' losses at the same step.

One rule, shared by the Ray scheduler (:mod:`tunekit.schedulers`) and the Optuna pruner
(:mod:`tunekit.pruners`):

1. a diverging curve stops at once;
2. nothing else stops before ``grace_period`` steps;
3. an overfitting curve stops (its loss has clearly risen after its minimum);
4. with at least ``min_peers`` peers at the same step, a trial whose loss is worse than the
   peers' ``quantile`` by more than its own tolerance stops — unless its curve is still falling
   fast enough to close that gap within one tail window.

Peers must run schedules of the same length: a 1cycle trial's loss at epoch k depends on its
total cycle, so callers group trials by schedule length before comparing (ARCHITECTURE.md).

Paper: Sec. 3 (Remarks 1-2): early validation loss separates good from bad configurations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tunekit.core.curves import Diagnosis, Floats, Shape, diagnose


@dataclass(frozen=True)
class StopRule:
    """The knobs of :func:`decide`, checked once (``ValueError`` naming the bad one)."""

    grace_period: int = 3  # steps before anything but divergence can stop a trial
    min_peers: int = 2  # other trials needed at the same step for a peer comparison
    quantile: float = 0.5  # compare with this quantile of the peers' losses (0.5: median)
    stop_overfitting: bool = True

    def __post_init__(self) -> None:
        if self.grace_period < 1:
            raise ValueError(f"grace_period must be ≥ 1, got {self.grace_period=}")
        if self.min_peers < 1:
            raise ValueError(f"min_peers must be ≥ 1, got {self.min_peers=}")
        if not 0.0 < self.quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {self.quantile=}")


@dataclass(frozen=True)
class Decision:
    """Continue or stop, which rule fired, and the curve's diagnosis."""

    stop: bool
    stopped_by: str  # "" (continue), "diverging", "overfitting" or "peers"
    diagnosis: Diagnosis
    reason: str


def value_at(steps: Floats, losses: Floats, step: float, window: int = 3) -> float:
    """A trial's loss at ``step``: the median of its last ``window`` finite values at or before it.

    NaN when the trial has no finite value by then; +inf when its last value there is not finite
    (a diverged trial is worse than any finite loss).
    """
    x = np.asarray(steps, dtype=float)
    y = np.asarray(losses, dtype=float)
    upto = y[x <= step]
    if len(upto) == 0:
        return math.nan
    if not math.isfinite(upto[-1]):
        return math.inf
    finite = upto[np.isfinite(upto)]
    return float(np.median(finite[-window:]))


def decide(
    steps: Floats,
    losses: Floats,
    peer_losses: Floats,
    rule: StopRule = StopRule(),
    chance_loss: float | None = None,
    at_end: bool = False,
) -> Decision:
    """Decide whether the trial whose (lower-is-better) curve is ``steps, losses`` should stop now.

    ``peer_losses`` are the other comparable trials' losses at the same step (see :func:`value_at`);
    NaNs among them are ignored. ``chance_loss`` (ln of the number of classes) lets a curve stuck
    at chance level count as diverging. ``at_end``: this is the trial's last step; stopping it now
    saves nothing, so only a divergence is recorded as a stop — a trial that ran to its end ranks
    with those that did.
    """
    decision = _decide(steps, losses, peer_losses, rule, chance_loss)
    if at_end and decision.stop and decision.stopped_by != "diverging":
        return Decision(False, "", decision.diagnosis, f"{decision.reason}; but this is its last epoch: it finished")
    return decision


def _decide(steps: Floats, losses: Floats, peer_losses: Floats, rule: StopRule, chance_loss: float | None) -> Decision:
    diagnosis = diagnose(steps, losses, chance_loss=chance_loss)
    step = float(steps[-1]) if len(steps) else 0.0
    if diagnosis.shape is Shape.DIVERGING:
        return Decision(True, "diverging", diagnosis, f"diverging: {diagnosis.reason}")
    if step < rule.grace_period:
        return Decision(False, "", diagnosis, f"within the grace period ({step:g} < {rule.grace_period})")
    if rule.stop_overfitting and diagnosis.shape is Shape.OVERFITTING:
        return Decision(True, "overfitting", diagnosis, f"overfitting: {diagnosis.reason}")
    peers = [p for p in peer_losses if not math.isnan(p)]
    if len(peers) < rule.min_peers or diagnosis.shape is Shape.UNKNOWN:
        return Decision(False, "", diagnosis, f"{diagnosis.shape.value}; {len(peers)} peers at step {step:g}")
    reference = float(np.quantile(np.asarray(peers, dtype=float), rule.quantile))
    own = value_at(steps, losses, step)
    gap = own - reference
    if gap <= diagnosis.tolerance:
        return Decision(False, "", diagnosis, f"{diagnosis.shape.value}; within {diagnosis.tolerance:.3g} of its peers")
    if -diagnosis.tail_change >= gap:
        return Decision(False, "", diagnosis, f"behind its peers by {gap:.3g} but falling fast enough to catch up")
    return Decision(
        True, "peers", diagnosis, f"worse than its peers' q{rule.quantile:g} ({reference:.4g}) by {gap:.3g} and not catching up"
    )

"""Exponent bisection for a log-scale regulariser (weight decay), or plain bisection on a linear one.

Paper (Smith 2018, Sec. 4.4 and the Sec. 5 checklist): weight decay "requires a grid search to
determine the proper magnitude but usually does not require more than one significant figure
accuracy". Start from a grid (1e-3, 1e-4, 1e-5, 0 when there is no idea) or from a guess g
({g·10^-0.5, g, g·10^0.5}); then

* best value inside the explored range → bisect the exponent between it and its better
  neighbour (1e-3 and 1e-4 → 10^-3.5 = 3.2e-4);
* best value at an edge → extrapolate half a decade outward;
* stop when the best value's neighbours are within ``resolution`` (0.25 decade: one
  significant figure) or the budget of trials is spent.

Zero is a legal weight decay: on the exponent axis it sits one decade below the smallest
positive value tried, so a "towards zero" proposal goes half a decade below it — once: if zero
still wins after that, the search ends at zero. A diverged trial
counts as worst; ties are broken by curve shape (horizontal beats still-decreasing).

Everything here is plain data: a :class:`Bisection` holds the observations and answers
:meth:`Bisection.propose`; it pickles and compares by value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from tunekit.core.curves import Shape, rank_key

Scale = Literal["log", "linear"]


def round_sig(value: float, digits: int = 2) -> float:
    """``value`` rounded to ``digits`` significant figures (0 stays 0)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def guess_grid(guess: float, scale: Scale = "log", step: float = 0.5) -> list[float]:
    """Three starting values around a guess: {g·10^-step, g, g·10^step} (log) or {g-step, g, g+step}."""
    if scale == "log":
        if guess <= 0:
            raise ValueError(f"a log-scale guess must be > 0, got {guess=}")
        return [round_sig(guess * 10**-step), guess, round_sig(guess * 10**step)]
    return [guess - step, guess, guess + step]


@dataclass
class Observation:
    """One evaluated value: its loss at the judging step and the shape of its curve."""

    value: float
    loss: float
    shape: Shape = Shape.UNKNOWN


@dataclass
class Bisection:
    """The state of an exponent bisection; see the module docstring for the rule.

    Args:
        initial: the starting grid (from :func:`guess_grid`, a preset, or the "no idea" grid).
        scale: "log" (weight decay) or "linear" (dropout).
        resolution: stop once the best value's neighbours are this close (decades for log).
        edge_step: how far to extrapolate past an edge (decades for log; None: half the spacing).
        max_trials: budget, the initial grid included.
        tie_tolerance: losses within this count as equal, and then the curve shape decides.
    """

    initial: list[float]
    scale: Scale = "log"
    resolution: float = 0.25
    edge_step: float | None = 0.5
    max_trials: int = 8
    tie_tolerance: float = 0.0
    observations: list[Observation] = field(default_factory=list)
    proposed: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.initial:
            raise ValueError("initial is empty: give at least one value, e.g. [1e-3, 1e-4, 1e-5, 0]")
        if len(set(self.initial)) != len(self.initial):
            raise ValueError(f"initial has repeated values: {self.initial}")
        if self.scale == "log" and any(v < 0 for v in self.initial):
            raise ValueError(f"log-scale values must be ≥ 0, got {self.initial}")
        if self.resolution <= 0:
            raise ValueError(f"resolution must be > 0, got {self.resolution=}")
        if self.max_trials < len(self.initial):
            raise ValueError(f"max_trials ({self.max_trials}) is smaller than the initial grid ({len(self.initial)})")

    # ------------------------------------------------------------------ queries

    def pending(self) -> list[float]:
        """Proposed values without an observation yet."""
        seen = {o.value for o in self.observations}
        return [v for v in self.proposed if v not in seen]

    def best(self) -> Observation | None:
        """The best observation so far (diverged worst; shape breaks ties)."""
        if not self.observations:
            return None
        return min(
            self.observations, key=lambda o: rank_key(o.loss, o.shape, self.tie_tolerance if o.shape is Shape.HORIZONTAL else 0.0)
        )

    def done(self) -> bool:
        """True once the rule has nothing more to propose and nothing is pending."""
        return not self.pending() and not self._next_values()

    # ------------------------------------------------------------------ updates

    def observe(self, value: float, loss: float, shape: Shape = Shape.UNKNOWN) -> None:
        """Record the result of ``value`` (NaN or a diverging shape count as worst)."""
        if not math.isfinite(loss) or shape is Shape.DIVERGING:
            loss = math.inf
        self.observations = [o for o in self.observations if o.value != value]
        self.observations.append(Observation(value, loss, shape))

    def propose(self) -> list[float]:
        """New values to evaluate now (possibly several); [] while waiting or when done.

        The initial grid is proposed at once, in parallel; after that, one value at a time
        once every pending value has been observed.
        """
        if not self.proposed:
            self.proposed = list(self.initial)
            return list(self.initial)
        if self.pending():
            return []
        new = self._next_values()
        self.proposed.extend(new)
        return new

    # ------------------------------------------------------------------ the rule

    @property
    def _resolved(self) -> float:
        # proposals are rounded to two significant figures, which moves them by up to ~0.01
        # decade: allow 10 % slack so 10^-3.25 and 10^-3.5, rounded, still count as resolved
        return self.resolution * 1.1

    def _axis(self, value: float) -> float:
        if self.scale == "linear":
            return value
        if value > 0:
            return math.log10(value)
        positives = [o.value for o in self.observations if o.value > 0] + [v for v in self.proposed if v > 0]
        return math.log10(min(positives)) - 1.0 if positives else -10.0

    def _value(self, position: float) -> float:
        return round_sig(10**position) if self.scale == "log" else position

    def _next_values(self) -> list[float]:
        if len(self.proposed) >= self.max_trials or not self.observations:
            return []
        best = self.best()
        assert best is not None
        if not math.isfinite(best.loss):
            return []  # everything diverged: nothing to bisect towards
        points = sorted(self.observations, key=lambda o: self._axis(o.value))
        i = next(k for k, o in enumerate(points) if o.value == best.value)
        x = self._axis(best.value)
        lower = points[i - 1] if i > 0 else None
        upper = points[i + 1] if i + 1 < len(points) else None
        if lower is None or upper is None:
            target = self._extrapolate(x, lower, upper, best)
        else:
            better = lower if rank_key(lower.loss, lower.shape) <= rank_key(upper.loss, upper.shape) else upper
            gap = abs(self._axis(better.value) - x)
            if max(abs(self._axis(lower.value) - x), abs(self._axis(upper.value) - x)) <= self._resolved:
                return []  # one significant figure resolved on both sides
            target = (x + self._axis(better.value)) / 2 if gap > self._resolved else None
            if target is None:  # the better side is resolved: halve the other side
                other = upper if better is lower else lower
                target = (x + self._axis(other.value)) / 2
        if target is None:
            return []
        value = self._value(target)
        if value in self.proposed or (self.scale == "log" and value <= 0):
            return []
        return [value]

    def _extrapolate(self, x: float, lower: Observation | None, upper: Observation | None, best: Observation) -> float | None:
        neighbour = lower or upper
        if neighbour is None:  # a single observation: step outward on both sides, one at a time
            return x + (self.edge_step or 1.0)
        spacing = abs(self._axis(neighbour.value) - x)
        step = self.edge_step if self.edge_step is not None else spacing / 2
        if upper is None:  # best is the largest value tried
            return x + step
        if best.value == 0:
            # zero still wins: one half-decade step below the grid's smallest positive value, then
            # stop — below that, weight decay and none at all differ by less than one figure
            grid_floor = min((v for v in self.initial if v > 0), default=math.inf)
            stepped_below = any(0 < o.value < grid_floor for o in self.observations)
            return None if stepped_below or spacing <= self._resolved else x + spacing / 2
        return x - step  # best is the smallest (positive) value tried

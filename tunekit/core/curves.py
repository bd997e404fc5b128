"""Reading a test-loss curve: horizontal, still decreasing, rising after its minimum, or exploding.

The paper's central clue (Smith 2018, Sec. 3, Remarks 1-2; Figs. 1, 3, 4, 7, 9-11): early in
training, a validation loss (the paper's "test loss") that falls and then runs **horizontal** marks a good configuration; one
that keeps **decreasing** is underfitting; one that **rises** after its minimum is overfitting;
one that explodes is **diverging** — a non-finite loss, a jump by an order of magnitude or more, or a
model stuck at chance level. A steady rise after the minimum is overfitting however high it climbs.

Every tolerance is measured in the curve's own units — its noise (a robust MAD of successive
differences) and its excursion (how far it fell and rose) — so multiplying the losses by a
positive number or shifting them does not change the verdict. Smoothing is a centred running
median (no lag, unlike an EMA, which matters on curves of a dozen epochs); slopes are
Theil-Sen (the median of pairwise slopes), robust to a few wild points.
"""

from __future__ import annotations

import enum
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
#: A sequence of numbers: a list, a tuple or a numpy array.
Floats = Sequence[float] | npt.NDArray[np.floating[Any]]


class Shape(str, enum.Enum):
    """What a test-loss curve says about a configuration."""

    HORIZONTAL = "horizontal"  # fell, then flat within its own noise: a good configuration
    UNDERFITTING = "underfitting"  # still clearly decreasing over the tail
    OVERFITTING = "overfitting"  # clearly risen after its minimum, however high
    DIVERGING = "diverging"  # exploded: NaN/inf, orders of magnitude up, or stuck at chance level
    UNKNOWN = "unknown"  # too few points to judge (fewer than three)


@dataclass(frozen=True)
class Diagnosis:
    """A verdict and the numbers behind it (all in the curve's own units)."""

    shape: Shape
    reason: str
    points: int  # finite points judged
    noise: float  # robust noise of the curve (σ of one point)
    drop: float  # how far the smoothed curve fell from its start to its minimum
    rise: float  # how far the smoothed curve ends above its minimum
    tail_change: float  # Theil-Sen slope × tail length: the change over the tail window (< 0: falling)
    tail_slope: float  # Theil-Sen slope over the tail window, loss per step
    tolerance: float  # changes smaller than this are "flat"
    min_step: float  # step of the smoothed minimum
    min_loss: float  # smoothed loss at the minimum
    last_loss: float  # smoothed level at the end
    nonfinite_step: float | None = None  # first step whose loss was NaN/inf

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (``shape`` as its string value; non-finite numbers as None)."""
        out = asdict(self)
        out["shape"] = self.shape.value
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def running_median(values: Floats, window: int) -> FloatArray:
    """Running median of odd ``window``: centred; shrinking at the start; one-sided at the end.

    At the start the window shrinks symmetrically, so the first value stays the first point (the
    drop is measured from it). At the end it looks back ``window`` points: the latest level is
    the median of the last points, so a single noisy last value is not read as a turn.
    """
    x = np.asarray(values, dtype=float)
    half = max(0, window // 2)
    n = len(x)
    if half == 0 or n == 0:
        return x.copy()
    out = np.empty_like(x)
    if n > 2 * half:  # the interior, vectorised: a full (odd) centred window everywhere
        out[half : n - half] = np.sort(np.lib.stride_tricks.sliding_window_view(x, 2 * half + 1), axis=1)[:, half]
    xs = x.tolist()  # the few end points: plain Python is faster than numpy on tiny slices
    for i in [*range(min(half, n)), *range(max(half, n - half), n)]:
        if i + half < n:
            k = min(half, i)
            out[i] = statistics.median(xs[i - k : i + k + 1])
        else:
            out[i] = statistics.median(xs[max(0, i - 2 * half) : i + 1])
    return out


#: 1.4826·MAD of (y - running median of 5) is this fraction of σ for Gaussian noise (simulated).
_MEDIAN5_RESIDUAL_SCALE = 0.69


def robust_noise(values: Floats) -> float:
    """σ of the point-to-point noise of a curve, robust to its trend and to a few wild points.

    From five points on: 1.4826·MAD of the residuals from a running median of 5, rescaled to σ
    (a curve whose slope changes — a range test — does not inflate it). Below five points:
    1.4826·MAD of successive differences / √2. Zero below three points.
    """
    x = np.asarray(values, dtype=float)
    if len(x) < 3:
        return 0.0
    if len(x) < 5:
        d = np.diff(x)
        return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))
    r = x - running_median(x, 5)
    return float(1.4826 * np.median(np.abs(r - np.median(r))) / _MEDIAN5_RESIDUAL_SCALE)


def standard_error(weighted_sum: float, weighted_sum_sq: float, count: float, groups: int) -> float:
    """The standard error of a mean over ``count`` samples, from the means mᵢ of the ``groups`` groups of
    nᵢ samples it was summed in: ``weighted_sum`` = Σ nᵢmᵢ, ``weighted_sum_sq`` = Σ nᵢmᵢ².

    The group means' weighted variance v = Σ nᵢ(mᵢ − m)² / count over ``groups`` − 1: for groups of g
    independent samples of variance σ², v ≈ σ²/g, and v / (groups − 1) ≈ σ²/count, the squared standard
    error of the mean. It is how far a validation loss moves with the sample of the split it was
    measured on. NaN below two groups.
    """
    if groups < 2 or count <= 0:
        return math.nan
    mean = weighted_sum / count
    spread = max(0.0, weighted_sum_sq / count - mean * mean)
    return math.sqrt(spread / (groups - 1))


def theil_sen_slope(steps: Floats, values: Floats) -> float:
    """Median of the slopes between every pair of points (0 for fewer than two distinct steps)."""
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    i, j = np.triu_indices(len(s), k=1)
    dx = s[j] - s[i]
    keep = dx != 0
    if not keep.any():
        return 0.0
    return float(np.median((v[j] - v[i])[keep] / dx[keep]))


def smoothing_window(points: int, fraction: float = 0.1) -> int:
    """An odd running-median window of about ``fraction`` of the curve, at least 3 (1 below 5 points)."""
    if points < 5:
        return 1
    w = max(3, round(fraction * points))
    return w if w % 2 else w + 1


def diagnose(
    steps: Floats,
    losses: Floats,
    *,
    min_points: int = 3,
    tail_fraction: float = 1 / 3,
    smooth_fraction: float = 0.1,
    noise_multiple: float = 2.0,
    relative_tolerance: float = 0.05,
    chance_loss: float | None = None,
    explode_multiple: float = 10.0,
    chance_fraction: float = 1.0,
) -> Diagnosis:
    """Classify a test-loss curve as horizontal, underfitting, overfitting or diverging.

    Rules, in order:

    1. a NaN/inf loss → DIVERGING (the curve is judged up to that point for the evidence);
    2. an explosion → DIVERGING, however few the points: a last loss over ``explode_multiple`` ×
       chance level (with ``chance_loss``: ln of the number of classes, for a cross-entropy), or,
       for a positive loss, over ``explode_multiple`` × its minimum and above its first value (an
       order of magnitude up, not a steady rise);
    3. fewer than ``min_points`` finite points → UNKNOWN;
    4. with ``chance_loss``, a curve that is no longer falling and whose last three (smoothed)
       points are all at or above ``chance_fraction`` × chance level has learned nothing, or lost
       it → DIVERGING;
    5. the smoothed curve ends significantly above its minimum → OVERFITTING, however high it
       climbed (back past its start included: that is still a rise, not an explosion);
    6. the tail (last ``tail_fraction`` of the points) still falls significantly → UNDERFITTING;
    7. otherwise → HORIZONTAL.

    "Significant" means larger than ``tolerance = max(noise_multiple·σ, relative_tolerance·excursion)``
    where σ is the robust point noise and the excursion is the larger of the curve's drop and
    rise. Both are differences, so the verdict does not change when the losses are scaled by a
    positive factor or shifted (two absolute exceptions: ``chance_loss`` — scale and shift it with
    the losses — and the explosion ratio of rule 2, read on the losses as given).

    Args:
        steps: x values (epochs or iterations), increasing.
        losses: validation losses, same length; NaN/inf allowed.

    Paper: Sec. 3 (Remarks 1-2), Sec. 4.1.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # astronomically large losses: judged, not warned about
        return _diagnose(
            steps,
            losses,
            min_points,
            tail_fraction,
            smooth_fraction,
            noise_multiple,
            relative_tolerance,
            chance_loss,
            explode_multiple,
            chance_fraction,
        )


def _diagnose(
    steps: Floats,
    losses: Floats,
    min_points: int,
    tail_fraction: float,
    smooth_fraction: float,
    noise_multiple: float,
    relative_tolerance: float,
    chance_loss: float | None,
    explode_multiple: float,
    chance_fraction: float,
) -> Diagnosis:
    if len(steps) != len(losses):
        raise ValueError(f"steps and losses differ in length: {len(steps)} vs {len(losses)}")
    x_all = np.asarray(steps, dtype=float)
    y_all = np.asarray(losses, dtype=float)
    finite = np.isfinite(y_all)
    nonfinite_step: float | None = None
    if not finite.all():
        first_bad = int(np.argmin(finite))
        nonfinite_step = float(x_all[first_bad])
        x, y = x_all[:first_bad], y_all[:first_bad]
    else:
        x, y = x_all, y_all
    n = len(y)
    if n == 0:
        return _verdict(Shape.DIVERGING if nonfinite_step is not None else Shape.UNKNOWN, "no finite loss", x, y, nonfinite_step)
    smooth = running_median(y, smoothing_window(n, smooth_fraction))
    m = int(np.argmin(smooth))
    noise = robust_noise(y)
    drop = float(smooth[0] - smooth[m])
    end_level = float(smooth[-1])
    rise = end_level - float(smooth[m])
    tail = max(3, math.ceil(tail_fraction * n))
    tail_x, tail_y = x[-tail:], y[-tail:]
    slope = theil_sen_slope(tail_x, tail_y)
    tail_change = slope * float(tail_x[-1] - tail_x[0]) if n >= 2 else 0.0
    tolerance = max(noise_multiple * noise, relative_tolerance * max(drop, rise))
    evidence: dict[str, Any] = {
        "points": n,
        "noise": noise,
        "drop": drop,
        "rise": rise,
        "tail_change": tail_change,
        "tail_slope": slope,
        "tolerance": tolerance,
        "min_step": float(x[m]),
        "min_loss": float(smooth[m]),
        "last_loss": end_level,
        "nonfinite_step": nonfinite_step,
    }
    if nonfinite_step is not None:
        return Diagnosis(Shape.DIVERGING, f"loss is NaN/inf from step {nonfinite_step:g}", **evidence)
    if chance_loss is not None and chance_loss > 0 and y[-1] > explode_multiple * chance_loss:
        return Diagnosis(
            Shape.DIVERGING, f"loss {y[-1]:.3g} is over {explode_multiple:g}× chance level ({chance_loss:.3g})", **evidence
        )
    low = float(np.min(y))
    if n >= 2 and low > 0 and y[-1] > explode_multiple * low and y[-1] > y[0]:
        return Diagnosis(
            Shape.DIVERGING,
            f"exploded: loss {y[-1]:.3g} is over {explode_multiple:g}× its minimum ({low:.3g}) and above its start",
            **evidence,
        )
    if n < min_points:
        return Diagnosis(Shape.UNKNOWN, f"too few points to judge ({n} < {min_points})", **evidence)
    falling = -tail_change > tolerance
    settled = float(np.min(smooth[-3:]))  # the end's level, robust to one spike (BatchNorm's, early in a cycle)
    if chance_loss is not None and not falling and settled >= chance_fraction * chance_loss:
        return Diagnosis(
            Shape.DIVERGING,
            f"at chance level: ends at {settled:.3g} or above, not falling (chance {chance_loss:.3g})",
            **evidence,
        )
    if rise > tolerance:
        past_start = "; it ended above where it started" if rise >= drop else ""
        return Diagnosis(
            Shape.OVERFITTING,
            f"rose {rise:.3g} after its minimum at step {x[m]:g} (tolerance {tolerance:.3g}{past_start})",
            **evidence,
        )
    if falling:
        return Diagnosis(
            Shape.UNDERFITTING,
            f"still falling: {tail_change:.3g} over the last {tail} points (tolerance {tolerance:.3g})",
            **evidence,
        )
    return Diagnosis(
        Shape.HORIZONTAL, f"flat: tail change {tail_change:.3g}, rise {rise:.3g}, within tolerance {tolerance:.3g}", **evidence
    )


def _verdict(shape: Shape, reason: str, x: FloatArray, y: FloatArray, nonfinite_step: float | None) -> Diagnosis:
    nan = math.nan
    return Diagnosis(shape, reason, len(y), nan, nan, nan, nan, nan, nan, nan, nan, nan, nonfinite_step)


#: Order of shapes when losses tie: a flat curve is preferred over one still falling (Sec. 3).
_SHAPE_ORDER = {Shape.HORIZONTAL: 0, Shape.UNKNOWN: 1, Shape.UNDERFITTING: 2, Shape.OVERFITTING: 3, Shape.DIVERGING: 4}
_BAD = {Shape.OVERFITTING: 1, Shape.DIVERGING: 2}


def rank_key(loss: float, shape: Shape, tie_tolerance: float = 0.0) -> tuple[int, float, int]:
    """Sort key for trials compared at the same step (smaller is better).

    Diverging trials rank last, overfitting ones just before them; among the rest the lower
    loss wins, and a horizontal curve beats a still-falling one unless the latter is lower
    by more than ``tie_tolerance`` (losses within it count as equal).
    """
    bad = _BAD.get(shape, 0)
    value = loss if math.isfinite(loss) else math.inf
    if shape is Shape.HORIZONTAL:
        value -= tie_tolerance
    return bad, value, _SHAPE_ORDER[shape]


def rank(entries: dict[str, tuple[float, Shape]], tie_tolerance: float = 0.0) -> list[str]:
    """Trial ids from best to worst; ``entries`` maps id → (loss at a common step, shape)."""
    return sorted(entries, key=lambda k: rank_key(entries[k][0], entries[k][1], tie_tolerance))


def runs_horizontal(epoch: int, losses: Floats, min_epochs: int, chance_loss: float | None = None) -> bool:
    """Whether the per-epoch ``losses`` ending at ``epoch`` run horizontal, not before ``min_epochs``.

    A snapshot-restart base run stops (with its snapshot) the first time this is true (Sec. 4.4);
    ``losses`` are this run's own epochs, the last one at ``epoch``.
    """
    if epoch < min_epochs:
        return False
    epochs = list(range(epoch - len(losses) + 1, epoch + 1))
    return diagnose(epochs, losses, chance_loss=chance_loss).shape is Shape.HORIZONTAL

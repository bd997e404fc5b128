"""Reading an LR range test: the largest usable LR, the bounds for 1cycle/CLR, and what else the curve shows.

Paper (Smith 2018, Sec. 4.1): "as the learning rate increases, it eventually becomes too large
and causes the test/validation loss to increase … The learning rate at this extrema is the
largest value that can be used as the learning rate for the maximum bound". The minimum bound
is ``max_lr / 10`` (or /20) for one cycle and ``max_lr / 3`` (or /4) for CLR. A curve that stays
flat up to very large LRs marks super-convergence; a bump at small LRs (Fig. 1a) marks an
early overfitting window.

fastai's suggestions (steepest descent, valley) are computed too, for comparison only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tunekit.core.curves import Floats, Shape, diagnose, robust_noise, running_median, smoothing_window, theil_sen_slope

#: A range test stops for being back at chance level only after its smoothed loss fell below this share of it:
#: a test that starts at a tiny LR may sit at chance for a while before it learns.
LEARNED_FRACTION = 0.9


class RangeTestError(ValueError):
    """The curve cannot be analysed; the message says why and what to do."""


@dataclass(frozen=True)
class LRRange:
    """The decision of an LR range test and the evidence for each rule."""

    max_lr: float  # largest LR before the validation loss turns up or diverges
    min_lr: float  # max_lr / min_lr_factor
    lr_at_min_loss: float  # LR at the smoothed minimum of the validation loss
    min_loss: float
    turned_up: bool  # the loss rose significantly after its minimum within the tested range
    turn_up_lr: float | None  # first LR whose smoothed loss is significantly above the minimum
    diverged_at_lr: float | None  # first LR with a NaN/inf loss
    still_falling: bool  # the minimum is at the very end: test larger LRs
    descended: bool  # the smoothed loss fell by more than the tolerance from its first point
    super_convergence: bool  # flat near its minimum over ≥ 3× in LR, up to the end of the test
    early_overfitting: tuple[float, float] | None  # (from, to) LR window of a bump at small LRs (Fig. 1a)
    steepest_lr: float  # fastai "steep": steepest fall against log LR
    valley_lr: float  # fastai "valley": 2/3 down the longest descending stretch
    tolerance: float
    noise: float
    points: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (non-finite numbers become None)."""
        out = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def analyse_range_test(
    lrs: Floats,
    test_losses: Floats,
    *,
    min_lr_factor: float = 10.0,
    min_points: int = 5,
    smooth_fraction: float = 0.1,
    noise_multiple: float = 2.0,
    relative_tolerance: float = 0.05,
    super_convergence_span: float = 3.0,
    chance_loss: float | None = None,
) -> LRRange:
    """Pick ``max_lr`` and ``min_lr`` from a range test's (LR, validation loss) curve.

    Rules:

    * the curve is cut at its first NaN/inf (``diverged_at_lr``) and smoothed with a centred
      running median;
    * ``tolerance = max(noise_multiple·σ, relative_tolerance·drop)``, σ the robust point noise,
      drop the fall from the first point to the minimum;
    * ``max_lr`` is the LR of the last point before the smoothed loss, after its minimum, first
      exceeds the minimum by more than the tolerance; if it never does, the last finite LR;
    * a curve that never falls by more than the tolerance (``descended`` False) started at or past
      its turn-up: no LR it tested is shown to be better than its first, so ``max_lr`` is the first
      evaluated LR (a ceiling the learning_rate phase brackets from below), not an LR read from noise;
    * a curve back at chance level after fewer than five points has no noise to read from them (their
      differences are the fall itself): its tolerance is the relative one alone;
    * ``min_lr = max_lr / min_lr_factor`` (10 for 1cycle; 3-4 for CLR);
    * with ``chance_loss`` (ln of the number of classes), a curve that never gets below it
      learned nothing and is refused, and one that climbs back to it after its minimum counts
      as diverged there.

    Raises:
        RangeTestError: fewer than ``min_points`` finite points, LRs not positive and increasing,
            or lengths that differ.

    Paper: Sec. 4.1, Sec. 5 (checklist item 1).
    """
    x_all = np.asarray(lrs, dtype=float)
    y_all = np.asarray(test_losses, dtype=float)
    if x_all.shape != y_all.shape:
        raise RangeTestError(f"lrs and test_losses differ in length: {len(x_all)} vs {len(y_all)}")
    if min_lr_factor <= 1:
        raise RangeTestError(f"min_lr_factor must be > 1, got {min_lr_factor=}")
    if len(x_all) and (not np.all(np.isfinite(x_all)) or np.any(x_all <= 0)):
        raise RangeTestError("lrs must be positive finite numbers; is the first column the learning rate?")
    if np.any(np.diff(x_all) <= 0):
        raise RangeTestError("lrs must increase from row to row, as in a range test; sort the curve by LR or check the column")
    notes: list[str] = []
    finite = np.isfinite(y_all)
    diverged_at: float | None = None
    if not finite.all():
        cut = int(np.argmin(finite))
        diverged_at = float(x_all[cut])
        notes.append(f"the validation loss is NaN/inf from lr={diverged_at:.4g}: the range test diverged there")
        x, y = x_all[:cut], y_all[:cut]
    else:
        x, y = x_all, y_all
    if len(y) < min_points:
        raise RangeTestError(
            f"too few finite points to read a range test ({len(y)} < {min_points}); "
            "evaluate more often (range_test.eval_every) or start from a smaller min_lr"
        )
    if np.any(y < 0):
        notes.append("some losses are negative: a cross-entropy cannot be; check that the column is a loss")

    smooth = running_median(y, smoothing_window(len(y), smooth_fraction))
    m = int(np.argmin(smooth))
    back_at_chance = False
    if chance_loss is not None:
        if smooth[m] >= chance_loss:
            raise RangeTestError(
                f"the validation loss never fell below chance level ({chance_loss:.3g}): the range test learned nothing; "
                "run it for more steps, start at a smaller min_lr, or check the data and the model"
            )
        back = np.nonzero(smooth[m:] >= chance_loss)[0]
        if len(back):
            cut = m + int(back[0])
            back_at_chance = True
            if diverged_at is None:
                diverged_at = float(x[cut])
                notes.append(
                    f"the validation loss is back at chance level from lr={diverged_at:.4g}: the range test diverged there"
                )
            x, y, smooth = x[: cut + 1], y[: cut + 1], smooth[: cut + 1]
    # before the point back at chance, fewer than five points cannot tell noise from the fall itself (a
    # coarse ramp that explodes early: 1.88, 0.67, 0.69, then 6.9 at chance), so the drop alone decides there
    noise = 0.0 if back_at_chance and len(y) - 1 < 5 else robust_noise(y)
    drop = float(smooth[0] - smooth[m])
    tolerance = max(noise_multiple * noise, relative_tolerance * drop, 1e-12 * max(1.0, abs(float(smooth[m]))))

    above = np.nonzero(smooth[m:] - smooth[m] > tolerance)[0]
    turned_up = len(above) > 0
    if turned_up:
        j = m + int(above[0])
        turn_up_lr: float | None = float(x[j])
        max_lr = float(x[j - 1])
    else:
        turn_up_lr = None
        max_lr = float(x[-1])
    tail = max(3, len(y) // 3)
    tail_change = theil_sen_slope(x[-tail:], y[-tail:]) * float(x[-1] - x[-tail])
    still_falling = not turned_up and -tail_change > tolerance
    if still_falling:
        notes.append("the validation loss is still falling at the largest LR tested: extend max_lr of the range test")
    near = np.nonzero(smooth - smooth[m] <= tolerance)[0]
    first_flat_lr = float(x[near[0]]) if len(near) else float(x[m])
    descended = drop > tolerance
    super_convergence = (
        descended
        and not turned_up
        and diverged_at is None
        and not still_falling
        and float(x[-1]) >= super_convergence_span * first_flat_lr
    )
    if super_convergence:
        notes.append(
            f"flat from lr={first_flat_lr:.4g} to the end of the test ({x[-1]:.4g}): super-convergence is likely (Sec. 4.1)"
        )
    if not descended:
        read = max_lr
        max_lr = float(x[0])
        notes.append(
            f"the validation loss never fell clearly below its first point (lr={x[0]:.4g}): the test started at or past "
            f"its turn-up, so max_lr is that first LR, not {read:.4g} read from noise; start the range test at a smaller min_lr"
        )

    return LRRange(
        max_lr=max_lr,
        min_lr=max_lr / min_lr_factor,
        lr_at_min_loss=float(x[m]),
        min_loss=float(smooth[m]),
        turned_up=turned_up,
        turn_up_lr=turn_up_lr,
        diverged_at_lr=diverged_at,
        still_falling=bool(still_falling),
        descended=bool(descended),
        super_convergence=bool(super_convergence),
        early_overfitting=early_overfitting_window(x, smooth, m, tolerance),
        steepest_lr=steepest_lr(x[: m + 1], smooth[: m + 1]),
        valley_lr=valley_lr(x, smooth),
        tolerance=tolerance,
        noise=noise,
        points=len(y),
        notes=notes,
    )


def range_test_over(lrs: Floats, losses: Floats, chance_loss: float | None = None, min_points: int = 5) -> str | None:
    """Why a range test can stop at its last evaluation, or None while it cannot.

    Over means diverged as :func:`tunekit.core.curves.diagnose` defines it — an explosion (over 10× its
    minimum and above its start, or over 10× chance level) or back at chance level and no longer falling
    — after at least ``min_points`` finite points (what :func:`analyse_range_test` needs to read a curve).
    Back at chance counts only once the smoothed loss had fallen below ``LEARNED_FRACTION`` × chance. The
    turn-up that sets ``max_lr`` precedes both, and the analysis cuts a curve where it is back at chance, so
    the steps after are spent on a curve no rule reads (on the benchmark suite, a quarter to two thirds of
    a range test; BENCHMARKS.md). A NaN/inf loss is the loops' own stop, at the step it happens.

    Paper: Sec. 4.1 (the range test runs until the loss "increases"; nothing past that is read).
    """
    y = np.asarray(losses, dtype=float)
    if len(y) < min_points or not np.all(np.isfinite(y)):
        return None
    learned = chance_loss is not None and float(np.min(running_median(y, 3))) < LEARNED_FRACTION * chance_loss
    verdict = diagnose(lrs, y, chance_loss=chance_loss if learned else None)  # else an explosion alone ends it
    if verdict.shape is not Shape.DIVERGING:
        return None
    return f"the range test is over at lr={float(lrs[-1]):.4g}: {verdict.reason}"


def early_overfitting_window(lrs: Floats, smooth: Floats, minimum: int, tolerance: float) -> tuple[float, float] | None:
    """A bump before the global minimum: the loss rises by more than ``tolerance`` above its running
    minimum, then falls below it again (Fig. 1a). Returns (LR where the rise starts, LR where it is over)."""
    x = np.asarray(lrs, dtype=float)
    s = np.asarray(smooth, dtype=float)
    best, best_i = s[0], 0
    for i in range(1, minimum):
        if s[i] < best:
            best, best_i = s[i], i
        elif s[i] - best > tolerance:
            after = np.nonzero(s[i : minimum + 1] < best)[0]
            end = i + int(after[0]) if len(after) else minimum
            return float(x[best_i]), float(x[end])
    return None


def steepest_lr(lrs: Floats, smooth: Floats) -> float:
    """fastai's "steep": the LR where the loss falls fastest against log LR (first point if < 2)."""
    x = np.asarray(lrs, dtype=float)
    if len(x) < 2:
        return float(x[0])
    grad = np.gradient(np.asarray(smooth, dtype=float), np.log(x))
    return float(x[int(np.argmin(grad))])


def valley_lr(lrs: Floats, smooth: Floats) -> float:
    """fastai's "valley": within the longest strictly descending subsequence, the point 2/3 along it."""
    s = list(map(float, smooth))
    n = len(s)
    longest = [1] * n
    start, end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if s[i] < s[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[end] < longest[i]:
            end = i
            start = end - longest[end]
    sections = (end - start) / 3
    return float(lrs[max(0, min(n - 1, start + int(sections) + int(sections / 2)))])

"""How long each phase's trials run, sized by what reading them needs — optimizer steps and evaluation points.

A search section written in epochs fits one dataset size: three epochs are 300 optimizer steps on
MNIST-1D (12 800 samples, batch 128) but 66 on scikit-learn's digits (1 437, batch 64) — too few
for a range test to learn anything — and 23 000 on a million samples. So every phase is sized here,
from the number of training samples and the batch size, before anything runs:

* the **range test** runs ``steps`` optimizer steps (or ``epochs`` of them, within
  [``min_steps``, ``max_steps``]) and evaluates at least ``points`` times along its curve
  (``eval_every`` shrinks to fit);
* the **short runs** (momentum, weight decay) run ``epochs`` (or ``fraction`` of the final
  training), at least ``min_steps`` optimizer steps and ``min_points`` evaluations (one per epoch).

Epochs a section gives are kept where they already meet the floors, so a section that worked on
one dataset decides exactly as before there. Paper: Sec. 4.1 (a range test needs enough
iterations to show where the loss turns up), Sec. 3 (early validation loss needs a few points to read).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: fastai's finder uses 100 iterations; a linear ramp over 2.5 decades needs more to show its turn.
RANGE_TEST_MIN_STEPS = 200
#: Evaluation points along a range test's curve (the paper's plots have dozens).
RANGE_TEST_POINTS = 30
#: A range test sized in epochs stops here (a million samples need no more to show the turn); ``steps`` is not capped.
RANGE_TEST_MAX_STEPS = 3000
#: A short 1cycle run (momentum, weight decay) trains at least this many optimizer steps.
SHORT_RUN_MIN_STEPS = 200
#: ... and is evaluated at least this many times (once per epoch): the loss-shape scheduler's grace period.
SHORT_RUN_MIN_POINTS = 3


def steps_per_epoch(train_samples: int, batch_size: int) -> int:
    """Optimizer steps in one epoch; the last partial batch is dropped, as the training loop does."""
    if train_samples < 1 or batch_size < 1:
        raise ValueError(f"train_samples and batch_size must be ≥ 1, got {train_samples=}, {batch_size=}")
    return max(1, train_samples // batch_size)


def _epochs_of(steps: int, per_epoch: int) -> float:
    """``steps / per_epoch`` as a float the loop turns back into exactly ``steps`` (it takes the ceiling)."""
    return math.floor(steps / per_epoch * 1e6) / 1e6 if steps % per_epoch else float(steps // per_epoch)


@dataclass(frozen=True)
class RangeTestSize:
    """A range test's length and evaluation spacing, and why they differ from what the section asked."""

    steps: int
    epochs: float  # what the loop is given: steps / steps_per_epoch
    eval_every: int
    points: int  # evaluations along the curve
    note: str = ""


def size_range_test(
    train_samples: int,
    batch_size: int,
    *,
    epochs: float = 3.0,
    steps: int | None = None,
    eval_every: int | None = None,
    min_steps: int = RANGE_TEST_MIN_STEPS,
    max_steps: int | None = RANGE_TEST_MAX_STEPS,
    points: int = RANGE_TEST_POINTS,
) -> RangeTestSize:
    """A range test of ``steps`` optimizer steps (else ``epochs`` of them) within [min_steps, max_steps],
    evaluated every ``eval_every`` steps or more often, so that its curve has at least ``points`` evaluations."""
    per_epoch = steps_per_epoch(train_samples, batch_size)
    asked = steps if steps is not None else max(1, math.ceil(epochs * per_epoch))
    what = f"{steps} steps" if steps is not None else f"{epochs:g} epochs ({asked} steps)"
    length = max(asked, min_steps)
    if max_steps is not None and steps is None:
        length = min(length, max(max_steps, min_steps))
    spacing = max(1, min(eval_every or length, length // points))
    notes = []
    if length != asked:
        notes.append(f"{what} {'raised to min_steps' if length > asked else 'capped at max_steps'} {length}")
    if eval_every is not None and spacing < eval_every:
        notes.append(f"eval_every {eval_every} lowered to {spacing} for {points} points")
    return RangeTestSize(length, _epochs_of(length, per_epoch), spacing, length // spacing, "; ".join(notes))


@dataclass(frozen=True)
class ShortRunSize:
    """A short run's length in whole epochs (one evaluation each), and why it differs from what was asked."""

    epochs: int
    steps: int
    note: str = ""


def size_short_run(
    train_samples: int,
    batch_size: int,
    *,
    epochs: int = 3,
    fraction: float | None = None,
    final_epochs: int = 10,
    min_steps: int = SHORT_RUN_MIN_STEPS,
    min_points: int = SHORT_RUN_MIN_POINTS,
) -> ShortRunSize:
    """``epochs`` (else ``fraction`` of the final training's epochs), raised to at least ``min_steps``
    optimizer steps and ``min_points`` epochs."""
    per_epoch = steps_per_epoch(train_samples, batch_size)
    asked = epochs if fraction is None else max(1, math.ceil(fraction * final_epochs))
    length = max(asked, math.ceil(min_steps / per_epoch), min_points)
    note = ""
    if length > asked:
        why = f"min_steps {min_steps}" if length == math.ceil(min_steps / per_epoch) else f"min_points {min_points}"
        note = f"{asked} epochs ({asked * per_epoch} steps) raised to {length} for {why}"
    return ShortRunSize(length, length * per_epoch, note)


def range_test_advice(steps: int, points: int, min_steps: int = RANGE_TEST_MIN_STEPS, min_points: int = 10) -> str:
    """What to change when a range test of ``steps`` steps and ``points`` evaluations could not be read."""
    if points < min_points:
        return (
            f"it had {points} evaluation points (fewer than {min_points}): "
            f"set search.range_test.eval_every={max(1, steps // (3 * min_points))}"
        )
    if steps < 2 * min_steps:
        return f"it ran {steps} optimizer steps: set search.range_test.steps={max(2 * steps, min_steps)}"
    return f"it ran {steps} optimizer steps with {points} evaluations: lower search.range_test.min_lr or check the data and the model"

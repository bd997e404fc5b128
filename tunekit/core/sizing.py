"""How long each phase's trials run, sized by what reading them needs — optimizer steps and evaluation points.

A search section written in epochs fits one dataset size: three epochs are 300 optimizer steps on
MNIST-1D (12 800 samples, batch 128) but 66 on scikit-learn's digits (1 437, batch 64) — too few
for a range test to learn anything — and 23 000 on a million samples. So every phase is sized here,
from the number of training samples and the batch size, before anything runs:

* the **range test** runs ``steps`` optimizer steps (or ``epochs`` of them, within
  [``min_steps``, ``max_steps``]) and evaluates at least ``points`` times along its curve
  (``eval_every`` shrinks to fit);
* the **short runs** (learning rate, momentum, weight decay) run ``epochs`` (or ``fraction`` of the
  final training), at least ``min_steps`` optimizer steps and ``min_points`` evaluations (one per epoch);
* and neither runs longer than ``max_fraction`` (default :data:`MAX_FRACTION`, a fifth; None: no
  ceiling) of the final training's optimizer steps. On a small dataset the step floors alone made
  each "short" run most of a final training (diabetes, 9 steps an epoch: 23 epochs of a 30-epoch
  training), so a search of a dozen runs cost a dozen trainings. The ceiling wins over ``min_steps`` (a short final training is
  what the search's runs are short against); only ``min_points`` (and a range test's ``points``) win over it.

Epochs a section gives are kept where they already meet the floors and the ceiling, so a section
that worked on one dataset decides exactly as before there. Paper: Sec. 4.1 (a range test needs enough
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
#: A range test or short run is at most this share of the final training's optimizer steps (explicit
#: ``range_test.steps`` excepted). ASHA's first rung is about as large a share of a peer trial.
MAX_FRACTION = 0.2


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
    final_epochs: float | None = None,
    max_fraction: float | None = MAX_FRACTION,
) -> RangeTestSize:
    """A range test of ``steps`` optimizer steps (else ``epochs`` of them) within [min_steps, max_steps] and at
    most ``max_fraction`` of a ``final_epochs`` training (never under ``points`` steps), evaluated every
    ``eval_every`` steps or more often, so that its curve has at least ``points`` evaluations."""
    per_epoch = steps_per_epoch(train_samples, batch_size)
    asked = steps if steps is not None else max(1, math.ceil(epochs * per_epoch))
    what = f"{steps} steps" if steps is not None else f"{epochs:g} epochs ({asked} steps)"
    length, why = max(asked, min_steps), f"min_steps {min_steps}"
    if max_steps is not None and steps is None and length > max(max_steps, min_steps):
        length, why = max(max_steps, min_steps), f"max_steps {max_steps}"
    ceiling = _ceiling(final_epochs, per_epoch, max_fraction)
    if ceiling is not None and steps is None and length > max(ceiling, points):
        cut = _fraction_reason(final_epochs, per_epoch, max_fraction)
        length = max(ceiling, points)
        why = f"{why}, within {cut}" if length > asked else cut
    spacing = max(1, min(eval_every or length, length // points))
    notes = []
    if length != asked:
        notes.append(f"{what} {'raised' if length > asked else 'cut'} to {length} for {why}")
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
    final_epochs: int | None = None,
    min_steps: int = SHORT_RUN_MIN_STEPS,
    min_points: int = SHORT_RUN_MIN_POINTS,
    max_fraction: float | None = MAX_FRACTION,
) -> ShortRunSize:
    """``epochs`` (else ``fraction`` of the final training's epochs), raised to at least ``min_steps``
    optimizer steps, then cut to at most ``max_fraction`` of a ``final_epochs`` training, and at least
    ``min_points`` epochs whatever the rest says."""
    per_epoch = steps_per_epoch(train_samples, batch_size)
    if fraction is not None and final_epochs is None:
        raise ValueError("fraction needs final_epochs: the share of which training?")
    asked = epochs if fraction is None else max(1, math.ceil(fraction * (final_epochs or 0)))
    floor = math.ceil(min_steps / per_epoch)
    length, why = (floor, f"min_steps {min_steps}") if floor > asked else (asked, "")
    ceiling = _ceiling(final_epochs, per_epoch, max_fraction)
    if ceiling is not None and length * per_epoch > ceiling:
        cut = _fraction_reason(final_epochs, per_epoch, max_fraction)
        length = max(1, ceiling // per_epoch)
        why = f"{why}, within {cut}" if why and length > asked else cut
    if length < min_points:
        length, why = min_points, f"min_points {min_points}"
    note = ""
    if length != asked:
        verb = "raised" if length > asked else "cut"
        note = f"{asked} epochs ({asked * per_epoch} steps) {verb} to {length} for {why}"
    return ShortRunSize(length, length * per_epoch, note)


def _final_steps(final_epochs: float | None, per_epoch: int) -> int:
    return math.ceil((final_epochs or 0) * per_epoch)


def _fraction_reason(final_epochs: float | None, per_epoch: int, max_fraction: float | None) -> str:
    return f"max_fraction {max_fraction:g} of the final training's {_final_steps(final_epochs, per_epoch)} steps"


def _ceiling(final_epochs: float | None, per_epoch: int, max_fraction: float | None) -> int | None:
    """The most optimizer steps a search run may take: ``max_fraction`` of the final training (None: no
    ceiling, or no final training given)."""
    if final_epochs is None or max_fraction is None:
        return None
    if not 0 < max_fraction <= 1:
        raise ValueError(f"max_fraction must be in (0, 1], got {max_fraction}")
    return max(1, math.floor(max_fraction * _final_steps(final_epochs, per_epoch)))


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

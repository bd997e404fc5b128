"""Phases sized in optimizer steps and evaluation points: the same section fits 1 000 or 1 000 000 samples."""

from __future__ import annotations

import math

import pytest

from tunekit.core.sizing import (
    RANGE_TEST_MIN_STEPS,
    range_test_advice,
    size_range_test,
    size_short_run,
    steps_per_epoch,
)


def test_steps_per_epoch_drops_the_last_partial_batch_as_the_loop_does() -> None:
    # 1 437 digits at batch 64: 22 full batches
    assert steps_per_epoch(1437, 64) == 22
    assert steps_per_epoch(10, 64) == 1


def test_a_section_that_already_fits_is_left_exactly_as_it_is() -> None:
    # the embedded MNIST-1D section: 3 epochs of 100 steps, an evaluation every 10 steps
    size = size_range_test(12800, 128, epochs=3, eval_every=10)
    assert (size.steps, size.epochs, size.eval_every, size.points, size.note) == (300, 3.0, 10, 30, "")
    # and its short runs: 3 epochs are 300 steps
    assert size_short_run(12800, 128, epochs=3) == size_short_run(12800, 128, epochs=3, min_steps=300)
    assert size_short_run(12800, 128, epochs=3).epochs == 3


def test_on_small_data_the_range_test_is_raised_to_its_floors() -> None:
    # the same section on digits: 3 epochs would be 66 steps and 6 evaluations
    size = size_range_test(1437, 64, epochs=3, eval_every=10)
    assert size.steps == RANGE_TEST_MIN_STEPS
    assert size.points >= 20
    assert "raised to min_steps" in size.note
    # the loop takes ceil(epochs × steps_per_epoch): exactly the sized steps
    assert math.ceil(size.epochs * steps_per_epoch(1437, 64)) == size.steps


@pytest.mark.parametrize("samples", [1_000, 10_000, 100_000, 1_000_000])
def test_default_range_test_is_readable_and_bounded_at_every_size(samples: int) -> None:
    size = size_range_test(samples, 128)
    # 3 epochs, but at least the floor and at most 3 000 steps, ~30 evaluations whatever the size
    assert RANGE_TEST_MIN_STEPS <= size.steps <= 3000
    assert 30 <= size.points <= 40
    assert math.ceil(size.epochs * steps_per_epoch(samples, 128)) == size.steps


def test_explicit_steps_win_over_epochs() -> None:
    size = size_range_test(100_000, 100, steps=500, epochs=3)
    assert size.steps == 500
    assert size.epochs == 0.5


@pytest.mark.parametrize(
    ("samples", "batch", "epochs", "expected"),
    [
        (12_800, 128, 3, 3),  # 300 steps: enough
        (1_437, 64, 3, 10),  # 66 steps → ⌈200 / 22⌉ = 10 epochs
        (1_000_000, 256, 1, 3),  # 3 900 steps, but three evaluations for the scheduler's grace period
    ],
)
def test_short_runs_get_enough_steps_and_points(samples: int, batch: int, epochs: int, expected: int) -> None:
    size = size_short_run(samples, batch, epochs=epochs)
    assert size.epochs == expected
    assert size.steps == expected * steps_per_epoch(samples, batch)
    # a raise says why
    assert (size.note != "") == (expected != epochs)


def test_short_runs_may_be_a_fraction_of_the_final_training() -> None:
    # a fifth of a 30-epoch final training on MNIST-1D
    assert size_short_run(12_800, 128, fraction=0.2, final_epochs=30).epochs == 6


def test_explicit_steps_are_not_capped_but_epochs_are() -> None:
    # a million samples: 3 epochs would be 23 436 steps; capped at 3 000 unless steps are asked for
    assert size_range_test(1_000_000, 128, epochs=3).steps == 3000
    assert size_range_test(1_000_000, 128, steps=10_000).steps == 10_000
    assert size_range_test(1_000_000, 128, epochs=3, max_steps=None).steps == 23_436


@pytest.mark.parametrize(
    ("steps", "points", "advice"),
    [
        (300, 6, "search.range_test.eval_every=10"),
        (66, 30, "search.range_test.steps=200"),
        (3000, 30, "lower search.range_test.min_lr"),
    ],
)
def test_unreadable_range_tests_name_the_field_and_a_value(steps: int, points: int, advice: str) -> None:
    assert advice in range_test_advice(steps, points)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        steps_per_epoch(100, 0)

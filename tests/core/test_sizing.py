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
    assert "raised to 200 for min_steps 200" in size.note
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


def test_the_embedded_section_is_well_inside_the_final_training_ceiling() -> None:
    # MNIST-1D, a 30-epoch final training of 3 000 steps: a fifth is 600, the section asks 300
    assert size_range_test(12800, 128, epochs=3, eval_every=10, final_epochs=30).note == ""
    assert size_short_run(12800, 128, epochs=3, final_epochs=30) == size_short_run(12800, 128, epochs=3)


def test_on_small_data_no_search_run_is_more_than_a_fifth_of_the_final_training() -> None:
    # digits, 22 steps an epoch, a 20-epoch final training of 440 steps: min_steps 200 alone would make
    # every short run 10 epochs, half a final training; the ceiling is ⌊0.2 × 440⌋ = 88 steps
    size = size_range_test(1437, 64, epochs=3, eval_every=10, final_epochs=20)
    assert size.steps == 88
    assert size.points >= 30
    assert math.ceil(size.epochs * steps_per_epoch(1437, 64)) == 88
    assert "raised to 88 for min_steps 200, within max_fraction 0.2 of the final training's 440 steps" in size.note
    short = size_short_run(1437, 64, epochs=3, final_epochs=20)
    assert (short.epochs, short.steps) == (4, 88)  # ⌊88 / 22⌋
    assert (
        short.note
        == "3 epochs (66 steps) raised to 4 for min_steps 200, within max_fraction 0.2 of the final training's 440 steps"
    )
    # an explicit ask is cut too: diabetes, 9 steps an epoch, 10 asked of a 30-epoch final (270 steps)
    cut = size_short_run(318, 32, epochs=10, final_epochs=30)
    assert (cut.epochs, cut.note) == (6, "10 epochs (90 steps) cut to 6 for max_fraction 0.2 of the final training's 270 steps")
    # max_fraction 1: no run longer than the final training, which these floors are not
    assert size_short_run(1437, 64, epochs=3, final_epochs=20, max_fraction=1.0).epochs == 10
    assert size_range_test(1437, 64, epochs=3, final_epochs=20, max_fraction=1.0).steps == 200
    # None: no ceiling at all, even past the final training (a 3-epoch final training here)
    assert size_short_run(1437, 64, epochs=3, final_epochs=3, max_fraction=None).epochs == 10
    assert size_range_test(1437, 64, epochs=3, final_epochs=3, max_fraction=None).steps == 200
    assert size_range_test(1437, 64, epochs=3, final_epochs=3, max_fraction=1.0).steps == 66


def test_the_evaluation_floors_win_over_the_ceiling() -> None:
    # a 10-epoch final training: a fifth is 2 epochs, but a short run is read on at least 3 evaluations
    assert size_short_run(1437, 64, epochs=3, final_epochs=10).epochs == 3
    short = size_short_run(1437, 64, epochs=5, final_epochs=10)
    assert (short.epochs, short.note) == (3, "5 epochs (110 steps) cut to 3 for min_points 3")
    # and a range test runs at least one step per evaluation point
    size = size_range_test(1437, 64, epochs=3, final_epochs=5)  # a fifth of 110 steps is 22 < 30 points
    assert (size.steps, size.eval_every, size.points) == (30, 1, 30)
    # explicit steps are what was asked, ceiling or not
    assert size_range_test(1437, 64, steps=500, final_epochs=5).steps == 500


def test_a_fraction_needs_the_final_training_and_max_fraction_a_share() -> None:
    with pytest.raises(ValueError, match="final_epochs"):
        size_short_run(12_800, 128, fraction=0.2)
    with pytest.raises(ValueError, match="max_fraction"):
        size_short_run(12_800, 128, final_epochs=30, max_fraction=0.0)


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

"""analyse_range_test() against the paper's rule, on constructed and recorded MNIST-1D range tests."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from tunekit.core.lr_range import RangeTestError, analyse_range_test, range_test_over, valley_lr

CURVES = Path(__file__).parents[1] / "data" / "curves"
LRS = np.linspace(0.01, 3.0, 60)


def u_shape(lrs: np.ndarray, best: float = 1.0, turn: float = 1.5) -> np.ndarray:
    """Falls towards ``best``, flat until ``turn``, then rises steeply."""
    return 0.2 + 2.0 * np.exp(-lrs / (best / 4)) + 3.0 * np.maximum(0, lrs - turn) ** 2


def test_max_lr_is_the_last_lr_before_the_loss_turns_up() -> None:
    r = analyse_range_test(LRS, u_shape(LRS))
    # the rise begins just after lr 1.5: max_lr is the largest LR before it is significant
    assert r.turned_up
    assert 1.4 <= r.max_lr <= 1.75
    assert r.turn_up_lr is not None
    assert r.turn_up_lr > r.max_lr
    # min_lr = max_lr / 10 for 1cycle
    assert r.min_lr == pytest.approx(r.max_lr / 10)


def test_min_lr_factor_is_configurable_for_clr() -> None:
    r = analyse_range_test(LRS, u_shape(LRS), min_lr_factor=4)
    # 3-4 for CLR (Sec. 4.1)
    assert r.min_lr == pytest.approx(r.max_lr / 4)


def test_nan_tail_is_cut_and_reported() -> None:
    losses = u_shape(LRS)
    losses[45:] = np.nan
    r = analyse_range_test(LRS, losses)
    # the LR where it diverged is reported; max_lr comes from the finite part
    assert r.diverged_at_lr == pytest.approx(LRS[45])
    assert r.max_lr < LRS[45]
    assert any("diverged" in n for n in r.notes)


def test_flat_to_the_end_is_super_convergence() -> None:
    losses = 0.2 + 2.0 * np.exp(-LRS / 0.1)
    r = analyse_range_test(LRS, losses)
    # the test loss stays at its floor up to the largest LR tested (Fig. 5a)
    assert r.super_convergence
    assert not r.turned_up
    assert r.max_lr == pytest.approx(3.0)


def test_still_falling_at_the_end_asks_for_a_larger_range() -> None:
    r = analyse_range_test(LRS, 3.0 - 0.5 * LRS)
    assert r.still_falling
    assert any("extend max_lr" in n for n in r.notes)


def test_early_overfitting_bump_is_found() -> None:
    losses = u_shape(LRS) + 1.5 * np.exp(-(((LRS - 0.35) / 0.15) ** 2))
    r = analyse_range_test(LRS, losses)
    # a rise and fall at small LRs before the global minimum (Fig. 1a)
    assert r.early_overfitting is not None
    lo, hi = r.early_overfitting
    assert lo < 0.35 < hi


def test_fastai_suggestions_are_inside_the_falling_part() -> None:
    r = analyse_range_test(LRS, u_shape(LRS))
    # steepest descent and valley sit before the minimum: both are below max_lr
    assert LRS[0] <= r.steepest_lr <= r.lr_at_min_loss
    assert LRS[0] <= r.valley_lr <= r.max_lr


def test_valley_follows_fastai() -> None:
    # the longest descending run ends at index 6 (length 7); fastai's indexing then lands on index 2
    losses = [5, 4, 3, 2, 1, 0.5, 0.2, 3, 4, 5]
    assert valley_lr(list(range(1, 11)), losses) == 3


@pytest.mark.parametrize(
    ("lrs", "losses", "match"),
    [
        ([0.1, 0.2, 0.3], [1.0, 0.9, 0.8], "too few finite points"),
        ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [1.0, math.nan, 0.8, 0.7, 0.6, 0.5], "too few finite points"),
        ([0.3, 0.2, 0.1, 0.4, 0.5], [1.0, 0.9, 0.8, 0.7, 0.6], "must increase"),
        ([0.0, 0.1, 0.2, 0.3, 0.4], [1.0, 0.9, 0.8, 0.7, 0.6], "positive"),
        ([0.1, 0.2], [1.0, 0.9, 0.8], "differ in length"),
    ],
)
def test_unreadable_curves_raise_one_clear_error(lrs: list[float], losses: list[float], match: str) -> None:
    with pytest.raises(RangeTestError, match=match):
        analyse_range_test(lrs, losses)


def test_negative_losses_are_analysed_with_a_warning_note() -> None:
    r = analyse_range_test(LRS, u_shape(LRS) - 5.0)
    # the rule is shift-invariant, so the answer stands; the note flags a suspicious column
    assert 1.4 <= r.max_lr <= 1.75
    assert any("negative" in n for n in r.notes)


def test_never_below_chance_level_is_refused() -> None:
    with pytest.raises(RangeTestError, match="chance level"):
        analyse_range_test(LRS, 2.5 + 0.01 * np.sin(LRS), chance_loss=math.log(10))


def _recorded(name: str) -> tuple[list[float], list[float]]:
    rows = list(csv.DictReader((CURVES / f"{name}.csv").open()))
    return [float(r["lr"]) for r in rows], [float(r["test_loss"]) for r in rows]


@pytest.mark.parametrize("name", ["range_wd0.0001", "range_wd0", "range_to1_wd1e-4"])
def test_recorded_mnist1d_range_tests_turn_up_near_lr_one(name: str) -> None:
    r = analyse_range_test(*_recorded(name), chance_loss=math.log(10))
    # MNIST-1D's CNN with BN re-estimated: minimum near 0.6-0.9, sharp rise after ≈ 1.0 (ARCHITECTURE.md)
    assert 0.6 <= r.lr_at_min_loss <= 0.9
    assert 0.7 <= r.max_lr <= 1.1
    assert r.turned_up


def test_a_curve_that_never_falls_gives_its_first_lr_not_a_turn_up_read_from_noise() -> None:
    # scikit-learn diabetes (300 samples, MLP, MSE), recorded by the suite's range test, 0.001 → 2 linear:
    # the lowest loss is the first evaluation (lr 0.041, after 5 steps); from there it jumps about 0.5–1.2
    # at random. The noise-wide tolerance first saw a rise at lr 1.15 and read max_lr 1.1, where every
    # retraining collapsed to R² ≈ 0 (the suite's peers chose 0.003–0.004).
    lrs, losses = _recorded("diabetes_range_wd0")
    r = analyse_range_test(lrs, losses)
    assert not r.descended
    assert r.max_lr == pytest.approx(lrs[0])
    assert r.min_lr == pytest.approx(lrs[0] / 10)
    assert not r.super_convergence
    assert any("never fell clearly" in n and "smaller min_lr" in n for n in r.notes)


def test_a_coarse_ramp_that_falls_then_explodes_turns_up_where_it_explodes() -> None:
    # scikit-learn digits, the bundled MLP, weight decay 1e-3: a 120-step ramp 0.01 → 3 (a fifth of a
    # 30-epoch final training) evaluated every 4 steps falls 1.88 → 0.67 → 0.68, then explodes at 0.39
    # and is back at chance. Three points before the explosion cannot tell noise from the fall; their
    # successive differences, read as noise, once hid the fall and gave the first LR (0.085).
    lrs, losses = _recorded("digits_mlp_range_wd1e-3_120steps")
    r = analyse_range_test(lrs, losses, chance_loss=math.log(10))
    assert r.descended
    assert r.turned_up
    assert r.max_lr == pytest.approx(lrs[2])  # 0.286, the last point before the explosion
    assert r.turn_up_lr == pytest.approx(lrs[3])
    assert not any("never fell clearly" in n for n in r.notes)
    # the same first points followed by a long noisy plateau (no chance cut) are still judged on their noise
    plateau = analyse_range_test(LRS, np.concatenate([[1.88, 0.67, 0.68], np.full(len(LRS) - 3, 0.68)]))
    assert plateau.descended


@pytest.mark.parametrize("flat_level", [0.5, 2.0])
def test_flat_noise_from_the_first_point_is_read_at_the_first_lr(flat_level: float) -> None:
    noise = np.random.default_rng(0).normal(0.0, 0.05, len(LRS))
    r = analyse_range_test(LRS, flat_level + noise)
    # no fall, no claim: neither super-convergence nor a max_lr at the end of the test
    assert not r.descended
    assert r.max_lr == pytest.approx(LRS[0])
    assert not r.super_convergence


def test_a_curve_that_falls_is_read_as_before() -> None:
    r = analyse_range_test(LRS, u_shape(LRS))
    assert r.descended
    assert not any("never fell clearly" in n for n in r.notes)


def _stop(lrs: list[float], losses: list[float], chance: float | None) -> int:
    """How many evaluations a range test runs before range_test_over ends it (all of them if never)."""
    return next((k for k in range(1, len(lrs) + 1) if range_test_over(lrs[:k], losses[:k], chance)), len(lrs))


@pytest.mark.parametrize(
    ("name", "chance", "stop", "why"),
    [
        # the suite's MNIST-1D MLP (no BatchNorm), weight decay 0, 0.001 → 2 linear: 2.74, 1.88, 1.89, 1.80,
        # 1.79, 2.05, 2.47, 2.70, 2.57, then at chance (2.30–2.42) for the 24 evaluations left
        ("mnist1d_mlp_range_wd0", math.log(10), 9, "at chance level"),
        # the suite's AdamW digits MLP, weight decay 1e-2, 1e-4 → 0.3: lowest 0.43, then 2.35, 6.46
        ("digits_mlp_adamw_range_wd1e-2", math.log(10), 19, "exploded"),
        # digits, a 120-step ramp: 1.88 → 0.67 → 0.68, then back at chance — after the five points a reading needs
        ("digits_mlp_range_wd1e-3_120steps", math.log(10), 6, "at chance level"),
    ],
)
def test_a_range_test_is_over_once_its_curve_diverged_and_reads_as_the_whole_curve(
    name: str, chance: float, stop: int, why: str
) -> None:
    lrs, losses = _recorded(name)
    assert _stop(lrs, losses, chance) == stop < len(lrs)
    reason = range_test_over(lrs[:stop], losses[:stop], chance)
    assert reason is not None
    assert why in reason
    assert f"lr={lrs[stop - 1]:.4g}" in reason
    whole, cut = (
        analyse_range_test(lrs, losses, chance_loss=chance),
        analyse_range_test(lrs[:stop], losses[:stop], chance_loss=chance),
    )
    # what the rules read — the bounds, the turn-up, the lowest loss that ranks weight decays — is the same
    assert (cut.max_lr, cut.turn_up_lr, cut.min_loss, cut.valley_lr) == (
        whole.max_lr,
        whole.turn_up_lr,
        whole.min_loss,
        whole.valley_lr,
    )


def test_a_range_test_that_has_not_learned_yet_is_not_over_at_chance_level() -> None:
    # a tiny min_lr: the loss sits at chance for a while, then falls as the LR grows
    losses = [2.31, 2.30, 2.32, 2.30, 2.31, 2.29, 2.31, 2.30, 2.20, 1.90, 1.40, 1.00, 0.80]
    lrs = list(np.linspace(0.001, 1.0, len(losses)))
    assert _stop(lrs, losses, math.log(10)) == len(losses)
    # the same plateau after a fall below 0.9 × chance is a test that lost what it learned
    assert range_test_over(lrs[:9], [1.5, 1.2, 1.0, 2.31, 2.30, 2.32, 2.30, 2.31, 2.32], math.log(10)) is not None


def test_a_range_test_is_not_over_before_five_points_nor_on_a_rise_that_is_no_explosion() -> None:
    assert range_test_over([0.1, 0.2, 0.3, 0.4], [1.0, 0.5, 0.4, 90.0]) is None  # too few points to read
    assert range_test_over([0.1, 0.2, 0.3, 0.4, 0.5], [1.0, 0.5, 0.4, 0.5, 90.0]) is not None
    # no chance level (a regression): a steady rise past the start is overfitting, not over
    rising = [1.0, 0.5, 0.4, 0.6, 0.9, 1.4, 2.2, 3.0]
    assert range_test_over(list(np.linspace(0.1, 0.8, len(rising))), rising) is None

"""The pure schedule functions against the paper's shapes (Sec. 4.1, 4.3)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunekit.core.schedules import (
    clr_triangular,
    linear,
    one_cycle_lr,
    one_cycle_momentum,
    range_test_lr,
    range_test_momentum,
    step_factor,
)


def test_linear_clamps_position() -> None:
    # outside [0, 1] the value stays at the end points
    assert linear(-1, 2.0, 4.0) == 2.0
    assert linear(2, 2.0, 4.0) == 4.0
    assert linear(0.5, 2.0, 4.0) == 3.0


def test_range_test_lr_runs_from_min_to_max() -> None:
    # first step uses min_lr, last step uses max_lr, linear between
    assert range_test_lr(0, 101, 0.01, 1.01) == pytest.approx(0.01)
    assert range_test_lr(50, 101, 0.01, 1.01) == pytest.approx(0.51)
    assert range_test_lr(100, 101, 0.01, 1.01) == pytest.approx(1.01)


def test_range_test_momentum_decreases_while_lr_increases() -> None:
    # Fig. 10: momentum 0.95 → 0.85 over the test
    values = [range_test_momentum(s, 11, 0.95, 0.85) for s in range(11)]
    assert values[0] == pytest.approx(0.95)
    assert values[-1] == pytest.approx(0.85)
    assert all(a > b for a, b in itertools.pairwise(values))


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.1), (5, 0.55), (10, 1.0), (15, 0.55), (20, 0.1), (30, 1.0), (40, 0.1)],
)
def test_clr_triangular_is_a_triangle_wave(step: int, expected: float) -> None:
    # stepsize 10: min at 0, 20, 40; max at 10, 30
    assert clr_triangular(step, 10, 0.1, 1.0) == pytest.approx(expected)


def test_clr_rejects_empty_stepsize() -> None:
    with pytest.raises(ValueError, match="stepsize"):
        clr_triangular(0, 0, 0.1, 1.0)


def test_step_factor_counts_milestones_passed() -> None:
    # factor applied once per milestone reached
    assert step_factor(4.9, [5, 8], 0.1) == 1.0
    assert step_factor(5.0, [5, 8], 0.1) == pytest.approx(0.1)
    assert step_factor(9.0, [5, 8], 0.1) == pytest.approx(0.01)


def test_one_cycle_lr_hits_its_corners() -> None:
    # 100 steps, pct 0.45: peak at step 44, back to max/div at 88, max/div/annihilation at 99
    assert one_cycle_lr(0, 100, 1.0, 10, 100, 0.45) == pytest.approx(0.1)
    assert one_cycle_lr(44, 100, 1.0, 10, 100, 0.45) == pytest.approx(1.0)
    assert one_cycle_lr(88, 100, 1.0, 10, 100, 0.45) == pytest.approx(0.1)
    assert one_cycle_lr(99, 100, 1.0, 10, 100, 0.45) == pytest.approx(0.001)


def test_one_cycle_momentum_is_inverse_to_lr_then_flat() -> None:
    # momentum bottoms out where the LR peaks, and stays at max during annihilation
    assert one_cycle_momentum(0, 100, 0.95, 0.85) == pytest.approx(0.95)
    assert one_cycle_momentum(44, 100, 0.95, 0.85) == pytest.approx(0.85)
    assert one_cycle_momentum(88, 100, 0.95, 0.85) == pytest.approx(0.95)
    assert one_cycle_momentum(95, 100, 0.95, 0.85) == pytest.approx(0.95)


@given(
    total=st.integers(min_value=20, max_value=5000),
    max_lr=st.floats(min_value=1e-4, max_value=10.0),
    div=st.floats(min_value=1.5, max_value=100.0),
    annihilation=st.floats(min_value=1.0, max_value=1e4),
    pct=st.floats(min_value=0.1, max_value=0.49),
    frac=st.floats(min_value=0.0, max_value=1.0),
)
def test_one_cycle_lr_stays_within_its_bounds(
    total: int, max_lr: float, div: float, annihilation: float, pct: float, frac: float
) -> None:
    # every step's LR lies between the final (annihilated) LR and max_lr
    step = round(frac * (total - 1))
    lr = one_cycle_lr(step, total, max_lr, div, annihilation, pct)
    low = max_lr / div / annihilation
    assert low * (1 - 1e-9) <= lr <= max_lr * (1 + 1e-9)
    assert math.isfinite(lr)


@given(
    total=st.integers(min_value=20, max_value=5000),
    pct=st.floats(min_value=0.1, max_value=0.49),
    frac=st.floats(min_value=0.0, max_value=1.0),
)
def test_one_cycle_momentum_stays_within_its_bounds(total: int, pct: float, frac: float) -> None:
    # cyclical momentum never leaves [min, max]
    m = one_cycle_momentum(round(frac * (total - 1)), total, 0.95, 0.85, pct)
    assert 0.85 - 1e-12 <= m <= 0.95 + 1e-12


def test_fastai_shaped_one_cycle_climbs_then_descends_once_along_cosines() -> None:
    # fit_one_cycle: div 25, div_final 1e5 (annihilation 1e5 / 25), pct_start 0.25; 100 steps
    kw = {"div": 25.0, "annihilation": 4000.0, "pct_start": 0.25, "anneal": "cos", "three_phase": False}
    assert one_cycle_lr(0, 100, 1.0, **kw) == pytest.approx(1 / 25)
    assert one_cycle_lr(24, 100, 1.0, **kw) == pytest.approx(1.0)
    assert one_cycle_lr(99, 100, 1.0, **kw) == pytest.approx(1e-5)
    # a cosine, not a line: halfway up the climb the LR is at the mean of its ends
    assert one_cycle_lr(12, 100, 1.0, **kw) == pytest.approx((1 / 25 + 1.0) / 2)
    # and a quarter of the way along the descent, above the line's value
    quarter = 24 + (99 - 24) / 4
    assert one_cycle_lr(round(quarter), 100, 1.0, **kw) > 1.0 - 0.25 * (1.0 - 1e-5) + 0.05
    mkw = {"pct_start": 0.25, "anneal": "cos", "three_phase": False}
    assert one_cycle_momentum(24, 100, 0.95, 0.85, **mkw) == pytest.approx(0.85)
    assert one_cycle_momentum(99, 100, 0.95, 0.85, **mkw) == pytest.approx(0.95)

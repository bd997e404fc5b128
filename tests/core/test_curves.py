"""diagnose() on the labelled curve set, on constructed shapes, and under scaling, shifting and NaN."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tunekit.core.curves import (
    Shape,
    diagnose,
    rank,
    rank_key,
    robust_noise,
    running_median,
    standard_error,
    theil_sen_slope,
)

CURVES = Path(__file__).parents[1] / "data" / "curves"


def labelled_curves() -> list[tuple[str, str, list[float], list[float], float | None]]:
    """(name, label, steps, losses, chance_loss) for every curve under tests/data/curves/."""
    out = []
    for folder in (CURVES, CURVES / "synthetic"):
        for row in csv.DictReader((folder / "labels.csv").open()):
            points = list(csv.DictReader((folder / f"{row['curve']}.csv").open()))
            steps = [float(p["step"]) for p in points]
            losses = [float(p["test_loss"]) for p in points]
            chance = float(row["chance_loss"]) if row["chance_loss"] else None
            out.append((row["curve"], row["label"], steps, losses, chance))
    return out


def test_classifier_is_right_on_95_percent_of_the_labelled_curves() -> None:
    curves = labelled_curves()
    confusion: Counter[tuple[str, str]] = Counter()
    for _, label, steps, losses, chance in curves:
        confusion[(label, diagnose(steps, losses, chance_loss=chance).shape.value)] += 1
    correct = sum(n for (truth, guess), n in confusion.items() if truth == guess)
    table = json.dumps({f"{t}->{g}": n for (t, g), n in sorted(confusion.items())})
    # real MNIST-1D curves (labelled by eye) plus synthetic ones (labelled by construction)
    assert len(curves) >= 80
    assert correct / len(curves) >= 0.95, table


def test_labelled_set_has_real_curves_of_every_shape() -> None:
    real = [c for c in labelled_curves() if c[4] is not None]
    # recorded from MNIST-1D runs, every shape represented
    assert {label for _, label, *_ in real} == {"horizontal", "underfitting", "overfitting", "diverging"}
    assert len(real) >= 20


T = np.arange(1, 16, dtype=float)


@pytest.mark.parametrize(
    ("losses", "shape"),
    [
        (0.2 + 2.0 * np.exp(-T / 1.5), Shape.HORIZONTAL),
        (2.3 - 0.1 * T, Shape.UNDERFITTING),
        (0.3 + 2.0 * np.exp(-T / 1.5) + 0.05 * np.maximum(0, T - 6), Shape.OVERFITTING),
        (np.r_[2.3 - 0.2 * T[:8], 1.0 + np.exp(T[8:] - 8)], Shape.DIVERGING),
        (np.r_[2.3 - 0.2 * T[:8], [math.nan] * 7], Shape.DIVERGING),
        (np.r_[2.3 - 0.2 * T[:8], [math.inf] * 7], Shape.DIVERGING),
    ],
    ids=["horizontal", "underfitting", "overfitting", "exploding", "nan", "inf"],
)
def test_constructed_shapes_get_their_label(losses: np.ndarray, shape: Shape) -> None:
    assert diagnose(T, losses).shape is shape


def test_nan_is_reported_with_the_step_it_appeared() -> None:
    d = diagnose([1, 2, 3, 4, 5], [2.0, 1.5, 1.2, math.nan, 1.0])
    # diverging from the first non-finite step; the evidence covers the finite part
    assert d.shape is Shape.DIVERGING
    assert d.nonfinite_step == 4.0
    assert d.points == 3


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_points_is_unknown_and_says_so(n: int) -> None:
    d = diagnose(list(range(n)), [1.0 - 0.1 * i for i in range(n)])
    assert d.shape is Shape.UNKNOWN
    assert "too few" in d.reason or "no finite" in d.reason


def test_three_points_are_read() -> None:
    # a short phase's three epochs: falling, flat, or rising after a minimum
    assert diagnose([1, 2, 3], [1.0, 0.8, 0.6]).shape is Shape.UNDERFITTING
    assert diagnose([1, 2, 3], [1.0, 0.6, 0.6]).shape is Shape.HORIZONTAL
    # with three points the noise is read from the same two differences: a V is within it
    assert diagnose([1, 2, 3], [1.0, 0.6, 0.9]).shape is Shape.HORIZONTAL


def test_a_steady_rise_past_the_start_is_overfitting_not_divergence() -> None:
    # the paper: overfitting is a rise after the minimum, however high; divergence is an explosion
    rise = [1.2, 0.8, 0.6, 0.55, 0.6, 0.75, 0.95, 1.2, 1.45, 1.7]
    d = diagnose(range(10), rise)
    assert d.shape is Shape.OVERFITTING
    assert "above where it started" in d.reason
    # an order of magnitude above the minimum (and past the start) is an explosion
    exploded = [*rise[:5], 1.0, 2.0, 4.0, 8.0, 16.0]
    d = diagnose(range(10), exploded)
    assert d.shape is Shape.DIVERGING
    assert "exploded" in d.reason
    # ... also with only two points after the minimum
    assert diagnose([1, 2], [1.0, 11.0]).shape is Shape.DIVERGING


def test_ten_times_the_minimum_below_the_start_is_still_overfitting() -> None:
    # a cross-entropy from 2.3 down to 0.03, then up to 0.5: overconfident, not exploded
    curve = [2.3, 0.5, 0.1, 0.05, 0.03, 0.06, 0.12, 0.2, 0.35, 0.5]
    assert diagnose(range(10), curve, chance_loss=math.log(10)).shape is Shape.OVERFITTING


def test_climbing_back_to_chance_level_is_divergence() -> None:
    # a range test that learned, then lost it: its last points at chance level and not falling
    curve = [2.4, 1.8, 1.2, 1.0, 1.1, 1.5, 2.0, 2.35, 2.32, 2.4, 2.38]
    assert diagnose(range(11), curve, chance_loss=math.log(10)).shape is Shape.DIVERGING
    assert diagnose(range(11), curve).shape is Shape.OVERFITTING  # without the chance level: a rise


def test_one_spike_early_in_a_cycle_is_not_chance_level() -> None:
    # a BatchNorm network's validation loss at the high-LR part of 1cycle: one epoch spikes
    curve = [3.147, 1.348, 1.326, 2.154]
    assert diagnose(range(1, 5), curve, chance_loss=math.log(10)).shape is not Shape.DIVERGING


def test_chance_level_curve_is_diverging_only_when_told_the_chance_level() -> None:
    flat_at_chance = [7.0, 4.0, 2.8, 2.45, 2.4, 2.42, 2.41, 2.39, 2.4, 2.41, 2.4, 2.42]
    steps = list(range(1, 13))
    # shape alone says horizontal; the absolute level (ln 10) says nothing was learned
    assert diagnose(steps, flat_at_chance).shape is Shape.HORIZONTAL
    assert diagnose(steps, flat_at_chance, chance_loss=math.log(10)).shape is Shape.DIVERGING


def test_still_falling_at_chance_is_not_diverging() -> None:
    slow_start = [2.45, 2.40, 2.36, 2.33, 2.31]
    # early in a slow run the loss may sit above chance while falling: that is underfitting
    assert diagnose(range(5), slow_start, chance_loss=math.log(10)).shape is Shape.UNDERFITTING


def test_evidence_is_json_ready() -> None:
    d = diagnose(T, 0.2 + 2.0 * np.exp(-T / 1.5))
    data = d.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["shape"] == "horizontal"
    assert data["min_step"] >= 10


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        diagnose([1, 2, 3], [1.0, 2.0])


def test_helpers_on_known_inputs() -> None:
    # Theil-Sen ignores one wild point; the running median removes a spike
    assert theil_sen_slope([0, 1, 2, 3, 4], [0, 1, 2, 30, 4]) == pytest.approx(1.0)
    assert running_median([1, 1, 9, 1, 1], 3)[2] == 1
    assert robust_noise([1.0, 1.0]) == 0.0


@st.composite
def curves_on_a_grid(draw: st.DrawFn) -> list[float]:
    # values on a 1/64 grid: scaling by 2^k and integer shifts are exact in floating point
    n = draw(st.integers(min_value=4, max_value=40))
    return [draw(st.integers(min_value=0, max_value=64 * 8)) / 64 for _ in range(n)]


@settings(max_examples=200, deadline=None)
@given(curves_on_a_grid(), st.integers(min_value=-6, max_value=6), st.integers(min_value=-50, max_value=50))
def test_verdict_is_invariant_to_loss_scale_and_offset(losses: list[float], k: int, shift: int) -> None:
    steps = list(range(len(losses)))
    moved = [v * 2.0**k + shift for v in losses]
    # an explosion is an absolute ratio (an order of magnitude over the minimum): not shift-invariant
    assume(not any(_exploded(c) for c in (losses, moved)))
    # a loss in other units, or shifted by a constant, tells the same story
    assert diagnose(steps, moved).shape is diagnose(steps, losses).shape


def _exploded(curve: list[float]) -> bool:
    low = min(curve)
    return low > 0 and curve[-1] > 10 * low and curve[-1] > curve[0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(math.nan)), max_size=30))
def test_nan_and_inf_anywhere_never_raise(losses: list[float]) -> None:
    d = diagnose(list(range(len(losses))), losses)
    # NaN/inf means diverging; otherwise any verdict, but never an exception
    if any(not math.isfinite(v) for v in losses):
        assert d.shape is Shape.DIVERGING
    assert isinstance(d.reason, str)


def test_rank_prefers_horizontal_at_equal_loss_and_puts_bad_shapes_last() -> None:
    entries = {
        "diverged": (math.nan, Shape.DIVERGING),
        "overfit": (0.10, Shape.OVERFITTING),
        "falling": (0.300, Shape.UNDERFITTING),
        "flat": (0.301, Shape.HORIZONTAL),
        "best": (0.20, Shape.UNDERFITTING),
    }
    # at (nearly) equal loss the flat curve beats the falling one; overfitting, then diverging, last
    assert rank(entries, tie_tolerance=0.005) == ["best", "flat", "falling", "overfit", "diverged"]
    # without a tie tolerance the lower loss wins
    assert rank_key(0.300, Shape.UNDERFITTING) < rank_key(0.301, Shape.HORIZONTAL)


def _running_median_reference(x: list[float], window: int) -> list[float]:
    """The definition, one point at a time: centred, shrinking at the start, one-sided at the end."""
    half, n, out = window // 2, len(x), []
    for i in range(n):
        if i + half < n:
            k = min(half, i)
            out.append(float(np.median(x[i - k : i + k + 1])))
        else:
            out.append(float(np.median(x[max(0, i - 2 * half) : i + 1])))
    return out


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), max_size=40), st.sampled_from([1, 3, 5, 7, 9]))
def test_vectorised_running_median_matches_its_definition(values: list[float], window: int) -> None:
    assert running_median(values, window).tolist() == pytest.approx(_running_median_reference(values, window))


@pytest.mark.parametrize("group", [1, 8, 32])
def test_the_standard_error_from_group_means_is_sigma_over_root_n(group: int) -> None:
    """4 000 samples of σ = 2, summed in groups: the standard error of their mean is 2 / √4000 ≈ 0.0316
    whatever the group size (within the estimate's own spread); below two groups it is unknown."""
    x = np.random.default_rng(0).normal(1.0, 2.0, 4000)
    means = x.reshape(-1, group).mean(axis=1)
    se = standard_error(float(means.sum() * group), float((means**2).sum() * group), 4000, len(means))
    assert se == pytest.approx(2.0 / math.sqrt(4000), rel=0.15 if group == 32 else 0.05)
    assert math.isnan(standard_error(5.0, 25.0, 5, 1))
    assert standard_error(8.0, 8.0, 8, 8) == 0.0  # every group the same: no spread

"""Exponent bisection: proposal tables, the paper's examples, and properties (shrinks, no repeats, ends)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunekit.core.bisection import Bisection, guess_grid, round_sig
from tunekit.core.curves import Shape


def run(b: Bisection, f: Callable[[float], float], shape: Shape = Shape.HORIZONTAL) -> list[float]:
    """Drive a bisection to the end with objective ``f``; returns every value evaluated, in order."""
    evaluated: list[float] = []
    while True:
        new = b.propose()
        if not new and not b.pending():
            return evaluated
        for v in new:
            evaluated.append(v)
            b.observe(v, f(v), shape)


def quadratic(optimum: float) -> Callable[[float], float]:
    return lambda v: (math.log10(v) - optimum) ** 2 if v > 0 else 30.0


def test_guess_grid_is_half_a_decade_either_side() -> None:
    # 1e-4 → 3.2e-5, 1e-4, 3.2e-4 (the example)
    assert guess_grid(1e-4) == [3.2e-5, 1e-4, 3.2e-4]
    assert guess_grid(0.5, "linear", 0.1) == [0.4, 0.5, 0.6]


def test_initial_grid_is_proposed_at_once_then_waits() -> None:
    b = Bisection([1e-3, 1e-4, 1e-5, 0.0])
    # the whole grid in parallel, then nothing until every result is in
    assert b.propose() == [1e-3, 1e-4, 1e-5, 0.0]
    assert b.propose() == []
    b.observe(1e-3, 1.0)
    assert b.propose() == []


@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        ({1e-3: 0.30, 1e-4: 0.20, 1e-5: 0.25, 0.0: 0.40}, 3.2e-5),  # interior best: bisect towards the better neighbour
        ({1e-3: 0.20, 1e-4: 0.25, 1e-5: 0.30, 0.0: 0.40}, 3.2e-3),  # best at the top edge: half a decade up
        ({1e-3: 0.40, 1e-4: 0.30, 1e-5: 0.20, 0.0: 0.25}, 3.2e-6),  # towards zero: half a decade below 1e-5
        ({1e-3: 0.40, 1e-4: 0.30, 1e-5: 0.25, 0.0: 0.20}, 3.2e-6),  # zero best: between zero and the smallest positive
        ({1e-3: 0.22, 1e-4: 0.20, 1e-5: 0.50, 0.0: 0.60}, 3.2e-4),  # 1e-3 and 1e-4 → 10^-3.5 (the paper's example)
    ],
)
def test_next_proposal_after_the_grid(losses: dict[float, float], expected: float) -> None:
    b = Bisection(list(losses))
    b.propose()
    for v, loss in losses.items():
        b.observe(v, loss, Shape.HORIZONTAL)
    assert b.propose() == [expected]


def test_diverged_counts_as_worst() -> None:
    b = Bisection([1e-3, 1e-4, 1e-5])
    b.propose()
    b.observe(1e-3, math.nan)
    b.observe(1e-4, 0.5, Shape.HORIZONTAL)
    b.observe(1e-5, 0.1, Shape.DIVERGING)
    # both diverged points rank below the finite one
    assert b.best().value == 1e-4  # type: ignore[union-attr]


def test_ties_are_broken_by_curve_shape() -> None:
    b = Bisection([1e-3, 1e-4], tie_tolerance=0.01)
    b.propose()
    b.observe(1e-3, 0.300, Shape.UNDERFITTING)
    b.observe(1e-4, 0.305, Shape.HORIZONTAL)
    # within the tolerance, horizontal beats still-decreasing
    assert b.best().value == 1e-4  # type: ignore[union-attr]


def test_converges_to_one_significant_figure_in_seven_trials() -> None:
    b = Bisection([1e-3, 1e-4, 1e-5, 0.0])
    evaluated = run(b, quadratic(-3.3))
    best = b.best().value  # type: ignore[union-attr]
    # grid (4) + edge (3.2e-3) + 3.2e-4 + 5.7e-4: resolved to a quarter decade around 10^-3.3
    assert len(evaluated) <= 7
    assert abs(math.log10(best) + 3.3) <= 0.125


def test_half_a_decade_stops_on_the_half_decade_grid() -> None:
    """The weight-decay phase's default: once the best value's neighbours are half a decade away, stop."""
    coarse = run(Bisection([3.2e-5, 1e-4, 3.2e-4], resolution=0.5), quadratic(-3.4))
    fine = run(Bisection([3.2e-5, 1e-4, 3.2e-4], resolution=0.25), quadratic(-3.4))
    assert coarse == [3.2e-5, 1e-4, 3.2e-4, 1e-3]  # 3.2e-4 wins at the edge; 1e-3 brackets it: done
    assert fine == [3.2e-5, 1e-4, 3.2e-4, 1e-3, 5.7e-4, 1.8e-4]  # quarter decades either side
    assert min(coarse, key=quadratic(-3.4)) == min(fine, key=quadratic(-3.4)) == 3.2e-4


def test_budget_is_respected() -> None:
    b = Bisection([1e-3, 1e-4, 1e-5, 0.0], max_trials=5)
    assert len(run(b, quadratic(-7.0))) == 5


def test_linear_scale_bisects_values() -> None:
    b = Bisection([0.1, 0.3, 0.5], scale="linear", resolution=0.05, edge_step=None)
    evaluated = run(b, lambda p: (p - 0.22) ** 2)
    assert abs(b.best().value - 0.22) <= 0.05  # type: ignore[union-attr]
    assert len(set(evaluated)) == len(evaluated)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial": []}, "initial is empty"),
        ({"initial": [1e-3, 1e-3]}, "repeated"),
        ({"initial": [-1e-3, 1e-4]}, "≥ 0"),
        ({"initial": [1e-3, 1e-4, 1e-5], "max_trials": 2}, "max_trials"),
        ({"initial": [1e-3], "resolution": 0}, "resolution"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Bisection(**kwargs)  # type: ignore[arg-type]


def test_round_sig() -> None:
    assert round_sig(10**-3.5) == 3.2e-4
    assert round_sig(0.0) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=-7.5, max_value=-0.5), st.floats(min_value=0.0, max_value=0.05))
def test_properties_no_repeats_terminates_and_the_bracket_shrinks(optimum: float, wobble: float) -> None:
    b = Bisection([1e-3, 1e-4, 1e-5, 0.0], max_trials=14)
    f = quadratic(optimum)
    evaluated = run(b, lambda v: f(v) + wobble * math.sin(1e3 * v))
    # it ends within its budget and never proposes a value twice
    assert len(evaluated) <= 14
    assert len(set(evaluated)) == len(evaluated)
    # each proposal after the grid lands strictly inside the known range or half a decade beyond it,
    # and the spacing between successive bisections never grows
    positions = [math.log10(v) for v in evaluated[4:] if v > 0]
    gaps = [abs(a - b) for a, b in itertools.pairwise(positions)]
    interior = [g for g in gaps if g <= 0.5 + 1e-9]
    assert all(g <= 0.5 + 0.02 for g in interior)


def _bracket(b: Bisection) -> float | None:
    """Width (decades) between the best value's neighbours, when the best is interior."""
    best = b.best()
    points = sorted(math.log10(o.value) for o in b.observations if o.value > 0)
    if best is None or best.value <= 0:
        return None
    x = math.log10(best.value)
    below = [p for p in points if p < x]
    above = [p for p in points if p > x]
    return (above[0] - below[-1]) if below and above else None


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=-6.0, max_value=-1.0))
def test_property_the_bracket_around_the_best_never_grows(optimum: float) -> None:
    b = Bisection([1e-3, 1e-4, 1e-5, 0.0], max_trials=14)
    f = quadratic(optimum)
    widths: list[float] = []
    while True:
        new = b.propose()
        if not new and not b.pending():
            break
        for v in new:
            b.observe(v, f(v), Shape.HORIZONTAL)
        if not b.pending() and (w := _bracket(b)) is not None:
            widths.append(w)
    # on a unimodal objective, once the best is inside the explored range its bracket only shrinks
    assert all(later <= earlier + 0.02 for earlier, later in itertools.pairwise(widths))

"""decide(): the shared early-stopping rule, checked as a table of curves and peers."""

from __future__ import annotations

import math

import pytest

from tunekit.core.early_stop import StopRule, decide, value_at

GOOD = [2.0, 1.0, 0.6, 0.45, 0.40, 0.39, 0.39, 0.38]
SLOW = [2.2, 2.1, 2.0, 1.9, 1.85, 1.82, 1.80, 1.79]
OVERFIT = [2.0, 1.0, 0.6, 0.55, 0.65, 0.75, 0.85, 0.95]


def steps(n: int) -> list[float]:
    return [float(i) for i in range(1, n + 1)]


@pytest.mark.parametrize(
    ("losses", "peers", "stop", "by"),
    [
        ([2.0, math.nan], [], True, "diverging"),  # NaN stops at once, even in the grace period
        ([2.0, 1.5], [0.1, 0.1], False, ""),  # grace period protects everything else
        (OVERFIT, [], True, "overfitting"),  # rose after its minimum
        (SLOW, [0.38, 0.40, 0.41], True, "peers"),  # clearly worse than its peers, not catching up
        (SLOW, [0.38], False, ""),  # too few peers to compare
        (GOOD, [0.38, 0.40, 0.41], False, ""),  # within tolerance of its peers
        (GOOD, [], False, ""),  # horizontal, alone: continue
    ],
)
def test_decision_table(losses: list[float], peers: list[float], stop: bool, by: str) -> None:
    d = decide(steps(len(losses)), losses, peers, StopRule(grace_period=3, min_peers=2))
    assert (d.stop, d.stopped_by) == (stop, by), d.reason


def test_behind_but_steeply_improving_is_kept() -> None:
    steep = [3.0, 2.6, 2.2, 1.8, 1.4, 1.0, 0.7]
    # 0.3 behind its peers but falling ~0.6 per tail window: it may catch up
    d = decide(steps(7), steep, [0.40, 0.42, 0.38], StopRule(grace_period=3))
    assert not d.stop
    assert "catch up" in d.reason


def test_overfitting_can_be_allowed() -> None:
    d = decide(steps(len(OVERFIT)), OVERFIT, [], StopRule(stop_overfitting=False))
    assert not d.stop


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"grace_period": 0}, "grace_period"), ({"min_peers": 0}, "min_peers"), ({"quantile": 0.0}, "quantile")],
)
def test_bad_rule_arguments_name_themselves(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        StopRule(**kwargs)  # type: ignore[arg-type]


def test_value_at_uses_recent_finite_points_and_marks_divergence() -> None:
    # median of the last three values at or before the step; inf once the trial has diverged
    assert value_at([1, 2, 3, 4], [4.0, 3.0, 2.0, 1.0], 3) == 3.0
    assert value_at([1, 2], [1.0, math.nan], 2) == math.inf
    assert math.isnan(value_at([5], [1.0], 2))

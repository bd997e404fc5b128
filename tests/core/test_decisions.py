"""The search's decisions as pure functions: range tests → bounds, candidates → winner, replicates."""

from __future__ import annotations

import math
import statistics
from typing import Literal

import numpy as np
import pytest

from tunekit.core.curves import Shape
from tunekit.core.decisions import (
    Candidate,
    choose_candidate,
    choose_lr_range,
    mean_std,
    median_reading,
    replicate_overrides,
    score_curve,
    tied_range_tests,
)
from tunekit.core.lr_range import RangeTestError


def u_curve(minimum_lr: float, floor: float, lrs: np.ndarray) -> list[float]:
    """A range-test-like curve: falls to ``floor`` at ``minimum_lr``, then climbs steeply."""
    return [floor + 2.0 * (lr - minimum_lr) ** 2 + (8.0 * (lr - minimum_lr) ** 2 if lr > minimum_lr else 0.0) for lr in lrs]


LRS = np.linspace(0.01, 3.0, 60)


#: Twelve LRs, 0.1 to 1.2: a curve this short is smoothed by a running median of 3 (10 % of 12 points,
#: at least 3), which leaves a curve that falls, stays flat for three points and climbs unchanged (but for
#: its last point, the median of the last three, which no rule below reads); its
#: point noise (residuals from a running median of 5) is 0 at every point but the last two, so its
#: median is 0 and the tolerance is the relative rule alone: 0.05 × (first loss - lowest loss).
HAND_LRS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2]
HAND_CURVES = {
    # lowest 0.5 at lr 0.5; tolerance 0.05 × (2.0 - 0.5) = 0.075; 0.52 is within it (+0.02),
    # 0.9 at lr 0.9 is the first point above it (+0.4) → max_lr = the LR before it = 0.8
    1e-4: [2.0, 1.6, 1.2, 0.8, 0.5, 0.5, 0.5, 0.52, 0.9, 1.5, 2.2, 3.0],
    # lowest 0.6 at lr 0.3; tolerance 0.05 × 1.4 = 0.07; 0.9 at lr 0.6 is above it → max_lr 0.5
    1e-3: [2.0, 1.5, 0.6, 0.6, 0.6, 0.9, 1.4, 2.0, 2.6, 3.2, 4.0, 5.0],
    # lowest 0.7 at lr 0.6; tolerance 0.05 × 1.3 = 0.065; 1.0 at lr 0.9 is above it → max_lr 0.8
    0.0: [2.0, 1.8, 1.5, 1.2, 1.0, 0.7, 0.7, 0.7, 1.0, 1.5, 2.0, 3.0],
}


def test_the_weight_decay_reaching_the_lowest_loss_gives_the_bounds() -> None:
    """Fig. 10: the weight decays rank by the lowest loss their range test reached (0.5 < 0.6 < 0.7); the
    bounds are the winner's: max_lr where its loss turns up (Sec. 4.1), min_lr = max_lr / 10 for 1cycle."""
    curves = {wd: (HAND_LRS, losses) for wd, losses in HAND_CURVES.items()}
    choice = choose_lr_range(curves, min_lr_factor=10.0)
    assert choice.weight_decay == 1e-4
    assert choice.ranking == [1e-4, 1e-3, 0.0]
    assert choice.max_lr == 0.8  # the LR just before 0.9, the first LR whose loss is above 0.5 + 0.075
    assert choice.min_lr == pytest.approx(0.08)  # 0.8 / 10
    assert {wd: r.max_lr for wd, r in choice.ranges.items()} == {1e-4: 0.8, 1e-3: 0.5, 0.0: 0.8}
    assert {wd: r.min_loss for wd, r in choice.ranges.items()} == {1e-4: 0.5, 1e-3: 0.6, 0.0: 0.7}
    assert "1e-04" in choice.reason or "0.0001" in choice.reason
    assert "turns up at 0.9" in choice.reason


def test_range_tests_tie_within_two_standard_errors_of_the_difference_of_their_minima() -> None:
    """The hand curves' tolerances are 0.075, 0.07 and 0.065 (the relative rule: no point noise). 1e-3's lowest
    loss is 0.1 above 1e-4's, within √(0.075² + 0.07²) = 0.1026: they tie; 0's is 0.2 above, outside
    √(0.075² + 0.065²) = 0.0992: it does not. The bounds come from the median of the tied max_lrs (0.8 and 0.5:
    of two middles, the larger), 1e-4's own; the weight decay stays the lowest loss's."""
    curves = {wd: (HAND_LRS, losses) for wd, losses in HAND_CURVES.items()}
    choice = choose_lr_range(curves)
    assert choice.tied == choice.unranked == [1e-4, 1e-3]
    assert (choice.source, choice.max_lr, choice.weight_decay) == (1e-4, 0.8, 1e-4)
    assert "1e-04" not in choice.reason  # weight decays are written with :g
    assert "weight decays 0.0001, 0.001 reached lowest losses within noise of each other" in choice.reason
    assert "lowest loss 0.5 ± 0.075" in choice.reason  # each test's lowest loss with its tolerance
    # 1e-3's curve 0.05 lower still: 0.55 against 0.5 is a tie, 0.65 (0.15 above) is not
    lower = {**HAND_CURVES, 1e-3: [v - 0.05 if i in (2, 3, 4) else v for i, v in enumerate(HAND_CURVES[1e-3])]}
    higher = {**HAND_CURVES, 1e-3: [v + 0.05 if i in (2, 3, 4) else v for i, v in enumerate(HAND_CURVES[1e-3])]}
    assert choose_lr_range({wd: (HAND_LRS, y) for wd, y in lower.items()}).tied == [1e-4, 1e-3]
    # read literally (ties="lowest"), the lowest loss's test alone, with the sentence it always had
    literal = choose_lr_range(curves, ties="lowest")
    assert (literal.tied, literal.source, literal.max_lr) == ([1e-4], 1e-4, 0.8)
    assert "wd 0.001: lowest loss 0.6, max_lr 0.5" in literal.reason
    separated = choose_lr_range({wd: (HAND_LRS, y) for wd, y in higher.items()})
    assert separated.tied == [1e-4]
    assert separated.unranked is None  # the best stood apart
    assert separated.reason.startswith(
        "weight decay 0.0001 reached the lowest validation loss; its range test gives max_lr = 0.8"
    )


def test_where_tests_tie_an_outlying_turn_up_is_not_read() -> None:
    """Three smooth curves whose lowest losses differ by 0.02 (each tolerance ≈ 0.1, 5 % of a fall of ≈ 2):
    the lowest one turns up far later than the other two. One curve's turn-up is one draw; the median of the
    three is read, the middle curve's — not the lowest loss's outlier."""
    curves = {
        0.0: (LRS.tolist(), u_curve(2.0, 0.20, LRS)),  # the lowest loss, the latest turn-up
        1e-4: (LRS.tolist(), u_curve(0.5, 0.21, LRS)),
        1e-3: (LRS.tolist(), u_curve(0.8, 0.22, LRS)),
    }
    choice = choose_lr_range(curves)
    reads = {wd: r.max_lr for wd, r in choice.ranges.items()}
    assert reads[1e-4] < reads[1e-3] < reads[0.0]  # three different turn-ups
    assert choice.weight_decay == 0.0
    assert choice.tied == [0.0, 1e-4, 1e-3]
    assert choice.source == 1e-3
    assert choice.max_lr == reads[1e-3]
    assert choice.min_lr == pytest.approx(reads[1e-3] / 10)
    assert "weight decay 0.001's test" in choice.reason
    # the same curves an order of magnitude apart in loss: the lowest is read alone, as before
    apart = {**curves, 1e-4: (LRS.tolist(), u_curve(0.5, 1.5, LRS)), 1e-3: (LRS.tolist(), u_curve(0.8, 1.6, LRS))}
    alone = choose_lr_range(apart)
    assert alone.tied == [0.0]
    assert (alone.source, alone.max_lr) == (0.0, reads[0.0])


def test_the_median_reading_takes_the_larger_of_two_middles_and_the_best_among_equals() -> None:
    curves = {wd: (HAND_LRS, losses) for wd, losses in HAND_CURVES.items()}
    ranges = choose_lr_range(curves).ranges  # max_lr: 1e-4 → 0.8, 1e-3 → 0.5, 0 → 0.8
    assert median_reading(ranges, [1e-3]) == 1e-3
    assert median_reading(ranges, [1e-3, 1e-4]) == 1e-4  # 0.5 and 0.8: the larger
    assert median_reading(ranges, [0.0, 1e-3, 1e-4]) == 0.0  # 0.8 is the median; 0 comes first of the two
    assert median_reading(ranges, [1e-4, 1e-3, 0.0]) == 1e-4
    assert tied_range_tests(ranges, [1e-4, 1e-3, 0.0]) == [1e-4, 1e-3]
    assert tied_range_tests(ranges, [0.0, 1e-3, 1e-4]) == [0.0, 1e-3, 1e-4]  # measured from the first given
    with pytest.raises(ValueError, match="no weight decay"):
        median_reading(ranges, [])


def test_min_lr_follows_the_factor_of_the_policy() -> None:
    """min_lr = max_lr / factor: 0.8 / 4 = 0.2 (CLR, Sec. 4.1), 0.8 / 10 = 0.08 (1cycle, the default)."""
    curves = {1e-4: (HAND_LRS, HAND_CURVES[1e-4])}
    assert choose_lr_range(curves, min_lr_factor=4.0).min_lr == pytest.approx(0.2)
    assert choose_lr_range(curves).min_lr == pytest.approx(0.08)


def test_an_unreadable_curve_is_ranked_last_and_all_unreadable_raise() -> None:
    good = (LRS.tolist(), u_curve(1.0, 0.2, LRS))
    choice = choose_lr_range({1e-4: good, 1e-3: ([0.1, 0.2], [1.0, 0.9])})
    assert choice.ranking[-1] == 1e-3
    assert 1e-3 in choice.failures
    assert "unreadable" in choice.reason
    with pytest.raises(RangeTestError, match="no range test could be read"):
        choose_lr_range({1e-3: ([0.1, 0.2], [1.0, 0.9])})


def test_a_stopped_trial_ranks_after_every_trial_that_finished() -> None:
    candidates = [
        Candidate("0.99", 0.30, Shape.HORIZONTAL),
        Candidate("0.97", 0.10, Shape.UNDERFITTING, stopped_by="peers"),  # lower, but stopped at an earlier epoch
        Candidate("0.9", math.inf, Shape.DIVERGING, stopped_by="diverging"),
        Candidate("0.95", 0.25, Shape.UNDERFITTING),
    ]
    choice = choose_candidate(candidates, "max momentum")
    assert choice.best == "0.95"
    assert choice.order == ["0.95", "0.99", "0.97", "0.9"]
    assert choice.reason.startswith("max momentum 0.95 has the lowest validation loss")


def test_within_the_tie_tolerance_a_horizontal_curve_wins() -> None:
    candidates = [Candidate("a", 0.200, Shape.UNDERFITTING), Candidate("b", 0.205, Shape.HORIZONTAL)]
    assert choose_candidate(candidates, "x").best == "a"
    assert choose_candidate(candidates, "x", tie_tolerance=0.01).best == "b"


def test_no_winner_when_everything_diverged() -> None:
    choice = choose_candidate([Candidate("a", math.inf, Shape.DIVERGING)], "weight decay")
    assert choice.best is None
    assert "diverged" in choice.reason
    assert choose_candidate([], "weight decay").best is None


def test_score_curve_reads_the_last_value_or_the_judging_step() -> None:
    steps, losses = [1, 2, 3, 4], [1.0, 0.8, 0.6, 0.7]
    assert score_curve(steps, losses)[0] == 0.7
    assert score_curve(steps, losses, window=3)[0] == 0.7  # median of 0.8, 0.6, 0.7
    assert score_curve(steps, losses, judge_step=3)[0] == 0.6
    assert score_curve(steps, losses, diverged=True) == (math.inf, Shape.DIVERGING)
    assert score_curve([], []) == (math.inf, Shape.DIVERGING)


def test_replicates_alternate_init_jitter_the_batch_and_step_the_seed() -> None:
    plan = replicate_overrides(5, seed=7, batch_size=128, batch_jitter=12)
    assert [p["seed"] for p in plan] == [7, 8, 9, 10, 11]
    assert [p["init"] for p in plan] == ["msra", "xavier", "msra", "xavier", "msra"]
    assert plan[0]["batch_size"] == 128
    assert all(128 <= int(p["batch_size"]) <= 140 for p in plan)  # type: ignore[call-overload]
    assert plan == replicate_overrides(5, seed=7, batch_size=128, batch_jitter=12)  # deterministic
    assert replicate_overrides(1, seed=0, batch_size=64, batch_jitter=12, init="xavier") == [
        {"seed": 0, "init": "xavier", "batch_size": 64}
    ]
    # replicate 0 keeps the given init, the others alternate with the other scheme
    assert [p["init"] for p in replicate_overrides(3, seed=7, batch_size=128, batch_jitter=12, init="xavier")] == [
        "xavier",
        "msra",
        "xavier",
    ]
    # a user model that keeps its own initialisation: no init key at all
    assert all("init" not in p for p in replicate_overrides(3, seed=7, batch_size=128, batch_jitter=12, init=None))
    assert replicate_overrides(1, seed=0, batch_size=64, batch_jitter=12, init=None) == [{"seed": 0, "batch_size": 64}]
    with pytest.raises(ValueError, match="replicates"):
        replicate_overrides(0, 0, 64, 12)


def test_mean_std_is_the_sample_standard_deviation() -> None:
    values = [0.981, 0.985, 0.979]
    mean, std = mean_std(values)
    assert mean == pytest.approx(statistics.mean(values))
    assert std == pytest.approx(statistics.stdev(values))
    assert mean_std([0.9]) == (0.9, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))


def test_tie_band_reads_noise_only_from_curves_long_enough_to_show_it() -> None:
    from tunekit.core.decisions import tie_band

    # three epochs of a falling 1cycle: the differences are the trend, not noise
    short = [[0.5, 0.2, 0.1], [0.6, 0.25, 0.12]]
    assert tie_band(0.1, short, relative=0.02) == pytest.approx(0.002)
    # twenty noisy points around a flat end: the band is about 2 σ of that noise
    rng = np.random.default_rng(0)
    noisy = [list(0.1 + 0.01 * rng.standard_normal(20)) for _ in range(3)]
    assert 0.01 < tie_band(0.1, noisy, relative=0.02) < 0.04


def test_tie_band_over_a_judge_window_reads_the_epoch_to_epoch_jumps_of_those_epochs() -> None:
    """Snapshot continuations are judged by the median of their last three epochs; how far those epochs jump is
    how far two medians land apart. Three points a, b, c give σ = 1.4826·|a − 2b + c| / (2√2) (the MAD of
    the two successive differences, as a σ of the points); the band is twice the median σ over the runs."""
    from tunekit.core.decisions import tie_band

    def sigma(a: float, b: float, c: float) -> float:
        return 1.4826 * abs(a - 2 * b + c) / (2 * math.sqrt(2))

    jumpy = [[0.9, 0.31, 0.22, 0.31], [0.41, 0.46, 0.28], [0.62, 0.36, 0.16]]  # an epoch before the window: not read
    expected = 2 * statistics.median([sigma(0.31, 0.22, 0.31), sigma(0.41, 0.46, 0.28), sigma(0.62, 0.36, 0.16)])
    assert tie_band(0.2, jumpy, relative=0.0, window=3) == pytest.approx(expected)
    # the median σ is the first run's window: |0.31 − 0.44 + 0.31| = 0.18 (the others: 0.23 and 0.06)
    assert expected == pytest.approx(0.18 * 1.4826 / math.sqrt(2), rel=1e-6)
    # a straight fall over the window is a trend, not noise; without a window the halves are too short to read
    assert tie_band(0.2, [[0.5, 0.4, 0.3], [0.6, 0.5, 0.4]], relative=0.01, window=3) == pytest.approx(0.002)
    assert tie_band(0.2, jumpy, relative=0.01) == pytest.approx(0.002)
    # fewer than three epochs in the window: nothing to read the jumps from
    assert tie_band(0.2, [[0.4, 0.1], [0.3, 0.5]], relative=0.0, window=2) == 0.0


def test_runs_judged_over_a_window_tie_whatever_their_few_epochs_are_diagnosed() -> None:
    """Snapshot continuations of three epochs in the LR's climb: 1e-4's rose steadily (0.309, 0.341, 0.358) and
    is diagnosed overfitting. Judged on one epoch, another class never ties; over a window, its shape is read on
    the same noisy epochs as its median, so it ties (0.341 within 0.229 of 0.208) and, the largest, wins. A
    diverged run never ties."""
    from tunekit.core.decisions import choose_lr

    cands = [
        Candidate("1e-05", 0.208, Shape.HORIZONTAL),
        Candidate("3.2e-05", 0.336, Shape.HORIZONTAL),
        Candidate("0.0001", 0.341, Shape.OVERFITTING),
        Candidate("0.001", math.inf, Shape.DIVERGING),
    ]
    values = {c.label: float(c.label) for c in cands}
    curves = [[0.384, 0.187, 0.208], [0.336, 0.175, 0.475], [0.309, 0.341, 0.358]]
    windowed, band = choose_lr(cands, values, curves, 0.0, what="weight decay", window=3)
    assert (windowed.best, round(band, 3)) == ("0.0001", 0.229)
    # judged on one epoch, with a band as wide (the loss's own size): the overfitting run stays out
    assert choose_lr(cands, values, curves, 1.0, what="weight decay")[0].best == "3.2e-05"


def test_the_largest_lr_within_the_band_wins_and_bad_shapes_never_tie() -> None:
    from tunekit.core.decisions import choose_largest_within

    cands = [
        Candidate("0.8", 0.0978, Shape.UNDERFITTING),
        Candidate("0.4", 0.0972, Shape.UNDERFITTING),
        Candidate("0.2", 0.118, Shape.UNDERFITTING),
        Candidate("1.6", 0.0975, Shape.OVERFITTING),  # as low, but overfitting: never in the tie
    ]
    lrs = {"0.8": 0.8, "0.4": 0.4, "0.2": 0.2, "1.6": 1.6}
    choice = choose_largest_within(cands, lrs, "max_lr", band=0.002)
    assert choice.best == "0.8"
    assert "within 0.002 of the lowest (0.0972 at 0.4)" in choice.reason
    # a narrower band than the difference: the lowest loss wins
    assert choose_largest_within(cands, lrs, "max_lr", band=0.0001).best == "0.4"
    # a trial the scheduler stopped does not tie with one that ran to the end
    stopped = [Candidate("0.4", 0.0972, Shape.UNDERFITTING), Candidate("0.8", 0.0973, Shape.UNDERFITTING, "peers")]
    assert choose_largest_within(stopped, lrs, "max_lr", band=0.01).best == "0.4"


def test_best_index_is_the_best_finite_score_in_its_direction() -> None:
    from tunekit.core.decisions import best_index

    assert best_index([0.98, math.nan, 0.99, 0.97], lower_is_better=False) == 2
    assert best_index([0.3, 0.1, math.inf, 0.1], lower_is_better=True) == 1  # the first of equals
    assert best_index([math.nan, math.inf], lower_is_better=True) is None
    assert best_index([], lower_is_better=False) is None


def test_the_lr_is_bracketed_from_above_by_halving_while_the_smallest_has_the_lowest_loss() -> None:
    from tunekit.core.decisions import next_lower_lr

    # the smallest LR tried has the lowest loss: the minimum may lie lower, try half of it
    assert next_lower_lr([0.8, 0.4, 0.2], lowest=0.2, floor=0.01) == pytest.approx(0.1)
    # a smaller LR lost to a larger one: bracketed
    assert next_lower_lr([0.8, 0.4, 0.2, 0.1], lowest=0.2, floor=0.01) is None
    # the floor is a limit: 0.025 is exactly at it, 0.0125 under
    assert next_lower_lr([0.8, 0.05], lowest=0.05, floor=0.025) == pytest.approx(0.025)
    assert next_lower_lr([0.8, 0.025], lowest=0.025, floor=0.025) is None
    # no loss at all (every run diverged or failed), or nothing tried: no more runs
    assert next_lower_lr([0.8, 0.4], lowest=None, floor=0.01) is None
    assert next_lower_lr([], lowest=0.4, floor=0.01) is None


def test_a_walk_starts_at_the_current_value_and_its_neighbour_on_the_side_ties_go_to() -> None:
    from tunekit.core.decisions import walk_start

    grid = (0.99, 0.97, 0.95, 0.9)
    assert walk_start(grid, 0.95) == [0.9, 0.95]  # lower momenta win ties: the lower neighbour first
    assert walk_start(grid, 0.95, toward="higher") == [0.95, 0.97]  # prefer: largest
    assert walk_start(grid, 0.9) == [0.9, 0.95]  # at the edge of that side: the other neighbour
    assert walk_start(grid, 0.99, toward="higher") == [0.97, 0.99]
    assert walk_start(grid, 0.93) == [0.9, 0.95, 0.97, 0.99]  # not a candidate: the whole grid


def _walk(grid: tuple[float, ...], first: list[float], loss: dict[float, float]) -> list[float]:
    """Every candidate a walk from ``first`` runs, on a loss known in advance (each round, the best so far decides)."""
    from tunekit.core.decisions import walk_next

    tried = list(first)
    while (beyond := walk_next(grid, tried, min(tried, key=loss.__getitem__))) is not None:
        tried.append(beyond)
    return tried


@pytest.mark.parametrize("toward", ["lower", "higher"])
def test_a_walk_on_a_unimodal_loss_ends_on_the_best_for_fewer_runs_than_starting_with_both_neighbours(
    toward: Literal["lower", "higher"],
) -> None:
    """Wherever the best candidate is and wherever the walk starts, it ends on the best, never trains a
    candidate twice, and never runs more than a walk that starts with both neighbours (fewer in all)."""
    from tunekit.core.decisions import walk_start

    grid = (0.99, 0.97, 0.95, 0.9, 0.85)
    ours, both = 0, 0
    for best in grid:
        loss = {m: abs(m - best) for m in grid}  # unimodal, lowest at ``best``
        for start in grid:
            tried = _walk(grid, walk_start(grid, start, toward), loss)
            i = sorted(grid).index(start)
            wide = _walk(grid, sorted(grid)[max(0, i - 1) : i + 2], loss)  # start and both its neighbours
            assert min(tried, key=loss.__getitem__) == best, (best, start, tried)
            assert len(tried) == len(set(tried)) <= len(wide), (best, start, tried, wide)
            ours, both = ours + len(tried), both + len(wide)
    assert ours < both


def test_a_walk_goes_on_only_past_a_winning_edge() -> None:
    from tunekit.core.decisions import walk_next

    grid = (0.99, 0.97, 0.95, 0.9)
    assert walk_next(grid, [0.97, 0.95, 0.9], best=0.9) is None  # 0.9 is the grid's edge: nothing beyond
    assert walk_next(grid, [0.97, 0.95, 0.9], best=0.97) == 0.99  # the highest tried wins: one further
    assert walk_next(grid, [0.97, 0.95, 0.9], best=0.95) is None  # bracketed by 0.9 and 0.97
    assert walk_next(grid, [0.97, 0.99], best=0.97) == 0.95  # the lowest tried wins: one further down
    assert walk_next(grid, [0.99, 0.97, 0.95], best=0.95) == 0.9
    assert walk_next(grid, [0.99, 0.97, 0.95], best=None) is None  # every run diverged: stop


def test_choose_lr_is_the_largest_lr_within_the_band_of_the_lowest_loss() -> None:
    from tunekit.core.decisions import choose_lr

    cands = [Candidate("0.8", 0.30, Shape.UNDERFITTING), Candidate("0.4", 0.294, Shape.UNDERFITTING)]
    lrs = {"0.8": 0.8, "0.4": 0.4}
    short = [[0.9, 0.5, 0.3], [0.9, 0.5, 0.294]]  # too few points to show noise: only the tolerance counts
    # tolerance 0 (the default): the lowest loss wins
    choice, band = choose_lr(cands, lrs, short, tolerance=0.0)
    assert (choice.best, band) == ("0.4", 0.0)
    # 2 % of 0.294 is 0.0059: 0.8's loss, 0.006 above, is outside the band; 3 % (0.0088) takes it in
    assert choose_lr(cands, lrs, short, tolerance=0.02)[0].best == "0.4"
    choice, band = choose_lr(cands, lrs, short, tolerance=0.03)
    assert choice.best == "0.8"
    assert band == pytest.approx(0.03 * 0.294)


def test_a_difference_the_validation_sample_cannot_resolve_is_a_tie_and_goes_to_the_larger_lr() -> None:
    """The suite's MNIST-1D MLP at weight decay 0.0032: 0.1834 → 0.9546 and 0.3669 → 0.9786, each loss with
    a standard error of about 0.05 over its 400-sample validation split: √(0.05² + 0.05²) = 0.071 > 0.024,
    the split cannot tell them apart, so the larger LR wins. With errors of 0.01 (band 0.014) it can."""
    from tunekit.core.decisions import choose_lr, sampling_band

    cands = [Candidate("0.3669", 0.9786, Shape.UNDERFITTING), Candidate("0.1834", 0.9546, Shape.UNDERFITTING)]
    lrs = {"0.3669": 0.3669, "0.1834": 0.1834}
    short = [[1.5, 1.2, 0.9786], [1.4, 1.1, 0.9546]]
    assert sampling_band(0.03, 0.04) == pytest.approx(0.05)
    assert sampling_band(0.03, math.nan) == 0.0  # unknown (an older run, or too few samples): no band
    choice, band = choose_lr(cands, lrs, short, tolerance=0.0, errors={"0.3669": 0.05, "0.1834": 0.05})
    assert choice.best == "0.3669"
    assert band == pytest.approx(0.0707, abs=1e-4)
    assert "within 0.0707 of the lowest" in choice.reason
    assert choose_lr(cands, lrs, short, tolerance=0.0, errors={"0.3669": 0.01, "0.1834": 0.01})[0].best == "0.1834"
    assert choose_lr(cands, lrs, short, tolerance=0.0, errors={"0.3669": math.nan, "0.1834": 0.05})[0].best == "0.1834"


def test_the_band_is_each_candidates_own_so_a_noisy_bad_run_does_not_widen_it_for_the_others() -> None:
    """AdamW on digits (144 validation images): 0.01734 → 0.0917 (SE 0.032), 0.03468 → 0.2132 (SE 0.068),
    0.1387 → 0.5046 (SE 0.138). The median error would be 0.068 and make a band of 0.096·√2 = 0.14 that
    takes 0.2132 in; 0.03468's own band, √(0.032² + 0.068²) = 0.075, does not (0.2132 − 0.0917 = 0.12)."""
    from tunekit.core.decisions import choose_lr

    cands = [
        Candidate("0.1387", 0.5046, Shape.HORIZONTAL),
        Candidate("0.03468", 0.2132, Shape.HORIZONTAL),
        Candidate("0.01734", 0.0917, Shape.HORIZONTAL),
    ]
    lrs = {c.label: float(c.label) for c in cands}
    errors = {"0.1387": 0.138, "0.03468": 0.068, "0.01734": 0.032}
    choice, band = choose_lr(cands, lrs, [[0.3, 0.2, 0.1]] * 3, tolerance=0.0, errors=errors)
    assert choice.best == "0.01734"
    assert "no larger one within its band (0.03468 ±0.0752, 0.1387 ±0.142;" in choice.reason
    assert band == 0.0  # the lowest's own band: zero


def test_a_tie_goes_to_the_larger_lr_only_where_the_lowest_run_overfits() -> None:
    """The paper's balance of regularisation (Sec. 3, Remark 6), on the suite's own runs: the MNIST-1D MLP's
    lowest run (max_lr 0.1834) ends its five epochs at validation loss 0.9546 against training loss 0.7389,
    0.22 above — four times 2 × its standard error of about 0.05: it overfits, and the larger LR, which
    regularises more, wins a tie. The digits CNN's lowest (1.386) ends at 0.0695 against 0.0990: no sign of
    overfitting, so more regularisation buys nothing and the tie goes to the smaller LR."""
    from tunekit.core.decisions import tie_side

    side, why = tie_side(0.9546, 0.7389, 0.054)
    assert side == "largest"
    assert "overfits (validation loss 0.9546 against training loss 0.7389, more than 0.108 above)" in why
    side, why = tie_side(0.0695, 0.0990, 0.02)
    assert side == "smallest"
    assert "shows no overfitting (validation loss 0.0695 against training loss 0.099, not 0.04 above)" in why
    assert tie_side(0.50, 0.45, 0.03)[0] == "smallest"  # 0.05 above, within 2 SE (0.06): not a sign
    assert tie_side(0.50, 0.45, math.nan)[0] == "largest"  # no error known: any gap above 0 counts
    assert tie_side(0.50, 0.45, 0.03, multiple=1.0)[0] == "largest"
    assert tie_side(0.50, math.nan, 0.03) == ("largest", "")  # no training loss reported: the larger, as before


def test_a_larger_lr_that_shows_no_regularisation_does_not_win_a_tie() -> None:
    """The suite's own runs (search seed 0, 2026-12-07). The MNIST-1D MLP's lowest run, 0.1834, overfits; 0.3669
    lies 0.014 above it in validation loss and 0.266 above it in training loss — it regularises, ties and wins.
    AdamW digits' lowest, 0.01608, overfits too; 0.03216 lies 0.0385 above it in validation loss (within the
    band, 0.0773) but only 0.0084 in training loss: it fits as well and generalises worse, so it cannot win the
    tie, and the lowest is chosen. Without training losses the larger wins, as before."""
    from tunekit.core.decisions import choose_lr, unregularised

    mlp = [Candidate("0.09172", 1.0061, Shape.UNDERFITTING), Candidate("0.1834", 0.9642, Shape.UNDERFITTING)]
    mlp.append(Candidate("0.3669", 0.9786, Shape.UNDERFITTING))
    mlp_lrs = {c.label: float(c.label) for c in mlp}
    mlp_train = {"0.09172": 0.7474, "0.1834": 0.7411, "0.3669": 1.0072}
    mlp_errors = {"0.09172": 0.0507, "0.1834": 0.0577, "0.3669": 0.0518}
    assert unregularised(mlp, mlp_lrs, mlp_train) == {}
    choice, _ = choose_lr(mlp, mlp_lrs, [], 0.0, mlp_errors, train_losses=mlp_train)
    assert choice.best == "0.3669"

    adamw = [
        Candidate("0.008039", 0.1419, Shape.HORIZONTAL),
        Candidate("0.01608", 0.1378, Shape.HORIZONTAL),
        Candidate("0.03216", 0.1763, Shape.HORIZONTAL),
        Candidate("0.06431", 0.6937, Shape.OVERFITTING, "overfitting"),
    ]
    lrs = {c.label: float(c.label) for c in adamw}
    train = {"0.008039": 0.0187, "0.01608": 0.0098, "0.03216": 0.0182, "0.06431": 0.3787}
    errors = {"0.008039": 0.0406, "0.01608": 0.0442, "0.03216": 0.0635, "0.06431": 0.1701}
    out = unregularised(adamw, lrs, train)
    assert set(out) == {"0.03216", "0.06431"}  # 0.06431: 0.556 above in validation loss, 0.369 in training loss
    assert "its validation loss is 0.0385 above the lowest's, its training loss +0.0084" in out["0.03216"]
    assert choose_lr(adamw, lrs, [], 0.0, errors)[0].best == "0.03216"  # no training losses: the larger, as before
    choice, band = choose_lr(adamw, lrs, [], 0.0, errors, train_losses=train)
    assert (choice.best, round(band, 4)) == ("0.01608", 0.0)
    assert "no larger one within its band that regularises" in choice.reason
    assert "max_lr 0.03216 shows no regularisation" in choice.reason
    assert "0.06431 shows" not in choice.reason  # stopped: never in the tie, so not named as kept out
    # ties to the smaller LR read no regularisation: 0.008039 is within the band and wins
    assert choose_lr(adamw, lrs, [], 0.0, errors, side="smallest", train_losses=train)[0].best == "0.008039"
    # a larger LR whose training loss rises with its validation loss regularises: it ties and wins
    assert choose_lr(adamw, lrs, [], 0.0, errors, train_losses={**train, "0.03216": 0.0567})[0].best == "0.03216"
    # the lowest run without a training loss: nothing to compare with, the larger wins as before
    assert unregularised(adamw, lrs, {**train, "0.01608": math.nan}) == {}


def test_the_weight_decay_keeps_max_lr_times_weight_decay_where_the_lr_falls() -> None:
    """The suite's AdamW digits MLP (2026-12-06): weight decay 0.032 was judged at the range test's max_lr
    0.1387; the learning_rate phase chose 0.01734, 8× smaller. Scaled by 8 the weight decay is 0.256 —
    retrained, 0.032 gave 98.28 %, 0.1 98.78 %, 0.256 98.94 %. The MNIST-1D CNN: 3.2e-5 judged at 0.8,
    0.4 chosen → 6.4e-5 (98.83 → 98.98 %). Where the LR did not fall, it stays."""
    from tunekit.core.decisions import balanced_weight_decay

    wd, why = balanced_weight_decay(0.032, 0.1387, 0.01734)
    assert wd == pytest.approx(0.032 * 0.1387 / 0.01734)
    assert wd * 0.01734 == pytest.approx(0.032 * 0.1387)  # the product as judged
    assert why == (
        "the weight decay 0.032 was judged at max_lr 0.1387, 8× the chosen: "
        "weight decay 0.26 keeps max_lr × weight decay as judged"
    )
    assert balanced_weight_decay(3.2e-5, 0.8, 0.4)[0] == pytest.approx(6.4e-5)
    assert balanced_weight_decay(0.032, 0.1387, 0.1387) == (0.032, "")  # the LR it was judged at
    assert balanced_weight_decay(0.032, 0.1387, 0.2774) == (0.032, "")  # a larger LR regularises more
    assert balanced_weight_decay(0.0, 0.1387, 0.01734) == (0.0, "")  # no weight decay chosen: none added
    assert balanced_weight_decay(0.032, 0.1387, 0.0) == (0.032, "")  # no LR: nothing to scale by


def test_the_rebalanced_weight_decay_is_checked_and_the_exponent_bisected_once_where_it_loses() -> None:
    """The suite's digits CNN: weight decay 0.0032 judged at max_lr 2.773, 0.1733 chosen, so 0.0512 (× 16).
    The rebalanced one runs first; where the tie rule then chooses it, the check is done (the MNIST-1D CNN's
    6.4e-5 reached 0.091 against 3.2e-5's 0.092); where it chooses the judged one, the geometric mean
    √(0.0032 · 0.0512) = 0.0128 runs once more, and then nothing."""
    from tunekit.core.decisions import next_balance_check

    judged, balanced = 0.0032, 0.0032 * 2.773 / 0.1733
    assert next_balance_check(judged, balanced, [judged], judged) == pytest.approx(0.0512, rel=1e-3)
    assert next_balance_check(judged, balanced, [judged, balanced], balanced) is None  # the balance holds
    middle = next_balance_check(judged, balanced, [judged, balanced], judged)
    assert middle == pytest.approx(math.sqrt(judged * balanced))
    assert middle == pytest.approx(0.0128, rel=1e-3)
    assert math.log10(middle) == pytest.approx((math.log10(judged) + math.log10(balanced)) / 2)  # the exponent's middle
    for chosen in (judged, middle, balanced):
        assert next_balance_check(judged, balanced, [judged, balanced, middle], chosen) is None  # bisected once
    assert next_balance_check(judged, judged, [judged], judged) is None  # not rebalanced: nothing to check
    assert next_balance_check(0.0, 0.0, [0.0], 0.0) is None
    assert next_balance_check(judged, balanced, [judged, balanced], None) is None  # nothing chosen: no more runs


def test_a_decoupled_weight_decay_a_range_test_cannot_see_is_not_run() -> None:
    """The suite's AdamW digits MLP: range tests of 120 steps ramping 1e-4 → 0.3 (the LRs sum to 18.0).
    Weight decay 1e-4 removes 0.18 % of the weights over the test — its lowest loss was 0.566 against
    weight decay 0's 0.571 — and is not run; 1e-3 removes 1.8 % and 1e-2 16.5 %: both run."""
    from tunekit.core.decisions import decoupled_shrink, visible_weight_decays

    lr_sum = 120 * (1e-4 + 0.3) / 2
    assert decoupled_shrink(1e-4, lr_sum) == pytest.approx(0.0018, rel=0.01)
    assert decoupled_shrink(1e-2, lr_sum) == pytest.approx(0.165, abs=5e-4)
    assert decoupled_shrink(0.0, lr_sum) == 0.0
    visible = visible_weight_decays([1e-2, 1e-3, 1e-4, 0.0], lr_sum, 0.01)
    assert visible.kept == [1e-2, 1e-3, 0.0]  # the grid's order
    assert list(visible.skipped) == [1e-4]
    assert visible.skipped[1e-4] == pytest.approx(decoupled_shrink(1e-4, lr_sum))
    assert visible.note.startswith("weight decay 0.0001 (0.18%) not run")
    assert "min_shrink 1%" in visible.note
    assert "raise" not in visible.note  # 1e-3 and 1e-2 are seen
    # off: every one runs
    assert visible_weight_decays([1e-2, 1e-3, 1e-4, 0.0], lr_sum, 0.0) == visible_weight_decays(
        [1e-2, 1e-3, 1e-4, 0.0], 1e9, 0.01
    )
    assert visible_weight_decays([1e-2, 1e-3, 1e-4, 0.0], lr_sum, 0.0).kept == [1e-2, 1e-3, 1e-4, 0.0]


def test_where_no_weight_decay_of_the_grid_is_seen_the_largest_still_runs_and_the_note_says_raise_them() -> None:
    """The paper's SGD grid (1e-3 … 0) under AdamW over the same test: every nonzero one is under 1 %."""
    from tunekit.core.decisions import visible_weight_decays

    lr_sum = 120 * (1e-4 + 0.3) / 2 / 2  # half as many steps: 1e-3 removes 0.9 %
    visible = visible_weight_decays([1e-3, 1e-4, 1e-5, 0.0], lr_sum, 0.01)
    assert visible.kept == [1e-3, 0.0]  # a weight decay against none, not weight decay 0 alone
    assert sorted(visible.skipped) == [1e-5, 1e-4]
    assert "raise search.range_test.weight_decays" in visible.note
    without_zero = visible_weight_decays([1e-4, 1e-5], lr_sum, 0.01)
    assert (without_zero.kept, list(without_zero.skipped)) == ([1e-4], [1e-5])


def test_on_the_smaller_side_the_smallest_lr_within_the_band_wins() -> None:
    """The digits CNN's short runs (suite, 2026-12-06): 1.386 has the lowest loss; 0.6932 and 0.3466 lie
    within their bands of it, 2.773 does not. The larger side keeps 1.386; the smaller takes 0.3466."""
    from tunekit.core.decisions import choose_lr

    cands = [
        Candidate("2.773", 0.2215, Shape.UNDERFITTING),
        Candidate("1.386", 0.0695, Shape.UNDERFITTING),
        Candidate("0.6932", 0.0871, Shape.UNDERFITTING),
        Candidate("0.3466", 0.0759, Shape.UNDERFITTING),
    ]
    lrs = {c.label: float(c.label) for c in cands}
    errors = {"2.773": 0.04, "1.386": 0.02, "0.6932": 0.02, "0.3466": 0.02}  # bands √2 × 0.02 = 0.028
    curves = [[1.0, 0.5, c.loss] for c in cands]
    larger, _ = choose_lr(cands, lrs, curves, 0.0, errors)
    assert larger.best == "1.386"
    assert "no larger one within its band (2.773 ±0.0447;" in larger.reason
    smaller, band = choose_lr(cands, lrs, curves, 0.0, errors, side="smallest")
    assert smaller.best == "0.3466"
    assert band == pytest.approx(0.0283, abs=1e-4)
    assert "within 0.0283 of the lowest (0.0695 at 1.386) and the smaller max_lr wins a tie" in smaller.reason
    assert smaller.order[0] == "0.3466"
    # without 0.3466 and 0.6932 in the band, the lowest is kept on either side
    narrow = {label: 0.001 for label in errors}
    kept, _ = choose_lr(cands, lrs, curves, 0.0, narrow, side="smallest")
    assert kept.best == "1.386"
    assert "no smaller one within its band (0.6932 ±0.00141, 0.3466 ±0.00141;" in kept.reason


@pytest.mark.parametrize(
    ("sweep", "follows", "resolved"),
    [("auto", True, "preset"), ("auto", False, "grid"), ("grid", True, "grid"), ("preset", False, "preset")],
)
def test_the_range_tests_sweep_resolves_by_whether_weight_decay_is_searched_later(
    sweep: str, follows: bool, resolved: str
) -> None:
    from tunekit.core.decisions import range_test_sweep, range_test_weight_decays

    assert range_test_sweep(sweep, follows) == resolved
    weight_decays = range_test_weight_decays(resolved, [1e-3, 1e-4, 0.0], 3e-4)
    assert weight_decays == ([3e-4] if resolved == "preset" else [1e-3, 1e-4, 0.0])

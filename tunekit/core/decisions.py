"""The decisions of a disciplined search (Smith 2018, Sec. 5), each a pure function of trial results.

A search phase runs trials; what it *decides* depends only on what those trials reported, so
the same function serves a search that ran straight through, one resumed after a crash, and
``tunekit report``:

* :func:`choose_lr_range` — the range tests at several weight decays (Fig. 10) → ``max_lr``,
  ``min_lr`` and a first ranking of the weight decays (:func:`tied_range_tests`: those the tests cannot tell
  apart; :func:`median_reading`: whose turn-up is read then); :func:`range_test_sweep` and
  :func:`range_test_weight_decays` — at which weight decays they run (the grid, or the preset's alone),
  and :func:`visible_weight_decays` — which of them AdamW's decoupled decay would leave unseen over the
  test (:func:`decoupled_shrink`);
* :func:`choose_candidate` — short runs of a few candidates (momentum, weight decay, batch size)
  → the best one, trials stopped early by the scheduler ranked after those that finished;
* :func:`choose_largest_within` — short runs at several LRs → the largest (or the smallest) whose loss
  ties the best (within :func:`tie_band`: the runs' noise, or a fraction of the loss;
  :func:`sampling_band`: the validation split's sampling error); :func:`choose_lr` is the
  learning_rate phase's use of it, :func:`tie_side` says which side a tie goes to (the larger LR
  only where the lowest run overfits, and not to one that shows no regularisation: :func:`unregularised`),
  and :func:`next_lower_lr` extends its candidates downward
  while the smallest LR tried has the lowest loss (or is the choice, where ties go to the smaller);
* :func:`walk_start` and :func:`walk_next` — which momenta run: the current one and its neighbour on
  the side ties go to, then one further while an edge of those tried wins (the loss taken as
  unimodal over the grid);
* :func:`score_curve` — a finished trial's curve → (loss at the judging step, shape);
* :func:`replicate_overrides` — the final trainings' seeds, inits and jittered batch sizes (App. A.1);
* :func:`failure_advice` — what to change when trials failed (an error, not a diverging loss);
* :func:`mean_std`.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from tunekit.core.curves import Floats, Shape, diagnose, rank_key, robust_noise
from tunekit.core.early_stop import value_at
from tunekit.core.lr_range import LRRange, RangeTestError, analyse_range_test


def score_curve(
    steps: Floats,
    losses: Floats,
    *,
    judge_step: float | None = None,
    window: int = 1,
    chance_loss: float | None = None,
    diverged: bool = False,
) -> tuple[float, Shape]:
    """(loss to minimise, shape) of one trial: its loss at ``judge_step`` (None: its last step),
    the median of its last ``window`` values there; a diverged or empty curve is (inf, DIVERGING)."""
    if diverged or len(losses) == 0:
        return math.inf, Shape.DIVERGING
    shape = diagnose(steps, losses, chance_loss=chance_loss).shape
    at = steps[-1] if judge_step is None else judge_step
    loss = value_at(steps, losses, at, window=window)
    return (loss if math.isfinite(loss) else math.inf), shape


@dataclass(frozen=True)
class Candidate:
    """One evaluated candidate: its label, score, whether the scheduler stopped it early, and whether it failed.

    A *failed* candidate raised an error (out of memory, a broken checkpoint, a dataset error): it says
    nothing about its hyper-parameters, unlike one that *diverged* (a NaN or exploding loss, Sec. 4.1).
    Both score ``inf``; the error is kept to be shown, and a failed candidate ranks after every other.
    """

    label: str
    loss: float
    shape: Shape
    stopped_by: str = ""  # "", "diverging", "overfitting" or "peers"
    failed: str = ""  # the error that ended it, one line ("RuntimeError: …"); "" when it ran to its end or diverged


@dataclass(frozen=True)
class Choice:
    """The winner among candidates, the full order, and a sentence saying why."""

    best: str | None
    order: list[str]
    reason: str


def choose_candidate(
    candidates: Sequence[Candidate], what: str, tie_tolerance: float = 0.0, unit: str = "validation loss"
) -> Choice:
    """The best candidate: lowest loss among those that ran to the end, the curve shape breaking
    ties (:func:`~tunekit.core.curves.rank_key`); trials the scheduler stopped rank after them,
    diverged ones after those, failed ones (an error, not a loss) last."""
    if not candidates:
        return Choice(None, [], f"no {what} candidate finished")

    def key(c: Candidate) -> tuple[int, tuple[int, float, int]]:
        return (2 if c.failed else 1 if c.stopped_by else 0), rank_key(c.loss, c.shape, tie_tolerance)

    ordered = sorted(candidates, key=key)
    best = ordered[0]
    if not math.isfinite(best.loss):
        return Choice(None, [c.label for c in ordered], f"every {what} candidate {_how_none_finished(ordered)}")
    reason = f"{what} {best.label} has the lowest {unit} ({listing(ordered)})"
    return Choice(best.label, [c.label for c in ordered], reason)


def _how_none_finished(candidates: Sequence[Candidate]) -> str:
    """``diverged``, ``failed (…errors…)`` or ``diverged or failed (…)``, with the fix for a known error."""
    errors = [c.failed for c in candidates if c.failed]
    if not errors:
        return "diverged"
    verb = "failed" if len(errors) == len(candidates) else "diverged or failed"
    advice = failure_advice(errors)
    return f"{verb} ({listing(candidates)}){'; ' + advice if advice else ''}"


def listing(candidates: Sequence[Candidate]) -> str:
    """``label: loss (shape[, stopped: why])`` for each candidate, in order, joined by "; " — or
    ``label: diverged``, or ``label: failed (error)``."""

    def one(c: Candidate) -> str:
        if c.failed:
            return f"{c.label}: failed ({c.failed})"
        if not math.isfinite(c.loss):
            return f"{c.label}: diverged"
        return f"{c.label}: {c.loss:.4g} ({c.shape.value}{', stopped: ' + c.stopped_by if c.stopped_by else ''})"

    return "; ".join(one(c) for c in candidates)


#: Words in an error that mean the device ran out of memory (torch's CUDA and MPS messages, the exception's name).
OUT_OF_MEMORY = ("OutOfMemoryError", "out of memory", "CUDA error: out of memory", "MPS backend out of memory")


def failure_advice(errors: Sequence[str]) -> str:
    """What to change when trials failed with ``errors`` (one line each); "" when tunekit knows no fix.

    Out of memory on a GPU is the one failure whose fix tunekit knows: the batch, or how many trials share a GPU."""
    if any(word.lower() in e.lower() for e in errors for word in OUT_OF_MEMORY):
        return (
            "the device ran out of memory: lower train.batch_size, or let fewer trials share a GPU "
            "(a larger resources.gpu, e.g. 1 for a whole GPU per trial)"
        )
    return ""


def tie_band(
    best_loss: float,
    curves: Sequence[Floats],
    relative: float,
    noise_multiple: float = 2.0,
    min_points: int = 5,
    window: int | None = None,
) -> float:
    """How far above ``best_loss`` a loss still counts as equal: ``relative``·|best|, or ``noise_multiple``
    times the runs' own point noise (the median over ``curves`` of :func:`~tunekit.core.curves.robust_noise`
    of each curve's second half), whichever is larger. A half of fewer than ``min_points`` points shows
    its trend, not its noise (three epochs of a falling 1cycle): then only ``relative`` counts.

    ``window``: the runs are judged by the median of their last ``window`` epochs (a
    :class:`~tunekit.core.judge.Judge` window: snapshot continuations in the noisy middle of a 1cycle); their
    noise is then read from those epochs, from three on — how far they jump from one epoch to the next is how
    far the median they give may land from another run's (``robust_noise`` of so few points reads successive
    differences, which a straight trend does not inflate). The median of several epochs is steadier than one,
    so the band is wide for it: a tie is called a little early, and goes to the larger value."""
    if window is None:
        parts, least = [list(c)[-(len(c) // 2) :] for c in curves], min_points
    else:
        parts, least = [list(c)[-window:] for c in curves], 3
    noises = [robust_noise(p) for p in parts if len(p) >= least]
    sigma = statistics.median(noises) if noises else 0.0
    return max(relative * abs(best_loss), noise_multiple * sigma) if math.isfinite(best_loss) else 0.0


#: Which way a tie between candidates goes: to the largest value, or to the smallest.
TieSide = Literal["largest", "smallest"]


def choose_largest_within(
    candidates: Sequence[Candidate],
    values: Mapping[str, float],
    what: str,
    band: float | Mapping[str, float],
    unit: str = "validation loss",
    side: TieSide = "largest",
    by_shape: bool = True,
    kept_out: Mapping[str, str] | None = None,
) -> Choice:
    """Among candidates ranked as :func:`choose_candidate` ranks them, the one with the largest value
    (``values``: label → value, e.g. the LR) whose loss is within ``band`` of the best's (one band for
    all, or label → its own) and which ranks in the same class (ran to the end or was stopped; neither
    overfitting nor diverging, or the same) — the smallest such value with ``side="smallest"``.
    ``by_shape=False``: only a stop or a divergence sets a candidate apart, not its diagnosis (runs
    diagnosed on a few noisy epochs, where a rise is the schedule's climb as often as overfitting).
    ``kept_out``: label → why that candidate cannot win a tie (:func:`unregularised`); the reason says it.

    A larger LR that trains as well regularises more (Sec. 4.1, 4.2), so a tie goes to it; where
    more regularisation is not wanted (:func:`tie_side`) it goes to the smaller."""
    first = choose_candidate(candidates, what, unit=unit)
    if first.best is None:
        return first
    by_label = {c.label: c for c in candidates}
    best = by_label[first.best]
    larger = side == "largest"
    word = "larger" if larger else "smaller"

    def band_of(c: Candidate) -> float:
        return band.get(c.label, 0.0) if isinstance(band, Mapping) else band

    def klass(c: Candidate) -> tuple[bool, int]:
        return bool(c.stopped_by), rank_key(c.loss, c.shape if by_shape or c.shape is Shape.DIVERGING else Shape.UNKNOWN)[0]

    within = [c for c in candidates if klass(c) == klass(best) and math.isfinite(c.loss) and c.loss <= best.loss + band_of(c)]
    out = {c.label: (kept_out or {})[c.label] for c in within if c.label in (kept_out or {}) and c is not best}
    tied = [c for c in within if c.label not in out]
    chosen = (max if larger else min)(tied, key=lambda c: values[c.label])
    order = [chosen.label] + [label for label in first.order if label != chosen.label]
    ranked = listing([by_label[label] for label in first.order]) + "".join(f"; {why}" for why in out.values())
    if chosen is best:
        if isinstance(band, Mapping):
            beyond = sorted(
                (c for c in candidates if (values[c.label] - values[best.label]) * (1 if larger else -1) > 0),
                key=lambda c: values[c.label],
                reverse=not larger,
            )
            bands = ", ".join(f"{c.label} ±{band_of(c):.3g}" for c in beyond) or "none tried"
            return Choice(
                chosen.label,
                order,
                f"{what} {best.label} has the lowest {unit}, no {word} one within its band{' that regularises' if out else ''} "
                f"({bands}; {ranked})",
            )
        return Choice(
            chosen.label, order, f"{what} {best.label} has the lowest {unit}, no {word} one within {band:.3g} ({ranked})"
        )
    reason = (
        f"{what} {chosen.label}: its {unit} {chosen.loss:.4g} is within {band_of(chosen):.3g} of the lowest ({best.loss:.4g} at "
        f"{best.label}) and the {word} {what} wins a tie ({ranked})"
    )
    return Choice(chosen.label, order, reason)


def tie_side(val_loss: float, train_loss: float, error: float, multiple: float = 2.0) -> tuple[TieSide, str]:
    """Which way the learning_rate phase's tie goes, read from the run with the lowest validation loss,
    and why: to the larger LR when that run overfits — its validation loss above its training loss
    by more than ``multiple`` standard errors of the validation loss (``error``, the run's
    ``val_loss_se``; unknown counts as 0) — else to the smaller LR.

    Regularisation must be balanced (Sec. 3, Remark 6): a larger LR regularises more (Sec. 4.1), which
    pays where the runs overfit (an MLP without BatchNorm on 4 000 samples: the larger LR is
    behind after five epochs and ahead after forty) and costs where they do not (a BatchNorm CNN:
    ahead after three epochs, behind after twenty; BENCHMARKS.md). A run that reported no training
    loss gives no sign either way: the larger LR, as before, and no reason ("")."""
    if not (math.isfinite(val_loss) and math.isfinite(train_loss)):
        return "largest", ""
    gap = val_loss - train_loss
    limit = multiple * (error if math.isfinite(error) else 0.0)
    said = f"validation loss {val_loss:.4g} against training loss {train_loss:.4g}"
    if gap > limit:
        return "largest", f"the lowest run overfits ({said}, more than {limit:.3g} above): the larger max_lr wins a tie"
    return "smallest", f"the lowest run shows no overfitting ({said}, not {limit:.3g} above): the smaller max_lr wins a tie"


def unregularised(
    candidates: Sequence[Candidate], values: Mapping[str, float], train_losses: Mapping[str, float], what: str = "max_lr"
) -> dict[str, str]:
    """Label → why, for each run at a larger value than the lowest run's (``values``: label → the LR) that shows
    no regularisation: its validation loss lies further above the lowest's than its training loss does —
    it fits the training set as well or better and generalises worse. Runs without a finite training loss
    (``train_losses``: label → the run's last) are left out, as is everything when the lowest run has none.

    A larger LR that trains as well wins a tie because it regularises more (Sec. 4.1); where the lowest
    run overfits, that is the regularisation wanted (:func:`tie_side`). Regularisation shows as a training
    loss that rises with the validation loss: an MLP without BatchNorm on MNIST-1D, 0.18 → 0.37 raises its
    training loss by 0.27 and its validation loss by 0.01 (it ties, and wins). AdamW, whose steps do not
    grow with the LR, may fit as fast at twice the LR: on digits, 0.016 → 0.032 raises the validation loss by
    0.038 and the training loss by 0.008 — the larger LR only overfits more (BENCHMARKS.md)."""
    best = choose_candidate(candidates, what).best
    base = train_losses.get(best or "", math.nan)
    if best is None or not math.isfinite(base):
        return {}
    lowest = next(c for c in candidates if c.label == best)
    out: dict[str, str] = {}
    for c in candidates:
        train = train_losses.get(c.label, math.nan)
        if values[c.label] <= values[best] or not (math.isfinite(c.loss) and math.isfinite(train)):
            continue
        above, fit = c.loss - lowest.loss, train - base
        if above > fit:
            out[c.label] = (
                f"{what} {c.label} shows no regularisation: its validation loss is {above:.3g} above the lowest's, "
                f"its training loss {fit:+.3g} against the lowest's"
            )
    return out


def balanced_weight_decay(weight_decay: float, judged_at: float, chosen: float) -> tuple[float, str]:
    """The weight decay to train with at max_lr ``chosen``, and why ("" when unchanged): ``weight_decay``
    was judged at max_lr ``judged_at``; where the chosen LR is smaller, it is scaled by
    ``judged_at / chosen``, keeping the product max_lr × weight decay it was judged at.

    Regularisation must be balanced (Sec. 3, Remark 6): weight decay is the knob to turn against the
    regularisation of the learning rate, and "the larger learning rates provide regularization so a
    smaller weight decay value is optimal" (Sec. 4.4) — so a smaller LR wants a larger one. A weight
    decay judged at the range test's max_lr is balanced against that LR; the learning_rate phase may
    then choose one 2-16× smaller. Both SGD's L2 term and AdamW's decoupled decay shrink the weights by
    max_lr × weight decay per step, and with BatchNorm a scale-invariant weight's effective step is set
    by that product too, so the product is what is kept. Retrained on the suite (BENCHMARKS.md): AdamW
    digits 0.032 → 0.26 at an 8× smaller LR, 98.28 → 98.94 %; the MNIST-1D CNN 3.2e-5 → 6.4e-5 at
    half the LR, 98.83 → 98.98 %. A larger chosen LR keeps the weight decay: it was judged at the
    largest LR the range test allows."""
    if weight_decay <= 0 or not (0 < chosen < judged_at):
        return weight_decay, ""
    ratio = judged_at / chosen
    scaled = weight_decay * ratio
    return scaled, (
        f"the weight decay {weight_decay:.2g} was judged at max_lr {judged_at:.4g}, {ratio:.3g}× the chosen: "
        f"weight decay {scaled:.2g} keeps max_lr × weight decay as judged"
    )


def next_balance_check(judged: float, balanced: float, tried: Collection[float], chosen: float | None) -> float | None:
    """The next weight decay the learning_rate phase trains at its chosen LR to check the rebalanced one
    (:func:`balanced_weight_decay`), or None once the check is done.

    The scaling is a rule, not a measurement: the paper balances the regularisations (Remark 6) but
    gives no law for how weight decay trades against the LR. Where both can be trained at the chosen
    LR for the same short cycle, the runs say whether it holds: ``balanced`` first, against
    ``judged`` (the chosen LR's own run, at the weight decay the weight_decay phase judged). ``chosen``
    is the tie rule's choice among the weight decays ``tried`` so far (:func:`choose_lr`, the largest
    within noise of the lowest loss); where it is ``balanced``, the balance holds and nothing more
    runs. Where the balanced one is clearly worse, the exponent is bisected once: the geometric mean
    √(judged · balanced). On the suite's digits CNN the weight decay judged at max_lr 2.77 (0.0032),
    scaled 16× for the chosen 0.173, reached a validation loss of 0.31 where the judged one reached
    0.05, and retrained 0.17 points lower (BENCHMARKS.md); on the MNIST-1D CNN the pair tied.
    Nothing runs where the weight decay was not rebalanced, and once the tie rule fails to choose."""
    if math.isclose(balanced, judged) or judged <= 0:
        return None
    if not any(math.isclose(balanced, t) for t in tried):
        return balanced
    if chosen is None or math.isclose(chosen, balanced):
        return None
    middle = math.sqrt(judged * balanced)
    return None if any(math.isclose(middle, t) for t in tried) else middle


def weight_decay_label(weight_decay: float) -> str:
    """How a weight decay the learning_rate phase checks is named (its trials' labels, its evidence and plot)."""
    return f"wd {weight_decay:.3g}"


def lr_label(lr: float) -> str:
    """How a learning-rate candidate is named (in trial configs, the phase's evidence and its plot)."""
    return f"{lr:.4g}"


def sampling_band(error: float, other: float, multiple: float = 1.0) -> float:
    """How far apart two validation losses can be by the luck of the split's sample alone: ``multiple``
    standard errors of their difference, √(``error``² + ``other``²), each run's standard error of its
    judged loss (``val_loss_se``). Zero when either is unknown (NaN).

    Two runs are judged on the same split, so their errors partly cancel and this overstates the
    noise of their difference: a tie is called a little early, and the tie goes to the larger LR."""
    if not (math.isfinite(error) and math.isfinite(other)):
        return 0.0
    return multiple * math.hypot(error, other)


def choose_lr(
    candidates: Sequence[Candidate],
    lrs: Mapping[str, float],
    curves: Sequence[Floats],
    tolerance: float,
    errors: Mapping[str, float] | None = None,
    what: str = "max_lr",
    side: TieSide = "largest",
    window: int | None = None,
    train_losses: Mapping[str, float] | None = None,
) -> tuple[Choice, float]:
    """The learning_rate phase's rule: the largest (``side``) LR whose validation loss is within a band of the
    lowest: ``tolerance`` of it, the runs' own noise (:func:`tie_band`), or the standard error of its
    difference to the lowest (:func:`sampling_band` of ``errors``: label → the run's ``val_loss_se``),
    whichever is widest. Returns the choice and the chosen LR's band. ``lrs`` may hold another
    hyper-parameter named ``what`` (the momentum phase's ``prefer: largest`` reads momenta so);
    ``side="smallest"`` takes the smallest within the band instead (:func:`tie_side`); ``window``: the runs are
    judged by the median of their last ``window`` epochs, whose noise the band reads (:func:`tie_band`), and
    whose shape, diagnosed on those few epochs, is noise too: only a stop or a divergence keeps a run out of
    the tie then; ``train_losses`` (label → the run's last training loss): where ties go to the larger, a
    larger LR that shows no regularisation (:func:`unregularised`) cannot win one."""
    best = choose_candidate(candidates, what).best  # the lowest loss, as the tie rule ranks it
    if best is None:
        return choose_largest_within(candidates, lrs, what, 0.0, side=side), 0.0
    base = tie_band(min(c.loss for c in candidates), curves, tolerance, window=window)
    known = errors or {}
    bands = {c.label: max(base, sampling_band(known.get(best, math.nan), known.get(c.label, math.nan))) for c in candidates}
    bands[best] = base  # the lowest against itself: no sampling difference
    out = unregularised(candidates, lrs, train_losses, what) if train_losses and side == "largest" else {}
    choice = choose_largest_within(candidates, lrs, what, bands, side=side, by_shape=window is None, kept_out=out)
    return choice, bands.get(choice.best or "", base)


def next_lower_lr(tried: Sequence[float], lowest: float | None, floor: float, step: float = 0.5) -> float | None:
    """The next LR to try when bracketing the learning rate from above, or None when it is bracketed.

    The range test's turn-up is a ceiling (beyond it the loss rises), so the short runs start at the
    top (1, ½, ¼ of it) and go down: while the smallest LR tried has the lowest validation loss
    (``lowest``, before any tie rule), the minimum may lie lower, and the next candidate is ``step`` ×
    that LR. The tie rule (:func:`choose_lr`) reads the band around a bracketed minimum: a larger LR
    that ties the smallest one tried may stop tying once a still smaller one does better. None once a
    smaller LR lost to a larger one, when no run has a loss (every run diverged or failed), or when
    the next LR would be under ``floor``. Where ties go to the smaller LR (:func:`tie_side`), ``lowest``
    is the tie rule's choice instead: halving goes on while the smallest LR tried still ties.
    """
    if not tried or lowest is None or not 0 < step < 1:
        return None
    smallest = min(tried)
    if lowest > smallest:
        return None
    proposal = smallest * step
    return proposal if proposal >= floor * (1 - 1e-9) else None


def walk_start(values: Sequence[float], start: float | None, toward: Literal["lower", "higher"] = "lower") -> list[float]:
    """Where a walk over ordered candidates begins, in sorted order: ``start`` and its neighbour ``toward``
    one side (the other one at that side's edge); every candidate when ``start`` is not one of them.

    One neighbour, not both: the loss is taken as unimodal over the candidates, so when the
    neighbour beats ``start`` the best lies on its side and the other neighbour cannot win — it runs
    only when ``start`` wins (:func:`walk_next`). ``toward`` is the side a tie goes to (lower
    momenta, by default), the side more often best.
    """
    ordered = sorted(set(values))
    if start not in ordered:
        return ordered
    i = ordered.index(start)
    below, above = ordered[max(0, i - 1) : i], ordered[i + 1 : i + 2]
    first, other = (below, above) if toward == "lower" else (above, below)
    return sorted([start, *(first or other)])


def walk_next(values: Sequence[float], tried: Collection[float], best: float | None) -> float | None:
    """The next candidate of a walk, or None once the best is bracketed.

    The loss is taken as unimodal over the candidates (momentum 0.9 … 0.99): while the best value
    tried is the lowest (or highest) tried and an untried candidate lies next to it on that side,
    the best may lie beyond, and that neighbour is next. None when the best has tried neighbours on
    both sides (or none beyond), or when nothing was chosen (every run diverged or failed).
    """
    ordered = sorted(set(values))
    if best is None or best not in ordered:
        return None
    i = ordered.index(best)
    done = set(tried)
    below = [v for v in done if v < best]
    above = [v for v in done if v > best]
    if not below and i > 0 and ordered[i - 1] not in done:
        return ordered[i - 1]
    if not above and i + 1 < len(ordered) and ordered[i + 1] not in done:
        return ordered[i + 1]
    return None


@dataclass(frozen=True)
class RangeChoice:
    """What the range tests decide: the LR bounds and the weight decays ranked (Fig. 10)."""

    max_lr: float
    min_lr: float
    weight_decay: float  # the weight decay whose test reached the lowest loss
    ranking: list[float]  # weight decays, best first
    source: float  # the weight decay whose test gives the bounds
    ranges: dict[float, LRRange] = field(default_factory=dict)
    failures: dict[float, str] = field(default_factory=dict)
    reason: str = ""
    tied: list[float] = field(default_factory=list)  # the weight decays within noise of the best, best first

    @property
    def read_from(self) -> LRRange:
        """The reading the bounds come from."""
        return self.ranges[self.source]

    @property
    def unranked(self) -> list[float] | None:
        """The weight decays the tests could not rank (:attr:`tied`, where more than the best); None where the best
        stood apart."""
        return self.tied if len(self.tied) > 1 else None


def tied_range_tests(ranges: Mapping[float, LRRange], ranking: Sequence[float]) -> list[float]:
    """The weight decays whose range test reached a lowest loss within noise of the best one's, best first.

    Two tests tie where their lowest losses differ by no more than ``√(tol_best² + tol_other²)``: each
    curve's tolerance (:func:`~tunekit.core.lr_range.analyse_range_test`) is two of its point noises (or a
    share of its fall, if larger), so this is two standard errors of the difference of two noisy minima,
    the band the short-run phases tie within. Tests that tie cannot rank their weight decays, nor say whose
    turn-up to read. The best (``ranking[0]``) is always in the list; unreadable tests never are."""
    readable = [wd for wd in ranking if wd in ranges]
    if not readable:
        return []
    best = ranges[readable[0]]
    return [wd for wd in readable if ranges[wd].min_loss - best.min_loss <= math.hypot(best.tolerance, ranges[wd].tolerance)]


def median_reading(ranges: Mapping[float, LRRange], weight_decays: Sequence[float]) -> float:
    """The weight decay whose test's ``max_lr`` is the median of those of ``weight_decays`` (of two middle
    ones, the larger: the learning_rate phase brackets a ceiling from above, never beyond it); among tests
    with that ``max_lr``, the first in ``weight_decays`` (best first)."""
    if not weight_decays:
        raise ValueError("no weight decay to read a median max_lr from")
    lrs = sorted(ranges[wd].max_lr for wd in weight_decays)
    median = lrs[len(lrs) // 2]
    return next(wd for wd in weight_decays if ranges[wd].max_lr == median)


def choose_lr_range(
    curves: Mapping[float, tuple[Floats, Floats]],
    min_lr_factor: float = 10.0,
    chance_loss: float | None = None,
    ties: Literal["median", "lowest"] = "median",
) -> RangeChoice:
    """Read one range test per weight decay and pick the bounds (Sec. 4.1, 4.4 and Fig. 10).

    Each curve (LRs, validation losses) is read by :func:`~tunekit.core.lr_range.analyse_range_test`.
    The weight decays are ranked by the lowest validation loss their test reached. Where the best one's
    is clearly the lowest, the bounds are those of its test (a weight decay that reaches a lower loss
    usually also tolerates a larger LR, Fig. 10). Where other tests reached lowest losses within noise
    of it (:func:`tied_range_tests`), the tests cannot tell those weight decays apart, and one curve's
    turn-up is one draw: the bounds are read from the test whose ``max_lr`` is the median of theirs
    (:func:`median_reading`), and ``tied`` lists them, for the weight decay search to start from. On the
    benchmark suite the tests tied on most tasks, and a single curve's reading moved with the search seed
    (the diabetes regression: max_lr 0.152 from one test, where the two it tied with read 0.001). With
    ``ties="lowest"`` the lowest loss's test alone gives the bounds, ties or not (Fig. 10 read literally).

    Raises:
        RangeTestError: no curve could be read (all too short, or all NaN).
    """
    ranges: dict[float, LRRange] = {}
    failures: dict[float, str] = {}
    for wd, (lrs, losses) in curves.items():
        try:
            ranges[wd] = analyse_range_test(lrs, losses, min_lr_factor=min_lr_factor, chance_loss=chance_loss)
        except RangeTestError as exc:
            failures[wd] = str(exc)
    if not ranges:
        detail = "; ".join(f"weight decay {wd:g}: {why}" for wd, why in failures.items())
        raise RangeTestError(f"no range test could be read ({detail})")
    ranking = sorted(ranges, key=lambda wd: (ranges[wd].min_loss, -ranges[wd].max_lr)) + sorted(failures)
    best = ranking[0]
    tied = tied_range_tests(ranges, ranking) if ties == "median" else [best]
    source = median_reading(ranges, tied)
    chosen = ranges[source]

    def lowest(r: LRRange) -> str:  # with its tolerance where ties are read: what the tie band is made of
        return f"{r.min_loss:.4g} ± {r.tolerance:.2g}" if ties == "median" else f"{r.min_loss:.4g}"

    listed = "; ".join(
        f"wd {wd:g}: lowest loss {lowest(ranges[wd])}, max_lr {ranges[wd].max_lr:.3g}" for wd in ranking if wd in ranges
    )
    turn = f", the loss turns up at {chosen.turn_up_lr:.3g}" if chosen.turn_up_lr is not None else ""
    bounds = f"max_lr = {chosen.max_lr:.3g}{turn} and min_lr = max_lr / {min_lr_factor:g} = {chosen.min_lr:.3g}"
    if len(tied) > 1:
        names = ", ".join(f"{wd:g}" for wd in tied)
        reason = (
            f"the range tests at weight decays {names} reached lowest losses within noise of each other, so they "
            f"cannot rank these weight decays: the bounds come from the median of their max_lrs, weight decay "
            f"{source:g}'s test: {bounds} ({listed})"
        )
    else:
        reason = f"weight decay {best:g} reached the lowest validation loss; its range test gives {bounds} ({listed})"
    if failures:
        reason += "; unreadable: " + "; ".join(f"wd {wd:g} ({why})" for wd, why in failures.items())
    return RangeChoice(chosen.max_lr, chosen.min_lr, best, ranking, source, ranges, failures, reason, tied)


def range_test_sweep(sweep: str, weight_decay_follows: bool) -> str:
    """``search.range_test.sweep`` resolved for one search: "auto" is "preset" when the weight_decay phase
    runs later (a weight decay per range test would only seed its bisection), else "grid"."""
    if sweep != "auto":
        return sweep
    return "preset" if weight_decay_follows else "grid"


def reusable_labels(trainings: Mapping[str, str], trained: Mapping[str, object]) -> list[str]:
    """The candidates (label → what it would train, a digest) whose training an earlier complete trial
    already did (``trained``: digest → that trial), in order — all but the last when that would be every
    candidate, so a phase always trains one run of its own."""
    labels = [label for label, training in trainings.items() if training and training in trained]
    return labels[:-1] if labels and len(labels) == len(trainings) else labels


def range_test_weight_decays(sweep: str, grid: Sequence[float], preset_weight_decay: float) -> list[float]:
    """The weight decays the range tests run at: the preset's alone (``sweep`` "preset"), else the grid."""
    return [preset_weight_decay] if sweep == "preset" else list(grid)


def decoupled_shrink(weight_decay: float, lr_sum: float) -> float:
    """The share of every weight that a decoupled weight decay (AdamW's) removes over steps whose LRs sum
    to ``lr_sum``: each step multiplies the weights by ``1 - lr * weight_decay`` whatever the gradient,
    so ``1 - prod(1 - lr * wd)``, which is ``1 - exp(-wd * sum(lr))`` to first order in ``lr * wd``.
    A linear range test from ``a`` to ``b`` over ``n`` steps has ``sum(lr) = n (a + b) / 2``."""
    return 1.0 - math.exp(-weight_decay * lr_sum)


@dataclass(frozen=True)
class VisibleDecays:
    """The range test's weight decays worth a test each under decoupled decay, and why any are not run."""

    kept: list[float]  # in the grid's order
    skipped: dict[float, float]  # weight decay → the share of the weights it would remove over the test
    note: str  # "" when every one is run


def visible_weight_decays(weight_decays: Sequence[float], lr_sum: float, min_shrink: float) -> VisibleDecays:
    """Which of a range test's weight decays to run when the decay is decoupled (AdamW), over a test whose
    LRs sum to ``lr_sum`` (:func:`decoupled_shrink`).

    A nonzero weight decay that removes less than ``min_shrink`` of the weights over the whole test trains
    the curve weight decay 0 trains, to within the test's noise: the range tests then rank copies of one
    run (the benchmark suite's AdamW digits: 1e-4 removes 0.18 % of the weights, its lowest loss 0.566
    against weight decay 0's 0.571, the first evaluations equal to three digits; BENCHMARKS.md). Such
    weight decays are not run; where none of the grid's nonzero ones would be left, the largest stays, so
    the tests still compare a weight decay with none, and the note says to raise them. Decoupled decay
    only: SGD's L2 term reaches the weights through the gradient and the momentum, not as a fixed share.
    ``min_shrink`` 0 runs the whole grid."""
    if min_shrink <= 0:
        return VisibleDecays(list(weight_decays), {}, "")
    shrink = {wd: decoupled_shrink(wd, lr_sum) for wd in weight_decays if wd > 0}
    faint = {wd: s for wd, s in shrink.items() if s < min_shrink}
    if faint and len(faint) == len(shrink):
        faint.pop(max(faint))  # the largest stands for them: some weight decay against none
    kept = [wd for wd in weight_decays if wd not in faint]
    if not faint:
        return VisibleDecays(kept, {}, "")
    said = ", ".join(f"{wd:g} ({s:.2%})" for wd, s in sorted(faint.items(), reverse=True))
    note = (
        f"weight decay {said} not run: decoupled weight decay removes that share of the weights over the whole "
        f"range test, under search.range_test.min_shrink {min_shrink:.0%}, so its curve would be weight decay 0's"
    )
    if all(shrink[wd] < min_shrink for wd in kept if wd > 0):
        largest = max(wd for wd in kept if wd > 0)
        note += (
            f"; even {largest:g} removes only {shrink[largest]:.2%}: raise search.range_test.weight_decays "
            "(AdamW's decoupled weight decay is usually 1e-2 to 1e-1)"
        )
    return VisibleDecays(kept, faint, note)


def replicate_overrides(
    replicates: int, seed: int, batch_size: int, batch_jitter: int, init: str | None = "msra"
) -> list[dict[str, object]]:
    """Overrides of the final trainings (App. A.1): seeds ``seed, seed+1, …``; with more than one
    replicate the init alternates between ``init`` and the other scheme (msra/xavier) and the batch
    size is jittered within ``[batch_size, batch_size + batch_jitter]``. Replicate 0 keeps the chosen
    values. ``init=None`` (a user model that keeps its own initialisation): no init override at all."""
    if replicates < 1:
        raise ValueError(f"replicates must be ≥ 1, got {replicates=}")
    other = {"msra": "xavier", "xavier": "msra"}
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for i in range(replicates):
        jitter = 0 if i == 0 else rng.randint(0, batch_jitter)
        row: dict[str, object] = {"seed": seed + i, "batch_size": batch_size + jitter}
        if init is not None:
            row["init"] = init if i % 2 == 0 else other[init]
        out.append(row)
    return out


def best_index(scores: Sequence[float], lower_is_better: bool) -> int | None:
    """The position of the best finite score (the first of equals); None when none is finite.

    Which final replicate's weights a search keeps: the best by the test metric."""
    finite = [i for i, v in enumerate(scores) if math.isfinite(v)]
    sign = 1.0 if lower_is_better else -1.0
    return min(finite, key=lambda i: sign * scores[i], default=None)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value); NaN for none."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    if len(finite) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))

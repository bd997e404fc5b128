"""How a phase judges its trials — one rule for the searcher that proposes and the phase that decides.

A :class:`Judge` names the metric, its direction, the judging step and the window whose median
is a trial's value. The searcher judges trials from the results Tune sends it while they run;
the phase's ``decide`` judges the same trials again from what Ray recorded. Both call the same
:meth:`Judge.candidate` on the same result rows, so the live choice and the recorded one cannot
differ::

    judge = Judge("val_loss", "min", window=3)
    candidates = [judge.candidate(label, rows, error) for label, rows, error in trials]
    choice = judge.choose(candidates, "weight decay")

Paper: Sec. 3 (Remarks 1-2, early validation loss ranks configurations) and Sec. 5.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tunekit.core.curves import Shape
from tunekit.core.decisions import Candidate, Choice, TieSide, choose_candidate, score_curve, tie_side

Row = Mapping[str, Any]


def number(value: Any) -> float:
    """A reported value as a float; NaN for None or anything that is not a number."""
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def flag(value: Any) -> bool:
    """A reported yes/no: True, or a finite non-zero number (a missing value in a results table is NaN, not yes)."""
    if isinstance(value, bool):
        return value
    x = number(value)
    return math.isfinite(x) and x != 0


@dataclass(frozen=True)
class Judge:
    """What a phase compares its trials by.

    Args:
        metric: the reported value judged (``val_loss``, ``val_acc``, …: decisions read the validation split).
        mode: ``min`` when lower is better, ``max`` when higher is.
        window: a trial's value is the median of its last ``window`` results up to the judging step
            (1: the single result; more smooths the noisy middle of a 1cycle).
        step: judge every trial at this value of ``time_attr`` (None: at its last result).
        time_attr: the result field counting steps.
    """

    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    window: int = 1
    step: float | None = None
    time_attr: str = "training_iteration"

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {self.mode=}")
        if self.window < 1:
            raise ValueError(f"window must be ≥ 1, got {self.window=}")

    @property
    def sign(self) -> float:
        """+1 for ``min``, -1 for ``max``: every score is minimised."""
        return 1.0 if self.mode == "min" else -1.0

    def curve(self, rows: Sequence[Row]) -> tuple[list[float], list[float]]:
        """(steps, values to minimise) of a trial's results; a diverged result counts as NaN."""
        steps: list[float] = []
        values: list[float] = []
        for i, row in enumerate(rows):
            steps.append(number(row.get(self.time_attr, i + 1)))
            values.append(math.nan if flag(row.get("diverged")) else self.sign * number(row.get(self.metric)))
        return steps, values

    def score(self, rows: Sequence[Row], failed: bool = False) -> tuple[float, Shape]:
        """(score to minimise, curve shape) of one trial: inf and DIVERGING when it diverged; inf and the
        shape of what it reported before the error when it ``failed``."""
        steps, values = self.curve(rows)
        last = rows[-1] if rows else {}
        chance = number(last.get("chance_loss")) if self.mode == "min" else math.nan
        loss, shape = score_curve(
            steps,
            values,
            judge_step=self.step,
            window=self.window,
            chance_loss=chance if math.isfinite(chance) else None,
            diverged=flag(last.get("diverged")),
        )
        if failed:
            return math.inf, shape if values else Shape.UNKNOWN
        return loss, shape

    def candidate(self, label: str, rows: Sequence[Row], error: str | bool | None = None) -> Candidate:
        """One trial as a :class:`~tunekit.core.decisions.Candidate` (its score, shape, the scheduler's stop, and
        ``error``: the one line of the error that ended it — True where only the fact is known, as Ray tells a searcher)."""
        failed = (error if isinstance(error, str) else "an error; see the trial's logs") if error else ""
        loss, shape = self.score(rows, bool(failed))
        stopped_by = rows[-1].get("stopped_by") if rows else ""
        return Candidate(label, loss, shape, stopped_by if isinstance(stopped_by, str) else "", failed)

    def choose(self, candidates: Sequence[Candidate], what: str, unit: str | None = None, tie_tolerance: float = 0.0) -> Choice:
        """The best candidate by :func:`~tunekit.core.decisions.choose_candidate`, in this judge's words."""
        return choose_candidate(candidates, what, tie_tolerance=tie_tolerance, unit=unit or spoken(self.metric))


def tie_side_of(last: Row) -> tuple[TieSide, str]:
    """:func:`~tunekit.core.decisions.tie_side` read from a run's last result (its ``val_loss``, ``train_loss``
    and ``val_loss_se``): which way the learning_rate phase's tie goes, and why."""
    return tie_side(number(last.get("val_loss")), number(last.get("train_loss")), number(last.get("val_loss_se")))


def spoken(metric: str) -> str:
    """A reported key in words, split first: ``val_loss`` → "validation loss", ``test_acc`` → "test acc"."""
    split, _, name = metric.partition("_")
    if not name:
        return metric
    return f"{ {'val': 'validation', 'test': 'test', 'train': 'training'}.get(split, split) } {name.replace('_', ' ')}"

"""Phase 4 — cyclical momentum (Sec. 4.3, Sec. 5 item 3), at the refined learning rate and the chosen weight decay.

Short 1cycle runs whose momentum cycles from a candidate maximum (0.99, 0.97, 0.95, 0.9)
down to ``search.momentum.min``, at the learning rate the learning_rate phase refined; the best by its validation loss at the
end of the short cycle, trials the loss-shape scheduler stopped ranked after those that ran. The candidates are walked
from the preset's current momentum (``search.momentum.walk``, the default): it and its neighbour on the side ties go
to (the lower one; the higher with ``prefer: largest``), then the other neighbour only if the current momentum wins,
and one further while the best is at an edge — on the suite the loss was unimodal in momentum on every task, so a
neighbour that beats the current momentum leaves nothing to find on the other side. The run at the current momentum
is usually the learning_rate phase's own, so a walk often costs one run where the grid costs three.
``walk: false`` runs every candidate. ``prefer: largest`` chooses the largest momentum whose loss ties the lowest, by
the learning_rate phase's rule (:func:`~tunekit.core.decisions.choose_lr`): the paper sets momentum "as large as possible
without causing instabilities" (Sec. 4.3). The default, ``lowest``, is what the suite measured better (BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from tunekit.core.judge import Judge
from tunekit.presets import Preset
from tunekit.recipe.errors import SearchError
from tunekit.recipe.phase import (
    Decided,
    Phase,
    PhaseContext,
    PhasePlan,
    PhaseSize,
    curves_figure_of,
    failures_of,
    loss_shape_scheduler,
    preferred_choice,
    result_of,
    reuse_trained,
    search_section,
    short_run_size,
    trial_base,
)
from tunekit.recipe.records import TrialRecord


@dataclass(frozen=True)
class MomentumDecision:
    """The cycle of momentum: from ``momentum_max`` down to ``momentum_min`` while the LR rises."""

    momentum_max: float
    momentum_min: float


def _label(record: TrialRecord) -> str:
    return f"{float(record.config['momentum'][0]):g}"  # MomentumSearcher's label of the same candidate


class Momentum(Phase):
    name: ClassVar[str] = "momentum"
    decision_type: ClassVar[type] = MomentumDecision
    # the run at the chosen LR is the current momentum's (trained by learning_rate, or by weight_decay before it)
    reuses: ClassVar[tuple[str, ...]] = ("weight_decay", "learning_rate")

    def size(self, preset: Preset, train_samples: int) -> PhaseSize:
        ms = search_section(preset).momentum
        count = len(ms.candidates)
        trials = f"≤ {count}" if ms.walk else str(count)  # a walk may stop before the grid's ends
        return short_run_size(preset, train_samples, ms, "search.momentum.epochs", trials, count)

    def judge(self, preset: Preset) -> Judge:
        return Judge("val_loss", "min", window=1)  # the validation loss at the end of the short cycle

    def plan(self, preset: Preset, context: PhaseContext) -> PhasePlan:
        from tunekit.searchers import MomentumSearcher

        ms = search_section(preset).momentum
        start = _current_momentum(preset) if ms.walk else None
        base = trial_base(preset, epochs=ms.epochs)
        toward: Literal["lower", "higher"] = "higher" if ms.prefer == "largest" else "lower"  # where ties go: tried first
        searcher = MomentumSearcher(ms.candidates, ms.min, base_config=base, start=start, toward=toward, judge=context.judge)
        return PhasePlan(preset, searcher, loss_shape_scheduler(), reused=reuse_trained(searcher, context.trained))

    def decide(self, preset: Preset, records: list[TrialRecord], context: PhaseContext) -> Decided:
        ms = search_section(preset).momentum
        low = ms.min
        candidates, choice = preferred_choice(records, _label, context.judge, ms.prefer, "max momentum")
        if choice.best is None:
            raise SearchError(f"phase momentum: {choice.reason}; lower search.range_test.max_lr or check the data")
        best = float(choice.best)
        result = result_of(
            self,
            MomentumDecision(best, min(low, best)),
            overrides={"momentum": [best, min(low, best)]},
            reason=choice.reason,
            evidence={c.label: c.loss for c in candidates},
            failed=failures_of(candidates),
        )
        title = f"momentum: which cycle? short 1cycle runs, momentum from each max m down to {low:g}\n" + (
            "the largest momentum within noise of the lowest validation loss wins"
            if ms.prefer == "largest"
            else "the lowest validation loss at the end of the cycle wins"
        )
        figure = curves_figure_of(records, _label, title, candidates=candidates, order=choice.order, chosen=choice.best, name="m")
        return Decided(result, figure)


def _current_momentum(preset: Preset) -> float | None:
    """The maximum momentum the preset's runs use so far (where the walk over the candidates starts)."""
    momentum = getattr(preset.policy, "momentum", None)
    if isinstance(momentum, tuple | list):
        return float(momentum[0])
    return float(momentum) if isinstance(momentum, int | float) else None

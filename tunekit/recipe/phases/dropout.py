"""Phase 5 — dropout (or any regulariser on a linear scale) by bisection (Sec. 4.4).

The paper finds dropout "with the same strategies as weight decay": a few short runs at a grid of
values, then bisection between the two best, judged by the validation loss. The value lives in
the model's own factory ``kwargs`` (``model.kwargs.dropout`` by default, any override path with
``search.dropout.path``), so this is a search of the user's model, not of a tunekit knob. It runs
only when the preset has a ``search.dropout`` section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tunekit.core.judge import Judge
from tunekit.presets import Preset
from tunekit.recipe.errors import SearchError
from tunekit.recipe.phase import (
    Decided,
    Phase,
    PhaseContext,
    PhasePlan,
    PhaseSize,
    failures_of,
    judged,
    loss_shape_scheduler,
    result_of,
    search_section,
    short_run_size,
    trial_base,
)
from tunekit.recipe.records import TrialRecord


@dataclass(frozen=True)
class DropoutDecision:
    """The chosen value and the override path it was searched at."""

    dropout: float
    path: str


class Dropout(Phase):
    name: ClassVar[str] = "dropout"
    decision_type: ClassVar[type] = DropoutDecision

    def applies(self, preset: Preset) -> bool:
        return search_section(preset).dropout is not None

    def check(self, preset: Preset) -> None:
        ds = search_section(preset).dropout
        if ds is None:
            raise SearchError(
                "--phases dropout: the preset has no search.dropout section; add {candidates: [0.0, 0.25, 0.5]} "
                "(searched at model.kwargs.dropout) or leave the phase out"
            )
        if ds.path.startswith("model.kwargs.") and preset.model.factory is None:
            raise SearchError(
                f"search.dropout.path: {ds.path} is a keyword of a model factory, and model {preset.model.name} is bundled; "
                "use a model factory that takes dropout, or set search.dropout.path"
            )

    def size(self, preset: Preset, train_samples: int) -> PhaseSize:
        ds = search_section(preset).dropout
        assert ds is not None  # applies() or check() said so
        return short_run_size(preset, train_samples, ds, "search.dropout.epochs", f"≤ {ds.max_trials}", ds.max_trials)

    def judge(self, preset: Preset) -> Judge:
        return Judge("val_loss", "min", window=1)  # the validation loss at the end of each short cycle

    def plan(self, preset: Preset, context: PhaseContext) -> PhasePlan:
        from tunekit.searchers import ExponentBisectionSearcher

        ds = search_section(preset).dropout
        assert ds is not None
        searcher = ExponentBisectionSearcher(
            ds.path,
            trial_base(preset, epochs=ds.epochs),
            grid=list(ds.candidates),
            scale="linear",
            resolution=ds.resolution,
            max_trials=ds.max_trials,
            judge=context.judge,
        )
        return PhasePlan(preset, searcher, loss_shape_scheduler())

    def decide(self, preset: Preset, records: list[TrialRecord], context: PhaseContext) -> Decided:
        from tunekit.plots import bisection_figure

        ds = search_section(preset).dropout
        assert ds is not None
        candidates = judged(records, lambda r: f"{float(r.config[ds.path]):.3g}", context.judge)
        choice = context.judge.choose(candidates, ds.path)
        if choice.best is None:
            raise SearchError(f"phase dropout: {choice.reason}")
        best = float(choice.best)
        result = result_of(
            self,
            DropoutDecision(best, ds.path),
            overrides={ds.path: best},
            reason=choice.reason,
            evidence={c.label: c.loss for c in candidates},
            failed=failures_of(candidates),
        )
        values = [float(c.label) for c in candidates]
        figure = bisection_figure(
            values,
            [c.loss for c in candidates],
            best,
            ds.path.rsplit(".", 1)[-1],
            ranks=[choice.order.index(c.label) + 1 for c in candidates],
            shapes=[c.shape.value for c in candidates],
            scale="linear",
            title=f"{ds.path}: bisection on a linear scale\nvalidation loss at the end of each short run",
        )
        return Decided(result, figure)

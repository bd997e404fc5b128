"""Phase 2 — weight decay by exponent bisection (Sec. 4.4, Sec. 5 item 4, Fig. 12), at the range test's max_lr.

Starts from ``search.weight_decay.candidates``, else from the weight decays whose range tests tied within
noise (they could not rank them), else {g/√10, g, g·√10} around the range tests' best weight decay g,
else the range tests' grid. ``strategy: full`` trains each value from
scratch for ``epochs``; ``strategy: snapshot`` trains one base run on the final schedule until
its validation loss runs horizontal, then continues every value ``epochs`` more from its snapshot
(:mod:`tunekit.searchers.snapshot`), each judged by the median of those epochs. With ``prefer: largest``
(the default) the largest weight decay whose loss ties the lowest wins: within the validation sample's band,
or twice the noise of the judged epochs — in the climbing middle of the cycle a continuation's epochs jump by
more than the weight decays differ (:func:`~tunekit.core.decisions.tie_band` with the judge's window) — and a
continuation's shape, diagnosed on those few epochs, does not keep it out of the tie (only a divergence does). Where the
learning_rate phase then chooses a smaller LR, it scales this value up to keep
max_lr × weight decay (:func:`~tunekit.core.decisions.balanced_weight_decay`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from tunekit.core.judge import Judge, number
from tunekit.presets import Preset
from tunekit.recipe.errors import SearchError
from tunekit.recipe.phase import (
    Decided,
    Phase,
    PhaseContext,
    PhasePlan,
    PhaseSize,
    failures_of,
    loss_shape_scheduler,
    preferred_choice,
    result_of,
    search_section,
    short_run_size,
    trial_base,
)
from tunekit.recipe.phases.range_test import RangeTestDecision
from tunekit.recipe.records import TrialRecord
from tunekit.searchers.snapshot import is_base_run


@dataclass(frozen=True)
class WeightDecayDecision:
    """The weight decay of the final training."""

    weight_decay: float


def _label(record: TrialRecord) -> str:
    return f"{float(record.config['weight_decay']):.2g}"


class WeightDecay(Phase):
    name: ClassVar[str] = "weight_decay"
    decision_type: ClassVar[type] = WeightDecayDecision

    def check(self, preset: Preset) -> None:
        ws = search_section(preset).weight_decay
        if ws.strategy == "snapshot" and preset.train.epochs <= ws.epochs:
            raise SearchError(
                f"search.weight_decay: snapshot continuations of {ws.epochs} epochs need a longer schedule than "
                f"train.epochs = {preset.train.epochs}; raise train.epochs, or lower search.weight_decay.epochs (and min_steps)"
            )

    def size(self, preset: Preset, train_samples: int) -> PhaseSize:
        ws = search_section(preset).weight_decay
        size = short_run_size(preset, train_samples, ws, "search.weight_decay.epochs", f"≤ {ws.max_trials}", ws.max_trials)
        if ws.strategy == "full":
            return size
        # one base run on the final schedule, up to where each continuation still has its epochs left
        base = max(preset.train.epochs - int(size.epochs), 0)
        return replace(size, trials=f"1 + ≤ {ws.max_trials}", trial_epochs=size.trial_epochs + base)

    def judge(self, preset: Preset) -> Judge:
        ws = search_section(preset).weight_decay
        # mid-cycle losses are noisy: a continuation is the median over its epochs; a full run its last epoch
        return Judge("val_loss", "min", window=ws.epochs if ws.strategy == "snapshot" else 1)

    def plan(self, preset: Preset, context: PhaseContext) -> PhasePlan:
        from tunekit.searchers import ExponentBisectionSearcher, SnapshotContinuationSearcher

        ws = search_section(preset).weight_decay
        start = _start(preset, context.earlier.get("range_test"))
        if ws.strategy == "full":
            base = trial_base(preset, epochs=ws.epochs)
            searcher = ExponentBisectionSearcher(
                "weight_decay", base, max_trials=ws.max_trials, resolution=ws.resolution, judge=context.judge, **start
            )
            return PhasePlan(preset, searcher, loss_shape_scheduler())
        snapshot = SnapshotContinuationSearcher(
            "weight_decay",
            # the base run is on the final schedule; it stops once its validation loss is horizontal, and at the
            # latest where the continuations still have their epochs left in the cycle
            trial_base(preset, **_stop_at(preset.train.epochs - ws.epochs)),
            continuation_epochs=ws.epochs,
            storage_path=context.directory,
            shared_storage=context.shared_storage,
            max_trials=ws.max_trials,
            resolution=ws.resolution,
            judge=context.judge,
            **start,
        )
        # no scheduler: the base run climbs through the noisy high-LR part of its cycle on purpose,
        # and a continuation is only a few epochs long
        return PhasePlan(preset, snapshot)

    def decide(self, preset: Preset, records: list[TrialRecord], context: PhaseContext) -> Decided:
        from tunekit.plots import bisection_figure

        runs = [r for r in records if not is_base_run(r.config)]
        prefer = search_section(preset).weight_decay.prefer
        candidates, choice = preferred_choice(runs, _label, context.judge, prefer, "weight decay")
        if choice.best is None:
            raise SearchError(f"phase weight_decay: {choice.reason}")
        best = float(choice.best)
        base = next((r for r in records if is_base_run(r.config)), None)
        reason = choice.reason + (_snapshot_reason(base, context.judge.window) if base is not None else "")
        result = result_of(
            self,
            WeightDecayDecision(best),
            overrides={"weight_decay": best},
            reason=reason,
            evidence={c.label: c.loss for c in candidates},
            failed=failures_of(candidates),
        )
        measured = (
            f"validation loss: median of the {context.judge.window} epochs continued from one snapshot"
            if base is not None
            else "validation loss at the end of each short run"
        )
        figure = bisection_figure(
            [float(c.label) for c in candidates],
            [c.loss for c in candidates],
            best,
            ranks=[choice.order.index(c.label) + 1 for c in candidates],
            shapes=[c.shape.value for c in candidates],
            title=f"weight decay: bisection on the exponent\n{measured}",
        )
        return Decided(result, figure)


def _start(preset: Preset, range_test: RangeTestDecision | None) -> dict[str, Any]:
    """Where the bisection starts: the preset's candidates, the weight decays the range tests could not rank,
    around the range tests' best, or their grid."""
    search = search_section(preset)
    if search.weight_decay.candidates is not None:
        return {"grid": list(search.weight_decay.candidates)}
    if range_test is not None and range_test.tied_weight_decays:
        return {"grid": sorted(range_test.tied_weight_decays, reverse=True)}
    if range_test is not None and range_test.range_test_weight_decay > 0:
        return {"guess": range_test.range_test_weight_decay}  # {g/√10, g, g·√10}
    return {"grid": list(search.range_test.weight_decays)}


def _stop_at(epoch: int) -> dict[str, Any]:
    return {"train.stop_at_epoch": epoch}


def _snapshot_reason(base: TrialRecord, window: int) -> str:
    why = (
        "its validation loss ran horizontal"
        if base.last.get("snapshot")
        else "not yet horizontal, but the last epoch that leaves the continuations room in the cycle"
    )
    return (
        f"; each the median of {window} epochs continued from one snapshot of a run at weight decay "
        f"{float(base.config['weight_decay']):.2g}, taken at epoch {int(number(base.last.get('epoch')))} ({why})"
    )

"""Phase 6 (optional) — batch size at constant wall time (Sec. 4.2, Remark 4).

Runs only when the preset has a ``search.batch_size`` section. Each candidate batch trains a
full 1cycle sized to ``time_budget_s`` on the hardware it runs on, with ``max_lr`` scaled with
the batch; the best final validation metric (or loss) wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

from tunekit.core.judge import Judge
from tunekit.presets import OneCyclePolicy, Preset
from tunekit.recipe.errors import SearchError
from tunekit.recipe.phase import (
    Decided,
    Phase,
    PhaseContext,
    PhasePlan,
    PhaseSize,
    decision_metric,
    failures_of,
    judged,
    loss_shape_scheduler,
    result_of,
    search_section,
    trial_base,
)
from tunekit.recipe.records import TrialRecord


@dataclass(frozen=True)
class BatchSizeDecision:
    """The batch size of the final training and the ``max_lr`` scaled with it."""

    batch_size: int
    batch_max_lr: float


def _label(record: TrialRecord) -> str:
    return str(int(record.config["batch_size"]))  # BatchSizeSearcher's label of the same candidate


class BatchSize(Phase):
    name: ClassVar[str] = "batch_size"
    evidence_scale: ClassVar[Literal["loss", "metric"]] = "metric"  # the judged metric, as reported
    decision_type: ClassVar[type] = BatchSizeDecision

    def applies(self, preset: Preset) -> bool:
        return search_section(preset).batch_size is not None

    def check(self, preset: Preset) -> None:
        if search_section(preset).batch_size is None:
            raise SearchError(
                "--phases batch_size: the preset has no search.batch_size section; add "
                "{candidates: [64, 128, 256], time_budget_s: 60} or leave the phase out"
            )
        if preset.loop is not None:
            raise SearchError(
                "search.batch_size: batch sizes are compared at constant wall time, which needs tunekit's own loop "
                "to time its steps; remove search.batch_size or the preset's loop section"
            )

    def size(self, preset: Preset, train_samples: int) -> PhaseSize:
        bs = search_section(preset).batch_size
        count = len(bs.candidates) if bs is not None else 0
        budget = f"{bs.time_budget_s:g} s each" if bs is not None else ""
        # each candidate's epochs are whatever fits its time budget, measured inside its trial
        return PhaseSize({}, str(count), math.nan, 0, 0, math.nan, f"sized by wall time: {budget}")

    def judge(self, preset: Preset) -> Judge:
        return Judge(*decision_metric(preset), window=1)  # the final value at constant wall time (Sec. 4.2)

    def plan(self, preset: Preset, context: PhaseContext) -> PhasePlan:
        from tunekit.searchers import BatchSizeSearcher

        bs = search_section(preset).batch_size
        if bs is None or not isinstance(preset.policy, OneCyclePolicy):
            raise SearchError("phase batch_size: needs a search.batch_size section and a one_cycle policy")
        searcher = BatchSizeSearcher(
            bs.candidates,
            bs.time_budget_s,
            preset.train.batch_size,
            preset.policy.max_lr,
            base_config=trial_base(preset),
            judge=context.judge,
        )
        return PhasePlan(preset, searcher, loss_shape_scheduler())

    def decide(self, preset: Preset, records: list[TrialRecord], context: PhaseContext) -> Decided:
        from tunekit.plots import bars_figure, metric_words

        candidates = judged(records, _label, context.judge)
        judge = context.judge
        shown = judge.metric.replace("_", " ")
        unit = f"{'−' if judge.mode == 'max' else ''}(final {shown}) at constant wall time"
        choice = judge.choose(candidates, "batch size", unit=unit)
        if choice.best is None:
            raise SearchError(f"phase batch_size: {choice.reason}")
        chosen = next(r for r in records if _label(r) == choice.best)
        max_lr = float(chosen.config["max_lr"])
        result = result_of(
            self,
            BatchSizeDecision(int(choice.best), max_lr),
            overrides={"batch_size": int(choice.best), "max_lr": max_lr},
            reason=choice.reason + f"; max_lr scaled with the batch to {max_lr:.3g}",
            evidence={c.label: judge.sign * c.loss for c in candidates},
            failed=failures_of(candidates),
        )
        budget = search_section(preset).batch_size
        words = metric_words(judge.metric)
        figure = bars_figure(
            {k: result.evidence[k] for k in sorted(result.evidence, key=int)},
            f"batch size: which trains best in the same wall time"
            f"{f' ({budget.time_budget_s:g} s each)' if budget is not None else ''}?\nthe best final {words} wins",
            f"final {words}",
            chosen=choice.best,
            chosen_label=f"chosen: batch size {choice.best} (max_lr {max_lr:.3g})",
            ranking=choice.order,
            percent=judge.metric.endswith("_acc"),
            xlabel="batch size",
        )
        return Decided(result, figure)

"""Phase 5 — the final training: 1cycle with every decision, replicated (App. A.1).

Replicates differ in seed; with more than one, the init alternates msra/xavier and the batch
size is jittered within ``[b, b + batch_jitter]``. The result is the mean ± std of their test
accuracy; no replicate is a rival of another, so no scheduler stops them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from tunekit.core.decisions import mean_std, replicate_overrides
from tunekit.core.judge import Judge, number
from tunekit.core.sizing import steps_per_epoch
from tunekit.presets import Preset
from tunekit.recipe.errors import SearchError
from tunekit.recipe.phase import Decided, Phase, PhaseContext, PhasePlan, PhaseSize, result_of, search_section, trial_base
from tunekit.recipe.records import TrialRecord


@dataclass(frozen=True)
class FinalDecision:
    """The final replicates' test accuracy."""

    test_acc_mean: float
    test_acc_std: float


def replicates_in_order(records: list[TrialRecord]) -> list[TrialRecord]:
    """The replicates that finished, in seed order (not Ray's trial-id order), so runs compare line by line."""
    return sorted((r for r in records if not r.error), key=lambda r: int(r.config.get("seed", 0)))


class Final(Phase):
    name: ClassVar[str] = "final"
    decision_type: ClassVar[type] = FinalDecision

    def size(self, preset: Preset, train_samples: int) -> PhaseSize:
        final = search_section(preset).final
        epochs = final.epochs or preset.train.epochs
        steps = epochs * steps_per_epoch(train_samples, preset.train.batch_size)
        return PhaseSize({}, str(final.replicates), epochs, steps, epochs, final.replicates * epochs)

    def judge(self, preset: Preset) -> Judge:
        return Judge("test_acc", "max", window=1)  # the replicates' final test accuracy

    def plan(self, preset: Preset, context: PhaseContext) -> PhasePlan:
        from tunekit.searchers import CandidateSearcher

        final = search_section(preset).final
        plan = replicate_overrides(
            final.replicates, preset.train.seed, preset.train.batch_size, final.batch_jitter, preset.model.init
        )
        epochs = final.epochs or preset.train.epochs
        candidates = {f"replicate-{i}": {**o, "epochs": epochs} for i, o in enumerate(plan)}
        # no scheduler: replicates of one configuration are not rivals
        return PhasePlan(preset, CandidateSearcher(candidates, trial_base(preset), context.judge))

    def decide(self, preset: Preset, records: list[TrialRecord], context: PhaseContext) -> Decided:
        from tunekit.plots import bars_figure

        metric = context.judge.metric
        records = sorted(records, key=lambda r: int(r.config.get("seed", 0)))
        accs = {r.config.get("seed", i): number(r.last.get(metric)) for i, r in enumerate(records) if not r.error}
        mean, std = mean_std(list(accs.values()))
        if not math.isfinite(mean):
            raise SearchError("phase final: no replicate finished; see the trial logs under the final/ folder")
        parts = ", ".join(
            f"seed {r.config.get('seed')} {r.config.get('init')} batch {r.config.get('batch_size')}: {number(r.last.get(metric)):.4f}"
            for r in records
        )
        result = result_of(
            self,
            FinalDecision(mean, std),
            overrides={},
            reason=f"test accuracy {100 * mean:.2f} % ± {100 * std:.2f} over {len(accs)} replicates ({parts})",
            evidence={f"seed {k}": v for k, v in accs.items()},
        )
        return Decided(result, bars_figure(result.evidence, "final replicates", "test accuracy"))

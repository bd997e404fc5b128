"""Phase 7 — the final training: 1cycle with every decision, replicated (App. A.1).

Replicates differ in seed; with more than one, the init alternates msra/xavier (when the model
has one) and the batch size is jittered within ``[b, b + batch_jitter]``. The result is the
mean ± std of their metric on the test split (the loss when there is no metric) — the one
number of a search that is read on test; no replicate is a rival of another, so no scheduler
stops them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from tunekit.core.decisions import best_index, failure_advice, mean_std, replicate_overrides
from tunekit.core.judge import Judge, number
from tunekit.core.sizing import steps_per_epoch
from tunekit.presets import Preset
from tunekit.recipe.errors import SearchError
from tunekit.recipe.phase import (
    Decided,
    Phase,
    PhaseContext,
    PhasePlan,
    PhaseSize,
    decision_metric,
    final_epochs,
    result_of,
    search_section,
    trial_base,
)
from tunekit.recipe.records import TrialRecord
from tunekit.recipe.results import PhaseResult


@dataclass(frozen=True)
class FinalDecision:
    """The final replicates' test metric (``test_acc``, ``test_r2``, or ``test_loss``): mean and std."""

    metric: str
    mean: float
    std: float


def replicates_in_order(records: list[TrialRecord]) -> list[TrialRecord]:
    """The replicates that finished, in seed order (not Ray's trial-id order), so runs compare line by line."""
    return sorted((r for r in records if not r.error), key=lambda r: int(r.config.get("seed", 0)))


class Final(Phase):
    name: ClassVar[str] = "final"
    evidence_scale: ClassVar[Literal["loss", "metric"]] = "metric"  # the judged metric, as reported
    decision_type: ClassVar[type] = FinalDecision

    def size(self, preset: Preset, train_samples: int) -> PhaseSize:
        final = search_section(preset).final
        epochs = final_epochs(preset)
        steps = epochs * steps_per_epoch(train_samples, preset.train.batch_size)
        return PhaseSize({}, str(final.replicates), epochs, steps, epochs, final.replicates * epochs)

    def judge(self, preset: Preset) -> Judge:
        return Judge(*decision_metric(preset, "test"), window=1)  # the replicates' final test metric

    def plan(self, preset: Preset, context: PhaseContext) -> PhasePlan:
        from tunekit.searchers import CandidateSearcher

        final = search_section(preset).final
        plan = replicate_overrides(
            final.replicates, preset.train.seed, preset.train.batch_size, final.batch_jitter, preset.model.effective_init
        )
        epochs = final_epochs(preset)
        candidates = {f"replicate-{i}": {**o, "epochs": epochs} for i, o in enumerate(plan)}
        # no scheduler: replicates of one configuration are not rivals
        return PhasePlan(preset, CandidateSearcher(candidates, trial_base(preset, test=True), context.judge))

    def decide(self, preset: Preset, records: list[TrialRecord], context: PhaseContext) -> Decided:
        metric = context.judge.metric
        records = sorted(records, key=lambda r: int(r.config.get("seed", 0)))
        accs = {r.config.get("seed", i): number(r.last.get(metric)) for i, r in enumerate(records) if not r.error}
        failed = {f"seed {r.config.get('seed', i)}": r.error for i, r in enumerate(records) if r.error}
        mean, std = mean_std(list(accs.values()))
        if not math.isfinite(mean):
            errors = _listed(failed)
            advice = failure_advice(list(failed.values())) or "see the trial logs under the final/ folder"
            raise SearchError(f"phase final: no replicate finished{' (' + errors + ')' if errors else ''}; {advice}")
        parts = ", ".join(
            f"seed {r.config.get('seed')}{' ' + str(r.config['init']) if r.config.get('init') else ''} "
            f"batch {r.config.get('batch_size')}: {'failed' if r.error else format(number(r.last.get(metric)), '.4f')}"
            for r in records
        )
        lost = f"; {len(failed)} of {len(records)} replicates failed, left out of the mean ({_listed(failed)})"
        result = result_of(
            self,
            FinalDecision(metric, mean, std),
            overrides={},
            reason=f"{describe(metric, mean, std)} over {plural(len(accs), 'replicate')} ({parts}){lost if failed else ''}",
            evidence={f"seed {k}": v for k, v in accs.items()},
            failed=failed,
        )
        return Decided(result, _replicates_figure(records, metric, context.judge.sign, mean, std))

    def typed(self, result: PhaseResult) -> FinalDecision:
        values = dict(result.values)
        if "test_acc_mean" in values:  # written before the validation split: the accuracy, by its old names
            return FinalDecision("test_acc", values["test_acc_mean"], values["test_acc_std"])
        return FinalDecision(str(values["metric"]), float(values["mean"]), float(values["std"]))


def _listed(failed: dict[str, str]) -> str:
    return "; ".join(f"{k}: {e}" for k, e in failed.items())


def _replicates_figure(records: list[TrialRecord], metric: str, sign: float, mean: float, std: float) -> Any:
    """One bar per replicate (seed, init, batch), the mean ± std, and the replicate kept as the final model
    (the best by the metric, as the search's end keeps it)."""
    from tunekit.plots import bars_figure, metric_words

    shown = [r for r in records if not r.error]
    labels = {
        r.trial_id: f"seed {r.config.get('seed', i)}\n{str(r.config['init']) + ', ' if r.config.get('init') else ''}"
        f"batch {r.config.get('batch_size')}"
        for i, r in enumerate(shown)
    }
    scores = {labels[r.trial_id]: number(r.last.get(metric)) for r in shown}
    kept = kept_replicate(shown, metric, sign)
    words = metric_words(metric)
    return bars_figure(
        scores,
        f"final: {len(shown)} replicates of the chosen settings (seed, init and batch vary)\nthe result is their mean {words}",
        words,
        chosen=labels[kept.trial_id] if kept is not None else None,
        chosen_label=f"kept as the final model (best {words})",
        reference=(mean, std),
        percent=metric.endswith("_acc"),
        xlabel="replicate",
    )


def kept_replicate(records: list[TrialRecord], metric: str, sign: float) -> TrialRecord | None:
    """The replicate whose weights the search keeps as its final model: the best by ``metric``
    (``sign`` 1 when lower is better, -1 when higher is), among those that reported it."""
    best = best_index([number(r.last.get(metric)) for r in records], lower_is_better=sign > 0)
    return None if best is None else records[best]


def plural(count: int, noun: str) -> str:
    """``1 replicate``, ``3 replicates``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def describe(metric: str, mean: float, std: float) -> str:
    """``test accuracy 98.82 % ± 0.14``, or ``test r2 0.4512 ± 0.0123``."""
    if metric.endswith("_acc"):
        return f"{metric.removesuffix('_acc').replace('_', ' ')} accuracy {100 * mean:.2f} % ± {100 * std:.2f}"
    return f"{metric.replace('_', ' ')} {mean:.4g} ± {std:.2g}"

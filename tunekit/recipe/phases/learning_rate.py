"""Phase 3 — the learning rate, refined by short 1cycle runs (after the range test and weight decay, before momentum).

The paper takes 1cycle's ``max_lr`` where the range test's validation loss turns up (Sec. 4.1). A
range test ramps the LR over a few epochs; a full 1cycle run spends many more steps near its peak,
and on MNIST-1D the turn-up LR measured about twice what a 30-epoch 1cycle wants (BENCHMARKS.md).
So this phase runs short 1cycle runs — the final schedule's shape, the phase's own length — at
``search.learning_rate.factors`` × the turn-up LR (default 1, ½, ¼; optionally the range test's
"valley" LR too). While the smallest LR tried has the lowest validation loss, it tries half of it, down to
``lowest_factor`` × the turn-up (default 1/32): the turn-up is a ceiling, and the LR is bracketed
from above (:class:`~tunekit.searchers.LearningRateSearcher`). Among the LRs whose validation loss
at the end of its cycle **ties the lowest** — within one standard error of the difference of two
validation losses (:func:`~tunekit.core.decisions.sampling_band`: what the split's sample alone
moves them), the runs' own noise (:func:`~tunekit.core.decisions.tie_band`), or
``search.learning_rate.tolerance`` of the loss (default 0), whichever is widest — it keeps the
**largest when the lowest run overfits, else the smallest** (:func:`~tunekit.core.decisions.tie_side`:
its validation loss more than two standard errors above its training loss). Regularisation must be
balanced (Sec. 3, Remark 6): a larger LR regularises more (Sec. 4.1-4.2), which pays where the short
runs already overfit (the MNIST-1D MLP: the larger LR, behind after five epochs, is ahead after
forty) and costs where they do not (the BatchNorm CNNs: ahead after three epochs, behind after
twenty). A larger LR wins that tie only where its run shows the regularisation it is kept for
(:func:`~tunekit.core.decisions.unregularised`): its training loss above the lowest run's by at least as much as
its validation loss. AdamW's steps do not grow with the LR, and on the suite's AdamW digits twice the LR fitted
the training set as well and generalised worse. On the smaller side, halving goes on while the smallest LR
tried still ties. ``min_lr`` stays ``max_lr / div``.

Where the chosen LR is below the range test's max_lr — the LR the weight_decay phase judged at —
the weight decay is scaled up by their ratio, keeping max_lr × weight decay
(:func:`~tunekit.core.decisions.balanced_weight_decay`; ``search.learning_rate.balance_weight_decay``):
weight decay is the knob balanced against the LR's regularisation (Remark 6), and the smaller LR
gives up regularisation the weight decay was judged with. The scaling is a rule, not a measurement, so
the runs check it (``search.learning_rate.balance_check``): once the LR is chosen, one more run at it trains the
rebalanced weight decay, judged against the chosen LR's own run at the judged one by the same tie rule
(the largest weight decay within noise of the lowest loss wins); where it is clearly worse, one at their
geometric mean (the exponent bisected once) — :func:`~tunekit.core.decisions.next_balance_check`. By default
(``auto``) the check runs where the momentum phase's runs are as long as these: the momentum phase then reads the
run at the chosen weight decay back, so a balance that holds costs no run. On the suite's digits CNN the
weight decay scaled 16× reached a validation loss six times the judged one's. The decision's
``balanced_weight_decay`` is the weight decay chosen (absent when unchanged).

``search.range_test.rule: paper`` keeps the paper's rule: this phase then does not run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from tunekit.core.decisions import Choice, balanced_weight_decay, lr_label, weight_decay_label
from tunekit.core.judge import Judge, tie_side_of
from tunekit.presets import OneCyclePolicy, Preset
from tunekit.recipe.errors import SearchError
from tunekit.recipe.phase import (
    Decided,
    Phase,
    PhaseContext,
    PhasePlan,
    PhaseSize,
    curves_figure_of,
    failures_of,
    judged,
    loss_shape_scheduler,
    result_of,
    reuse_trained,
    search_section,
    short_run_size,
    tie_choice,
    trial_base,
)
from tunekit.recipe.records import TrialRecord


@dataclass(frozen=True)
class LearningRateDecision:
    """1cycle's peak LR after the short runs, its low point, the chosen LR as a multiple of the range test's,
    and the weight decay rebalanced for it (None: as the weight_decay phase chose)."""

    refined_max_lr: float
    refined_min_lr: float
    lr_factor: float  # refined_max_lr / the range test's max_lr
    balanced_weight_decay: float | None = None  # :func:`~tunekit.core.decisions.balanced_weight_decay`


def candidate_lrs(max_lr: float, factors: tuple[float, ...], valley: float | None = None, distinct: float = 0.1) -> list[float]:
    """The LRs the short runs try, largest first: ``factors`` × ``max_lr``, and ``valley`` (if given and
    below ``max_lr``); values within ``distinct`` (relative) of a larger one are dropped."""
    values = sorted({f * max_lr for f in factors} | ({valley} if valley and 0 < valley < max_lr else set()), reverse=True)
    kept: list[float] = []
    for lr in values:
        if all(abs(lr - k) > distinct * k for k in kept):
            kept.append(lr)
    return kept


def _label(record: TrialRecord) -> str:
    """An LR run's label (its max_lr); a weight-decay check's, its max_lr and weight decay (``0.1733, wd 0.0128``)."""
    lr = lr_label(float(record.config["policy.max_lr"]))
    return f"{lr}, {weight_decay_label(float(record.config['weight_decay']))}" if _is_check(record) else lr


def _weight_decay(record: TrialRecord) -> str:
    """A run's label among the weight decays checked at the chosen LR."""
    return f"{float(record.config['weight_decay']):.3g}"


def _is_check(record: TrialRecord) -> bool:
    """A run at the chosen LR with another weight decay, checking the rebalanced one (not an LR candidate)."""
    return "weight_decay" in record.config


class LearningRate(Phase):
    name: ClassVar[str] = "learning_rate"
    decision_type: ClassVar[type] = LearningRateDecision
    reuses: ClassVar[tuple[str, ...]] = ("weight_decay",)  # a short run there at the chosen weight decay may be max_lr × 1's

    def applies(self, preset: Preset) -> bool:
        return search_section(preset).range_test.rule != "paper"

    def check(self, preset: Preset) -> None:
        if search_section(preset).range_test.rule == "paper":
            raise SearchError(
                "--phases learning_rate: search.range_test.rule is 'paper' (max_lr at the turn-up, not refined); "
                "drop learning_rate from --phases or set search.range_test.rule=refine"
            )

    def size(self, preset: Preset, train_samples: int) -> PhaseSize:
        section = search_section(preset)
        lr = section.learning_rate
        count = len(lr.factors) + (1 if lr.valley else 0) + lr.extensions()
        sized = short_run_size(preset, train_samples, lr, "search.learning_rate.epochs", "", count)
        momentum = short_run_size(preset, train_samples, section.momentum, "search.momentum.epochs", "", 0)
        count += 2 if _checks_balance(preset, sized.epochs, momentum.epochs) else 0  # the rebalanced and the middle
        return replace(sized, trials=f"≤ {count}", trial_epochs=count * sized.epochs)

    def judge(self, preset: Preset) -> Judge:
        return Judge("val_loss", "min", window=1)  # the validation loss at the end of the short cycle, as momentum

    def plan(self, preset: Preset, context: PhaseContext) -> PhasePlan:
        from tunekit.searchers import LearningRateSearcher

        section = search_section(preset).learning_rate
        base = trial_base(preset, epochs=section.epochs)
        floor = section.lowest_factor * _policy(preset).max_lr
        momentum_epochs = search_section(preset).momentum.epochs
        checked = context.earlier.get("weight_decay") is not None and _checks_balance(preset, section.epochs, momentum_epochs)
        balance = (preset.weight_decay, _policy(preset).max_lr) if checked else None
        searcher = LearningRateSearcher(self._lrs(preset, context), floor, base, context.judge, section.tolerance, balance)
        return PhasePlan(preset, searcher, loss_shape_scheduler(), reused=reuse_trained(searcher, context.trained))

    def decide(self, preset: Preset, records: list[TrialRecord], context: PhaseContext) -> Decided:
        section = search_section(preset).learning_rate
        runs = [r for r in records if not _is_check(r)]
        candidates = judged(runs, _label, context.judge)
        lrs = {_label(r): float(r.config["policy.max_lr"]) for r in runs}
        lowest = context.judge.choose(candidates, "max_lr").best  # the lowest loss: its run says which way a tie goes
        side, why = tie_side_of(next((r.last for r in runs if _label(r) == lowest and not r.error), {}))
        choice, band = tie_choice(runs, _label, candidates, lrs, section.tolerance, "max_lr", side, regularising=True)
        if choice.best is None:
            raise SearchError(f"phase learning_rate: {choice.reason}; lower search.range_test.max_lr or check the data")
        chosen, turn_up = lrs[choice.best], _policy(preset).max_lr
        overrides: dict[str, float] = {"policy.max_lr": chosen}
        balanced, balance = _balanced(preset, context, chosen)
        own = next(r for r in runs if _label(r) == choice.best)
        checks = [replace(own, config={**own.config, "weight_decay": preset.weight_decay})] + [r for r in records if _is_check(r)]
        checked = _checked(checks, context) if len(checks) > 1 else None
        if checked is not None:
            balanced, balance = checked[0], f"{balance}; checked at max_lr {lr_label(chosen)}: {checked[1].reason}"
        shown = candidates + judged(checks[1:], _label, context.judge)  # the evidence and the figure show the checks too
        if balance and balanced != preset.weight_decay:
            overrides["weight_decay"] = balanced
        kept = balanced if "weight_decay" in overrides else None
        decision = LearningRateDecision(chosen, chosen / _policy(preset).div, chosen / turn_up, kept)
        result = result_of(
            self,
            decision,
            overrides=overrides,
            reason=f"{choice.reason}; {why + '; ' if why else ''}{balance + '; ' if balance else ''}"
            f"min_lr = max_lr / {_policy(preset).div:g}",
            evidence={c.label: c.loss for c in shown},
            failed=failures_of(shown),
        )
        ranked = context.judge.choose(candidates, "max_lr").order  # by score alone: the tie rule may choose another
        sign = {"largest": ", the lowest run overfits", "smallest": ", the lowest run does not overfit"}[side] if why else ""
        title = (
            "learning rate: which max_lr? short 1cycle runs at fractions of the range test's max_lr\n"
            f"the {side} max_lr within noise of the lowest validation loss wins{' if it regularises' if why and side == 'largest' else ''} "
            f"(chosen: ±{band:.3g}){sign}; "
            f"halved while the smallest {'is lowest' if side == 'largest' else 'ties'}"
        )
        figure = curves_figure_of(records, _label, title, candidates=shown, order=ranked, chosen=choice.best, name="max_lr")
        return Decided(result, figure)

    def _lrs(self, preset: Preset, context: PhaseContext) -> list[float]:
        section = search_section(preset).learning_rate
        earlier = context.earlier.get("range_test")
        valley = getattr(earlier, "valley_lr", None) if section.valley else None
        return candidate_lrs(_policy(preset).max_lr, section.factors, valley)


def _balanced(preset: Preset, context: PhaseContext, chosen: float) -> tuple[float, str]:
    """The weight decay to train with at max_lr ``chosen``, and why ("" when unchanged): rebalanced only where
    this search's weight_decay phase judged it (at the max_lr these runs scale) and the setting is on."""
    if context.earlier.get("weight_decay") is None or not search_section(preset).learning_rate.balance_weight_decay:
        return preset.weight_decay, ""
    return balanced_weight_decay(preset.weight_decay, _policy(preset).max_lr, chosen)


def _checks_balance(preset: Preset, epochs: float, momentum_epochs: float) -> bool:
    """Whether the phase checks the weight decay it rebalances (``search.learning_rate.balance_check``): ``auto``
    where the momentum phase's runs last as long as these (``epochs``), so it reads the check's run back."""
    section = search_section(preset).learning_rate
    if not section.balance_weight_decay or section.balance_check == "never":
        return False
    return section.balance_check == "always" or epochs == momentum_epochs


def _checked(runs: list[TrialRecord], context: PhaseContext) -> tuple[float, Choice] | None:
    """The weight decay the runs at the chosen LR choose (the first is its own, at the judged weight decay): the
    largest within noise of the lowest validation loss, as the searcher chose which to run, and the choice.
    None when none can be chosen (every run failed)."""
    weight_decays = {_weight_decay(r): float(r.config["weight_decay"]) for r in runs}
    candidates = judged(runs, _weight_decay, context.judge)
    choice = tie_choice(runs, _weight_decay, candidates, weight_decays, 0.0, "weight decay")[0]
    return None if choice.best is None else (weight_decays[choice.best], choice)


def _policy(preset: Preset) -> OneCyclePolicy:
    """The 1cycle policy the short runs scale (the range test's decision, or the preset's own)."""
    if not isinstance(preset.policy, OneCyclePolicy):
        raise SearchError(
            f"phase learning_rate: the preset's policy is {preset.policy.name}; run range_test first or give it a one_cycle policy"
        )
    return preset.policy

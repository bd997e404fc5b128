"""Phase 1 — LR range tests, one per candidate weight decay (Sec. 4.1, 4.4, Fig. 10), or one alone.

Each trial ramps the LR linearly from ``search.range_test.min_lr`` to ``max_lr`` and reports the
validation loss every few iterations (on a fixed subset of the validation split), until its curve
has diverged (``stop_when_diverged``; :func:`tunekit.core.lr_range.range_test_over`). The bounds come
from the curve of the weight decay that reached the lowest loss: ``max_lr`` just before its
validation loss turns up, ``min_lr = max_lr / div``. Where other tests reached lowest losses within noise
of it, the tests cannot rank those weight decays: the bounds come from the test whose ``max_lr`` is the
median of theirs, and the weight_decay phase starts its bisection from those weight decays
(:func:`~tunekit.core.decisions.tied_range_tests`; ``search.range_test.ties: lowest`` reads the lowest
loss's test alone, as before).

``search.range_test.sweep`` says at which weight decays: ``grid`` (the default) one test per
``weight_decays``; ``preset`` one, at the preset's weight decay; ``auto`` one when the
weight_decay phase runs later in the same search (which ranks weight decays on short 1cycle runs),
else the grid. One test costs a third to a half less search on small data, but on the benchmark
suite it chose less well on three of five tasks (BENCHMARKS.md), so the grid stays the default.

With AdamW's decoupled weight decay, a grid weight decay that removes less than
``search.range_test.min_shrink`` (1 %) of the weights over the whole test is not run: its curve is
weight decay 0's to within noise (:func:`~tunekit.core.decisions.visible_weight_decays`). The plan
and the decision's reason name it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from tunekit.core.decisions import VisibleDecays, choose_lr_range
from tunekit.core.judge import Judge, number
from tunekit.core.lr_range import RangeTestError
from tunekit.core.sizing import RangeTestSize
from tunekit.presets import OneCyclePolicy, Preset, preset_to_dict, range_test_preset
from tunekit.recipe.errors import SearchError
from tunekit.recipe.phase import Decided, Phase, PhaseContext, PhasePlan, PhaseSize, final_epochs, result_of, search_section
from tunekit.recipe.records import TrialRecord


@dataclass(frozen=True)
class RangeTestDecision:
    """The LR bounds of 1cycle and the weight decay whose range test reached the lowest loss.

    Names are unique across phases: MLflow params on the parent run cannot change once logged.
    """

    max_lr: float
    min_lr: float
    range_test_weight_decay: float
    valley_lr: float | None = None  # fastai's "valley" on the same curve (a candidate of the learning_rate phase)
    # the weight decays whose tests tied within noise, best first (the weight_decay phase starts from them);
    # None where one test reached clearly the lowest loss
    tied_weight_decays: list[float] | None = None


class RangeTest(Phase):
    name: ClassVar[str] = "range_test"
    decision_type: ClassVar[type] = RangeTestDecision

    def size(self, preset: Preset, train_samples: int) -> PhaseSize:
        sized = _sized(preset, train_samples)
        decays = _weight_decays(preset, sized)
        trials = len(decays.kept)
        overrides = {"search.range_test.epochs": sized.epochs, "search.range_test.eval_every": sized.eval_every}
        note = "; ".join(n for n in (sized.note, decays.note) if n)
        return PhaseSize(overrides, str(trials), sized.epochs, sized.steps, sized.points, trials * sized.epochs, note)

    def judge(self, preset: Preset) -> Judge:
        # a range test is read as one curve of validation loss against the LR, not ranked at a step
        return Judge("val_loss", "min")

    def plan(self, preset: Preset, context: PhaseContext) -> PhasePlan:
        from tunekit.searchers import CandidateSearcher

        test = range_test_preset(preset)
        candidates = {f"{wd:g}": {"weight_decay": wd} for wd in _weight_decays(preset, _sized_for(preset, context)).kept}
        # no scheduler: a range test runs past its minimum until its curve diverges (the loop's own stop)
        return PhasePlan(test, CandidateSearcher(candidates, {"preset": preset_to_dict(test)}, context.judge))

    def decide(self, preset: Preset, records: list[TrialRecord], context: PhaseContext) -> Decided:
        from tunekit.plots import format_value, range_test_figure

        policy = preset.policy if isinstance(preset.policy, OneCyclePolicy) else OneCyclePolicy(name="one_cycle", max_lr=1.0)
        curves = {float(r.config["weight_decay"]): r.curve("lr", context.judge.metric) for r in records if not r.error}
        errored = sorted((r for r in records if r.error), key=lambda r: -float(r.config["weight_decay"]))
        failed = {f"{float(r.config['weight_decay']):g}": str(r.error) for r in errored}  # as the grid lists them
        if records and not curves:
            raise SearchError(f"phase range_test: every range test failed ({_failures(failed)}){_fix(failed)}")
        chance = next((number(r.last.get("chance_loss")) for r in records if r.rows), None)
        try:
            ties = search_section(preset).range_test.ties
            choice = choose_lr_range(curves, min_lr_factor=policy.div, chance_loss=chance, ties=ties)
        except RangeTestError as exc:
            raise SearchError(f"phase range_test: {exc}; {_advice(records)}") from None
        new_policy: dict[str, Any] = {
            **preset_to_dict(preset.model_copy(update={"policy": policy}))["policy"],
            "max_lr": choice.max_lr,
        }
        skipped = _weight_decays(preset, _sized_for(preset, context)).note
        result = result_of(
            self,
            RangeTestDecision(
                choice.max_lr,
                choice.min_lr,
                choice.weight_decay,
                choice.read_from.valley_lr,
                choice.unranked,
            ),
            overrides={"policy": new_policy, "weight_decay": choice.weight_decay},
            reason=choice.reason + (f"; failed: {_failures(failed)}" if failed else "") + (f"; {skipped}" if skipped else ""),
            evidence={f"{wd:g}": choice.ranges[wd].min_loss for wd in choice.ranges},
            failed=failed,
        )
        named = {wd: f"wd {format_value(wd)}" for wd in curves}
        figure = range_test_figure(
            {named[wd]: curves[wd] for wd in sorted(curves)},
            choice.max_lr,
            choice.min_lr,
            chosen=named[choice.source],
            ranking={named[wd]: choice.ranges[wd].min_loss for wd in choice.ranking if wd in choice.ranges},
            turn_up=choice.read_from.turn_up_lr,
            title="LR range test: max_lr is the last LR before the validation loss turns up\n"
            + (
                "one test per weight decay; the bounds come from the one that reached the lowest loss, or where "
                "several tie within noise, from the median of their max_lrs"
                if len(curves) > 1
                else "one test, at the preset's weight decay (the weight_decay phase searches it)"
            ),
        )
        return Decided(result, figure)


def _sized(preset: Preset, train_samples: int) -> RangeTestSize:
    """One range test's length and evaluations on ``train_samples`` samples."""
    from tunekit.core.sizing import size_range_test

    rt = search_section(preset).range_test
    lengths = rt.model_dump(include={"epochs", "steps", "eval_every", "min_steps", "max_steps", "points", "max_fraction"})
    return size_range_test(train_samples, preset.train.batch_size, final_epochs=final_epochs(preset), **lengths)


def _sized_for(preset: Preset, context: PhaseContext) -> RangeTestSize | None:
    """The size the plan gave the range tests (None: the samples were not counted)."""
    return None if context.train_samples is None else _sized(preset, context.train_samples)


def _weight_decays(preset: Preset, sized: RangeTestSize | None) -> VisibleDecays:
    """The weight decays the range tests run at (``search.range_test.sweep``; "auto" unresolved is the grid),
    less those AdamW's decoupled decay would leave unseen over a test of ``sized`` length (None: all)."""
    from tunekit.core.decisions import range_test_weight_decays, visible_weight_decays

    rt = search_section(preset).range_test
    grid = range_test_weight_decays(rt.sweep, rt.weight_decays, preset.weight_decay)
    if sized is None or not _decoupled(preset):
        return VisibleDecays(grid, {}, "")
    return visible_weight_decays(grid, sized.steps * (rt.min_lr + rt.max_lr) / 2, rt.min_shrink)  # a linear ramp


def _decoupled(preset: Preset) -> bool:
    """Whether the weight decay is decoupled (tunekit's AdamW; a user's own loop brings its own optimizer)."""
    return preset.loop is None and preset.optimizer.name == "adamw"


def _failures(failed: dict[str, str]) -> str:
    return "; ".join(f"wd {wd} ({error})" for wd, error in failed.items())


def _fix(failed: dict[str, str]) -> str:
    from tunekit.core.decisions import failure_advice

    advice = failure_advice(list(failed.values()))
    return f"; {advice}" if advice else "; see the trial logs under the range_test/ folder"


def _advice(records: list[TrialRecord]) -> str:
    """What to change, from how long the range tests ran and how often they were evaluated."""
    from tunekit.core.sizing import range_test_advice

    steps = max((int(number(r.last.get("step"))) for r in records if r.rows and number(r.last.get("step")) > 0), default=0)
    points = max((len(r.rows) for r in records), default=0)
    return range_test_advice(steps, points)

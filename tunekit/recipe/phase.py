"""The Phase protocol: what every step of the search is, and what the driver hands it.

A phase is one Ray Tune experiment and one decision. The driver (:mod:`tunekit.recipe.driver`)
asks each phase of the registry (:mod:`tunekit.recipe.phases`) in order:

* ``applies(preset)`` — does a default search run it (batch size only with its section)?
* ``check(preset)`` — refuse, before anything runs, with a one-line :class:`SearchError`;
* ``size(preset, train_samples)`` — how long its trials run on this data, in optimizer steps and
  evaluation points (:mod:`tunekit.core.sizing`), and what the phase will cost; printed before
  anything runs, and by ``tunekit search --dry-run``;
* ``judge(preset)`` — how its trials compare (:class:`~tunekit.core.judge.Judge`): built once,
  handed to the searcher through :meth:`plan` and to :meth:`decide` through the context;
* ``plan(preset, context)`` — the preset its trials run, the searcher, the scheduler (or None);
* ``decide(preset, records, context)`` — a pure function of the finished trials: the typed
  decision, the preset overrides for later phases, the reason, the evidence and a figure.

Earlier decisions reach later phases typed, as ``context.earlier["range_test"]`` (a
:class:`~tunekit.recipe.phases.range_test.RangeTestDecision`), never as untyped dict keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Literal, NamedTuple, Protocol

from tunekit.core.decisions import Candidate, Choice, TieSide, choose_lr, reusable_labels
from tunekit.core.judge import Judge, number
from tunekit.presets import Preset, SearchConfig, ShortRuns, load_preset, preset_to_dict
from tunekit.recipe.errors import SearchError
from tunekit.recipe.records import TrialRecord, trained_in, training_of
from tunekit.recipe.results import PhaseResult


@dataclass(frozen=True)
class PhaseContext:
    """What a phase is told besides the preset: where the search lives, the judge, earlier decisions."""

    directory: str  # the search folder (snapshots are copied under it)
    judge: Judge = field(default_factory=Judge)
    earlier: Mapping[str, Any] = field(default_factory=dict)  # phase name → its typed decision
    shared_storage: bool = False  # a local-looking storage is a mount every node sees
    # what → the complete trial of an earlier phase (those the phase's ``reuses`` names) that trained it
    trained: Mapping[str, TrialRecord] = field(default_factory=dict)
    train_samples: int | None = None  # what the phases were sized for (None: not counted)


@dataclass
class PhasePlan:
    """One phase's Tune experiment: the preset its trials run (resources, range-test policy), searcher, scheduler."""

    preset: Preset
    searcher: Any  # a tunekit searcher; the driver wraps it in a ConcurrencyLimiter
    scheduler: Any = None  # a LossShapeScheduler, or None when its trials are not rivals
    # candidates an earlier phase already trained exactly so (see :func:`reusable`): judged with the
    # phase's own trials, neither trained again nor counted in its compute
    reused: list[TrialRecord] = field(default_factory=list)


@dataclass(frozen=True)
class PhaseSize:
    """One phase on this data: the ``search.*`` values sizing fills in, and what its trials will cost."""

    overrides: dict[str, Any]  # dotted preset paths → sized values (epochs, eval_every)
    trials: str  # how many trials ("4", or "≤ 9" where a searcher decides)
    epochs: float  # per trial (NaN: sized by wall time)
    steps: int  # optimizer steps per trial (0: sized by wall time)
    points: int  # evaluations per trial
    trial_epochs: float  # the phase's compute, at most
    note: str = ""  # what sizing changed, and why


class Decided(NamedTuple):
    """What ``decide`` returns: the phase's result and its figure (or None)."""

    result: PhaseResult
    figure: Any = None


class Phase(Protocol):
    """One step of the disciplined search. Subclass it: ``applies`` and ``check`` have defaults."""

    name: ClassVar[str]
    decision_type: ClassVar[type]  # a frozen dataclass whose fields are the decided values
    #: What the result's ``evidence`` scores: ``"loss"``, the judge's signed score (lower is better), or
    #: ``"metric"``, the judged metric as reported (better by the judge's mode). The report ranks by it.
    evidence_scale: ClassVar[Literal["loss", "metric"]] = "loss"
    #: Earlier phases whose complete trials this one reads as its own candidates when they trained exactly
    #: what a candidate would (``context.trained``, :func:`reusable`), instead of training them again.
    reuses: ClassVar[tuple[str, ...]] = ()

    def applies(self, preset: Preset) -> bool:
        """Whether a search that names no phases runs this one."""
        return True

    def check(self, preset: Preset) -> None:
        """Raise :class:`SearchError` (one line: the field and the fix) when this phase cannot run on ``preset``."""
        return None

    def size(self, preset: Preset, train_samples: int) -> PhaseSize:
        """This phase's trials on ``train_samples`` training samples: the sized ``search.*`` values and the cost."""
        ...

    def judge(self, preset: Preset) -> Judge:
        """How this phase compares its trials; the searcher and :meth:`decide` share it."""
        ...

    def plan(self, preset: Preset, context: PhaseContext) -> PhasePlan:
        """The Tune experiment of this phase (``preset`` carries every earlier decision)."""
        ...

    def decide(self, preset: Preset, records: list[TrialRecord], context: PhaseContext) -> Decided:
        """The decision, from the finished trials alone (no Ray, no I/O besides the figure)."""
        ...

    def typed(self, result: PhaseResult) -> Any:
        """A recorded result's values as this phase's typed decision."""
        return self.decision_type(**result.values)


# --------------------------------------------------------------------------- helpers the phases share


def search_section(preset: Preset) -> SearchConfig:
    """The preset's ``search`` section; a preset without one cannot be searched."""
    if preset.search is None:
        raise SearchError(
            f"preset {preset.name!r} has no search section; add one (search: {{range_test: {{min_lr: 0.01, max_lr: 3.0}}}}) "
            "— see search_spaces/mnist1d.yaml"
        )
    return preset.search


def final_epochs(preset: Preset) -> int:
    """One final training's epochs: ``search.final.epochs``, else ``train.epochs`` (what the search's runs are sized against)."""
    return search_section(preset).final.epochs or preset.train.epochs


def short_run_size(preset: Preset, train_samples: int, section: ShortRuns, field: str, trials: str, count: float) -> PhaseSize:
    """A short-run phase (learning rate, momentum, weight decay, dropout) sized by :func:`~tunekit.core.sizing.size_short_run`."""
    from tunekit.core.sizing import size_short_run

    lengths = section.model_dump(include={"epochs", "fraction", "min_steps", "min_points", "max_fraction"})
    sized = size_short_run(train_samples, preset.train.batch_size, final_epochs=final_epochs(preset), **lengths)
    return PhaseSize({field: sized.epochs}, trials, sized.epochs, sized.steps, sized.epochs, count * sized.epochs, sized.note)


def trial_base(preset: Preset, *, test: bool = False, **overrides: Any) -> dict[str, Any]:
    """The config every trial of a phase starts from: the preset (with ``overrides`` applied) as plain data.

    Only the final replicates (``test=True``) evaluate the test split: a phase's trials are judged on
    validation, and a test number beside them would only invite picking by it.
    """
    overrides = {**overrides, "train.test_at_end": test}
    return {"preset": preset_to_dict(load_preset(preset_to_dict(preset), overrides))}


def reusable(
    base_config: Mapping[str, Any], candidates: Mapping[str, Mapping[str, Any]], trained: Mapping[str, TrialRecord]
) -> dict[str, TrialRecord]:
    """Label → an earlier phase's complete trial of exactly the training ``{**base_config, **overrides}`` of
    that candidate (:func:`~tunekit.core.decisions.reusable_labels`), with the candidate's overrides as its
    config (so the phase labels it as its own)."""
    trainings = {label: training_of({**base_config, **overrides}) for label, overrides in candidates.items()}
    complete = {training: record for training, record in trained.items() if record.complete}
    return {
        label: replace(complete[trainings[label]], config=dict(candidates[label]), reused_from=complete[trainings[label]].phase)
        for label in reusable_labels(trainings, complete)
    }


def trained_before(phase: Phase, directory: str, done: Iterable[str]) -> dict[str, TrialRecord]:
    """``context.trained`` for ``phase``: the complete trials of the finished phases it ``reuses``, by what they trained."""
    finished = set(done)
    return trained_in(directory, [name for name in phase.reuses if name in finished])


def reuse_trained(searcher: Any, trained: Mapping[str, TrialRecord]) -> list[TrialRecord]:
    """Hand a :class:`~tunekit.searchers.grid.CandidateSearcher` the candidates an earlier phase already trained
    exactly so (:func:`reusable`); the records, for :attr:`PhasePlan.reused`."""
    found = reusable(searcher.base_config, searcher.candidates, trained)
    for label, record in found.items():
        searcher.reuse(label, record.trial_id, record.rows)
    return list(found.values())


def reused_note(reused: Sequence[TrialRecord]) -> str:
    """What a phase's reason adds about the candidates it did not train again ("" when none)."""
    if not reused:
        return ""
    listed = ", ".join(f"{r.label} ({r.reused_from} trial {r.trial_id})" for r in reused)
    return f"; not trained again, the same training as an earlier phase's: {listed}"


def decision_metric(preset: Preset, split: str = "val") -> tuple[str, Literal["min", "max"]]:
    """What a ranking phase judges by on ``split``: the preset's metric with its mode, else the loss (min).

    Decisions read ``val`` (the validation split); only the final replicates report ``test``.
    """
    name = preset.metric_name
    if name is None:
        return f"{split}_loss", "min"
    return f"{split}_{name}", "max" if preset.metric_mode == "max" else "min"


def loss_shape_scheduler() -> Any:
    """The scheduler that stops trials by the shape of their validation loss; peers share a schedule length (Sec. 3)."""
    from tunekit.schedulers import LossShapeScheduler

    return LossShapeScheduler(metric="val_loss", mode="min", group_attr="epochs_total")


def result_of(
    phase: Phase,
    decision: Any,
    overrides: dict[str, Any],
    reason: str,
    evidence: dict[str, float],
    failed: Mapping[str, str] | None = None,
) -> PhaseResult:
    """A :class:`PhaseResult` whose values are the fields of ``decision`` that are set (a field left None
    was not decided: it is not a value, and :meth:`Phase.typed` gives it back as its default); ``failed``:
    candidate → its error."""
    values = {k: v for k, v in asdict(decision).items() if v is not None}
    return PhaseResult(
        phase.name, overrides=overrides, values=values, reason=reason, evidence=evidence, failed=dict(failed or {})
    )


def judged(records: Sequence[TrialRecord], label: Callable[[TrialRecord], str], judge: Judge) -> list[Candidate]:
    """Every record as a judged candidate, labelled by ``label`` — as the phase's searcher judged it; a trial
    that raised is *failed* with its error's line, not diverged."""
    return [judge.candidate(label(r), r.rows, r.error) for r in records]


def preferred_choice(
    records: Sequence[TrialRecord],
    label: Callable[[TrialRecord], str],
    judge: Judge,
    prefer: Literal["lowest", "largest"],
    what: str,
) -> tuple[list[Candidate], Choice]:
    """A phase's candidates (each label a number) and its choice among them: the lowest validation loss
    (``prefer="lowest"``), or the largest value whose loss ties it (``"largest"``: :func:`tie_choice`; where the
    judge scores the median of several epochs, the band reads those epochs' noise)."""
    candidates = judged(records, label, judge)
    if prefer == "largest":
        values = {c.label: float(c.label) for c in candidates}
        window = judge.window if judge.window > 1 else None
        return candidates, tie_choice(records, label, candidates, values, 0.0, what, window=window)[0]
    return candidates, judge.choose(candidates, what)


def tie_choice(
    records: Sequence[TrialRecord],
    label: Callable[[TrialRecord], str],
    candidates: Sequence[Candidate],
    values: Mapping[str, float],
    tolerance: float,
    what: str,
    side: TieSide = "largest",
    window: int | None = None,
    regularising: bool = False,
) -> tuple[Choice, float]:
    """:func:`~tunekit.core.decisions.choose_lr` on a phase's records: the largest of ``values`` (label →
    value) whose validation loss ties the lowest (the smallest, with ``side="smallest"``), read from the
    runs that did not raise — their validation-loss curves (their own noise) and each one's last
    ``val_loss_se`` (the split's); ``window``: the runs are judged by the median of their last ``window``
    epochs, and their noise is read from those (:func:`~tunekit.core.decisions.tie_band`); ``regularising``: a
    larger value wins a tie only where its run shows regularisation, read from each run's last ``train_loss``
    (:func:`~tunekit.core.decisions.unregularised`)."""
    ran = [r for r in records if not r.error]
    curves = [r.curve("epoch", "val_loss")[1] for r in ran]
    errors = {label(r): number(r.last.get("val_loss_se")) for r in ran}
    train = {label(r): number(r.last.get("train_loss")) for r in ran} if regularising else None
    return choose_lr(candidates, values, curves, tolerance, errors, what=what, side=side, window=window, train_losses=train)


def failures_of(candidates: Sequence[Candidate]) -> dict[str, str]:
    """Candidate → the error that ended it, for the candidates that failed."""
    return {c.label: c.failed for c in candidates if c.failed}


def curves_figure_of(
    records: Sequence[TrialRecord],
    label: Callable[[TrialRecord], str],
    title: str,
    *,
    candidates: Sequence[Candidate] = (),
    order: Sequence[str] = (),
    chosen: str | None = None,
    name: str = "",
) -> Any:
    """The validation-loss curves of a phase's trials, each coloured by its diagnosis (the judge's, where
    ``candidates`` give it, else the one the trial reported), ranked in ``order`` (best first), ``chosen`` marked."""
    from tunekit.plots import curves_figure

    by_label = {c.label: c for c in candidates}

    def shape(r: TrialRecord) -> str:
        c = by_label.get(label(r))
        return c.shape.value if c is not None else str(r.last.get("diagnosis") or "")

    curves = {label(r): (*r.curve("epoch", "val_loss"), shape(r)) for r in records}
    ranking = {k: by_label[k].loss for k in order if k in by_label}
    notes = {c.label: f"stopped: {c.stopped_by}" for c in candidates if c.stopped_by}
    return curves_figure(curves, title, chosen=chosen, ranking=ranking, name=name, notes=notes)

"""``tunekit report``: one row per trial of a search, whatever phase it belongs to; and the search's
report page (``report.html`` / ``report.md``) built from its folder alone."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tunekit.recipe.records import TrialRecord, phase_records
from tunekit.recipe.results import FINAL, Compute, PhaseResult, compute_of, final_epochs_of, wall_of_trial
from tunekit.recipe.state import SearchState, read_state
from tunekit.report_page import DecisionView, ReportPage, Setting, chosen_label
from tunekit.searchers.snapshot import is_continuation

#: Trial-config keys shown as columns of their own.
CONFIG_COLUMNS = ("weight_decay", "momentum", "max_lr", "batch_size", "seed", "init")
#: Last-result fields shown as columns, besides every ``val_*`` and ``test_*`` one (the split is in the name).
RESULT_COLUMNS = ("epoch", "val_loss", "train_loss", "lr")


def report_frame(directory: str) -> Any:
    """One row per trial of a search (finished or not): phase, config, diagnosis, stopped_by,
    final metrics and compute — a ``pandas.DataFrame``."""
    import pandas as pd

    from tunekit.runner import storage_path

    directory = storage_path(directory)
    state = read_state(directory)
    rows = [report_row(r) for phase in state.phases for r in phase_records(directory, phase)]
    return pd.DataFrame(rows)


def report_row(record: TrialRecord) -> dict[str, Any]:
    """The report's row of one trial."""
    last = record.last
    row: dict[str, Any] = {"phase": record.phase, "trial_id": record.trial_id, "config": record.label}
    for key in CONFIG_COLUMNS:
        if key in record.config:
            value = record.config[key]
            row[key] = json.dumps(value) if isinstance(value, list) else value
    row["continuation"] = is_continuation(record.config)
    row["status"] = "ERROR" if record.error else ("DONE" if last else "NOT STARTED")
    row["diagnosis"] = last.get("diagnosis") or ""
    row["stopped_by"] = last.get("stopped_by") or ""
    for key in RESULT_COLUMNS:
        row[key] = last.get(key)
    for key in sorted(k for k in last if k.startswith(("val_", "test_")) and k not in row):
        row[key] = last[key]
    row["trial_epochs"] = record.trial_epochs
    row["train_time_s"] = last.get("train_time_s")
    row["wall_s"] = wall_of_trial(record.rows)
    row["results"] = len(record.rows)
    row["error"] = record.error or ""
    return row


def with_replicate_walls(done: Mapping[str, PhaseResult], directory: str) -> dict[str, PhaseResult]:
    """The finished phases; a final phase recorded before each trial's wall time was kept gets it
    from its Ray records when the folder still has them (else it stays unknown)."""
    phases = dict(done)
    final = phases.get(FINAL)
    if final is None or final.trial_wall_s:
        return phases
    try:
        walls = [wall_of_trial(r.rows) for r in phase_records(directory, FINAL)]
    except Exception:  # a moved or partial folder: the wall time stays unknown
        return phases
    if walls:
        phases[FINAL] = replace(final, trial_wall_s=walls)
    return phases


def report_compute(directory: str) -> Compute:
    """The compute of a search folder (finished or not), from its ``search.json``: the search's and
    the final replicates' trial-epochs and wall time (see :func:`with_replicate_walls`)."""
    from tunekit.presets import load_preset
    from tunekit.runner import storage_path

    state = read_state(storage_path(directory))
    preset = load_preset(state.result.preset) if state.result is not None else state.preset_now()
    return compute_of(with_replicate_walls(state.done, state.directory), final_epochs_of(preset))


def search_page(state: SearchState) -> ReportPage:
    """A search's report page from its folder alone (no MLflow): the chosen configuration (what each
    phase set), each finished phase's decision with its ranked evidence and its figure, the final
    result and the compute. The figures are drawn again by each phase's ``decide`` on the trials the
    folder keeps — the same pure function that drew them during the search."""
    from tunekit.presets import load_preset, preset_to_dict
    from tunekit.recipe.phases.final import describe, plural

    overrides: dict[str, Any] = {}
    earlier: dict[str, Any] = {}
    views: list[DecisionView] = []
    before = _leaves(preset_to_dict(load_preset(state.preset)))
    settings: dict[str, Setting] = {}
    for name in state.phases:
        result = state.done.get(name)
        if result is None:
            continue
        preset = load_preset(state.preset, overrides)  # as the phase saw it: every earlier decision applied
        image, note, lower = _figure_of(name, preset, state, earlier)
        views.append(
            DecisionView(
                name,
                result.values,
                result.reason,
                result.evidence,
                lower_is_better=lower,
                chosen=chosen_label(result.values, result.evidence),
                image=image,
                plot=result.plot,
                note=note,
                failed=result.failed,
            )
        )
        overrides.update(result.overrides)
        after = _leaves(preset_to_dict(load_preset(state.preset, overrides)))
        settings.update({p: Setting(p, v, name) for p, v in after.items() if before.get(p) != v or _names(result.overrides, p)})
        before = after
        earlier[name] = _typed(name, result)
    end = state.result
    if end is not None:  # the final replicates' own length (search.final.epochs)
        after = _leaves(end.preset)
        settings.update({p: Setting(p, v, FINAL) for p, v in after.items() if before.get(p) != v})
        before = after
    settings.update({p: Setting(p, before[p]) for p in BASICS if p in before and p not in settings})
    final = load_preset(end.preset) if end is not None else load_preset(state.preset, overrides)
    outcome, metrics = "", {}
    if end is not None and end.accuracies:
        outcome = f"{describe(end.metric, end.accuracy_mean, end.accuracy_std)} over {plural(len(end.accuracies), 'replicate')} on the test split"
        metrics = {end.metric: end.accuracy_mean, f"{end.metric}_std": end.accuracy_std}
    compute = compute_of(with_replicate_walls(state.done, state.directory), final_epochs_of(final))
    return ReportPage(
        state.name,
        str(state.preset.get("name", "")),
        list(state.phases),
        settings=sorted(settings.values(), key=lambda x: (not x.decided_by, x.path)),
        decisions=views,
        result=outcome,
        metrics=metrics,
        compute_summary=compute.summary(),
        compute=compute.metrics(),
        decided_on="validation" if state.decided_on == "val" else state.decided_on,
    )


#: Settings the page shows beside the decided ones, so the configuration reads whole.
BASICS = ("optimizer.name", "policy.name", "policy.max_lr", "train.epochs", "train.batch_size", "weight_decay")


def _leaves(preset: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A preset's settings as ``path → value`` (``policy.max_lr → 0.8``), its search section left out."""
    out: dict[str, Any] = {}
    for key, value in preset.items():
        path = f"{prefix}{key}"
        if path in ("search", "name", "description"):
            continue
        if isinstance(value, Mapping) and value:
            out.update(_leaves(value, f"{path}."))
        else:
            out[path] = list(value) if isinstance(value, tuple) else value
    return out


def _names(overrides: Mapping[str, Any], path: str) -> bool:
    """Whether an override sets ``path`` by name (``weight_decay``, or ``momentum`` for ``policy.momentum``),
    so a phase that confirmed a value is shown as deciding it; a whole section (``policy``) names none."""
    return any(key == path or path.endswith(f".{key}") for key, value in overrides.items() if not isinstance(value, Mapping))


def _typed(name: str, result: PhaseResult) -> Any:
    from tunekit.recipe.phases import phase_named

    try:
        return phase_named(name).typed(result)
    except Exception:  # an unknown phase or an older record: later figures do without it
        return None


def _figure_of(name: str, preset: Any, state: SearchState, earlier: Mapping[str, Any]) -> tuple[bytes | None, str, bool]:
    """The phase's figure as PNG bytes (None, with why, when it cannot be drawn again), and whether
    its evidence ranks lower-first."""
    import io

    from tunekit.plots import close
    from tunekit.recipe.phase import PhaseContext, trained_before
    from tunekit.recipe.phases import phase_named

    try:
        phase = phase_named(name)
    except StopIteration:
        return None, f"no plot: {name} is not a phase this tunekit knows", True
    judge = phase.judge(preset)
    lower = phase.evidence_scale == "loss" or judge.mode == "min"
    try:
        trained = trained_before(phase, state.directory, state.done)
        context = PhaseContext(state.directory, judge, dict(earlier), state.shared_storage, trained, state.train_samples)
        reused = phase.plan(preset, context).reused if trained else []  # as the driver judged them
        figure = phase.decide(preset, phase_records(state.directory, name) + reused, context).figure
    except Exception as exc:  # a moved or partial folder: the decision stands, its plot is missing
        why = f"{type(exc).__name__}: {exc}"
        return None, f"no plot: its trials could not be read again ({why[:200]}{'…' if len(why) > 200 else ''})", lower
    if figure is None:
        return None, "", lower
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    close(figure)
    return buffer.getvalue(), "", lower

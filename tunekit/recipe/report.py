"""``tunekit report``: one row per trial of a search, whatever phase it belongs to."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tunekit.recipe.records import TrialRecord, phase_records
from tunekit.recipe.results import FINAL, Compute, PhaseResult, compute_of, final_epochs_of, wall_of_trial
from tunekit.recipe.state import read_state
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

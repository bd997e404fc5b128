"""A phase's trials as Ray recorded them, as plain data the phases decide from."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunekit.core.judge import number
from tunekit.core.storage import join, located, name_of
from tunekit.presets import preset_to_dict


@dataclass
class TrialRecord:
    """One trial of a phase as Ray recorded it: its config overrides, every result, its end."""

    phase: str
    trial_id: str
    config: dict[str, Any]  # the trial config without the preset
    rows: list[dict[str, Any]]
    error: str | None
    path: str
    checkpoint: str | None
    training: str = ""  # what it trained, as :func:`training_of` its whole config ("" when unknown)
    reused_from: str = ""  # the earlier phase that trained it, when a later phase reads it as its own

    @property
    def complete(self) -> bool:
        """Trained every epoch of its schedule: no error, not stopped (by a scheduler or a rule), no epoch missing."""
        last = self.last
        return not self.error and not last.get("stopped_by") and number(last.get("epoch")) >= number(last.get("epochs_total"))

    @property
    def last(self) -> dict[str, Any]:
        return self.rows[-1] if self.rows else {}

    @property
    def trial_epochs(self) -> float:
        return max((float(r.get("trial_epochs") or 0.0) for r in self.rows), default=0.0)

    def curve(self, x: str = "training_iteration", y: str = "val_loss") -> tuple[list[float], list[float]]:
        xs = [float(r[x]) for r in self.rows if x in r]
        ys = [number(r.get(y)) for r in self.rows if x in r]
        return xs, ys

    @property
    def label(self) -> str:
        return config_label(self.config) or self.trial_id


def training_of(config: Mapping[str, Any]) -> str:
    """What a trial config trains, as a short digest: equal for two configs that train the same model the same
    way (the same preset once every override is applied, the same snapshot to continue from); the preset's
    ``search`` section, name and description, which no training reads, are left out. "" for a config
    without a (readable) preset."""
    from tunekit.searchers.snapshot import RESTORE_KEY
    from tunekit.trainable import preset_from_config

    try:
        trained = preset_to_dict(preset_from_config(config))
    except ValueError:  # no preset, or one this release cannot read: never the same as another
        return ""
    for key in ("search", "name", "description"):
        trained.pop(key, None)
    trained[RESTORE_KEY] = config.get(RESTORE_KEY)
    return hashlib.sha256(json.dumps(trained, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_label(config: Mapping[str, Any]) -> str:
    """What a trial tries, in a few words: its overrides, without the preset, snapshot path or train.* plumbing."""
    from tunekit.searchers.snapshot import RESTORE_KEY

    shown = {k: v for k, v in config.items() if k not in ("preset", RESTORE_KEY) and not k.startswith("train.")}
    return ", ".join(f"{k}={_short(v)}" for k, v in shown.items())


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


def last_attempt(rows: list[dict[str, Any]], key: str = "training_iteration") -> list[dict[str, Any]]:
    """A trial's results as its last attempt saw them.

    Ray appends every attempt of a retried trial to the same results file. An attempt restarted
    from scratch counts ``key`` from 1 again; one restored from a checkpoint goes on from the
    checkpoint's count. Either way, the curve is the last attempt's rows, preceded by the earlier
    rows it did not redo (those before its first ``key``) — one result per step, in order."""
    kept: list[dict[str, Any]] = []
    for row in rows:
        step = number(row.get(key))
        while kept and math.isfinite(step) and number(kept[-1].get(key)) >= step:
            kept.pop()  # a later attempt reported this step again: its row replaces the earlier ones
        kept.append(row)
    return kept


def error_line(text: str) -> str:
    """The line of a traceback that names the error (``RuntimeError: …``): its last non-empty line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "an error without a message"


def trial_error(trial: Any) -> str:
    """A Ray ``Trial``'s latest error as one line, read from its error file; "" when it left none."""
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        return ""
    latest = text.rsplit("Failure # ", 1)[-1]  # Ray appends one block per failure: "Failure # N (occurred at …)"
    return error_line(latest.split("\n", 1)[1]) if "\n" in latest.strip() else ""


def records_of(phase: str, grid: Any, anchor: str = "") -> list[TrialRecord]:
    """The trials of a ``ResultGrid`` (or of ``ResultGrid(ExperimentAnalysis(path))``) as records.

    ``anchor``: a location on the storage the experiment lives on (its folder); the trial and checkpoint
    paths Ray hands back (without a scheme on object storage) become locations there.
    """
    out = []
    for result in grid:
        frame = result.metrics_dataframe
        rows = last_attempt(frame.to_dict("records")) if frame is not None else []
        config = {k: v for k, v in (result.config or {}).items() if k != "preset"}
        training = training_of(result.config or {})
        trial_id = str((result.metrics or {}).get("trial_id") or name_of(result.path))
        error = error_line(str(result.error)) if result.error else None
        checkpoint = located(anchor, result.checkpoint.path) if result.checkpoint else None
        out.append(TrialRecord(phase, trial_id, config, rows, error, located(anchor, result.path), checkpoint, training))
    return sorted(out, key=lambda r: r.path)


def phase_records(directory: str, phase: str) -> list[TrialRecord]:
    """The trials of one phase of a search folder (finished or not); [] before the phase started."""
    from ray import tune
    from ray.tune import ExperimentAnalysis, ResultGrid

    from tunekit.runner import storage_path

    path = join(storage_path(directory), phase)
    if not tune.Tuner.can_restore(path):
        return []
    return records_of(phase, ResultGrid(ExperimentAnalysis(path)), path)


def trained_in(directory: str, phases: Iterable[str]) -> dict[str, TrialRecord]:
    """What each complete trial of ``phases`` (those already run) trained → the trial: a phase's
    ``context.trained`` (:func:`tunekit.recipe.phase.reusable`)."""
    return {
        record.training: record
        for name in phases
        for record in phase_records(directory, name)
        if record.training and record.complete
    }


def trial_folder(trial_id: str) -> str:
    """A trial's folder in its phase's: ``trial_<id>`` (Ray's default name spells out the whole nested preset)."""
    return f"trial_{trial_id}"


def newest_saved(names: Iterable[str], prefix: str, suffix: str) -> str | None:
    """The newest of Tune's saved files ``<prefix><session time><suffix>`` among ``names`` (Tune reads the same one)."""
    return max((n for n in names if n.startswith(prefix) and n.endswith(suffix)), default=None)


#: What a phase's saved state that could not be read is renamed with (no pattern Tune reads matches it).
CUT = "cut-"


def catch_up_saved_searcher(path: str, searcher: Any) -> list[str]:
    """Bring the searcher state saved in the phase folder ``path`` in step with the trials Tune saved there, before
    ``Tuner.restore`` reads them (:mod:`tunekit.core.resume`); returns one line per trial it changed, [] when
    the two agreed.

    ``searcher`` is a fresh one of the phase's searcher class (the phase's plan builds it); it is given the saved
    state, takes the end of every trial Tune ended from that trial's ``result.json``, forgets every trial Tune never
    recorded, adopts every trial Tune recorded that it had not suggested yet (where it is what the searcher suggests
    next; Tune's record of any other is dropped, and its value is suggested again), and its state is written back in
    place of the saved one. An experiment state that does not parse (on object storage, copied while Tune rewrote
    it) is renamed aside with the rest of the saved state: there is nothing to restore, and the phase starts again.
    """
    import pickle

    from tunekit import storage
    from tunekit.core.resume import ENDED, EXPERIMENT_STATE, SEARCHER_STATE, TUNE_STATE_FILES, out_of_step

    names = storage.names_in(path)
    experiment, saved = newest_saved(names, *EXPERIMENT_STATE), newest_saved(names, *SEARCHER_STATE)
    if experiment is None or saved is None:
        return []
    state = storage.read_bytes(join(path, saved))
    if not state:
        return []
    try:
        document = json.loads(storage.read_text(join(path, experiment)) or "{}")
        trials = [json.loads(t[0]) for t in document.get("trial_data", [])]
    except ValueError:  # on object storage: copied while Tune rewrote it (tunekit.whole_files keeps it whole on a disk)
        # Tune would restore the searcher and callbacks but no trial, and decide from what runs after; instead the
        # phase starts again, its trials run again, and the state that could not be read is kept beside
        for name in names:
            if name.startswith(TUNE_STATE_FILES):
                storage.move(join(path, name), join(path, f"{CUT}{name}"))
        return [
            f"{experiment} was saved cut short (Tune was rewriting it): the phase runs again from its start; its saved state is kept as {CUT}*"
        ]
    statuses = {str(t["trial_id"]): str(t["status"]) for t in trials}  # in Tune's order
    configs = {str(t["trial_id"]): t.get("config") or {} for t in trials}
    searcher.set_state(pickle.loads(state))
    catch_up, forget, adopt = out_of_step(searcher.awaited(), searcher.suggested(), statuses, searcher.known())

    def read_end(trial_id: str) -> int:
        text = storage.read_text(join(path, trial_folder(trial_id), "result.json")) or ""
        rows = last_attempt([json.loads(line) for line in text.splitlines() if line.strip()])
        searcher.catch_up(trial_id, rows, error=statuses[trial_id] == "ERROR")
        return len(rows)

    notes: list[str] = []
    for trial_id in catch_up:
        notes.append(
            f"trial {trial_id} had ended ({read_end(trial_id)} results) after the searcher's state was last saved: read its end"
        )
    for trial_id in forget:
        searcher.forget(trial_id)
        notes.append(f"trial {trial_id} was suggested but never recorded by Tune: its value is suggested again")
    dropped: set[str] = set()
    for trial_id in adopt:
        if not dropped and searcher.adopt(trial_id, configs[trial_id]):
            ended = f", and its end read ({read_end(trial_id)} results)" if statuses[trial_id] in ENDED else ""
            notes.append(
                f"trial {trial_id} was recorded by Tune after the searcher's state was last saved: the searcher takes it as its suggestion{ended}"
            )
        else:  # not what the searcher suggests next (nor is any trial after it): Tune would run it for no one
            dropped.add(trial_id)
            notes.append(
                f"trial {trial_id} was recorded by Tune after the searcher's state was last saved, and is not what the searcher "
                "suggests next: Tune's record of it is dropped (its folder is left as it is)"
            )
    if dropped:
        document["trial_data"] = [
            raw for raw, t in zip(document["trial_data"], trials, strict=True) if str(t["trial_id"]) not in dropped
        ]
        storage.write_text(join(path, experiment), json.dumps(document))
    if notes:
        storage.write_bytes(join(path, saved), pickle.dumps(searcher.get_state()))  # as PickledState.save writes it
    return notes

"""The disciplined search (Smith 2018, Sec. 5) as a sequence of Ray Tune experiments.

``tunekit.search(preset)`` runs the phases in order, each one a Tune experiment under one
search folder (``<storage>/<name>/<phase>/``), each decision feeding the next:

1. ``range_test`` — one LR range test per candidate weight decay (Fig. 10) → ``max_lr``,
   ``min_lr`` and a first ranking of the weight decays;
2. ``momentum`` — short 1cycle runs at maximum momentum 0.99 / 0.97 / 0.95 / 0.9 (→ 0.85);
3. ``weight_decay`` — exponent bisection, by full short runs or snapshot-restart continuations;
4. ``batch_size`` — candidates at constant wall time (Sec. 4.2), when the preset asks for it;
5. ``final`` — 1cycle with the chosen values, replicated (seeds, msra/xavier, jittered batch).

The loss-shape scheduler watches the momentum, weight-decay and batch-size trials. Every
decision is a pure function of its phase's trial results (:mod:`tunekit.core.decisions`), so
a search resumed after a crash decides exactly as one that ran straight through.

``search.json`` in the search folder records the request and, after each phase, its decision,
evidence and compute. ``tunekit resume DIR`` (:func:`resume`) skips finished phases and
resumes the unfinished one with ``Tuner.restore`` (its searcher's state included). Ray saves
each phase's experiment state after every event (``TUNE_GLOBAL_CHECKPOINT_S=0``), so a killed
driver loses no finished trial.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ray.tune.callback import Callback

from tunekit.core.decisions import (
    Candidate,
    choose_candidate,
    choose_lr_range,
    mean_std,
    replicate_overrides,
    score_curve,
)
from tunekit.core.lr_range import RangeTestError
from tunekit.core.storage import is_uri
from tunekit.presets import OneCyclePolicy, Preset, load_preset, preset_to_dict, range_test_preset

PHASES = ("range_test", "momentum", "weight_decay", "batch_size", "final")
STATE_FILE = "search.json"
STATE_VERSION = 1


class SearchError(ValueError):
    """A search cannot start or resume as asked; the message names the option and the fix."""


class SearchInterrupted(RuntimeError):
    """The search was stopped (Ctrl-C) mid-phase; ``tunekit resume <directory>`` goes on."""

    def __init__(self, directory: str, phase: str) -> None:
        super().__init__(f"interrupted during phase {phase!r}; resume with: tunekit resume {directory}")
        self.directory = directory
        self.phase = phase


# --------------------------------------------------------------------------- results


@dataclass
class PhaseResult:
    """One finished phase: what it decided (as preset overrides), why, and what it cost."""

    phase: str
    overrides: dict[str, Any]  # applied to the preset for every later phase
    values: dict[str, float]  # the decided numbers, for tables and MLflow
    reason: str
    evidence: dict[str, float] = field(default_factory=dict)  # candidate → its score
    trials: int = 0
    trial_epochs: float = 0.0
    wall_s: float = 0.0
    plot: str | None = None  # MLflow artifact path of its figure


@dataclass
class SearchResult:
    """A finished search: the chosen preset, each phase's decision, the final accuracy ± std."""

    name: str
    directory: str
    preset: Preset
    phases: dict[str, PhaseResult]
    accuracy_mean: float = math.nan
    accuracy_std: float = math.nan
    accuracies: list[float] = field(default_factory=list)
    best_checkpoint: str | None = None
    run_id: str | None = None
    tracking_uri: str | None = None

    @property
    def trial_epochs(self) -> float:
        """Compute spent by every phase, in trial-epochs."""
        return sum(p.trial_epochs for p in self.phases.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "directory": self.directory,
            "accuracy_mean": self.accuracy_mean,
            "accuracy_std": self.accuracy_std,
            "accuracies": self.accuracies,
            "trial_epochs": self.trial_epochs,
            "best_checkpoint": self.best_checkpoint,
            "mlflow_run_id": self.run_id,
            "tracking_uri": self.tracking_uri,
            "phases": {k: asdict(v) for k, v in self.phases.items()},
            "preset": preset_to_dict(self.preset),
        }

    def table(self) -> str:
        """The summary a terminal shows at the end: chosen values, evidence and compute per phase."""
        rows = [("phase", "decision", "trials", "trial-epochs", "wall")]
        for p in self.phases.values():
            decided = ", ".join(f"{k} {_fmt(v)}" for k, v in p.values.items())
            rows.append((p.phase, decided, str(p.trials), f"{p.trial_epochs:.1f}", f"{p.wall_s:.0f} s"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append("")
        lines += [f"{p.phase}: {p.reason}" for p in self.phases.values()]
        if math.isfinite(self.accuracy_mean):
            lines.append("")
            lines.append(
                f"final test accuracy {100 * self.accuracy_mean:.2f} % ± {100 * self.accuracy_std:.2f} "
                f"({len(self.accuracies)} replicates); search compute {self.trial_epochs:.0f} trial-epochs"
            )
        return "\n".join(lines)


def _fmt(value: float) -> str:
    if isinstance(value, float) and value and (abs(value) < 1e-2 or abs(value) >= 1e4):
        return f"{value:.2g}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


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

    @property
    def last(self) -> dict[str, Any]:
        return self.rows[-1] if self.rows else {}

    @property
    def trial_epochs(self) -> float:
        return max((float(r.get("trial_epochs") or 0.0) for r in self.rows), default=0.0)

    def curve(self, x: str = "training_iteration", y: str = "test_loss") -> tuple[list[float], list[float]]:
        xs = [float(r[x]) for r in self.rows if x in r]
        ys = [_num(r.get(y)) for r in self.rows if x in r]
        return xs, ys

    @property
    def label(self) -> str:
        return config_label(self.config) or self.trial_id


def config_label(config: Mapping[str, Any]) -> str:
    """What a trial tries, in a few words: its overrides, without the preset, snapshot path or train.* plumbing."""
    shown = {k: v for k, v in config.items() if k not in ("preset", "restore_from") and not k.startswith("train.")}
    return ", ".join(f"{k}={_short(v)}" for k, v in shown.items())


def _num(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


def records_of(phase: str, grid: Any) -> list[TrialRecord]:
    """The trials of a ``ResultGrid`` (or of ``ResultGrid(ExperimentAnalysis(path))``) as records."""
    out = []
    for result in grid:
        frame = result.metrics_dataframe
        rows = frame.to_dict("records") if frame is not None else []
        config = {k: v for k, v in (result.config or {}).items() if k != "preset"}
        trial_id = str((result.metrics or {}).get("trial_id") or Path(result.path).name)
        error = str(result.error).strip().splitlines()[-1] if result.error else None
        checkpoint = result.checkpoint.path if result.checkpoint else None
        out.append(TrialRecord(phase, trial_id, config, rows, error, result.path, checkpoint))
    return sorted(out, key=lambda r: r.path)


class _BenignSyncRace(logging.Filter):
    """Drops Ray's "Saving experiment state ... failed" when all that failed is copying a temp file
    the next save already replaced (saving after every event makes a save overlap the previous
    copy; the next copy carries the state, and the final save waits for its copy)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, FileNotFoundError) and "-tmp-" in str(error))


def _quiet_benign_sync_races() -> None:
    log = logging.getLogger("ray.tune.execution.experiment_state")
    if not any(isinstance(f, _BenignSyncRace) for f in log.filters):
        log.addFilter(_BenignSyncRace())


def trial_dirname(trial: Any) -> str:
    """``trial_<id>``: short folder names (Ray's default spells out the whole nested preset)."""
    return f"trial_{trial.trial_id}"


# --------------------------------------------------------------------------- progress


class Progress(Callback):
    """Tune callback printing one line per trial start and end: phase, trials running/done, best so far."""

    def __init__(self, phase: str, index: int, total: int, enabled: bool = True) -> None:
        self.phase, self.index, self.total, self.enabled = phase, index, total, enabled
        self.best: tuple[float, str] | None = None

    def _echo(self, text: str) -> None:
        if self.enabled:
            print(f"[{self.index}/{self.total} {self.phase}] {text}", file=sys.stdout, flush=True)

    @staticmethod
    def _label(trial: Any) -> str:
        text = config_label(trial.config) or trial.trial_id
        return text + (" (from snapshot)" if "restore_from" in trial.config else "")

    @staticmethod
    def _counts(trials: list[Any], trial: Any, now: str) -> str:
        # Tune calls back before it updates this trial's status: count it as it is about to be
        status = {t.trial_id: t.status for t in trials} | {trial.trial_id: now}
        running = sum(1 for s in status.values() if s == "RUNNING")
        done = sum(1 for s in status.values() if s in ("TERMINATED", "ERROR"))
        return f"{running} running, {done} done"

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._echo(f"started {self._label(trial)} — {self._counts(trials, trial, 'RUNNING')}")

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        r = trial.last_result or {}
        loss, acc = _num(r.get("test_loss")), _num(r.get("test_acc"))
        shape = r.get("diagnosis") or ""
        stopped = f", stopped: {r['stopped_by']}" if r.get("stopped_by") else ""
        label = self._label(trial)
        if self.phase != "range_test" and math.isfinite(loss) and (self.best is None or loss < self.best[0]):
            self.best = (loss, label)
        best = f"; best so far {self.best[1]} ({self.best[0]:.4f})" if self.best else ""
        self._echo(
            f"done {label}: test_loss {loss:.4f}, test_acc {acc:.4f} at epoch {r.get('epoch')}"
            f"{' (' + shape + stopped + ')' if shape or stopped else ''} — {self._counts(trials, trial, 'TERMINATED')}{best}"
        )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._echo(f"FAILED {self._label(trial)} — {self._counts(trials, trial, 'ERROR')} (logs: {trial.path})")


# --------------------------------------------------------------------------- state file


def _join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}" if is_uri(directory) else str(Path(directory) / name)


def _write_text(path: str, text: str) -> None:
    if is_uri(path):
        import pyarrow.fs

        fs, inner = pyarrow.fs.FileSystem.from_uri(path)
        with fs.open_output_stream(inner) as fh:
            fh.write(text.encode())
        return
    tmp = Path(f"{path}.tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(text)
    os.replace(tmp, path)  # atomic: a killed driver leaves the old file or the new one


def _read_text(path: str) -> str | None:
    if is_uri(path):
        import pyarrow.fs

        fs, inner = pyarrow.fs.FileSystem.from_uri(path)
        if fs.get_file_info(inner).type == pyarrow.fs.FileType.NotFound:
            return None
        with fs.open_input_stream(inner) as fh:
            return bytes(fh.read()).decode()
    p = Path(path)
    return p.read_text() if p.is_file() else None


def read_state(directory: str) -> dict[str, Any]:
    """The ``search.json`` of a search folder.

    Raises:
        SearchError: the folder holds no search.
    """
    text = _read_text(_join(directory, STATE_FILE))
    if text is None:
        raise SearchError(
            f"{directory}: no {STATE_FILE} here; give the search folder `tunekit search` printed (<storage>/<name>)"
        )
    state: dict[str, Any] = json.loads(text)
    if state.get("version") != STATE_VERSION:
        raise SearchError(f"{directory}: {STATE_FILE} version {state.get('version')} is not {STATE_VERSION}")
    return state


# --------------------------------------------------------------------------- entry points


def search(
    preset: str | Path | Mapping[str, Any] | Preset,
    *,
    name: str | None = None,
    storage: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    phases: Iterable[str] | None = None,
    address: str | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    track: bool = True,
    shared_storage: bool = False,
    max_failures: int = 2,
    progress: bool = True,
) -> SearchResult:
    """Run the disciplined search on ``preset`` and return the chosen configuration and its evidence.

    Args:
        preset: a preset (object, mapping, YAML path or bundled name) with a ``search`` section.
        name: the search's name (its folder under ``storage``); default ``<preset>-<timestamp>``.
        storage: where trials, checkpoints and snapshots go (folder or URI; shared on a cluster).
        overrides: preset overrides (dotted paths or aliases), as ``--set`` gives them.
        phases: a subset of :data:`PHASES` (kept in the recipe's order); default all that apply
            (``batch_size`` only when the preset has a ``search.batch_size`` section).
        address: a Ray cluster to use (``auto``, ``ray://host:port``) instead of a local Ray.
        tracking_uri, experiment, track: MLflow (default: sqlite next to the runs).
        shared_storage: the (local-looking) storage path is a mount every node sees.
        max_failures: retries of a crashed trial from its last checkpoint.
        progress: print one line per trial and the summary table.

    Raises:
        SearchError: the request is invalid (unknown phase, no ``search`` section, folder taken).
        PresetError: the preset or an override is invalid.
        SearchInterrupted: Ctrl-C; :func:`resume` continues.
    """
    from tunekit.runner import storage_path

    loaded = preset if isinstance(preset, Preset) else load_preset(preset)
    if overrides:
        loaded = load_preset(preset_to_dict(loaded), overrides)
    chosen = plan_phases(loaded, phases)
    name = name or f"{loaded.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    root = storage_path(storage)
    directory = _join(root, name)
    if _read_text(_join(directory, STATE_FILE)) is not None:
        raise SearchError(
            f"--name {name}: a search already lives in {directory}; `tunekit resume {directory}` or pick another name"
        )
    state: dict[str, Any] = {
        "version": STATE_VERSION,
        "name": name,
        "directory": directory,
        "storage": root,
        "preset": preset_to_dict(loaded),
        "phases": chosen,
        "shared_storage": shared_storage,
        "max_failures": max_failures,
        "tracking": None,
        "done": {},
        "result": None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if track:
        from tunekit.runner import _local_root
        from tunekit.tracking import default_tracking_uri

        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(_local_root(root))
        state["tracking"] = {"uri": uri, "experiment": experiment or loaded.name, "parent_run_id": None}
    return _Search(state, address=address, progress=progress).run()


def resume(directory: str, *, address: str | None = None, progress: bool = True) -> SearchResult:
    """Continue a search after Ctrl-C or a killed driver: finished phases are not rerun, the
    unfinished one resumes through ``Tuner.restore``; a finished search just returns its result."""
    from tunekit.runner import storage_path

    state = read_state(storage_path(directory))
    return _Search(state, address=address, progress=progress).run()


def plan_phases(preset: Preset, phases: Iterable[str] | None) -> list[str]:
    """The phases a search of ``preset`` runs, in the recipe's order; bad requests raise :class:`SearchError`."""
    if preset.search is None:
        raise SearchError(
            f"preset {preset.name!r} has no search section; add one (search: {{range_test: {{min_lr: 0.01, max_lr: 3.0}}}}) "
            "— see search_spaces/mnist1d.yaml"
        )
    if phases is None:
        wanted = [p for p in PHASES if p != "batch_size" or preset.search.batch_size is not None]
    else:
        wanted = [p.strip() for p in phases if p.strip()]
        unknown = [p for p in wanted if p not in PHASES]
        if unknown:
            raise SearchError(f"--phases: unknown phase {', '.join(unknown)}; choose from {', '.join(PHASES)}")
        if not wanted:
            raise SearchError(f"--phases: empty; choose from {', '.join(PHASES)}")
    if "batch_size" in wanted and preset.search.batch_size is None:
        raise SearchError(
            "--phases batch_size: the preset has no search.batch_size section; add "
            "{candidates: [64, 128, 256], time_budget_s: 60} or leave the phase out"
        )
    ws = preset.search.weight_decay
    if "weight_decay" in wanted and ws.strategy == "snapshot" and preset.train.epochs <= ws.epochs:
        raise SearchError(
            f"search.weight_decay: snapshot continuations of {ws.epochs} epochs need a longer schedule than "
            f"train.epochs = {preset.train.epochs}; raise train.epochs or lower search.weight_decay.epochs"
        )
    if "range_test" not in wanted and not isinstance(preset.policy, OneCyclePolicy):
        raise SearchError(
            f"--phases: without range_test the preset's own policy must be one_cycle (it is {preset.policy.name}); "
            "include range_test or give the preset a one_cycle policy"
        )
    return [p for p in PHASES if p in wanted]


# --------------------------------------------------------------------------- the search


class _Search:
    """Drives the phases of one search; everything it knows lives in ``state`` (search.json)."""

    def __init__(self, state: dict[str, Any], address: str | None, progress: bool) -> None:
        self.state = state
        self.directory: str = state["directory"]
        self.address = address
        self.progress = progress
        self.log: Any = None

    # -- bookkeeping

    def _save(self) -> None:
        _write_text(_join(self.directory, STATE_FILE), json.dumps(self.state, indent=1, default=float))

    def _echo(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stdout, flush=True)

    def done(self) -> dict[str, PhaseResult]:
        return {k: PhaseResult(**v) for k, v in self.state["done"].items()}

    def preset(self) -> Preset:
        """The preset with every finished phase's decision applied."""
        overrides: dict[str, Any] = {}
        for result in self.done().values():
            overrides.update(result.overrides)
        return load_preset(self.state["preset"], overrides)

    def _start_tracking(self) -> None:
        tracking = self.state.get("tracking")
        if not tracking:
            return
        from tunekit.runner import _local_root
        from tunekit.tracking.search_log import Decision, SearchLog

        folder = Path(_local_root(self.state["storage"])) / self.state["name"]
        self.log = SearchLog(
            self.state["name"],
            load_preset(self.state["preset"]),
            tracking["uri"],
            tracking["experiment"],
            folder,
            phases=list(self.state["phases"]),
            parent_run_id=tracking.get("parent_run_id") or "",
        )
        if not tracking.get("parent_run_id"):
            tracking["parent_run_id"] = self.log.parent_run_id
            self._save()
        self.log.decisions = [Decision(p.phase, p.values, p.reason, p.plot) for p in self.done().values()]

    # -- the run

    def run(self) -> SearchResult:
        from tunekit.runner import ensure_ray

        if self.state.get("result"):
            return self._result()
        ensure_ray(self.address)
        self._check_storage()  # before anything is written: a refused search leaves nothing behind
        self._start_tracking()
        self._save()
        self._echo(f"search {self.state['name']}: phases {', '.join(self.state['phases'])} → {self.directory}")
        for index, phase in enumerate(self.state["phases"], start=1):
            if phase in self.state["done"]:
                self._echo(f"[{index}/{len(self.state['phases'])} {phase}] already done: {self.state['done'][phase]['reason']}")
                continue
            started = time.perf_counter()
            records = self._fit_phase(phase, index)
            result = self._decide(phase, records)
            result.trials = len(records)
            result.trial_epochs = sum(r.trial_epochs for r in records)
            result.wall_s = time.perf_counter() - started
            self.state["done"][phase] = asdict(result)
            self._save()
            self._echo(f"[{index}/{len(self.state['phases'])} {phase}] decided: {result.reason}")
        return self._finish()

    def _check_storage(self) -> None:
        """On a multi-node cluster, checkpoints and snapshots must be where every node can read them."""
        from tunekit.core.storage import check_shared_storage
        from tunekit.runner import alive_nodes

        try:
            check_shared_storage(self.state["storage"], alive_nodes(), bool(self.state.get("shared_storage")))
        except ValueError as exc:
            raise SearchError(f"--storage: {exc}") from None

    def _fit_phase(self, phase: str, index: int) -> list[TrialRecord]:
        build: Callable[[Preset], tuple[Preset, Any, Any]] = getattr(self, f"_build_{phase}")
        preset, searcher, scheduler = build(self.preset())
        return self._fit(phase, index, preset, searcher, scheduler)

    def _fit(self, phase: str, index: int, preset: Preset, searcher: Any, scheduler: Any) -> list[TrialRecord]:
        from ray import tune

        from tunekit.searchers import limited
        from tunekit.trainable import trainable

        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")  # experiment state after every event: no finished trial lost
        _quiet_benign_sync_races()
        path = _join(self.directory, phase)
        before = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
        if tune.Tuner.can_restore(path):
            self._echo(f"[{index}/{len(self.state['phases'])} {phase}] resuming the unfinished phase from {path}")
            tuner = tune.Tuner.restore(path, trainable=trainable(preset), resume_unfinished=True, resume_errored=False)
        else:
            callbacks: list[Any] = []
            if scheduler is not None:
                callbacks.append(scheduler.recorder())  # before the loggers: they read its stamps
            if self.log is not None:
                callbacks.append(self.log.callback(phase))
            callbacks.append(Progress(phase, index, len(self.state["phases"]), self.progress))
            tuner = tune.Tuner(
                trainable(preset),
                tune_config=tune.TuneConfig(
                    search_alg=limited(searcher, 64),
                    scheduler=scheduler,
                    num_samples=-1,
                    trial_dirname_creator=trial_dirname,
                ),
                run_config=tune.RunConfig(
                    name=phase,
                    storage_path=self.directory,
                    callbacks=callbacks,
                    failure_config=tune.FailureConfig(max_failures=int(self.state.get("max_failures", 2))),
                    verbose=0,
                ),
            )
        grid = tuner.fit()
        if before is not None:
            interrupted = signal.getsignal(signal.SIGINT) is before  # Ray's handler put the old one back on Ctrl-C
            signal.signal(signal.SIGINT, before)
            if interrupted:
                raise SearchInterrupted(self.directory, phase)
        records = records_of(phase, grid)
        if not records:
            raise RuntimeError(f"phase {phase}: no trial ran (see the logs under {path})")
        return records

    # -- phase builders: (preset the trials run, searcher, scheduler)

    def _base(self, preset: Preset, **overrides: Any) -> dict[str, Any]:
        return {"preset": preset_to_dict(load_preset(preset_to_dict(preset), overrides) if overrides else preset)}

    @staticmethod
    def _scheduler(group_attr: str | None = "epochs_total", metric: str = "test_loss", mode: str = "min") -> Any:
        from tunekit.schedulers import LossShapeScheduler

        return LossShapeScheduler(metric=metric, mode=mode, group_attr=group_attr)

    def _build_range_test(self, preset: Preset) -> tuple[Preset, Any, Any]:
        from tunekit.searchers import CandidateSearcher

        test = range_test_preset(preset)
        assert preset.search is not None
        candidates = {f"{wd:g}": {"weight_decay": wd} for wd in preset.search.range_test.weight_decays}
        # no scheduler: a range test is meant to run past its minimum into divergence
        return test, CandidateSearcher(candidates, {"preset": preset_to_dict(test)}), None

    def _build_momentum(self, preset: Preset) -> tuple[Preset, Any, Any]:
        from tunekit.searchers import MomentumSearcher

        assert preset.search is not None
        ms = preset.search.momentum
        base = self._base(preset, epochs=ms.epochs)
        return preset, MomentumSearcher(ms.candidates, ms.min, base_config=base, judge_window=1), self._scheduler()

    def _build_weight_decay(self, preset: Preset) -> tuple[Preset, Any, Any]:
        from tunekit.searchers import ExponentBisectionSearcher, SnapshotContinuationSearcher

        assert preset.search is not None
        ws = preset.search.weight_decay
        start: dict[str, Any] = {}
        first = self.state["done"].get("range_test")
        if ws.candidates is not None:
            start["grid"] = list(ws.candidates)
        elif first is not None and first["values"]["range_test_weight_decay"] > 0:
            start["guess"] = first["values"]["range_test_weight_decay"]  # {g/√10, g, g·√10} around the range tests' best
        else:
            start["grid"] = list(preset.search.range_test.weight_decays)
        if ws.strategy == "full":
            searcher = ExponentBisectionSearcher(
                "weight_decay", self._base(preset, epochs=ws.epochs), max_trials=ws.max_trials, judge_window=1, **start
            )
            return preset, searcher, self._scheduler()
        searcher = SnapshotContinuationSearcher(
            "weight_decay",
            # the base run is on the final schedule; it stops once its test loss is horizontal, and at the
            # latest where the continuations still have their epochs left in the cycle
            self._base(preset, **{"train.stop_at_epoch": preset.train.epochs - ws.epochs}),
            continuation_epochs=ws.epochs,
            storage_path=self.directory,
            shared_storage=bool(self.state.get("shared_storage")),
            max_trials=ws.max_trials,
            judge_window=ws.epochs,  # mid-cycle losses are noisy: the median over each continuation
            **start,
        )
        # no scheduler: the base run climbs through the noisy high-LR part of its cycle on purpose,
        # and a continuation is only a few epochs long
        return preset, searcher, None

    def _build_batch_size(self, preset: Preset) -> tuple[Preset, Any, Any]:
        from tunekit.searchers import BatchSizeSearcher

        assert preset.search is not None
        assert preset.search.batch_size is not None
        policy = preset.policy
        assert isinstance(policy, OneCyclePolicy)
        bs = preset.search.batch_size
        searcher = BatchSizeSearcher(
            bs.candidates, bs.time_budget_s, preset.train.batch_size, policy.max_lr, base_config=self._base(preset)
        )
        return preset, searcher, self._scheduler()

    def _build_final(self, preset: Preset) -> tuple[Preset, Any, Any]:
        from tunekit.searchers import CandidateSearcher

        assert preset.search is not None
        final = preset.search.final
        plan = replicate_overrides(
            final.replicates, preset.train.seed, preset.train.batch_size, final.batch_jitter, preset.model.init
        )
        epochs = final.epochs or preset.train.epochs
        candidates = {f"replicate-{i}": {**o, "epochs": epochs} for i, o in enumerate(plan)}
        # no scheduler: replicates of one configuration are not rivals
        return preset, CandidateSearcher(candidates, self._base(preset)), None

    # -- decisions (pure functions of the records, see tunekit.core.decisions)

    def _decide(self, phase: str, records: list[TrialRecord]) -> PhaseResult:
        decide: Callable[[Preset, list[TrialRecord]], tuple[PhaseResult, Any]] = getattr(self, f"_decide_{phase}")
        result, figure = decide(self.preset(), records)
        if self.log is not None:
            self.log.decide(phase, result.values, result.reason, figure)
            result.plot = self.log.decisions[-1].plot
        elif figure is not None:
            from tunekit.plots import close

            close(figure)
        return result

    def _decide_range_test(self, preset: Preset, records: list[TrialRecord]) -> tuple[PhaseResult, Any]:
        from tunekit.plots import range_test_figure

        policy = preset.policy if isinstance(preset.policy, OneCyclePolicy) else OneCyclePolicy(name="one_cycle", max_lr=1.0)
        curves = {float(r.config["weight_decay"]): r.curve("lr", "test_loss") for r in records if not r.error}
        chance = next((_num(r.last.get("chance_loss")) for r in records if r.rows), None)
        try:
            choice = choose_lr_range(curves, min_lr_factor=policy.div, chance_loss=chance)
        except RangeTestError as exc:
            raise SearchError(f"phase range_test: {exc}; widen search.range_test (min_lr, max_lr, epochs)") from None
        new_policy = {**preset_to_dict(preset.model_copy(update={"policy": policy}))["policy"], "max_lr": choice.max_lr}
        figure = range_test_figure({f"wd {wd:g}": curves[wd] for wd in sorted(curves)}, choice.max_lr, choice.min_lr)
        result = PhaseResult(
            "range_test",
            overrides={"policy": new_policy, "weight_decay": choice.weight_decay},
            # names unique across phases: MLflow params on the parent run cannot change once logged
            values={"max_lr": choice.max_lr, "min_lr": choice.min_lr, "range_test_weight_decay": choice.weight_decay},
            reason=choice.reason,
            evidence={f"{wd:g}": choice.ranges[wd].min_loss for wd in choice.ranges},
        )
        return result, figure

    def _candidates(
        self, records: list[TrialRecord], label: Callable[[TrialRecord], str], metric: str = "test_loss", window: int = 1
    ) -> list[Candidate]:
        sign = -1.0 if metric == "test_acc" else 1.0
        out = []
        for r in records:
            steps, values = r.curve("training_iteration", metric)
            chance = _num(r.last.get("chance_loss")) if metric == "test_loss" else None
            loss, shape = score_curve(
                steps,
                [sign * v for v in values],
                window=window,
                chance_loss=chance if chance is not None and math.isfinite(chance) else None,
                diverged=bool(r.error) or bool(r.last.get("diverged")),
            )
            out.append(Candidate(label(r), loss, shape, str(r.last.get("stopped_by") or "")))
        return out

    def _curves_figure(self, records: list[TrialRecord], label: Callable[[TrialRecord], str], title: str) -> Any:
        from tunekit.plots import curves_figure

        curves = {label(r): (*r.curve("epoch", "test_loss"), str(r.last.get("diagnosis") or "")) for r in records}
        return curves_figure(curves, title)

    def _decide_momentum(self, preset: Preset, records: list[TrialRecord]) -> tuple[PhaseResult, Any]:
        assert preset.search is not None
        low = preset.search.momentum.min

        def label(r: TrialRecord) -> str:
            return f"{float(r.config['momentum'][0]):g}"

        candidates = self._candidates(records, label)
        choice = choose_candidate(candidates, "max momentum")
        if choice.best is None:
            raise SearchError(f"phase momentum: {choice.reason}; lower search.range_test.max_lr or check the data")
        best = float(choice.best)
        result = PhaseResult(
            "momentum",
            overrides={"momentum": [best, min(low, best)]},
            values={"momentum_max": best, "momentum_min": min(low, best)},
            reason=choice.reason,
            evidence={c.label: c.loss for c in candidates},
        )
        return result, self._curves_figure(records, label, "momentum: test loss of the short runs")

    def _decide_weight_decay(self, preset: Preset, records: list[TrialRecord]) -> tuple[PhaseResult, Any]:
        from tunekit.plots import bisection_figure

        judged = [r for r in records if "restore_from" in r.config or not r.config.get("train.stop_when_horizontal")]

        def label(r: TrialRecord) -> str:
            return f"{float(r.config['weight_decay']):.2g}"

        snapshot = [r for r in records if r.config.get("train.stop_when_horizontal")]
        window = preset.search.weight_decay.epochs if snapshot and preset.search is not None else 1
        candidates = self._candidates(judged, label, window=window)
        choice = choose_candidate(candidates, "weight decay")
        if choice.best is None:
            raise SearchError(f"phase weight_decay: {choice.reason}")
        best = float(choice.best)
        reason = choice.reason
        if snapshot:
            base = snapshot[0]
            why = (
                "its test loss ran horizontal"
                if base.last.get("snapshot")
                else "not yet horizontal, but the last epoch that leaves the continuations room in the cycle"
            )
            reason += (
                f"; each the median of {window} epochs continued from one snapshot of a run at weight decay "
                f"{float(base.config['weight_decay']):.2g}, taken at epoch {int(_num(base.last.get('epoch')))} ({why})"
            )
        figure = bisection_figure([float(c.label) for c in candidates], [c.loss for c in candidates], best)
        result = PhaseResult(
            "weight_decay",
            overrides={"weight_decay": best},
            values={"weight_decay": best},
            reason=reason,
            evidence={c.label: c.loss for c in candidates},
        )
        return result, figure

    def _decide_batch_size(self, preset: Preset, records: list[TrialRecord]) -> tuple[PhaseResult, Any]:
        from tunekit.plots import bars_figure

        by_label = {str(int(r.config["batch_size"])): r for r in records}
        candidates = self._candidates(records, lambda r: str(int(r.config["batch_size"])), metric="test_acc")
        choice = choose_candidate(candidates, "batch size", unit="−(final test accuracy) at constant wall time")
        if choice.best is None:
            raise SearchError(f"phase batch_size: {choice.reason}")
        chosen = by_label[choice.best]
        max_lr = float(chosen.config["max_lr"])
        result = PhaseResult(
            "batch_size",
            overrides={"batch_size": int(choice.best), "max_lr": max_lr},
            values={"batch_size": int(choice.best), "batch_max_lr": max_lr},
            reason=choice.reason + f"; max_lr scaled with the batch to {max_lr:.3g}",
            evidence={c.label: -c.loss for c in candidates},
        )
        return result, bars_figure(result.evidence, "batch size at constant wall time", "final test accuracy")

    def _decide_final(self, preset: Preset, records: list[TrialRecord]) -> tuple[PhaseResult, Any]:
        from tunekit.plots import bars_figure

        records = sorted(records, key=lambda r: int(r.config.get("seed", 0)))
        accs = {r.config.get("seed", i): _num(r.last.get("test_acc")) for i, r in enumerate(records) if not r.error}
        mean, std = mean_std(list(accs.values()))
        if not math.isfinite(mean):
            raise SearchError("phase final: no replicate finished; see the trial logs under the final/ folder")
        parts = ", ".join(
            f"seed {r.config.get('seed')} {r.config.get('init')} batch {r.config.get('batch_size')}: {_num(r.last.get('test_acc')):.4f}"
            for r in records
        )
        reason = f"test accuracy {100 * mean:.2f} % ± {100 * std:.2f} over {len(accs)} replicates ({parts})"
        result = PhaseResult(
            "final",
            overrides={},
            values={"test_acc_mean": mean, "test_acc_std": std},
            reason=reason,
            evidence={f"seed {k}": v for k, v in accs.items()},
        )
        return result, bars_figure({f"seed {k}": v for k, v in accs.items()}, "final replicates", "test accuracy")

    # -- the end

    def _final_records(self) -> list[TrialRecord]:
        return phase_records(self.directory, "final") if "final" in self.state["done"] else []

    def _finish(self) -> SearchResult:
        preset = self.preset()
        final = self.state["done"].get("final")
        accuracies: list[float] = []
        best: TrialRecord | None = None
        if final is not None:
            assert preset.search is not None
            epochs = preset.search.final.epochs or preset.train.epochs
            preset = load_preset(preset_to_dict(preset), {"epochs": epochs})
            # in replicate order (seed), not in Ray's trial-id order, so runs compare line by line
            records = sorted((r for r in self._final_records() if not r.error), key=lambda r: int(r.config.get("seed", 0)))
            accuracies = [_num(r.last.get("test_acc")) for r in records]
            best = max(records, key=lambda r: _num(r.last.get("test_acc")), default=None)
        mean, std = mean_std(accuracies) if accuracies else (math.nan, math.nan)
        if self.log is not None:
            self._finish_tracking(preset, best, mean, std)
        self.state["result"] = {
            "preset": preset_to_dict(preset),
            "accuracy_mean": mean,
            "accuracy_std": std,
            "accuracies": accuracies,
            "best_checkpoint": best.checkpoint if best else None,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        self._save()
        result = self._result()
        self._echo("")
        self._echo(result.table())
        self._echo(f"chosen configuration: {self.directory}/{STATE_FILE} (and `tunekit best` from MLflow)")
        return result

    def _finish_tracking(self, preset: Preset, best: TrialRecord | None, mean: float, std: float) -> None:
        from tunekit.tracking.queries import run_of_trial
        from tunekit.tracking.search_log import final_model

        tracking = self.state["tracking"]
        run = run_of_trial(tracking["uri"], tracking["parent_run_id"], best.trial_id) if best else None
        state, meta = final_model(best.checkpoint) if best and best.checkpoint else (None, None)
        metrics = {"test_acc": mean, "test_acc_std": std} if math.isfinite(mean) else {}
        if best is not None:
            metrics["test_loss"] = _num(best.last.get("test_loss"))
        metrics["trial_epochs"] = sum(p.trial_epochs for p in self.done().values())
        self.log.finish(run, preset, metrics, model_state=state, model_meta=meta)

    def _result(self) -> SearchResult:
        done = self.done()
        end = self.state["result"]
        tracking = self.state.get("tracking") or {}
        return SearchResult(
            name=self.state["name"],
            directory=self.directory,
            preset=load_preset(end["preset"]),
            phases=done,
            accuracy_mean=_num(end["accuracy_mean"]),
            accuracy_std=_num(end["accuracy_std"]),
            accuracies=[float(a) for a in end["accuracies"]],
            best_checkpoint=end.get("best_checkpoint"),
            run_id=tracking.get("parent_run_id"),
            tracking_uri=tracking.get("uri"),
        )


# --------------------------------------------------------------------------- report


def phase_records(directory: str, phase: str) -> list[TrialRecord]:
    """The trials of one phase of a search folder (finished or not); [] before the phase started."""
    from ray import tune
    from ray.tune import ExperimentAnalysis, ResultGrid

    from tunekit.runner import storage_path

    path = _join(storage_path(directory), phase)
    if not tune.Tuner.can_restore(path):
        return []
    return records_of(phase, ResultGrid(ExperimentAnalysis(path)))


def report_frame(directory: str) -> Any:
    """One row per trial of a search (finished or not): phase, config, diagnosis, stopped_by,
    final metrics and compute — a ``pandas.DataFrame``."""
    import pandas as pd

    from tunekit.runner import storage_path

    directory = storage_path(directory)
    state = read_state(directory)
    rows = []
    for phase in state["phases"]:
        for r in phase_records(directory, phase):
            last = r.last
            row: dict[str, Any] = {"phase": phase, "trial_id": r.trial_id, "config": r.label}
            for key in ("weight_decay", "momentum", "max_lr", "batch_size", "seed", "init"):
                if key in r.config:
                    row[key] = json.dumps(r.config[key]) if isinstance(r.config[key], list) else r.config[key]
            row["continuation"] = "restore_from" in r.config
            row["status"] = "ERROR" if r.error else ("DONE" if last else "NOT STARTED")
            row["diagnosis"] = last.get("diagnosis") or ""
            row["stopped_by"] = last.get("stopped_by") or ""
            for key in ("epoch", "test_loss", "test_acc", "train_loss", "lr"):
                row[key] = last.get(key)
            row["trial_epochs"] = r.trial_epochs
            row["train_time_s"] = last.get("train_time_s")
            row["results"] = len(r.rows)
            row["error"] = r.error or ""
            rows.append(row)
    return pd.DataFrame(rows)


__all__ = [
    "PHASES",
    "PhaseResult",
    "SearchError",
    "SearchInterrupted",
    "SearchResult",
    "TrialRecord",
    "phase_records",
    "plan_phases",
    "read_state",
    "records_of",
    "report_frame",
    "resume",
    "search",
]

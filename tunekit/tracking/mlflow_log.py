"""MLflow logging for tunekit runs (see the package docstring for the layout)."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ray.tune.callback import Callback

import tunekit

#: Where operations that could not reach the tracking store are kept, under the search folder.
FALLBACK_FILE = "mlflow-fallback.jsonl"
#: The embedded sqlite store's file name, in the local folder next to the runs.
SQLITE_FILE = "mlflow.db"
#: Beside it: the real run ids of the runs created while the store was down (``mlflow-fallback.ids.json``).
IDS_SUFFIX = ".ids.json"
#: The id of a run created while the store was down starts with this; the replay maps it to the real run.
LOCAL_RUN_PREFIX = "tunekit-local-"
#: After the store failed, writes are kept without trying it for this long; then the kept ones are replayed first.
RETRY_AFTER_S = 30.0
#: MLflow's HTTP retries as tunekit runs them unless the environment says otherwise. MLflow's own defaults
#: (7 retries, backoff factor 2, 120 s timeout) make every call to a dead server take about 4 minutes; tunekit
#: keeps what it cannot send and replays it, so a failed call should fail fast: 3 tries in about 3 s.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    # and no "🏃 View run … at: …" line on stdout for every run a server ends: tunekit prints its own links
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
#: Tracking URI schemes MLflow knows (a database's ``+driver`` aside); anything else is a typo.
KNOWN_SCHEMES = {"", "file", "http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc"}
#: Result fields logged as metrics (when numeric and finite), besides every ``val_*`` and ``test_*`` one.
METRICS = (
    "train_loss",
    "lr",
    "momentum",
    "weight_decay",
    "samples_per_s",
    "epoch",
    "train_time_s",
)
#: Result fields logged as tags (the loss-shape scheduler's decisions).
TAGS = {"diagnosis": "tunekit.diagnosis", "stopped_by": "tunekit.stopped_by", "decision": "tunekit.decision"}


class TrackingError(ValueError):
    """The tracking store cannot be used; the message names --tracking-uri and what to do."""


def default_store(folder: str | Path) -> Path:
    """The file of the embedded sqlite store under ``folder``; nothing is created."""
    return Path(folder).expanduser().resolve() / SQLITE_FILE


def default_tracking_uri(folder: str | Path) -> str:
    """An embedded sqlite store under ``folder`` (no server needed); creates ``folder``."""
    store = default_store(folder)
    store.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store}"


def use_http_defaults() -> None:
    """Give MLflow's HTTP client tunekit's retry settings (:data:`HTTP_DEFAULTS`) where the environment sets none."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def mlflow_client(tracking_uri: str | None) -> Any:
    """An ``MlflowClient`` on ``tracking_uri``, with tunekit's HTTP retry settings.

    A sqlite store is opened under a file lock beside it: MLflow creates or migrates its tables on
    first use, and two processes doing that at once (two searches started together into one
    storage) leave it half-migrated ("Online migration expected to match one row")."""
    from mlflow.tracking import MlflowClient

    use_http_defaults()
    database = sqlite_path(tracking_uri)
    if database is None or database in _OPENED:
        return MlflowClient(tracking_uri)
    with _file_lock(f"{database}.lock"):
        client = MlflowClient(tracking_uri)
        client.search_experiments(max_results=1)  # the tracking tables are created or migrated here
        client.search_registered_models(max_results=1)  # and the model registry's
    _OPENED.add(database)
    return client


#: sqlite stores this process has opened (their tables exist): later clients need no lock.
_OPENED: set[str] = set()


def sqlite_path(tracking_uri: str | None) -> str | None:
    """The database file of a ``sqlite:///…`` URI (relative to the working folder, or absolute); None otherwise."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri[len("sqlite:///") :].split("?", 1)[0]
    return str(Path(path).resolve()) if path and path != ":memory:" else None


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (``flock``; where there is none, no lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_http(uri: str) -> bool:
    """Whether ``uri`` is an MLflow tracking server (as opposed to a database or a folder)."""
    return uri.startswith(("http://", "https://"))


def check_tracking_uri(uri: str, timeout_s: float = 5.0, source: str = "--tracking-uri", fix: str | None = None) -> None:
    """Fail fast, before any trial runs, when the tracking store cannot be used.

    An HTTP server must answer; any other URI must be one MLflow can open (a known scheme, its driver installed).

    Args:
        uri: the tracking URI.
        timeout_s: how long a server may take to answer.
        source: where ``uri`` came from, as the message names it (``--tracking-uri``, ``$MLFLOW_TRACKING_URI``, …).
        fix: what to do about a server that does not answer (default: start one, or log to a local sqlite file).

    Raises:
        TrackingError: one line naming ``source``, the problem and the fix.
    """
    if not is_http(uri):
        _check_store_uri(uri, source)
        return
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status >= 400:
                raise TrackingError(f"{source} {uri}: the server answered HTTP {response.status}; check the URL")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        unset = "leave --tracking-uri out" if source == "--tracking-uri" else f"unset {source}"
        raise TrackingError(
            f"{source} {uri}: no MLflow server answers there ({reason}); "
            + (fix or f"start one (mlflow server --host 127.0.0.1 --port 5000) or {unset} to log to a local sqlite file")
        ) from None


def _check_store_uri(uri: str, source: str) -> None:
    """A database or folder URI: its scheme must be MLflow's and MLflow must be able to open it."""
    scheme = urllib.parse.urlparse(uri).scheme.split("+")[0].lower()
    usable = "give an MLflow server (http://host:port) or a database (sqlite:///path/to/mlflow.db)"
    if len(scheme) > 1 and scheme not in KNOWN_SCHEMES:  # (one letter: a Windows drive)
        raise TrackingError(f"{source} {uri}: MLflow cannot use a '{scheme}:' tracking URI; {usable}")
    try:
        mlflow_client(uri)
    except Exception as exc:
        raise TrackingError(f"{source} {uri}: MLflow cannot use it ({_first_line(exc, 200)}); {usable}") from None


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config → ``{"preset.policy.max_lr": "0.5", …}``, values as MLflow param strings (≤ 6000 chars)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


@functools.cache
def git_commit() -> str | None:
    """The checkout's commit, when tunekit runs from a git checkout (asked once per process)."""
    try:
        root = Path(tunekit.__file__).resolve().parents[1]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


#: An experiment's kind as MLflow 3 records it: tunekit's are model training, not GenAI (the UI then
#: asks no "which kind?" question and shows the model-training pages for them).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: MLflow 3's UI opens every experiment on the view its GenAI / Model training switch remembers (GenAI
#: on a first visit), whatever the experiment's kind; this URL parameter opens the model-training view,
#: and the UI keeps it on the links it follows from there.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def ui_url(base: str, experiment_id: str, run_id: str | None = None) -> str:
    """The MLflow UI's page of an experiment's runs table (or of one run), in the model-training view."""
    page = f"#/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")
    return f"{base.rstrip('/')}/{page}?{MODEL_TRAINING_VIEW}"


class Tracker:
    """An MLflow client bound to one experiment, with a fallback file for what it cannot log.

    Every call to the store — finding or creating the experiment, creating a run, logging, uploading —
    goes through :meth:`_call`: if the store is unreachable, the operation is appended to ``fallback``
    (JSON lines) with one warning, and the kept operations are replayed, in order, before the next write
    (at most every :data:`RETRY_AFTER_S` seconds while the store stays down; meanwhile writes are kept
    without trying it). A run created while the store is down gets a local id
    (:data:`LOCAL_RUN_PREFIX`); the replay creates the real run and maps the local id to it
    (:func:`ids_file`), so everything logged under the local id lands in the real run. Whatever is
    still kept at the end can be pushed later with :func:`replay_fallback`.
    """

    def __init__(self, tracking_uri: str, experiment: str, fallback: str | Path) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client = mlflow_client(tracking_uri)
        self.fallback = Path(fallback)
        self._store = _Store(self.client, ids_file(self.fallback))
        # a local store keeps its artifacts beside it, not in whatever folder the user ran from
        self._location = None if is_http(tracking_uri) else (self.fallback.parent.parent / "mlartifacts").resolve().as_uri()

    @property
    def experiment_id(self) -> str:
        """The experiment's id, created if missing (this asks the store: raises when it cannot be reached)."""
        return self._store.experiment_id(self.experiment, self._location)

    def start_run(
        self, name: str, params: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None, parent: str | None = None
    ) -> str:
        """Create a run (nested under ``parent`` if given) and log its params; returns its id.

        The id is a local one (:data:`LOCAL_RUN_PREFIX`) when the store could not be reached: use it as any other.
        """
        all_tags = {"tunekit.version": tunekit.__version__, **(tags or {})}
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        commit = git_commit()
        if commit:
            all_tags["mlflow.source.git.commit"] = commit
        local = f"{LOCAL_RUN_PREFIX}{uuid.uuid4().hex}"
        payload = {
            "run_id": local,
            "experiment": self.experiment,
            "artifact_location": self._location,
            "name": name,
            "tags": all_tags,
            "start_time": int(time.time() * 1000),
        }
        run_id = self._call("create_run", payload) or local
        if params:
            self.log(run_id, params=flatten(params))
        return run_id

    def log(
        self,
        run_id: str,
        metrics: Mapping[str, float] | None = None,
        step: int = 0,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """One batched write: metrics at ``step``, params and tags."""
        now = int(time.time() * 1000)
        payload = {
            "run_id": run_id,
            "metrics": [[k, float(v), now, int(step)] for k, v in (metrics or {}).items()],
            "params": sorted((params or {}).items()),
            "tags": sorted((tags or {}).items()),
        }
        self._call("log_batch", payload)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        """End a run with ``status`` (``FINISHED``, ``FAILED``, ``KILLED``)."""
        self._call("set_terminated", {"run_id": run_id, "status": status})

    def artifact(self, run_id: str, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file kept locally (it stays there too, so a failed upload can be replayed)."""
        self._call("log_artifact", {"run_id": run_id, "local_path": str(local_path), "artifact_path": artifact_path})

    def logged_steps(self, run_id: str, keys: Iterable[str]) -> dict[str, int]:
        """The last step of each metric in ``keys`` that ``run_id`` holds, in the store or kept for it.

        A read, so nothing to keep: while the store is down, only what the fallback file keeps is known.
        """
        steps = _kept_steps(self.fallback, run_id)
        if _is_down(self.tracking_uri):
            return steps
        try:
            real = self._store.real_id(run_id)
            for key in keys:
                history = [m.step for m in self.client.get_metric_history(real, key)]
                if history:
                    steps[key] = max(steps.get(key, history[0]), *history)
        except Exception:  # unreachable, or a run still kept: what the file says is what is known
            return steps
        return steps

    def pending(self) -> int:
        """How many operations the fallback file keeps (0 once everything reached the store)."""
        if not self.fallback.is_file():
            return 0
        return sum(1 for line in self.fallback.read_text().splitlines() if line.strip())

    # ------------------------------------------------------------------ resilience

    def _call(self, op: str, payload: dict[str, Any]) -> str | None:
        """Apply ``op`` (after the kept ones), or keep it; returns what the store answered (a created run's id)."""
        if not self._flush():  # earlier operations still wait: this one waits behind them, in order
            self._keep(op, payload, None)
            return None
        try:
            return self._store.apply(op, payload)
        except Exception as exc:
            if refused(exc):  # the store answered no: retrying cannot help; say what was lost
                self._store.refused(op, payload)
                warnings.warn(f"MLflow refused {op} for run {payload.get('run_id')}: {exc}", RuntimeWarning, stacklevel=3)
            else:  # the store is unreachable: keep the data, say so once
                _mark_down(self.tracking_uri)
                self._keep(op, payload, exc)
            return None

    def _flush(self) -> bool:
        """Replay the kept operations (not while the store is known to be down); True when none is left."""
        if not self._keeps():
            return True
        if _is_down(self.tracking_uri):
            return False
        _replay(self.fallback, self._store)
        if self._keeps():
            _mark_down(self.tracking_uri)
            return False
        return True

    def _keeps(self) -> bool:
        """Whether the fallback file keeps anything (a size, not a read: this runs before every write)."""
        return self.fallback.is_file() and self.fallback.stat().st_size > 0

    def _keep(self, op: str, payload: dict[str, Any], exc: Exception | None) -> None:
        self.fallback.parent.mkdir(parents=True, exist_ok=True)
        with self.fallback.open("a") as fh:
            fh.write(json.dumps({"op": op, "payload": payload}) + "\n")
        key = str(self.fallback.resolve())
        if key in _WARNED:
            return
        _WARNED.add(key)
        why = f"{type(exc).__name__}: {_first_line(exc, 160)}" if exc is not None else "earlier operations could not be sent"
        warnings.warn(
            f"MLflow at {self.tracking_uri} failed ({why}); the search goes on and what could not be "
            f"logged is kept in {self.fallback} and retried — push the rest later with "
            f"tunekit replay {self.fallback.parent} --tracking-uri {self.tracking_uri}",
            RuntimeWarning,
            stacklevel=4,
        )


#: MLflow error codes that mean "the store answered, and the answer is no".
_REFUSALS = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE", "BAD_REQUEST"}
#: Until when (time.monotonic) each tracking URI is known to be unreachable: writes are kept without trying it.
_DOWN_UNTIL: dict[str, float] = {}
#: The fallback files whose first failure was already told (one warning per file and process).
_WARNED: set[str] = set()
#: The runs this process created for Tune trials: (parent run id, trial id) -> run id (maybe a local one).
_TRIAL_RUNS: dict[tuple[str, str], str] = {}


def refused(exc: Exception) -> bool:
    """True when the store rejected the request (bad value, unknown run), False when it could not be reached."""
    return getattr(exc, "error_code", None) in _REFUSALS


def _is_down(tracking_uri: str) -> bool:
    return time.monotonic() < _DOWN_UNTIL.get(tracking_uri, 0.0)


def _mark_down(tracking_uri: str) -> None:
    _DOWN_UNTIL[tracking_uri] = time.monotonic() + RETRY_AFTER_S


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an error's message, cut to ``limit`` characters."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    return lines[0] if len(lines[0]) <= limit else lines[0][:limit] + "…"


def remember_trial_run(parent_run_id: str | None, trial_id: str, run_id: str) -> None:
    """Note which run logs a Tune trial of a search, for :func:`trial_run`."""
    if parent_run_id:
        _TRIAL_RUNS[(parent_run_id, trial_id)] = run_id


def trial_run(parent_run_id: str, trial_id: str) -> str | None:
    """The run this process logs ``trial_id`` of the search ``parent_run_id`` into, or None (then ask the store)."""
    return _TRIAL_RUNS.get((parent_run_id, trial_id))


def ids_file(fallback: str | Path) -> Path:
    """Where the local run ids handed out while the store was down are mapped to the real ones, beside ``fallback``."""
    fallback = Path(fallback)
    return fallback.with_name(f"{fallback.stem}{IDS_SUFFIX}")


class _Pending(Exception):
    """A local run id whose run is not created yet (its ``create_run`` is still kept): keep what names it."""


class _Dropped(Exception):
    """A local run id whose ``create_run`` the store refused: what names it is refused too."""

    error_code = "RESOURCE_DOES_NOT_EXIST"


def get_or_create_experiment(client: Any, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``, created (as model training) if missing — safe when processes race.

    Two processes that both find no experiment both create it; the store refuses the second
    (``RESOURCE_ALREADY_EXISTS``), which then finds the one the first created.
    """
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        # MLflow 3's UI opens an experiment by its kind: ours is model training (the runs table), not GenAI
        return str(
            client.create_experiment(name, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        )
    except Exception as exc:
        if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
            raise
        found = client.get_experiment_by_name(name)
        if found is None:  # it existed a moment ago: a deletion raced too; say what the store said
            raise
        return str(found.experiment_id)


class _Store:
    """One MLflow client and what applying an operation needs: experiment ids by name, local run ids → real ones."""

    def __init__(self, client: Any, ids_path: Path) -> None:
        self.client = client
        self.ids_path = ids_path
        self.experiments: dict[str, str] = {}
        self._ids: dict[str, str] = {}

    def experiment_id(self, name: str, location: str | None = None) -> str:
        """Experiment ``name``'s id (asked once per store), created at ``location`` if missing."""
        if name not in self.experiments:
            self.experiments[name] = get_or_create_experiment(self.client, name, location)
        return self.experiments[name]

    def real_id(self, run_id: str) -> str:
        """``run_id`` itself, or the real run a local id was mapped to."""
        if not run_id.startswith(LOCAL_RUN_PREFIX):
            return run_id
        if not self._created(run_id):  # (another tracker of this search may have replayed it: the file says)
            raise _Pending(f"run {run_id} is not created in the store yet")
        if not self._ids[run_id]:
            raise _Dropped(f"the store refused to create run {run_id}")
        return self._ids[run_id]

    def _created(self, local: str) -> bool:
        """Whether a replay already created the run of ``local`` (or the store refused it)."""
        if local not in self._ids and self.ids_path.is_file():
            self._ids = json.loads(self.ids_path.read_text())
        return local in self._ids

    def remember(self, local: str, real: str) -> None:
        """Map a local run id to the real one ("" for a run the store refused), on disk at once."""
        if self.ids_path.is_file():
            self._ids = {**json.loads(self.ids_path.read_text()), **self._ids}
        self._ids[local] = real
        self.ids_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.ids_path.with_name(self.ids_path.name + ".tmp")
        partial.write_text(json.dumps(self._ids))
        partial.replace(self.ids_path)

    def refused(self, op: str, payload: dict[str, Any]) -> None:
        """The store refused ``op``: a refused ``create_run`` drops what its local id names (replayed or not)."""
        if op == "create_run":
            self.remember(payload["run_id"], "")

    def apply(self, op: str, payload: dict[str, Any]) -> str | None:
        """Send one operation to the store; returns the real id of a created run."""
        from mlflow.entities import Metric, Param, RunTag

        if op == "create_run":
            return self._create_run(payload)
        run_id = self.real_id(payload["run_id"])
        if op == "log_batch":
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, v, ts, step) for k, v, ts, step in payload["metrics"]],
                params=[Param(k, v) for k, v in payload["params"]],
                tags=[RunTag(k, self._tag_value(v)) for k, v in payload["tags"]],
                synchronous=True,
            )
        elif op == "set_terminated":
            self.client.set_terminated(run_id, status=payload["status"])
        elif op == "log_artifact":
            self.client.log_artifact(run_id, payload["local_path"], payload["artifact_path"])
        else:
            raise ValueError(f"unknown fallback operation {op!r}")
        return None

    def _create_run(self, payload: dict[str, Any]) -> str:
        local = payload["run_id"]
        if self._created(local):
            return self.real_id(local)  # replayed before (the file was not rewritten after): not twice
        experiment_id = self.experiment_id(payload["experiment"], payload.get("artifact_location"))
        tags = {k: self._tag_value(v) for k, v in payload["tags"].items()}
        run = self.client.create_run(experiment_id, start_time=payload.get("start_time"), tags=tags, run_name=payload["name"])
        return str(run.info.run_id)

    def _tag_value(self, value: str) -> str:
        """A tag naming a run (``mlflow.parentRunId``, ``tunekit.best_run_id``) names the real one."""
        return self.real_id(value) if value.startswith(LOCAL_RUN_PREFIX) else value


def _kept_steps(fallback: Path, run_id: str) -> dict[str, int]:
    """The last step of each metric the fallback file keeps for ``run_id``."""
    steps: dict[str, int] = {}
    if not fallback.is_file():
        return steps
    for line in fallback.read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        if record.get("op") == "log_batch" and record["payload"]["run_id"] == run_id:
            for key, _, _, step in record["payload"]["metrics"]:
                steps[key] = max(steps.get(key, step), step)
    return steps


def replay_fallback(path: str | Path, tracking_uri: str | None = None, client: Any = None) -> int:
    """Push the operations kept in a fallback file to the store, in order; returns how many went through.

    ``path`` is the file or the search folder holding it. Runs created while the store was down are
    created now, and what was logged under their local ids goes into them. Operations that still
    cannot reach the store stay in the file; those the store refuses are dropped (with a warning).
    """
    path = Path(path)
    if path.is_dir():
        path = path / FALLBACK_FILE
    if not path.is_file():
        return 0
    return _replay(path, _Store(client or mlflow_client(tracking_uri), ids_file(path)))


def _replay(path: Path, store: _Store) -> int:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    done = 0
    for i, line in enumerate(lines):
        record = json.loads(line)
        try:
            real = store.apply(record["op"], record["payload"])
            if record["op"] == "create_run" and real is not None:
                store.remember(record["payload"]["run_id"], real)
        except Exception as exc:
            if refused(exc):
                store.refused(record["op"], record["payload"])
                warnings.warn(f"MLflow refused a kept {record['op']}: {_first_line(exc)}", RuntimeWarning, stacklevel=3)
                continue
            path.write_text("\n".join(lines[i:]) + "\n")
            return done
        done += 1
    path.unlink()
    return done


class MLflowTrialLogger(Callback):
    """A Tune callback: one nested MLflow run per trial, metrics batched per result.

    The trial → run-id map is plain data saved with the experiment (``get_state``), so after
    ``Tuner.restore`` a resumed trial keeps logging into its own run instead of opening a new
    one and leaving the old RUNNING forever (what Ray's ``MLflowLoggerCallback`` does). A restored
    trial that runs again from an earlier checkpoint repeats steps its run already holds (in the
    store, or kept in the fallback file): those are not logged again, so its history does not go
    back in step.

    Args:
        tracking_uri, experiment: where to log.
        parent_run_id: the search's parent run.
        phase: tag for every trial run of this experiment (``range_test``, ``weight_decay``, …).
        fallback: the fallback file (default: ``mlflow-fallback.jsonl`` in the working folder).

    The metrics' step is the result's ``step`` in a range test, else its ``epoch``.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        parent_run_id: str | None,
        phase: str = "train",
        fallback: str | Path = FALLBACK_FILE,
        storage: str = "",
    ) -> None:
        self.tracking_uri, self.experiment, self.parent_run_id, self.phase = tracking_uri, experiment, parent_run_id, phase
        self.storage = storage  # where the runs live: Ray's trial paths are tagged as locations there
        self.fallback = str(fallback)
        self.runs: dict[str, str] = {}  # trial id → run id
        self.steps: dict[str, dict[str, int]] = {}  # run id → metric → the last step logged
        self._unsure: set[str] = set()  # restored runs: the store may hold later steps than the saved state says
        self._floors: dict[str, dict[str, int]] = {}  # restored run → metric → its last step before the restore
        self._tracker: Tracker | None = None

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = Tracker(self.tracking_uri, self.experiment, self.fallback)
        return self._tracker

    def _run_for(self, trial: Any) -> str:
        if trial.trial_id not in self.runs:
            self.runs[trial.trial_id] = self.tracker.start_run(
                f"{self.phase}-{trial.trial_id}",
                params=_trial_params(trial.config),
                tags={"tunekit.phase": self.phase, "tunekit.trial_id": trial.trial_id},
                parent=self.parent_run_id,
            )
            remember_trial_run(self.parent_run_id, trial.trial_id, self.runs[trial.trial_id])
        return self.runs[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._run_for(trial)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
        run_id = self._run_for(trial)
        step = result.get("step") if self.phase == "range_test" else result.get("epoch", result.get("training_iteration"))
        keys = [*METRICS, *(k for k in result if k.startswith(("val_", "test_")))]
        metrics = {k: float(result[k]) for k in keys if isinstance(result.get(k), int | float) and math.isfinite(result[k])}
        if step is not None:
            metrics = self._new_steps(run_id, metrics, int(step))
        self.tracker.log(run_id, metrics=metrics, step=int(step or 0), tags=result_tags(result, self.storage))

    def _new_steps(self, run_id: str, metrics: dict[str, float], step: int) -> dict[str, float]:
        """The metrics of a result, less those at a step a restored run logged before its restore; notes what is logged."""
        if run_id in self._unsure:  # once per restored run: what the store (or the fallback file) holds
            self._unsure.discard(run_id)
            floor = dict(self.steps.get(run_id, {}))
            for key, last in self.tracker.logged_steps(run_id, metrics).items():
                floor[key] = max(last, floor.get(key, last))
            self._floors[run_id] = floor
        floor = self._floors.get(run_id, {})
        new = {k: v for k, v in metrics.items() if step > floor.get(k, step - 1)}
        logged = self.steps.setdefault(run_id, {})
        logged.update({k: max(step, logged.get(k, step)) for k in new})
        return new

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.tracker.finish(self._run_for(trial), "FINISHED")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """The trial raised: its run is FAILED and tagged ``tunekit.failed`` with the error's line (never ``diverged``)."""
        from tunekit.recipe.records import trial_error

        run_id = self._run_for(trial)
        error = trial_error(trial) or "an error; see the trial's logs"
        self.tracker.log(run_id, tags={"tunekit.failed": error})
        self.tracker.finish(run_id, "FAILED")

    def get_state(self) -> dict[str, Any]:
        return {"runs": dict(self.runs), "steps": {run: dict(steps) for run, steps in self.steps.items()}}

    def set_state(self, state: dict[str, Any]) -> None:
        self.runs = dict(state.get("runs", {}))
        self.steps = {run: dict(steps) for run, steps in state.get("steps", {}).items()}
        self._unsure = set(self.runs.values())
        for trial_id, run_id in self.runs.items():
            remember_trial_run(self.parent_run_id, trial_id, run_id)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tracker"] = None  # the client is rebuilt where the callback lands
        return state


def result_tags(result: Mapping[str, Any], storage: str = "") -> dict[str, str]:
    """The tags one Tune result sets on its trial run: the scheduler's reading, how the trial went, where it lives
    (a location on ``storage``: on object storage, Ray's trial path with the scheme and query string back)."""
    from tunekit.core.storage import join, located

    tags = {tag: str(result[key]) for key, tag in TAGS.items() if result.get(key) not in (None, "")}
    # how the trial went: its loss diverged (a trial that raised is tagged tunekit.failed by on_trial_error)
    if result.get("diverged"):
        tags["tunekit.diverged"] = "true"
    trial_dir = located(storage, str(result.get("trial_dir") or ""))
    if trial_dir:
        tags["tunekit.trial_dir"] = trial_dir
    if result.get("checkpoint_dir_name") and trial_dir:
        # where this run's latest snapshot lives, so it can be continued from the UI's run
        tags["tunekit.checkpoint"] = join(trial_dir, str(result["checkpoint_dir_name"]))
    return tags


def _trial_params(config: Mapping[str, Any]) -> dict[str, Any]:
    # the preset's fields by their own dotted names, then the trial's overrides under theirs
    params: dict[str, Any] = dict(config.get("preset", {}))
    params.update({k: v for k, v in config.items() if k != "preset"})
    return params

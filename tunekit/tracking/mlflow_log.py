"""MLflow logging for tunekit runs (see the package docstring for the layout)."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray.tune.callback import Callback

import tunekit

#: Where operations that could not reach the tracking store are kept, under the search folder.
FALLBACK_FILE = "mlflow-fallback.jsonl"
#: The embedded sqlite store's file name, in the local folder next to the runs.
SQLITE_FILE = "mlflow.db"
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


def check_tracking_uri(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, before any trial runs, when an HTTP tracking server does not answer.

    Raises:
        TrackingError: the server is unreachable or answers with an error.
    """
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status >= 400:
                raise TrackingError(f"--tracking-uri {uri}: the server answered HTTP {response.status}; check the URL")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"--tracking-uri {uri}: no MLflow server answers there ({reason}); start one (mlflow server --host 127.0.0.1 "
            "--port 5000) or leave --tracking-uri out to log to a local sqlite file"
        ) from None


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

    Every write goes through :meth:`_call`: if the store is unreachable, the operation is
    appended to ``fallback`` (JSON lines) with one warning, and retried before the next write;
    whatever is still there at the end can be pushed later with :func:`replay_fallback`.
    """

    def __init__(self, tracking_uri: str, experiment: str, fallback: str | Path) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.fallback = Path(fallback)
        self._warned = False
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            # a local store keeps its artifacts beside it, not in whatever folder the user ran from
            location = (
                None
                if tracking_uri.startswith(("http://", "https://"))
                else (self.fallback.parent.parent / "mlartifacts").resolve().as_uri()
            )
            # MLflow 3's UI opens an experiment by its kind: ours is model training (the runs table), not GenAI
            self.experiment_id = self.client.create_experiment(
                experiment, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )

    def start_run(
        self, name: str, params: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None, parent: str | None = None
    ) -> str:
        """Create a run (nested under ``parent`` if given) and log its params; returns its id."""
        all_tags = {"tunekit.version": tunekit.__version__, **(tags or {})}
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        commit = git_commit()
        if commit:
            all_tags["mlflow.source.git.commit"] = commit
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        if params:
            self.log(run.info.run_id, params=flatten(params))
        return run.info.run_id

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
        self._call("set_terminated", {"run_id": run_id, "status": status})

    def artifact(self, run_id: str, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file kept locally (it stays there too, so a failed upload can be replayed)."""
        self._call("log_artifact", {"run_id": run_id, "local_path": str(local_path), "artifact_path": artifact_path})

    # ------------------------------------------------------------------ resilience

    def _call(self, op: str, payload: dict[str, Any]) -> None:
        self._replay()
        try:
            _apply(self.client, op, payload)
        except Exception as exc:
            if refused(exc):  # the store answered no: retrying cannot help; say what was lost
                warnings.warn(f"MLflow refused {op} for run {payload.get('run_id')}: {exc}", RuntimeWarning, stacklevel=3)
            else:  # the store is unreachable: keep the data, say so once
                self._keep(op, payload, exc)

    def _keep(self, op: str, payload: dict[str, Any], exc: Exception) -> None:
        self.fallback.parent.mkdir(parents=True, exist_ok=True)
        with self.fallback.open("a") as fh:
            fh.write(json.dumps({"op": op, "payload": payload}) + "\n")
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"MLflow at {self.tracking_uri} failed ({type(exc).__name__}: {exc}); the search goes on and what could not be "
                f"logged is kept in {self.fallback} and retried — push the rest later with "
                f"tunekit.tracking.replay_fallback('{self.fallback}', '{self.tracking_uri}')",
                RuntimeWarning,
                stacklevel=3,
            )

    def _replay(self) -> None:
        if self.fallback.is_file() and self.fallback.stat().st_size:
            replay_fallback(self.fallback, client=self.client)


#: MLflow error codes that mean "the store answered, and the answer is no".
_REFUSALS = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE", "BAD_REQUEST"}


def refused(exc: Exception) -> bool:
    """True when the store rejected the request (bad value, unknown run), False when it could not be reached."""
    return getattr(exc, "error_code", None) in _REFUSALS


def _apply(client: Any, op: str, payload: dict[str, Any]) -> None:
    from mlflow.entities import Metric, Param, RunTag

    if op == "log_batch":
        client.log_batch(
            payload["run_id"],
            metrics=[Metric(k, v, ts, step) for k, v, ts, step in payload["metrics"]],
            params=[Param(k, v) for k, v in payload["params"]],
            tags=[RunTag(k, v) for k, v in payload["tags"]],
            synchronous=True,
        )
    elif op == "set_terminated":
        client.set_terminated(payload["run_id"], status=payload["status"])
    elif op == "log_artifact":
        client.log_artifact(payload["run_id"], payload["local_path"], payload["artifact_path"])
    else:
        raise ValueError(f"unknown fallback operation {op!r}")


def replay_fallback(path: str | Path, tracking_uri: str | None = None, client: Any = None) -> int:
    """Push the operations kept in a fallback file to the store, in order; returns how many went through.

    Those that still cannot reach the store stay in the file; those the store refuses are dropped.
    """
    from mlflow.tracking import MlflowClient

    path = Path(path)
    if not path.is_file():
        return 0
    client = client or MlflowClient(tracking_uri)
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    done = 0
    for i, line in enumerate(lines):
        record = json.loads(line)
        try:
            _apply(client, record["op"], record["payload"])
        except Exception as exc:
            if refused(exc):
                warnings.warn(f"MLflow refused a kept {record['op']}: {exc}", RuntimeWarning, stacklevel=2)
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
    one and leaving the old RUNNING forever (what Ray's ``MLflowLoggerCallback`` does).

    Args:
        tracking_uri, experiment: where to log.
        parent_run_id: the search's parent run.
        phase: tag for every trial run of this experiment (``range_test``, ``weight_decay``, …).
        fallback: the fallback file (default: ``mlflow-fallback.jsonl`` in the working folder).
        step_attr: the result field used as the metric step (default ``step`` for range tests, else ``epoch``).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        parent_run_id: str | None,
        phase: str = "train",
        fallback: str | Path = FALLBACK_FILE,
    ) -> None:
        self.tracking_uri, self.experiment, self.parent_run_id, self.phase = tracking_uri, experiment, parent_run_id, phase
        self.fallback = str(fallback)
        self.runs: dict[str, str] = {}  # trial id → run id
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
        return self.runs[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._run_for(trial)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
        run_id = self._run_for(trial)
        step = result.get("step") if self.phase == "range_test" else result.get("epoch", result.get("training_iteration"))
        keys = [*METRICS, *(k for k in result if k.startswith(("val_", "test_")))]
        metrics = {k: float(result[k]) for k in keys if isinstance(result.get(k), int | float) and math.isfinite(result[k])}
        tags = {tag: str(result[key]) for key, tag in TAGS.items() if result.get(key) not in (None, "")}
        if result.get("diverged"):
            tags["tunekit.diverged"] = "true"
        if result.get("trial_dir"):
            tags["tunekit.trial_dir"] = str(result["trial_dir"])
        if result.get("checkpoint_dir_name") and result.get("trial_dir"):
            # where this run's latest snapshot lives, so it can be continued from the UI's run
            tags["tunekit.checkpoint"] = f"{str(result['trial_dir']).rstrip('/')}/{result['checkpoint_dir_name']}"
        self.tracker.log(run_id, metrics=metrics, step=int(step or 0), tags=tags)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.tracker.finish(self._run_for(trial), "FINISHED")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.tracker.finish(self._run_for(trial), "FAILED")

    def get_state(self) -> dict[str, Any]:
        return {"runs": dict(self.runs)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.runs = dict(state.get("runs", {}))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tracker"] = None  # the client is rebuilt where the callback lands
        return state


def _trial_params(config: Mapping[str, Any]) -> dict[str, Any]:
    # the preset's fields by their own dotted names, then the trial's overrides under theirs
    params: dict[str, Any] = dict(config.get("preset", {}))
    params.update({k: v for k, v in config.items() if k != "preset"})
    return params

"""Reading tunekit's records back from MLflow (no Ray needed): the best configuration, a run's snapshot."""

from __future__ import annotations

import functools
import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tunekit.tracking.mlflow_log import TrackingError, mlflow_client, refused, trial_run
from tunekit.tracking.search_log import BEST_CONFIG

T = TypeVar("T")


class NotFound(LookupError):
    """The run, experiment or artifact asked for is not in the store; the message says what is."""


def _client(tracking_uri: str) -> Any:
    return mlflow_client(tracking_uri)


def _reads(query: Callable[..., T]) -> Callable[..., T]:
    """A read of the store: an unreachable store is a :class:`TrackingError` (one line naming it), not a traceback."""

    @functools.wraps(query)
    def read(tracking_uri: str, *args: Any, **kwargs: Any) -> T:
        from mlflow.exceptions import MlflowException

        try:
            return query(tracking_uri, *args, **kwargs)
        except (MlflowException, OSError) as exc:
            if refused(exc):
                raise NotFound(str(exc).splitlines()[0]) from None
            raise TrackingError(
                f"MLflow at {tracking_uri} did not answer ({type(exc).__name__}); start it again or pass --tracking-uri"
            ) from None

    return read


#: The parent runs of finished searches and trainings (a range test chooses no best trial run).
_FINISHED_SEARCHES = "attributes.status = 'FINISHED' and tags.`tunekit.best_run_id` != ''"


@_reads
def find_parent(tracking_uri: str, experiment: str | None = None, run_id: str | None = None, metric: str | None = None) -> Any:
    """The search (parent) run: ``run_id`` itself (or its parent, for a trial run), else one finished search of ``experiment``:
    the latest, or with ``metric`` the best by that final metric (see :func:`best_by_metric`)."""
    client = _client(tracking_uri)
    if run_id:
        if metric:
            raise NotFound(f"--metric {metric}: picks the best search of an --experiment; give --experiment, not --run")
        try:
            run = client.get_run(run_id)
        except Exception as exc:
            if not refused(exc):
                raise
            raise NotFound(f"--run {run_id}: no such run in {tracking_uri}") from None
        parent = run.data.tags.get("mlflow.parentRunId")
        return client.get_run(parent) if parent else run
    if not experiment:
        raise NotFound("give --experiment NAME or --run RUN_ID")
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise NotFound(f"--experiment {experiment!r}: not in {tracking_uri} (experiments there: {names})")
    if metric:
        return best_by_metric(_finished_searches(client, found.experiment_id), metric, experiment)
    runs = client.search_runs(
        [found.experiment_id], filter_string=_FINISHED_SEARCHES, order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        raise NotFound(f"--experiment {experiment!r}: no finished tunekit search or training in it yet")
    return runs[0]


def _finished_searches(client: Any, experiment_id: str) -> list[Any]:
    """Every finished search (or training) of an experiment, latest first."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=_FINISHED_SEARCHES,
            order_by=["attributes.start_time DESC"],
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def best_by_metric(runs: list[Any], metric: str, experiment: str) -> Any:
    """The run of ``runs`` (latest first) with the best final ``metric``, as tunekit logs it on a search's parent run.

    ``metric`` is ``test_acc`` or ``best_test_acc`` (the parent's name for it). Lower is better for a loss; for the
    preset's metric, its ``mode`` says (the parent's ``preset.metric.mode``; accuracy, the default metric: higher).
    Ties go to the latest search.

    Raises:
        NotFound: no run carries the metric (the message lists those they carry), or its direction is unknown.
    """
    key = metric if metric.startswith("best_") else f"best_{metric}"
    scored = [(run, run.data.metrics[key]) for run in runs if math.isfinite(run.data.metrics.get(key, math.nan))]
    if not scored:
        carried = sorted({k.removeprefix("best_") for run in runs for k in run.data.metrics if k.startswith("best_")})
        raise NotFound(
            f"--metric {metric}: no finished search in {experiment!r} has it (they have: {', '.join(carried) or 'none'})"
        )
    mode = metric_mode(key.removeprefix("best_"), scored[0][0].data.params)
    if mode is None:
        raise NotFound(f"--metric {metric}: tunekit cannot tell whether higher or lower is better; give a test_/val_ metric")
    sign = -1.0 if mode == "max" else 1.0
    return min(scored, key=lambda pair: sign * pair[1])[0]  # min keeps the first (latest) of equals


def metric_mode(metric: str, params: dict[str, str]) -> str | None:
    """``min`` or ``max`` for a final metric (``test_acc``, ``val_loss``, …) of a search whose parent has ``params``."""
    split, _, name = metric.partition("_")
    if split not in ("test", "val") or not name:
        return None
    if name == "loss":
        return "min"
    if params.get("preset.metric.mode") in ("min", "max"):
        return params["preset.metric.mode"]
    return "max" if name == "acc" else None  # the default metric of a classification: accuracy


def best_config(
    tracking_uri: str, experiment: str | None = None, run_id: str | None = None, metric: str | None = None
) -> dict[str, Any]:
    """The chosen configuration (a preset mapping) recorded on a search's parent run (see :func:`find_parent`)."""
    import os

    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stdout/stderr stay clean for scripts
    parent = find_parent(tracking_uri, experiment, run_id, metric)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=parent.info.run_id, artifact_path=BEST_CONFIG, dst_path=tmp, tracking_uri=tracking_uri
            )
        except Exception:
            raise NotFound(f"run {parent.info.run_id} has no {BEST_CONFIG}: it did not finish") from None
        loaded = yaml.safe_load(Path(path).read_text())
    return dict(loaded)


@_reads
def snapshot_of(tracking_uri: str, run_id: str) -> tuple[str, str, str]:
    """(checkpoint location, parent run id, experiment name) to continue ``run_id`` from.

    A parent run stands for its best trial run.
    """
    client = _client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        if not refused(exc):
            raise
        raise NotFound(f"RUN_ID {run_id}: no such run in {tracking_uri}") from None
    tags = run.data.tags
    if "mlflow.parentRunId" not in tags:
        best = tags.get("tunekit.best_run_id")
        if not best:
            raise NotFound(f"run {run_id} is a search without a best trial run; give a trial run's id")
        run = client.get_run(best)
        tags = run.data.tags
    checkpoint = tags.get("tunekit.checkpoint")
    if not checkpoint:
        raise NotFound(f"run {run.info.run_id} records no checkpoint (tag tunekit.checkpoint)")
    experiment = client.get_experiment(run.info.experiment_id).name
    return checkpoint, tags["mlflow.parentRunId"], experiment


@dataclass(frozen=True)
class Snapshot:
    """A run's recorded snapshot, loaded to continue from."""

    checkpoint: str  # the checkpoint folder the continuation restores
    parent_run_id: str  # the search (parent) run the continuation joins
    experiment: str  # that search's MLflow experiment
    state: dict[str, Any]  # the trainer state in it: ``preset``, ``epoch``, the weights


def load_snapshot(tracking_uri: str, run_id: str) -> Snapshot:
    """The snapshot recorded on ``run_id`` (a trial run, or a search's parent run: its best trial), read from disk.

    Raises:
        NotFound: no such run or no checkpoint recorded on it (see :func:`snapshot_of`); the
            snapshot folder (local, or on object storage: read through a local cache) is gone,
            cannot be reached, or holds no state.
    """
    from tunekit import storage
    from tunekit.trainable import load_state

    checkpoint, parent, experiment = snapshot_of(tracking_uri, run_id)
    try:
        if not storage.is_dir(checkpoint):
            raise NotFound(f"the snapshot {checkpoint} recorded on run {run_id} is gone; nothing to continue from")
        with storage.local_copy(checkpoint) as folder:
            state = load_state(folder)
    except FileNotFoundError as exc:
        raise NotFound(str(exc)) from None
    except OSError as exc:  # object storage that cannot be reached, or refuses the credentials
        raise NotFound(f"cannot read the snapshot {checkpoint}: {exc}") from None
    return Snapshot(checkpoint, parent, experiment, state)


def load_model(tracking_uri: str, run_id: str | None = None, experiment: str | None = None) -> Any:
    """The final model of a search or training, rebuilt from MLflow: its preset's architecture, its weights.

    ``model = load_model("sqlite:///runs/mlflow.db", experiment="mnist1d-cnn"); model.eval()``
    """
    import json
    import os

    import mlflow
    import torch

    from tunekit.presets import load_preset
    from tunekit.tracking.search_log import MODEL_META, MODEL_STATE
    from tunekit.train.models import build_model

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parent = find_parent(tracking_uri, experiment, run_id)
    preset = load_preset(best_config(tracking_uri, run_id=parent.info.run_id))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            weights = mlflow.artifacts.download_artifacts(
                run_id=parent.info.run_id, artifact_path=MODEL_STATE, dst_path=tmp, tracking_uri=tracking_uri
            )
            meta_path = mlflow.artifacts.download_artifacts(
                run_id=parent.info.run_id, artifact_path=MODEL_META, dst_path=tmp, tracking_uri=tracking_uri
            )
        except Exception:
            raise NotFound(f"run {parent.info.run_id} has no {MODEL_STATE}") from None
        meta = json.loads(Path(meta_path).read_text())
        classes = meta.get("num_classes")  # None for a user's model: its factory knows its own shape
        model = build_model(preset.model, None if classes is None else int(classes), tuple(meta.get("input_shape") or ()))
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model


def run_of_trial(tracking_uri: str, parent_run_id: str, trial_id: str) -> str | None:
    """The MLflow run of one Tune trial of a search (tag ``tunekit.trial_id``), or None.

    The run this process logged the trial into, when it did (its id may be a local one, while the
    store is down); else the store is asked. An unreachable store is no error here: the search
    ends without tagging its best trial run (with a warning).
    """
    known = trial_run(parent_run_id, trial_id)
    if known is not None:
        return known
    try:
        client = _client(tracking_uri)
        parent = client.get_run(parent_run_id)
        runs = client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.`tunekit.trial_id` = '{trial_id}'",
            max_results=1,
        )
    except Exception as exc:
        if not refused(exc):
            warnings.warn(
                f"MLflow at {tracking_uri} could not be asked for trial {trial_id}'s run ({type(exc).__name__}); "
                "the search's best trial run is not tagged",
                RuntimeWarning,
                stacklevel=2,
            )
        return None
    return runs[0].info.run_id if runs else None

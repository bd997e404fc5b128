"""Reading tunekit's records back from MLflow (no Ray needed): the best configuration, a run's snapshot."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunekit.tracking.search_log import BEST_CONFIG


class NotFound(LookupError):
    """The run, experiment or artifact asked for is not in the store; the message says what is."""


def _client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


def find_parent(tracking_uri: str, experiment: str | None = None, run_id: str | None = None) -> Any:
    """The search (parent) run: ``run_id`` itself (or its parent, for a trial run), or the latest finished one of ``experiment``."""
    client = _client(tracking_uri)
    if run_id:
        try:
            run = client.get_run(run_id)
        except Exception:
            raise NotFound(f"--run {run_id}: no such run in {tracking_uri}") from None
        parent = run.data.tags.get("mlflow.parentRunId")
        return client.get_run(parent) if parent else run
    if not experiment:
        raise NotFound("give --experiment NAME or --run RUN_ID")
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise NotFound(f"--experiment {experiment!r}: not in {tracking_uri} (experiments there: {names})")
    runs = client.search_runs(
        [found.experiment_id],
        filter_string="attributes.status = 'FINISHED' and tags.`tunekit.best_run_id` != ''",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise NotFound(f"--experiment {experiment!r}: no finished tunekit search or training in it yet")
    return runs[0]


def best_config(tracking_uri: str, experiment: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """The chosen configuration (a preset mapping) recorded on a search's parent run."""
    import os

    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stdout/stderr stay clean for scripts
    parent = find_parent(tracking_uri, experiment, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=parent.info.run_id, artifact_path=BEST_CONFIG, dst_path=tmp, tracking_uri=tracking_uri
            )
        except Exception:
            raise NotFound(f"run {parent.info.run_id} has no {BEST_CONFIG}: it did not finish") from None
        loaded = yaml.safe_load(Path(path).read_text())
    return dict(loaded)


def snapshot_of(tracking_uri: str, run_id: str) -> tuple[str, str, str]:
    """(checkpoint location, parent run id, experiment name) to continue ``run_id`` from.

    A parent run stands for its best trial run.
    """
    client = _client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception:
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
            snapshot folder is gone or holds no state; it is remote (``s3://…``), where only a
            cluster node or a local copy can read it.
    """
    from tunekit.core.storage import is_uri
    from tunekit.trainable import load_state

    checkpoint, parent, experiment = snapshot_of(tracking_uri, run_id)
    if is_uri(checkpoint):
        raise NotFound(f"the snapshot {checkpoint} is remote; copy it locally or run `tunekit continue` on a cluster node")
    if not Path(checkpoint).is_dir():
        raise NotFound(f"the snapshot {checkpoint} recorded on run {run_id} is gone; nothing to continue from")
    try:
        state = load_state(checkpoint)
    except FileNotFoundError as exc:
        raise NotFound(str(exc)) from None
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
    """The MLflow run of one Tune trial of a search (tag ``tunekit.trial_id``), or None."""
    client = _client(tracking_uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.`tunekit.trial_id` = '{trial_id}'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None

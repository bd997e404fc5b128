"""Reading a run's snapshot back from MLflow to continue from it (a real sqlite store, no Ray session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import tiny_preset_dict
from tunekit.tracking.queries import NotFound, Snapshot, load_snapshot


def _trial_run(uri: str, checkpoint: str) -> tuple[str, str]:
    """A search's parent run and one trial run under it recording ``checkpoint``; returns (parent, trial) ids."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name("snapshots")
    experiment_id = found.experiment_id if found is not None else client.create_experiment("snapshots")
    parent = client.create_run(experiment_id).info.run_id
    trial = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent, "tunekit.checkpoint": checkpoint})
    return parent, trial.info.run_id


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def test_load_snapshot_reads_the_recorded_state(uri: str, tmp_path: Path) -> None:
    from tunekit.trainable import save_state

    save_state({"preset": tiny_preset_dict(), "epoch": 3}, tmp_path)
    parent, trial = _trial_run(uri, str(tmp_path))
    # the checkpoint, the search to join, its experiment and the state in the folder
    assert load_snapshot(uri, trial) == Snapshot(str(tmp_path), parent, "snapshots", {"preset": tiny_preset_dict(), "epoch": 3})


@pytest.mark.parametrize(
    ("checkpoint", "message"),
    [
        ("{tmp}/gone", "is gone; nothing to continue from"),
        ("{tmp}", "holds no state.pt"),
        ("s3://bucket/ckpt?endpoint_override=127.0.0.1:9&scheme=http", "cannot read the snapshot s3://bucket/ckpt"),
    ],
)
def test_load_snapshot_unreadable_is_one_line(uri: str, tmp_path: Path, checkpoint: str, message: str) -> None:
    _, trial = _trial_run(uri, checkpoint.format(tmp=tmp_path))
    with pytest.raises(NotFound) as caught:
        load_snapshot(uri, trial)
    # one line saying why there is nothing to continue from
    assert message in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1

"""One MLflow store per storage: what train/range-test/search write is what best/continue read (no Ray session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunekit.cli import app
from tunekit.runner import tracking_uri_for
from tunekit.tracking import TrackingError


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home (``~/tunekit_runs`` lands under tmp_path) and no tracking or storage from the environment."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("TUNEKIT_STORAGE", raising=False)
    return home


def _storage(kind: str, tmp_path: Path) -> str:
    return str(tmp_path / "runs") if kind == "folder" else "s3://bucket/runs"


def _make_store(uri: str) -> str:
    """A real sqlite store at ``uri`` holding experiment ``present`` with one run; returns the run id."""
    from tunekit.tracking import Tracker

    return Tracker(uri, "present", Path(uri.removeprefix("sqlite:///")).parent / "fallback.jsonl").start_run("r")


@pytest.mark.parametrize("kind", ["folder", "uri"])
def test_tracking_uri_for_writers_and_readers_agree(kind: str, tmp_path: Path) -> None:
    storage = _storage(kind, tmp_path)
    written = tracking_uri_for(None, storage)
    Path(written.removeprefix("sqlite:///")).touch()
    # the store best/continue read is the one train/search wrote
    assert tracking_uri_for(None, storage, must_exist=True) == written


def test_tracking_uri_for_local_folder_is_sqlite_in_it(tmp_path: Path) -> None:
    # a folder keeps its store beside the runs
    assert tracking_uri_for(None, str(tmp_path / "runs")) == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"


def test_tracking_uri_for_uri_storage_is_sqlite_under_home(home: Path) -> None:
    uri = tracking_uri_for(None, "s3://bucket/runs")
    # sqlite needs a local file: ~/tunekit_runs, never a mangled "s3:/bucket/…" path
    assert uri == f"sqlite:///{home / 'tunekit_runs' / 'mlflow.db'}"
    assert "s3:" not in uri


def test_tracking_uri_for_default_storage_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEKIT_STORAGE", str(tmp_path / "env-runs"))
    # no --storage: $TUNEKIT_STORAGE, as run_trial and search use it
    assert tracking_uri_for(None, None) == f"sqlite:///{tmp_path / 'env-runs' / 'mlflow.db'}"


@pytest.mark.parametrize(
    ("explicit", "env", "expected"),
    [
        ("http://explicit:5000", "http://env:5000", "http://explicit:5000"),
        (None, "http://env:5000", "http://env:5000"),
        ("sqlite:////x/explicit.db", None, "sqlite:////x/explicit.db"),
    ],
)
@pytest.mark.parametrize("must_exist", [False, True])
def test_tracking_uri_for_explicit_then_environment(
    explicit: str | None, env: str | None, expected: str, must_exist: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env is not None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", env)
    # --tracking-uri wins over $MLFLOW_TRACKING_URI, which wins over the sqlite default (never checked for a file)
    assert tracking_uri_for(explicit, str(tmp_path / "runs"), must_exist=must_exist) == expected


@pytest.mark.parametrize("kind", ["folder", "uri"])
def test_tracking_uri_for_missing_store_names_the_flags(kind: str, tmp_path: Path) -> None:
    storage = _storage(kind, tmp_path)
    with pytest.raises(TrackingError) as caught:
        tracking_uri_for(None, storage, must_exist=True)
    message = str(caught.value)
    # a ValueError with one line naming both flags; reading creates nothing
    assert isinstance(caught.value, ValueError)
    assert "--tracking-uri" in message
    assert "--storage" in message
    assert len(message.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("kind", ["folder", "uri"])
def test_best_and_continue_read_the_store_train_wrote(kind: str, tmp_path: Path) -> None:
    storage = _storage(kind, tmp_path)
    run = _make_store(tracking_uri_for(None, storage))
    best = CliRunner().invoke(app, ["best", "--experiment", "absent", "--storage", storage])
    # best found the store: its error lists the experiment that is in it
    assert best.exit_code == 2
    assert "present" in best.output
    cont = CliRunner().invoke(app, ["continue", run, "--storage", storage])
    # continue found the same store and the run in it (a run without a best trial)
    assert cont.exit_code == 2
    assert "best trial run" in cont.output

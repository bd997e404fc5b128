"""MLflow faults (issue 17): a server killed mid-search, two processes creating one experiment, a bad tracking store.

Everything here talks to a real `mlflow server` process or a real sqlite store, with the HTTP retry settings
production uses: nothing stands in for MLflow.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from tests.conftest import tiny_preset_dict
from tests.mlflow_server import MlflowServer, create_experiments, free_port
from tunekit.cli import app

#: A search of two phases (the range test, then two short final replicates): the server dies between them.
OUTAGE_SEARCH: dict[str, Any] = {**tiny_preset_dict()["search"], "final": {"epochs": 2, "replicates": 2}}


def _kill_after_first_decision(server: MlflowServer, directory: Path, killed: threading.Event, stop: threading.Event) -> None:
    """SIGKILL the server once search.json records the range test's decision (it is logged by then)."""
    state = directory / "search.json"
    while not stop.is_set():
        try:
            done = json.loads(state.read_text()).get("done", {})
        except (OSError, json.JSONDecodeError):
            done = {}
        if "range_test" in done:
            server.stop()
            killed.set()
            return
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_search_outlives_a_killed_server_and_what_it_kept_is_replayed(tmp_path: Path) -> None:
    import tunekit
    from tunekit.recipe import read_state
    from tunekit.tracking import FALLBACK_FILE

    (tmp_path / "server").mkdir()
    server = MlflowServer(tmp_path / "server")
    server.start()
    directory = tmp_path / "runs" / "outage"
    killed, stop = threading.Event(), threading.Event()
    killer = threading.Thread(target=_kill_after_first_decision, args=(server, directory, killed, stop), daemon=True)
    killer.start()
    try:
        started = time.monotonic()
        result = tunekit.search(
            tiny_preset_dict(search=OUTAGE_SEARCH),
            name="outage",
            storage=str(tmp_path / "runs"),
            phases=["range_test", "final"],
            tracking_uri=server.uri,
            experiment="outage",
            progress=False,
        )
        search_s = time.monotonic() - started
        assert killed.is_set(), "the search ended before the server could be killed"
        # the search finished without its server: search.json says so, the logging waits in the fallback file
        assert read_state(str(directory)).result is not None
        kept = directory / FALLBACK_FILE
        assert kept.is_file()
        assert kept.read_text().strip()
        assert search_s < 80, f"a dead server slowed the search down to {search_s:.0f} s"

        # the server is back (same store, same port): `tunekit replay` pushes what was kept, and nothing is left over
        server.start()
        replayed = CliRunner().invoke(app, ["replay", str(directory)])  # the store is the search's own (search.json)
        assert replayed.exit_code == 0, replayed.output
        assert re.fullmatch(rf"replayed [1-9]\d* MLflow operations into {re.escape(server.uri)}\n", replayed.output)
        assert not kept.exists()
        client = MlflowClient(server.uri)
        assert result.run_id is not None
        parent = client.get_run(result.run_id)
        assert parent.info.status == "FINISHED"
        assert parent.data.metrics["best_test_acc"] == pytest.approx(result.accuracy_mean)
        assert "max_lr" in parent.data.params  # the decision logged before the kill
        children = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        )
        assert sorted(c.data.tags["tunekit.phase"] for c in children).count("final") == 2
        assert {c.data.tags["tunekit.phase"] for c in children} == {"range_test", "final"}
        assert all(c.info.status == "FINISHED" for c in children)
        best = [c for c in children if c.data.tags.get("tunekit.best") == "true"]
        assert len(best) == 1
        assert parent.data.tags["tunekit.best_run_id"] == best[0].info.run_id
        assert [m.step for m in client.get_metric_history(best[0].info.run_id, "val_loss")] == [1, 2]
        artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
        assert {"best_config.yaml", "report.html", "report.md", "model"} <= artifacts
        shown = CliRunner().invoke(app, ["best", "--experiment", "outage", "--tracking-uri", server.uri])
        assert shown.exit_code == 0, shown.output
        assert yaml.safe_load(shown.stdout)["name"] == "tiny"
    finally:
        stop.set()
        server.stop()


def test_a_tracker_opened_while_the_server_is_down_keeps_everything_and_replays_it(tmp_path: Path) -> None:
    """Experiment lookup and run creation go through the fallback too: local run ids, mapped to real ones on replay."""
    from tunekit.tracking import Tracker, replay_fallback

    (tmp_path / "server").mkdir()
    server = MlflowServer(tmp_path / "server")
    fallback = tmp_path / "search" / "mlflow-fallback.jsonl"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tracker = Tracker(server.uri, "offline", fallback)
            parent = tracker.start_run("search", params={"preset": {"max_lr": 0.5}})
            child = tracker.start_run("trial", tags={"tunekit.trial_id": "t1"}, parent=parent)
            for step in (1, 2, 3):
                tracker.log(child, metrics={"val_loss": 1.0 / step}, step=step)
            tracker.finish(child)
            tracker.log(parent, tags={"tunekit.best_run_id": child})
            tracker.finish(parent)
        said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(said) == 1, said  # one warning, naming the file the data waits in; nothing raised
        assert str(fallback) in said[0]
        server.start()
        assert replay_fallback(fallback, server.uri) == 9  # 2 runs created, their params, 3 steps, a tag, 2 ends
        client = MlflowClient(server.uri)
        experiment = client.get_experiment_by_name("offline")
        assert experiment is not None
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
        assert set(runs) == {"search", "trial"}
        real_parent, real_child = runs["search"].info.run_id, runs["trial"].info.run_id
        assert runs["trial"].data.tags["mlflow.parentRunId"] == real_parent
        assert runs["search"].data.tags["tunekit.best_run_id"] == real_child
        assert runs["search"].data.params["preset.max_lr"] == "0.5"
        assert [(m.step, m.value) for m in client.get_metric_history(real_child, "val_loss")] == [
            (1, 1.0),
            (2, 0.5),
            (3, pytest.approx(1 / 3)),
        ]
        assert {r.info.status for r in runs.values()} == {"FINISHED"}
        # the local ids the search handed out still name the real runs (a resumed search logs on into them)
        later = Tracker(server.uri, "offline", fallback)
        later.log(child, metrics={"val_loss": 0.25}, step=4)
        assert [m.step for m in client.get_metric_history(real_child, "val_loss")] == [1, 2, 3, 4]
    finally:
        server.stop()


def test_two_processes_creating_one_experiment_never_race(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # the schema, made once (not what is under test)
    names = [f"race-{i}" for i in range(20)]
    context = multiprocessing.get_context("spawn")
    barrier, errors = context.Barrier(2), context.Queue()
    workers = [context.Process(target=create_experiments, args=(uri, names, barrier, errors, str(tmp_path))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    assert [w.exitcode for w in workers] == [0, 0]
    client = MlflowClient(uri)
    for name in names:
        experiments = client.search_experiments(filter_string=f"name = '{name}'")
        assert len(experiments) == 1, name
        assert len(client.search_runs([experiments[0].experiment_id])) == 2, name


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tunekit.cli", *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}
    )


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("uri", "named"),
    [(f"http://127.0.0.1:{free_port()}", "no MLflow server answers"), ("htp://typo:5000", "cannot use")],
    ids=["no-server", "typo"],  # not the port: a free port differs between collections
)
def test_a_bad_mlflow_tracking_uri_is_one_line_before_anything_starts(uri: str, named: str, tmp_path: Path) -> None:
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(tiny_preset_dict()))
    storage = tmp_path / "runs"
    proc = _cli(["search", str(preset), "--storage", str(storage)], {"MLFLOW_TRACKING_URI": uri})
    line = _one_error_line(proc)
    assert "$MLFLOW_TRACKING_URI" in line
    assert named in line
    assert not storage.exists()


def test_resuming_a_search_whose_server_is_gone_is_one_line(tmp_path: Path) -> None:
    from tunekit.recipe.state import SearchState, TrackingState

    dead = f"http://127.0.0.1:{free_port()}"
    directory = tmp_path / "runs" / "gone"
    state = SearchState("gone", str(directory), str(tmp_path / "runs"), tiny_preset_dict(), ["range_test"])
    state.tracking = TrackingState(dead, "tiny", parent_run_id="0123456789abcdef")
    state.save()
    proc = _cli(["resume", str(directory)], {})
    line = _one_error_line(proc)
    assert dead in line
    assert "start" in line  # the fix: start the search's server again
    assert not (directory / "range_test").exists()

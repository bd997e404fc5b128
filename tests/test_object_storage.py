"""Searches on object storage, against a real S3-compatible server (moto's, on 127.0.0.1).

The endpoint is given the two ways users give it: ``AWS_ENDPOINT_URL`` in the environment (a search
in its own processes, SIGKILLed and resumed, with MLflow's artifact store on the same bucket), and a
query string in the storage URI (a search in the shared Ray session, whose workers know nothing of
the endpoint but what the URI says). The snapshot strategy copies a checkpoint between S3 folders;
``report``, ``best``, ``continue`` and ``range-test`` read and write there; nothing but caches lands
on the local disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from tests.conftest import TINY_SHORT_RUNS
from tests.mlflow_server import MlflowServer
from tests.s3_server import BUCKET, S3Server
from tests.test_recipe import cli, write_preset
from tunekit.cli import app

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TRAIN = {"epochs": 6, "batch_size": 64, "seed": 0, "min_epochs": 2}
SEARCH = {
    "weight_decay": {"strategy": "snapshot", "epochs": 2, "max_trials": 3, "candidates": [1e-3, 1e-4], **TINY_SHORT_RUNS},
    "final": {"epochs": 2, "replicates": 1},
}
#: with the LR's short runs and momentum's, whose candidate at the preset's momentum is the LR phase's chosen run
SHORT_RUNS = {
    **SEARCH,
    # the weight decay kept as the bisection chose it, whichever LR wins: the momentum phase's run at 0.95 is then
    # always the learning_rate phase's, and is read back from the bucket (a rebalanced one would train again)
    "learning_rate": {"factors": [1.0, 0.5], "lowest_factor": 0.5, "epochs": 2, "balance_weight_decay": False, **TINY_SHORT_RUNS},
    "momentum": {"candidates": [0.95, 0.9], "epochs": 2, **TINY_SHORT_RUNS},
}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def tunekit(*args: str, env: dict[str, str], timeout: float = 600) -> dict[str, Any]:
    """``tunekit ARGS --json`` in its own process (its own Ray); the JSON it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "tunekit.cli", *args, "--json"], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return dict(json.loads(done.stdout))


def test_a_search_on_s3_resumes_after_a_sigkill_and_continues(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint from the environment; the driver SIGKILLed mid snapshot phase; MLflow's artifacts on the bucket."""
    mlflow = MlflowServer(tmp_path / "mlflow", artifacts=f"s3://{BUCKET}/mlflow", env=s3.env())
    mlflow.start()
    home = tmp_path / "home"
    env = {**os.environ, **s3.env(), "HOME": str(home), "PYTHONUNBUFFERED": "1", "RAY_AIR_NEW_OUTPUT": "0"}
    storage = f"s3://{BUCKET}/runs"
    search = ["search", str(write_preset(tmp_path, search=SEARCH, train=TRAIN)), "--phases", "weight_decay,final", "--storage", storage, "--name", "killed",
              "--tracking-uri", mlflow.uri]  # fmt: skip
    driver = subprocess.Popen(
        [sys.executable, "-m", "tunekit.cli", *search],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_a_finished_continuation(s3, "runs/killed/weight_decay/", driver)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)  # and the local Ray it started
    try:
        for key, value in s3.env().items():
            monkeypatch.setenv(key, value)
        state = json.loads(s3.text("runs/killed/search.json"))
        assert "weight_decay" not in state["done"], "the kill came too late to test a mid-phase resume"

        resumed = tunekit("resume", f"{storage}/killed", env=env)
        assert list(resumed["phases"]) == ["weight_decay", "final"]
        wd = resumed["phases"]["weight_decay"]
        assert wd["trials"] >= 3  # the base run and at least two continuations, across the kill
        assert len(set(wd["evidence"].values())) == len(wd["evidence"])  # each weight decay really trained
        # one snapshot, copied once: the resumed phase continued from it instead of training the base run again
        snapshots = {k.split("/")[4] for k in s3.keys("runs/killed/weight_decay/snapshots/")} - {""}  # "": the folder
        assert len(snapshots) == 1, snapshots
        assert resumed["directory"] == f"{storage}/killed"
        assert resumed["best_checkpoint"].startswith(f"{storage}/killed/final/trial_")

        # report and best read the bucket and the store
        shown = cli("report", f"{storage}/killed").stdout
        assert "weight_decay" in shown
        assert "final" in shown
        chosen = json.loads(
            cli("best", "--tracking-uri", mlflow.uri, "--run", resumed["mlflow_run_id"], "--format", "json").stdout
        )
        assert chosen["weight_decay"] == pytest.approx(wd["values"]["weight_decay"])

        # MLflow's artifact store is the same bucket: the final model and the report page are objects there
        client = MlflowClient(mlflow.uri)
        assert {a.path for a in client.list_artifacts(resumed["mlflow_run_id"], "model")}
        stored = s3.keys("mlflow/")
        assert any(k.endswith("/report.html") for k in stored)
        assert any("/model/" in k for k in stored)
        # every trial run records where its checkpoint is: a location on the bucket, scheme and all
        parent = client.get_run(resumed["mlflow_run_id"])
        children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        assert children
        assert all(c.data.tags["tunekit.checkpoint"].startswith(f"{storage}/killed/") for c in children)

        # continue from the search's best trial: the snapshot is read from S3, the new trial written there
        more = tunekit("continue", resumed["mlflow_run_id"], "--tracking-uri", mlflow.uri, "--storage", storage,
                       "--set", "train.epochs=4", env=env)  # fmt: skip
        assert more["restored_from"] == resumed["best_checkpoint"]
        assert more["epochs"] == 4
        assert more["checkpoint"].startswith(f"{storage}/")
        assert s3.keys(more["checkpoint"].removeprefix(f"s3://{BUCKET}/") + "/state.pt")
    finally:
        mlflow.stop()
    # nothing of the runs on the local disk: no trial results, and checkpoints only in the read cache
    assert not list(home.rglob("result.json"))
    assert all(".cache/tunekit" in str(p) for p in home.rglob("state.pt"))


def test_the_endpoint_in_the_uri_is_enough_for_every_process(
    s3: S3Server, tmp_path: Path, ray_session: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No AWS_ENDPOINT_URL anywhere: the shared Ray session's workers reach the bucket through the URI's query string."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("TUNEKIT_CACHE", str(tmp_path / "cache"))
    storage = s3.uri("query")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    preset = write_preset(tmp_path, search=SHORT_RUNS, train=TRAIN)
    summary = json.loads(cli("search", str(preset), "--phases", "weight_decay,learning_rate,momentum,final", "--storage",
                             storage, "--name", "q", "--json", "--tracking-uri", store).stdout)  # fmt: skip
    query = storage.split("?", 1)[1]
    assert summary["directory"] == f"s3://{BUCKET}/query/q?{query}"
    assert summary["best_checkpoint"].startswith(f"s3://{BUCKET}/query/q/final/trial_")
    assert summary["best_checkpoint"].endswith(query)
    assert s3.keys("query/q/search.json")
    continuations = summary["phases"]["weight_decay"]["trials"] - 1
    assert continuations >= 2
    assert len({k.split("/")[4] for k in s3.keys("query/q/weight_decay/snapshots/")} - {""}) == 1
    # the momentum phase read the LR phase's run at 0.95 from the bucket instead of training it again
    momentum = summary["phases"]["momentum"]
    assert (momentum["trials"], set(momentum["evidence"])) == (1, {"0.95", "0.9"})
    assert "momentum=[0.95,0.85] (learning_rate trial " in momentum["reason"]
    assert len({k.split("/")[3] for k in s3.keys("query/q/momentum/") if k.split("/")[3].startswith("trial_")}) == 1
    # the final model went to MLflow, read from the bucket through the cache
    assert {a.path for a in MlflowClient(store).list_artifacts(summary["mlflow_run_id"], "model")}
    assert list((tmp_path / "cache" / "storage").glob("*/state.pt"))

    more = json.loads(cli("continue", summary["mlflow_run_id"], "--tracking-uri", store, "--storage", storage,
                          "--set", "train.epochs=4", "--json").stdout)  # fmt: skip
    assert more["epochs"] == 4
    assert more["restored_from"] == summary["best_checkpoint"]

    # a range test writes its curve beside its trial, on the bucket
    curve = json.loads(cli("range-test", str(preset), "--storage", storage, "--name", "rt", "--json", "--no-tracking").stdout)
    assert curve["curve"].startswith(f"s3://{BUCKET}/query/rt/")
    assert curve["curve"].endswith(query)
    text = s3.text(curve["curve"].split("?", 1)[0].removeprefix(f"s3://{BUCKET}/"))
    assert text.splitlines()[0].startswith("lr,val_loss")
    assert len(text.splitlines()) == curve["points"] + 1


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://no-such-bucket/runs?endpoint_override=127.0.0.1:{port}&scheme=http", "NO_SUCH_BUCKET"),
        ("s3://tunekit-runs/runs?endpoint_override=127.0.0.1:{closed}&scheme=http", "Could not connect"),
    ],
)
def test_storage_that_cannot_be_written_is_one_line_before_anything_starts(s3: S3Server, uri: str, message: str) -> None:
    from tests.mlflow_server import free_port

    storage = uri.format(port=s3.port, closed=free_port())
    result = CliRunner().invoke(app, ["search", "mnist1d", "--storage", storage, "--name", "x", "--no-tracking"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: --storage: cannot write s3://")
    assert message in lines[0]
    assert not s3.keys("runs/x/")


def _wait_for_a_finished_continuation(s3: S3Server, phase: str, driver: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    """Poll the phase's experiment state on the bucket until a continuation finished and another trial has not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if driver.poll() is not None:
            output = driver.stdout.read().decode() if driver.stdout else ""
            pytest.fail(f"the search ended before it could be killed:\n{output[-3000:]}")
        for key in s3.keys(phase):
            if not key.removeprefix(phase).startswith("experiment_state-"):
                continue
            try:
                trials = [json.loads(t[0]) for t in json.loads(s3.text(key))["trial_data"]]
            except (json.JSONDecodeError, KeyError, OSError):
                continue  # caught mid-write
            done = [t for t in trials if t["status"] == "TERMINATED" and "restore_from" in t["config"]]
            if done and len(done) < len(trials) - 1:
                return
        time.sleep(0.2)
    pytest.fail(f"no continuation finished under {phase}")

"""A real 2-node Ray cluster on this machine: `ray start --head` and `ray start --address` as separate
processes (each in its own process group, so the tests can kill a node and clean up everything),
a search submitted with `ray job submit`, trials on both nodes, and a worker node lost mid-trial."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TINY_SHORT_RUNS, tiny_preset_dict
from tests.test_ddp import ddp_preset
from tests.test_recipe import SEARCH

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TwoNodes:
    gcs: str  # host:port of the head
    dashboard: str  # http://127.0.0.1:port, where `ray job submit` goes
    head: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    head_node_id: str
    root: Path

    def submit(self, *args: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
        """``cluster/submit.sh PRESET …``: the repository goes up as the job's working dir."""
        env = {**ENV, "RAY_ADDRESS": self.dashboard, "TUNEKIT_PYTHON": sys.executable, "PATH": f"{BIN}:{ENV['PATH']}"}
        command = [str(REPO / "cluster" / "submit.sh"), *args]
        project = self.root / "project"  # what the job uploads as its working dir: the user's presets
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=project)


def _node(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1", *args],
        env=ENV,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: killpg takes the whole node down
    )


def _alive_nodes(gcs: str) -> list[dict[str, Any]]:
    code = (
        "import json, ray; ray.init(address=%r, logging_level='ERROR'); print(json.dumps([n for n in ray.nodes() if n['Alive']]))"
    )
    out = subprocess.run([sys.executable, "-c", code % gcs], env=ENV, capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else []


def _wait_for_job_server(dashboard: str, deadline: float) -> None:
    """The job agent comes up after the nodes do ("No available agent to submit job"): submit a no-op until one runs."""
    command = [str(BIN / "ray"), "job", "submit", "--address", dashboard, "--", sys.executable, "-c", "pass"]
    while True:
        done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the job server never accepted a job:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        time.sleep(2)


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    root = tmp_path_factory.mktemp("cluster")
    port, dashboard = free_port(), free_port()
    # short temp dir: Ray's socket paths must stay under 107 characters
    temp = Path(f"/tmp/tkc-{os.getpid()}")
    head = _node(
        ["--head", "--port", str(port), "--num-cpus", "1", "--temp-dir", str(temp), "--include-dashboard", "true",
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
         "--dashboard-agent-listen-port", str(free_port())],
        root / "head.log",
    )  # fmt: skip
    worker = None
    try:
        gcs = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        while len(nodes := _alive_nodes(gcs)) < 1 and time.monotonic() < deadline:
            time.sleep(1)
        # its own temp dir, as on a separate machine: the nodes' runtime-env agents must not share (and
        # garbage-collect) one folder of job working dirs
        # and its own agent port: the default (52365) may be taken by another Ray on this machine
        # (the test session's), and then no agent can run jobs
        worker = _node(
            ["--address", gcs, "--num-cpus", "1", "--temp-dir", f"{temp}w", "--dashboard-agent-listen-port", str(free_port())],
            root / "worker.log",
        )
        while len(nodes := _alive_nodes(gcs)) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert len(nodes) == 2, (root / "head.log").read_text()[-2000:]
        head_id = next(n["NodeID"] for n in nodes if "node:__internal_head__" in n["Resources"])
        dashboard_url = f"http://127.0.0.1:{dashboard}"
        _wait_for_job_server(dashboard_url, deadline)
        yield TwoNodes(gcs, dashboard_url, head, worker, head_id, root)
    finally:
        for process in (worker, head):
            if process is not None:
                _kill(process)
        subprocess.run(["rm", "-rf", str(temp), f"{temp}w"], check=False)


def write_preset(folder: Path, **search: Any) -> Path:
    path = folder / "project" / "preset.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(tiny_preset_dict(search={**SEARCH, **search})))
    return path


def node_rows(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """trial folder → its results (each carries the node it ran on)."""
    return {
        str(f.parent.relative_to(directory)): [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        for f in directory.glob("*/trial_*/result.json")
    }


def test_a_submitted_search_runs_to_the_end_on_both_nodes(cluster: TwoNodes) -> None:
    preset = write_preset(cluster.root)
    storage = cluster.root / "shared"
    done = cluster.submit(str(preset), "--storage", str(storage), "--shared-storage", "--name", "job", "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    state = json.loads((storage / "job" / "search.json").read_text())
    assert set(state["done"]) == {"range_test", "learning_rate", "momentum", "weight_decay", "final"}
    assert state["result"]["accuracies"]
    nodes = {row["node_id"] for rows in node_rows(storage / "job").values() for row in rows}
    assert len(nodes) == 2
    assert cluster.head_node_id in nodes


def test_a_local_storage_path_is_refused_on_two_nodes(cluster: TwoNodes) -> None:
    preset = write_preset(cluster.root)
    refused = cluster.submit(str(preset), "--storage", str(cluster.root / "local"), "--name", "x")
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "is local, but the Ray cluster has 2 nodes" in output
    assert "--shared-storage" in output
    assert not (cluster.root / "local" / "x" / "search.json").exists()  # refused before anything was written
    # a single training too (tunekit train), with the CLI's exit code 2
    command = [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard, "--", sys.executable, "-m", "tunekit.cli",
               "train", str(preset), "--address", "auto", "--storage", str(cluster.root / "local")]  # fmt: skip
    trained = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert trained.returncode != 0
    assert "exit code 2" in trained.stdout + trained.stderr
    assert "--storage: storage path" in trained.stdout + trained.stderr


def test_a_search_on_object_storage_runs_on_both_nodes(cluster: TwoNodes) -> None:
    """S3 storage (a real S3-compatible server on 127.0.0.1, the endpoint in the URI): the snapshot phase's
    continuations restore a checkpoint copied between S3 folders, on whichever node they land."""
    from tests.s3_server import S3Server

    s3 = S3Server()
    s3.start()
    try:
        snapshot = {"strategy": "snapshot", "epochs": 2, "max_trials": 3, "candidates": [1e-3, 1e-4], **TINY_SHORT_RUNS}
        preset = write_preset(cluster.root, weight_decay=snapshot, final={"epochs": 2, "replicates": 2})
        done = cluster.submit(
            str(preset), "--phases", "weight_decay,final", "--storage", s3.uri("runs"), "--name", "s3", "--json"
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        keys = s3.keys("runs/s3/")
        assert "runs/s3/search.json" in keys
        assert any(k.startswith("runs/s3/weight_decay/snapshots/") and k.endswith("/state.pt") for k in keys)
        nodes = {
            json.loads(line)["node_id"] for k in keys if k.endswith("/result.json") for line in s3.text(k).splitlines() if line
        }
        assert len(nodes) == 2
    finally:
        s3.stop()


def test_two_workers_train_one_trial_across_both_nodes(cluster: TwoNodes) -> None:
    """A data-parallel trial (tests/test_ddp.py): each node has one CPU, so the trial's two workers, one CPU
    each, can only run one on each node."""
    preset = cluster.root / "project" / "ddp.yaml"
    preset.parent.mkdir(exist_ok=True)
    preset.write_text(yaml.safe_dump(ddp_preset(2)))
    storage = cluster.root / "ddp-shared"
    command = [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard, "--", sys.executable, "-m", "tunekit.cli",
               "train", str(preset), "--address", "auto", "--storage", str(storage), "--shared-storage", "--no-tracking",
               "--json"]  # fmt: skip
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=420, cwd=cluster.root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (results,) = storage.glob("*/*/result.json")
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {r["world_size"] for r in rows} == {2}
    nodes = rows[-1]["worker_node_ids"].split(",")
    assert len(set(nodes)) == 2, nodes  # rank 0 on one node, rank 1 on the other
    assert cluster.head_node_id in nodes
    assert (results.parent / "checkpoint_000002" / "state.pt").is_file()


def test_losing_the_worker_node_mid_trial_retries_from_its_checkpoint(cluster: TwoNodes) -> None:
    """Two replicates, one per node; the worker node is killed once its trial has checkpointed a few epochs."""
    preset = write_preset(cluster.root, final={"epochs": 40, "replicates": 2})
    storage = cluster.root / "lossy"
    command = [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard, "--", sys.executable, "-m", "tunekit.cli",
               "search", str(preset), "--phases", "final", "--address", "auto", "--storage", str(storage),
               "--shared-storage", "--name", "loss", "--json"]  # fmt: skip
    job = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cluster.root)
    try:
        victim = _wait_for_worker_trial(storage / "loss", cluster.head_node_id, epochs=3)
        _kill(cluster.worker)  # the node is gone: raylet, workers, agents
        output = job.communicate(timeout=600)[0].decode()
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, output[-3000:]
    state = json.loads((storage / "loss" / "search.json").read_text())
    assert len(state["result"]["accuracies"]) == 2  # both replicates finished
    rows = node_rows(storage / "loss")
    killed = rows[victim]
    before = [r for r in killed if r["node_id"] != cluster.head_node_id]
    after = [r for r in killed if r["node_id"] == cluster.head_node_id]
    assert before, "the victim never ran on the worker"
    assert after, "the victim was not retried on the surviving node"
    # retried from its last checkpoint, not from scratch: the epochs go on where the checkpoints were
    assert after[0]["epoch"] > 1
    assert after[0]["epoch"] <= before[-1]["epoch"] + 1
    assert after[-1]["epoch"] == 40
    # the other replicate (on the head) lost nothing: every epoch once, to the end
    (other,) = [r for name, r in rows.items() if name != victim]
    assert [r["epoch"] for r in other] == list(range(1, 41))


def _wait_for_worker_trial(directory: Path, head_node_id: str, epochs: int, timeout_s: float = 300) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, rows in node_rows(directory).items() if directory.exists() else []:
            if len(rows) >= epochs and rows[-1]["node_id"] != head_node_id:
                return name
        time.sleep(0.2)
    pytest.fail("no trial reached its third epoch on the worker node")

"""Runs started together: each gets a folder of its own, and two searches into one storage and one
MLflow experiment both finish, each with its own run tree.

The claim is tested with real processes racing for one default name; the searches are two real
``tunekit search`` commands started at once against the test session's Ray cluster.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_SHORT_RUNS, tiny_preset_dict
from tunekit.runner import CLAIM_FILE, NameTaken, claim_name, release_name

TUNEKIT = Path(sys.executable).parent / "tunekit"


def _race(root: str, start: multiprocessing.synchronize.Event, names: multiprocessing.Queue[str]) -> None:
    start.wait()
    names.put(claim_name(root, None, "demo-20261125-101500"))


def test_processes_claiming_one_default_name_each_get_their_own(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    start, names = ctx.Event(), ctx.Queue()
    racers = [ctx.Process(target=_race, args=(str(tmp_path), start, names)) for _ in range(6)]
    for p in racers:
        p.start()
    start.set()
    for p in racers:
        p.join(30)
    got = sorted(names.get(timeout=5) for _ in racers)
    assert got == sorted(["demo-20261125-101500", *(f"demo-20261125-101500-{i}" for i in range(2, 7))])
    assert all((tmp_path / name / CLAIM_FILE).is_file() for name in got)


def test_an_explicit_name_is_claimed_once_and_released_when_the_run_is_refused(tmp_path: Path) -> None:
    assert claim_name(str(tmp_path), "mine", "unused") == "mine"
    with pytest.raises(NameTaken, match=r"--name mine: another run took .*mine .*\.tunekit-claim"):
        claim_name(str(tmp_path), "mine", "unused")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "search.json").write_text("{}")  # a search written before claims existed
    with pytest.raises(NameTaken, match=r"a search already lives in .*old; `tunekit resume"):
        claim_name(str(tmp_path), "old", "unused", taken_by="search.json")
    release_name(str(tmp_path), "mine")
    assert not (tmp_path / "mine").exists()
    assert claim_name(str(tmp_path), "mine", "unused") == "mine"
    # a claim in a storage that did not exist yet: given back, it leaves nothing behind
    assert claim_name(str(tmp_path / "new" / "runs"), None, "demo") == "demo"
    assert (tmp_path / "new" / "runs" / "demo" / CLAIM_FILE).is_file()
    release_name(str(tmp_path / "new" / "runs"), "demo")
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
@pytest.mark.ray
def test_two_searches_started_together_finish_in_their_own_folders_and_run_trees(tmp_path: Path, ray_session: None) -> None:
    import ray
    from mlflow import MlflowClient

    preset = tiny_preset_dict()
    preset["search"] |= {
        "momentum": {"epochs": 2, "candidates": [0.95, 0.9], **TINY_SHORT_RUNS},
        "final": {"epochs": 2, "replicates": 1},
    }
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(preset))
    address = ray.get_runtime_context().gcs_address
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    command = [str(TUNEKIT), "search", str(path), "--storage", str(tmp_path / "runs"), "--phases", "momentum,final"]
    command += ["--address", address, "--experiment", "together", "--json"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=500) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    summaries = [json.loads(out) for out, _ in outputs]
    folders = {s["directory"] for s in summaries}
    assert len(folders) == 2  # one folder each, even when both default names fell in the same second
    for s in summaries:
        assert Path(s["directory"], "search.json").is_file()
        assert json.loads(Path(s["directory"], "search.json").read_text())["result"] is not None
    client = MlflowClient(summaries[0]["tracking_uri"])
    experiment = client.get_experiment_by_name("together")
    assert experiment is not None
    parents = {s["mlflow_run_id"] for s in summaries}
    assert len(parents) == 2
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    children = {pid: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == pid] for pid in parents}
    for pid, kids in children.items():
        assert len(kids) == 3, pid  # its own two momentum trials and its one final replicate, no one else's
    assert {r.info.run_id for r in runs} == parents | {r.info.run_id for kids in children.values() for r in kids}

"""The user's package on the real two-node Ray cluster of tests/test_cluster.py: shipped with
``--working-dir`` (installed on no node, on no ``PYTHONPATH``), its regression searched with trials
on both nodes."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from tests.test_cluster import BIN, ENV, TwoNodes, cluster, node_rows  # noqa: F401  (cluster: the fixture)
from tests.test_user_components import USERPKG

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_a_shipped_regression_package_is_searched_on_both_nodes(cluster: TwoNodes) -> None:  # noqa: F811
    storage = cluster.root / "user-shared"
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    # a driver that joins the cluster from a folder of its own; range test (two weight decays) and
    # two final replicates: each phase's two trials take one CPU each, one per node
    command = [str(BIN / "tunekit"), "search", str(USERPKG / "diabetes.yaml"), "--working-dir", str(USERPKG),
               "--phases", "range_test,final", "--address", cluster.gcs, "--storage", str(storage), "--shared-storage",
               "--name", "reg", "--json"]  # fmt: skip
    cwd = cluster.root / "driver"
    cwd.mkdir(exist_ok=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=480, cwd=cwd)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert set(summary["phases"]) == {"range_test", "final"}
    assert summary["metric_name"] == "r2"
    assert len(summary["metric_values"]) == 2
    assert math.isfinite(summary["metric_mean"])
    assert summary["preset"]["model"]["factory"] == "acme_ml.models:regressor"
    # both nodes trained: the worker node imported acme_ml from the shipped folder
    rows = node_rows(Path(summary["directory"]))
    nodes = {row["node_id"] for trial in rows.values() for row in trial}
    assert len(nodes) == 2, rows.keys()
    assert cluster.head_node_id in nodes
    assert all(trial[-1].get("val_r2") is not None for trial in rows.values() if not trial[-1].get("diverged"))
    # what the worker node ran was the shipped copy its runtime-env agent unpacked (test_cluster gives it its own temp dir)
    shipped = list(Path(f"/tmp/tkc-{os.getpid()}w").glob("session_*/runtime_resources/working_dir_files/*/acme_ml/models.py"))
    assert shipped, "the worker node holds no shipped copy of acme_ml"
    print(f"test r2 {summary['metric_mean']:.4f} ± {summary['metric_std']:.4f} {summary['metric_values']}; nodes {sorted(nodes)}")

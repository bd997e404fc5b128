"""cluster/: the launcher config passes Ray's own schema, the KubeRay manifests say what the README
promises, the submit script fails clearly — and a local tunekit Ray keeps its dashboard off."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((CLUSTER / name).read_text())
    assert isinstance(data, dict)
    return data


def test_the_aws_launcher_config_passes_rays_schema() -> None:
    from ray.autoscaler._private.commands import prepare_config
    from ray.autoscaler._private.util import validate_config

    raw = load("aws.yaml")
    validate_config(prepare_config(raw))  # raises on a missing or misspelled key
    nodes = raw["available_node_types"]
    assert nodes[raw["head_node_type"]]["resources"] == {"CPU": 0}  # the head runs the driver, no trials
    gpu = [n for n in nodes.values() if n.get("resources", {}).get("GPU")]
    assert gpu
    assert gpu[0]["max_workers"] >= 1
    assert gpu[0]["min_workers"] == 0  # autoscaling from zero
    head_start = " ".join(raw["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert any("pip install" in c and "tunekit" in c for c in raw["setup_commands"])
    assert ".venv" in raw["rsync_exclude"]


@pytest.mark.parametrize(("name", "kind"), [("kuberay/raycluster.yaml", "RayCluster"), ("kuberay/rayjob.yaml", "RayJob")])
def test_the_kuberay_manifests(name: str, kind: str) -> None:
    manifest = load(name)
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == kind
    spec = manifest["spec"] if kind == "RayCluster" else manifest["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == ray.__version__  # the image's Ray must match the client's
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (workers,) = spec["workerGroupSpecs"]
    assert workers["minReplicas"] == 0
    assert workers["maxReplicas"] >= workers["replicas"]
    (container,) = workers["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    if kind == "RayJob":
        entry = manifest["spec"]["entrypoint"]
        assert entry.startswith("tunekit search ")
        assert "--address auto" in entry
        assert "--storage s3://" in entry  # shared storage: every node reads the snapshots


def test_submit_script_without_arguments_prints_usage_and_exits_2() -> None:
    assert subprocess.run(["bash", "-n", str(CLUSTER / "submit.sh")], check=False).returncode == 0
    done = subprocess.run([str(CLUSTER / "submit.sh")], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "usage:" in done.stderr


@pytest.mark.slow
def test_a_local_tunekit_ray_serves_no_dashboard() -> None:
    """tunekit's own local Ray serves no dashboard UI or job server (Ray's internal gRPC ports are another
    matter: Ray binds them on all interfaces and guards them with its token authentication)."""
    code = """
import json, psutil, time
from tunekit.runner import ensure_ray
ensure_ray()
time.sleep(2)
me = psutil.Process()
pids = {p.pid for p in me.children(recursive=True)} | {me.pid}
listening = [(c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in pids]
hosts = [a for p in me.children(recursive=True) for a in p.cmdline() if a.startswith("--host=")]
print(json.dumps({"listening": listening, "hosts": hosts}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert 8265 not in {port for _, port in found["listening"]}  # no dashboard UI / job server
    assert found["hosts"]
    assert set(found["hosts"]) == {"--host=127.0.0.1"}  # what Ray's dashboard process would bind to

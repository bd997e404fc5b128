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
    """tunekit's own local Ray (``runner.ensure_ray``) serves no dashboard UI or job server.

    Proven positively, on what Ray itself reports and starts: Ray records no web UI URL; the dashboard
    head process Ray starts anyway is launched headless — ``--disable-frontend`` and only the
    ``UsageStatsHead`` module, so no ``JobHead`` (job server) — and told to bind to 127.0.0.1; and
    that process listens on nothing but its Prometheus metrics port (44227, when free). With
    ``include_dashboard=True`` every one of these fails: ``webui_url`` is ``127.0.0.1:<port>``, neither
    flag is on the command line, and the process also listens on the UI's HTTP port — whatever port
    that is (8265, or the next free one when another Ray on the machine holds 8265).

    Ray's internal gRPC ports are another matter: Ray binds them on all interfaces and guards them with
    its token authentication.
    """
    code = """
import json, psutil, time
import ray
from ray.dashboard.consts import DASHBOARD_METRIC_PORT
from tunekit.runner import ensure_ray
ensure_ray()
time.sleep(2)
me = psutil.Process()
(dashboard,) = [p for p in me.children(recursive=True) if any(a.endswith("dashboard/dashboard.py") for a in p.cmdline())]
ports = sorted({c.laddr.port for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid == dashboard.pid})
print(json.dumps({
    "webui_url": ray._private.worker.global_worker.node.address_info["webui_url"],
    "argv": dashboard.cmdline(),
    "ports": ports,
    "metrics_port": DASHBOARD_METRIC_PORT,
}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["webui_url"] == ""  # Ray's own record: no dashboard URL
    argv = found["argv"]
    assert "--disable-frontend" in argv  # no UI pages served
    assert [a for a in argv if a.startswith("--modules-to-load=")] == ["--modules-to-load=UsageStatsHead"]  # no JobHead
    assert [a for a in argv if a.startswith("--host=")] == ["--host=127.0.0.1"]  # and loopback, were it to serve
    # the headless process listens on its metrics port at most (none when another Ray already holds that port)
    assert set(found["ports"]) <= {found["metrics_port"]}

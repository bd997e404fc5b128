"""MLflow: what tunekit writes, in a sqlite store and on a real `mlflow server`, and reading it back."""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from ray.tune import Callback
from typer.testing import CliRunner

from tests.conftest import tiny_preset_dict
from tests.mlflow_server import MlflowServer, free_port
from tunekit.cli import app
from tunekit.presets import load_preset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def tiny_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_preset_dict()))
    return path


def runs(uri: str, experiment: str) -> list[Any]:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return list(client.search_runs([found.experiment_id]))


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.usefixtures("ray_session")
def test_train_logs_a_run_tree_that_best_and_continue_read_back(tiny_file: Path, tmp_path: Path) -> None:
    storage = tmp_path / "runs"
    out = json.loads(cli("train", str(tiny_file), "--set", "epochs=3", "--json", "--storage", str(storage)).stdout)
    uri = f"sqlite:///{storage / 'mlflow.db'}"
    client = MlflowClient(uri)
    tree = runs(uri, "tiny")
    parent = next(r for r in tree if "mlflow.parentRunId" not in r.data.tags)
    child = next(r for r in tree if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    # the embedded default: a sqlite file next to the runs, one parent and one nested trial run
    assert out["mlflow_run_id"] == parent.info.run_id
    assert parent.data.params["preset.policy.max_lr"] == "0.5"
    assert child.data.tags["tunekit.phase"] == "train"
    assert child.data.tags["tunekit.best"] == "true"
    # metric histories carry the epoch as their step: the validation split every epoch, the test split at the end
    assert [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")] == [1, 2, 3]
    assert [m.step for m in client.get_metric_history(child.info.run_id, "val_acc")] == [1, 2, 3]
    assert [m.step for m in client.get_metric_history(child.info.run_id, "test_loss")] == [3]
    assert parent.data.metrics["best_test_acc"] == pytest.approx(out["test_acc"])
    assert parent.data.metrics["best_val_acc"] == pytest.approx(out["val_acc"])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best_config.yaml", "report.md", "report.html", "model"} <= artifacts
    # the experiment tunekit created opens on MLflow 3's runs table
    assert client.get_experiment(parent.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    # the page states the result, links nothing it does not carry
    page = Path(client.download_artifacts(parent.info.run_id, "report.html", str(tmp_path))).read_text()
    assert f"{out['test_acc']:.4g}" in page
    assert "<img" not in page  # a training decides nothing: its validation-loss plot is under plots/, not a decision
    # the final model comes back from MLflow alone, with its trained weights
    from tunekit.tracking.queries import load_model
    from tunekit.train.data import load_data

    model = load_model(uri, run_id=parent.info.run_id).eval()
    data = load_data(load_preset(tiny_preset_dict()).dataset)
    assert data.size("test") == 400
    x, y = next(data.batches("test", 400))
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    assert accuracy == pytest.approx(out["test_acc"], abs=1e-6)
    # `tunekit best` reads MLflow alone and prints the preset that was trained
    printed = json.loads(cli("best", "--run", parent.info.run_id, "--tracking-uri", uri, "--format", "json").stdout)
    assert load_preset(printed) == load_preset(tiny_preset_dict(), {"epochs": 3})
    # `tunekit continue` trains on from the recorded snapshot as a new trial run of the same search
    cont = json.loads(
        cli("continue", child.info.run_id, "--set", "epochs=5", "--tracking-uri", uri, "--storage", str(storage), "--json").stdout
    )
    new = client.get_run(cont["mlflow_run_id"])
    assert new.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert new.data.tags["tunekit.phase"] == "continue"
    assert [m.step for m in client.get_metric_history(new.info.run_id, "val_loss")] == [4, 5]
    assert [m.step for m in client.get_metric_history(new.info.run_id, "test_loss")] == [5]


@pytest.mark.usefixtures("ray_session")
def test_range_test_logs_its_bounds_and_plot(tiny_file: Path, tmp_path: Path) -> None:
    storage = tmp_path / "runs"
    cli("range-test", str(tiny_file), "--storage", str(storage), "--set", "search.range_test.epochs=2")
    uri = f"sqlite:///{storage / 'mlflow.db'}"
    client = MlflowClient(uri)
    parent = next(r for r in runs(uri, "tiny") if "mlflow.parentRunId" not in r.data.tags)
    child = next(r for r in runs(uri, "tiny") if "mlflow.parentRunId" in r.data.tags)
    # the decision on the parent, the iteration as the step of the trial's metrics
    assert float(parent.data.params["min_lr"]) == pytest.approx(float(parent.data.params["max_lr"]) / 10)
    assert "max_lr" in parent.data.tags["tunekit.decision.range_test"]
    assert [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")][:2] == [5, 10]
    # a range test reads the validation split only
    assert client.get_metric_history(child.info.run_id, "test_loss") == []
    local = Path(client.download_artifacts(parent.info.run_id, "plots/range_test.png", str(tmp_path)))
    assert local.stat().st_size > 5000


def _synthetic(config: dict[str, Any]) -> None:
    from ray import tune

    wd = config.get("weight_decay", 1e-4)
    final = (math.log10(wd) + 3.3) ** 2 + 0.1 if wd > 0 else 9.0
    for k in range(1, 6):
        tune.report({"val_loss": final + math.exp(-2 * k), "epoch": k})


@pytest.mark.usefixtures("ray_session")
def test_search_log_records_phases_decisions_plots_and_the_best(tmp_path: Path) -> None:
    from ray import tune

    from tunekit.plots import bisection_figure
    from tunekit.schedulers import LossShapeScheduler
    from tunekit.searchers import ExponentBisectionSearcher, limited
    from tunekit.tracking.search_log import SearchLog

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    preset = load_preset(tiny_preset_dict())
    log = SearchLog("wd-search", preset, uri, "searches", tmp_path, phases=["weight_decay"])
    searcher = ExponentBisectionSearcher("weight_decay", base_config={})
    scheduler = LossShapeScheduler(grace_period=2)
    tuner = tune.Tuner(
        tune.with_resources(_synthetic, {"cpu": 0.5}),
        tune_config=tune.TuneConfig(
            search_alg=limited(searcher, 4), scheduler=scheduler, num_samples=-1, metric="val_loss", mode="min"
        ),
        run_config=tune.RunConfig(
            name="wd",
            storage_path=str(tmp_path / "ray"),
            callbacks=[scheduler.recorder(), log.callback("weight_decay")],
            verbose=0,
        ),
    )
    grid = tuner.fit()
    obs = searcher.bisection.observations
    best = searcher.best_value
    assert best is not None
    log.decide(
        "weight_decay",
        {"weight_decay": best},
        f"weight_decay = {best:g}: lowest validation loss, bracketed to a quarter decade",
        bisection_figure([o.value for o in obs], [o.loss for o in obs], best),
    )
    best_trial = grid.get_best_result().metrics["trial_id"]
    log.finish(log.callback("x").runs.get(best_trial) or tuner_run_id(uri, best_trial), preset, {"test_loss": 0.1})
    client = MlflowClient(uri)
    tree = runs(uri, "searches")
    parent = client.get_run(log.parent_run_id)
    children = [r for r in tree if r.data.tags.get("mlflow.parentRunId") == log.parent_run_id]
    # one nested run per trial of the phase, each with the scheduler's diagnosis
    assert len(children) == len(grid)
    assert all(r.data.tags["tunekit.phase"] == "weight_decay" for r in children)
    assert {r.data.tags.get("tunekit.diagnosis") for r in children} <= {
        "horizontal",
        "underfitting",
        "overfitting",
        "diverging",
        "unknown",
    }
    # the decision and its plot on the parent; the best trial tagged; the report explains
    assert float(parent.data.params["weight_decay"]) == best
    assert [r.data.tags.get("tunekit.best") for r in children].count("true") == 1
    report = Path(client.download_artifacts(log.parent_run_id, "report.md", str(tmp_path))).read_text()
    assert "weight_decay" in report
    assert "plots/weight_decay.png" in report
    # report.html carries the same plot, embedded: the artifact viewer needs nothing else
    page = Path(client.download_artifacts(log.parent_run_id, "report.html", str(tmp_path))).read_text()
    png = Path(client.download_artifacts(log.parent_run_id, "plots/weight_decay.png", str(tmp_path))).read_bytes()
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    assert Path(client.download_artifacts(log.parent_run_id, "plots/weight_decay.png", str(tmp_path))).stat().st_size > 5000


def tuner_run_id(uri: str, trial_id: str) -> str:
    run = next(r for r in runs(uri, "searches") if r.data.tags.get("tunekit.trial_id") == trial_id)
    return str(run.info.run_id)


@pytest.mark.usefixtures("ray_session")
def test_real_server_finds_the_best_run_by_tag(server: MlflowServer, tiny_file: Path, tmp_path: Path) -> None:
    cli(
        "train",
        str(tiny_file),
        "--set",
        "epochs=2",
        "--storage",
        str(tmp_path / "runs"),
        "--tracking-uri",
        server.uri,
        "--experiment",
        "on-server",
    )
    # the REST API, as a script or the UI would ask it
    client = MlflowClient(server.uri)
    experiment_id = client.get_experiment_by_name("on-server").experiment_id  # type: ignore[union-attr]
    body = json.dumps({"experiment_ids": [experiment_id], "filter": "tags.`tunekit.best` = 'true'"}).encode()
    request = urllib.request.Request(
        f"{server.uri}/api/2.0/mlflow/runs/search", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        found = json.loads(response.read())["runs"]
    assert len(found) == 1
    assert found[0]["info"]["status"] == "FINISHED"
    printed = yaml.safe_load(cli("best", "--experiment", "on-server", "--tracking-uri", server.uri).stdout)
    assert printed["name"] == "tiny"


def test_a_users_own_experiment_keeps_its_kind_and_a_new_one_is_model_training(tmp_path: Path) -> None:
    from tunekit.tracking.mlflow_log import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    theirs = client.create_experiment("theirs", tags={"team": "vision"})
    Tracker(uri, "theirs", tmp_path / "fallback.jsonl")
    assert "mlflow.experimentKind" not in client.get_experiment(theirs).tags
    ours = Tracker(uri, "ours", tmp_path / "fallback.jsonl").experiment_id
    assert client.get_experiment(ours).tags["mlflow.experimentKind"] == "custom_model_development"


def test_unreachable_server_is_refused_before_anything_starts(tiny_file: Path, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "tunekit.cli", "train", str(tiny_file), "--tracking-uri", dead, "--storage", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--tracking-uri" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


class _CtrlCAfterResults(Callback):
    """Presses Ctrl-C in the driver after ``n`` results — once (a marker file remembers)."""

    def __init__(self, n: int, marker: str) -> None:
        self.n, self.marker, self.seen = n, marker, 0

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
        self.seen += 1
        if self.seen >= self.n and not Path(self.marker).exists():
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGINT)


def _slow_epochs(config: dict[str, Any]) -> None:
    import tempfile

    from ray import tune

    start = 0
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as folder:
            start = int(Path(folder, "epoch").read_text())
    for epoch in range(start + 1, 7):
        time.sleep(0.2)
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "epoch").write_text(str(epoch))
            tune.report({"val_loss": 1.0 / epoch, "epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(tmp))


@pytest.mark.usefixtures("ray_session")
def test_restored_trials_keep_logging_into_their_own_runs(tmp_path: Path) -> None:
    from ray import tune

    from tunekit.tracking.search_log import SearchLog

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log = SearchLog("restore", load_preset(tiny_preset_dict()), uri, "restored", tmp_path, phases=["train"])
    trainable = tune.with_resources(_slow_epochs, {"cpu": 1})
    tuner = tune.Tuner(
        trainable,
        param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(
            name="exp",
            storage_path=str(tmp_path / "ray"),
            callbacks=[log.callback("train"), _CtrlCAfterResults(3, str(tmp_path / "pressed"))],
            verbose=0,
        ),
    )
    tuner.fit()
    assert (tmp_path / "pressed").exists()
    restored = tune.Tuner.restore(str(tmp_path / "ray" / "exp"), trainable=trainable, resume_unfinished=True)
    grid = restored.fit()
    assert all(r.metrics["epoch"] == 6 for r in grid)
    client = MlflowClient(uri)
    children = [r for r in runs(uri, "restored") if r.data.tags.get("mlflow.parentRunId") == log.parent_run_id]
    # one run per trial — the resumed trial did not open a second one — and none left RUNNING
    assert len(children) == 2
    assert all(r.info.status == "FINISHED" for r in children)
    for run in children:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert steps[-1] == 6
        assert all(a < b for a, b in itertools.pairwise(steps)), steps  # each epoch logged once, in order


def test_best_and_continue_name_what_is_missing(tmp_path: Path) -> None:
    from tunekit.tracking import Tracker

    empty = CliRunner().invoke(app, ["best", "--experiment", "x", "--storage", str(tmp_path / "nothing")])
    # no store where the runs should be: the flag to fix is named
    assert empty.exit_code == 2
    assert "--tracking-uri" in empty.output
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = Tracker(uri, "present", tmp_path / "fallback.jsonl").start_run("r")
    unknown = CliRunner().invoke(app, ["best", "--experiment", "absent", "--tracking-uri", uri])
    assert unknown.exit_code == 2
    assert "present" in unknown.output  # the experiments that do exist
    unfinished = CliRunner().invoke(app, ["continue", run, "--tracking-uri", uri])
    assert unfinished.exit_code == 2
    assert "best trial run" in unfinished.output


def test_best_reads_the_latest_search_or_the_best_one_by_a_metric(tmp_path: Path) -> None:
    from tunekit.tracking.search_log import SearchLog

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def fabricated(name: str, max_lr: float, metrics: dict[str, float]) -> None:
        """A finished search as tunekit logs one: a parent, its best trial run, its final metrics and chosen preset."""
        preset = load_preset(tiny_preset_dict(), {"max_lr": max_lr})
        log = SearchLog(name, preset, uri, "compared", tmp_path / name, phases=["final"])
        trial = log.tracker.start_run(f"{name}-final", tags={"tunekit.phase": "final"}, parent=log.parent_run_id)
        log.tracker.finish(trial)
        log.finish(trial, preset, metrics)

    fabricated("older", 0.3, {"test_acc": 0.9, "test_loss": 0.5})
    time.sleep(0.05)
    fabricated("newer", 0.7, {"test_acc": 0.6, "test_loss": 0.4})

    def chosen_lr(*args: str) -> float:
        shown = cli("best", "--experiment", "compared", "--tracking-uri", uri, *args).stdout
        return float(yaml.safe_load(shown)["policy"]["max_lr"])

    # by default the latest finished search, as the help says
    assert chosen_lr() == 0.7
    assert "latest" in " ".join(cli("best", "--help").stdout.split())
    # --metric: the best search by its final metric, in the metric's direction
    assert chosen_lr("--metric", "test_acc") == 0.3  # accuracy: higher is better
    assert chosen_lr("--metric", "test_loss") == 0.7  # a loss: lower is better
    assert chosen_lr("--metric", "best_test_acc") == 0.3  # the name on the parent run works too
    unknown = CliRunner().invoke(app, ["best", "--experiment", "compared", "--tracking-uri", uri, "--metric", "test_r2"])
    assert unknown.exit_code == 2
    assert "test_acc" in unknown.output  # the metrics the searches do carry

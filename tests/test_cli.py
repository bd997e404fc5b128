"""The command line: bad input exits 2 with one line naming the field; real runs print real results."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import tiny_preset_dict
from tunekit.cli import app


@pytest.fixture
def tiny_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_preset_dict()))
    return path


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunekit.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["train", "{preset}", "--set", "max_lr=-1"], "policy.max_lr"),
        (["train", "{preset}", "--set", "train.epoch=3"], "train.epoch"),
        (["train", "{preset}", "--set", "search.range_test.weight_decays=[]"], "weight_decays"),
        (["train", "{preset}", "--set", "nonsense"], "key=value"),
        (["train", "no_such_preset.yaml"], "no_such_preset"),
        (["train", "cifar10_resnet56", "--set", "dataset.root=/nonexistent/data"], "dataset.root"),
        (["train", "{preset}", "--set", "restore_from=/nonexistent/ckpt"], "restore_from"),
        (["range-test", "{preset}", "--set", "search.range_test.min_lr=5"], "min_lr must be < max_lr"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line_and_starts_nothing(
    tiny_file: Path, tmp_path: Path, args: list[str], names: str
) -> None:
    storage = tmp_path / "runs"
    argv = [a.format(preset=tiny_file) for a in args] + ["--storage", str(storage)]
    proc = _cli(*argv, cwd=tmp_path)
    # exit code 2, one "error:" line naming the field, no traceback
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ")
    assert names in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # nothing was started: no experiment folder
    assert not storage.exists()


@pytest.mark.parametrize("command", ["train", "range-test", "search"])
def test_storage_below_a_regular_file_is_one_line_before_anything_starts(tiny_file: Path, tmp_path: Path, command: str) -> None:
    """`--storage /tmp/notadir/runs` where notadir is a file: once a pyarrow NotADirectoryError traceback, exit 1."""
    (tmp_path / "notadir").write_text("a file, not a folder")
    proc = _cli(command, str(tiny_file), "--storage", str(tmp_path / "notadir" / "runs"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: --storage: {tmp_path / 'notadir'} is a file, not a folder; give a folder for the runs, e.g. {tmp_path / 'notadir'}-runs"
    ]
    assert "Started a local Ray instance" not in proc.stdout + proc.stderr


def test_presets_lists_the_bundled_recipes(tmp_path: Path) -> None:
    proc = _cli("presets", "--json", cwd=tmp_path)
    assert proc.returncode == 0
    assert {"mnist1d", "cifar10_resnet56"} <= set(json.loads(proc.stdout))


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_train_json_prints_one_object_with_final_metrics(tiny_file: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", str(tiny_file), "--set", "epochs=2", "--json", "--storage", str(tmp_path / "runs")]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # the documented keys, from a real two-epoch run
    assert data["epochs"] == 2
    assert data["diverged"] is False
    # the validation split's last reading, and the test split's at the run's end
    assert 0.2 < data["val_acc"] <= 1.0
    assert data["val_loss"] > 0
    assert 0.2 < data["test_acc"] <= 1.0
    assert data["test_loss"] > 0
    assert Path(data["checkpoint"]).is_dir()


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_train_reports_divergence_without_a_traceback(tiny_file: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", str(tiny_file), "--set", "max_lr=1e6", "--json", "--storage", str(tmp_path / "runs")]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # NaN becomes null in JSON; the run says it diverged
    assert data["diverged"] is True
    assert data["val_loss"] is None
    # a diverged run never reached its end: nothing was read on the test split
    assert data.get("test_loss") is None


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_range_test_writes_the_curve_as_csv(tiny_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "curve.csv"
    result = CliRunner().invoke(
        app, ["range-test", str(tiny_file), "--out", str(out), "--json", "--storage", str(tmp_path / "runs")]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    rows = list(csv.DictReader(out.open()))
    # lr,val_loss,val_acc,step columns, one row per evaluation, LR rising to max_lr
    assert list(rows[0])[:5] == ["lr", "val_loss", "val_acc", "step", "val_loss_se"]
    assert all(0 < float(r["val_loss_se"]) < float(r["val_loss"]) for r in rows)  # 400 samples: a fraction of the loss
    assert summary["points"] == len(rows) == 6
    assert summary["lowest_val_loss"] == pytest.approx(min(float(r["val_loss"]) for r in rows))
    lrs = [float(r["lr"]) for r in rows]
    assert lrs == sorted(lrs)
    assert lrs[-1] == pytest.approx(3.0)
    # 1 440 training samples (1 600 less the validation carve), batches of 64: 22 steps; for 5 points the
    # plan lowers eval_every from 5 to 22 // 5 = 4, and the loop evaluates the last step too
    assert [int(r["step"]) for r in rows] == [4, 8, 12, 16, 20, 22]


def _write_curve(path: Path, header: str, rows: list[tuple[float, float]]) -> Path:
    path.write_text(header + "\n" + "\n".join(f"{a},{b}" for a, b in rows) + "\n")
    return path


def test_diagnose_json_reports_shape_and_evidence(tmp_path: Path) -> None:
    losses = [2.0, 1.0, 0.6, 0.55, 0.65, 0.75, 0.85, 0.95, 1.05]
    curve = _write_curve(tmp_path / "c.csv", "step,val_loss", list(enumerate(losses, start=1)))
    proc = _cli("diagnose", str(curve), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["shape"] == "overfitting"
    # a curve recorded before the validation split (a test_loss column) reads the same
    old = _write_curve(tmp_path / "old.csv", "step,test_loss", list(enumerate(losses, start=1)))
    assert json.loads(_cli("diagnose", str(old), "--json", cwd=tmp_path).stdout) == data
    # the evidence comes with the verdict
    assert data["min_step"] in (3, 4)
    assert data["rise"] > data["tolerance"]


def test_diagnose_range_test_reads_a_recorded_curve(tmp_path: Path) -> None:
    recorded = Path(__file__).parent / "data" / "curves" / "range_wd0.0001.csv"
    proc = _cli("diagnose", str(recorded), "--range-test", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    # max_lr before the turn-up near 1.0, min_lr a tenth of it
    assert data["shape"] in ("diverging", "overfitting")
    assert 0.7 <= data["max_lr"] <= 1.1
    assert data["min_lr"] == pytest.approx(data["max_lr"] / 10)


def test_diagnose_human_output_names_the_bounds(tmp_path: Path) -> None:
    recorded = Path(__file__).parent / "data" / "curves" / "range_wd0.0001.csv"
    proc = _cli("diagnose", str(recorded), "--range-test", cwd=tmp_path)
    assert proc.returncode == 0
    assert "max_lr" in proc.stdout
    assert "turns up at lr" in proc.stdout


@pytest.mark.parametrize(
    ("header", "rows", "flag", "message"),
    [
        ("epoch,loss", [(1, 2.0)], [], "needs a 'step' column"),
        ("step,val_loss", [(1, 2.0), (2, 1.5)], ["--range-test"], "needs a 'lr' column"),
        ("lr,val_loss", [(0.1, 2.0), (0.2, 1.5)], ["--range-test"], "too few finite points"),
        ("step,accuracy", [(1, 0.2), (2, 0.5)], [], "needs a 'val_loss' column"),
    ],
)
def test_diagnose_bad_csv_exits_2_naming_the_problem(
    tmp_path: Path, header: str, rows: list[tuple[float, float]], flag: list[str], message: str
) -> None:
    curve = _write_curve(tmp_path / "bad.csv", header, rows)
    proc = _cli("diagnose", str(curve), *flag, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_diagnose_non_numeric_cell_names_the_line(tmp_path: Path) -> None:
    curve = tmp_path / "bad.csv"
    curve.write_text("step,val_loss\n1,2.0\n2,oops\n")
    proc = _cli("diagnose", str(curve), cwd=tmp_path)
    assert proc.returncode == 2
    assert "bad.csv:3" in proc.stderr


def test_ui_links_open_each_experiments_runs_table_and_refuses_a_busy_port(tmp_path: Path) -> None:
    import socket

    from mlflow.tracking import MlflowClient

    from tunekit.tracking.mlflow_log import Tracker

    storage = tmp_path / "runs"
    storage.mkdir()
    uri = f"sqlite:///{storage / 'mlflow.db'}"
    tracker = Tracker(uri, "mnist1d-cnn", tmp_path / "fallback.jsonl")
    tracker.start_run("an-old-search", tags={"tunekit.command": "search"})
    newest = tracker.start_run("the-newest-search", tags={"tunekit.command": "search"})
    tracker.start_run("a-training", tags={"tunekit.command": "train"})
    MlflowClient(uri).create_experiment("empty")  # no runs: no link
    out = CliRunner().invoke(app, ["ui", "--storage", str(storage), "--links-only", "--port", "5123"])
    assert out.exit_code == 0, out.output
    base = "http://127.0.0.1:5123/#/experiments"
    assert out.output.splitlines() == [
        f"experiment mnist1d-cnn: {base}/{tracker.experiment_id}/runs?workflowType=machine_learning",
        f"newest search the-newest-search: {base}/{tracker.experiment_id}/runs/{newest}?workflowType=machine_learning"
        " (Artifacts → report.html)",
    ]
    # a port something else listens on is refused in one line, before anything starts
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = CliRunner().invoke(app, ["ui", "--storage", str(storage), "--port", str(port)])
    assert out.exit_code == 2
    assert out.output.startswith(f"error: --port: 127.0.0.1:{port} cannot be used")
    # no store where the runs would have one
    out = CliRunner().invoke(app, ["ui", "--storage", str(tmp_path / "elsewhere")])
    assert out.exit_code == 2
    assert "no MLflow store" in out.output

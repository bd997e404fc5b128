"""What the commands delegate to the runner: the range-test curve, a failure's one line, a trial's inputs (no Ray session)."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import tiny_preset_dict
from tunekit.presets import PresetError
from tunekit.runner import RANGE_CURVE_COLUMNS, TrialOutcome, load_trial, write_range_curve


def _row(step: int, lr: float, val_loss: float, diverged: bool = False) -> dict[str, Any]:
    return {"step": step, "lr": lr, "val_loss": val_loss, "val_acc": 0.5, "diverged": diverged, "trial_id": "t"}


def test_write_range_curve_writes_the_columns_and_finds_the_lowest_loss(tmp_path: Path) -> None:
    history = [_row(5, 0.1, 2.0), _row(10, 0.5, 1.2), _row(15, 1.0, math.nan), _row(20, 2.0, math.inf, diverged=True)]
    path = tmp_path / "deep" / "curve.csv"
    summary = write_range_curve(history, path)
    rows = list(csv.DictReader(path.open()))
    # the documented columns in order, each val_<metric> after val_loss, one row per evaluation, nothing else from the history
    assert tuple(rows[0]) == (*RANGE_CURVE_COLUMNS[:2], "val_acc", *RANGE_CURVE_COLUMNS[2:])
    assert tuple(rows[0])[:3] == ("lr", "val_loss", "val_acc")
    assert [r["step"] for r in rows] == ["5", "10", "15", "20"]
    assert [r["val_acc"] for r in rows] == ["0.5"] * 4
    # the lowest finite validation loss and its LR; the last row decides "diverged"
    assert summary == {
        "curve": str(path),
        "points": 4,
        "diverged": True,
        "lowest_val_loss": 1.2,
        "lr_at_lowest_val_loss": 0.5,
    }


def test_write_range_curve_without_a_metric_has_only_the_loss(tmp_path: Path) -> None:
    # a preset without a metric (a regression loss) reports no val_<metric>: no column for one
    history = [{k: v for k, v in _row(5, 0.1, 2.0).items() if k != "val_acc"}]
    write_range_curve(history, tmp_path / "curve.csv")
    assert tuple(next(csv.DictReader((tmp_path / "curve.csv").open()))) == RANGE_CURVE_COLUMNS


@pytest.mark.parametrize("history", [[], [_row(5, 0.1, math.nan, diverged=True)]])
def test_write_range_curve_without_a_finite_loss_has_no_lowest(history: list[dict[str, Any]], tmp_path: Path) -> None:
    summary = write_range_curve(history, tmp_path / "curve.csv")
    # no finite validation loss: no lowest point, and still a CSV with its header
    assert summary["lowest_val_loss"] is None
    assert summary["lr_at_lowest_val_loss"] is None
    assert summary["points"] == len(history)
    header = "lr,val_loss,val_acc,step" if history else "lr,val_loss,step"  # no rows: no metric to name
    assert (tmp_path / "curve.csv").read_text().startswith(header)


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (None, None),
        ("Traceback …\n  File x\nRuntimeError: out of memory\n", "RuntimeError: out of memory (logs under /runs/t)"),
        ("boom", "boom (logs under /runs/t)"),
    ],
)
def test_trial_outcome_failure_is_the_last_line_and_the_logs(error: str | None, failure: str | None) -> None:
    # one line: the error's last line, then where the logs are
    assert TrialOutcome(metrics={}, error=error, path="/runs/t").failure == failure


def test_load_trial_splits_off_the_snapshot_to_restore(tmp_path: Path) -> None:
    loaded, extra = load_trial(tiny_preset_dict(), {"max_lr": 0.3, "restore_from": str(tmp_path)})
    # restore_from is trial config, not a preset field; the rest overrides the preset
    assert extra == {"restore_from": str(tmp_path)}
    assert loaded.policy.max_lr == 0.3  # type: ignore[union-attr]


def test_load_trial_refuses_a_missing_snapshot() -> None:
    # the folder must exist (on object storage too: tests/test_object_storage.py); the message names the key
    with pytest.raises(PresetError, match="restore_from: /nonexistent/ckpt does not exist"):
        load_trial(tiny_preset_dict(), {"restore_from": "/nonexistent/ckpt"})


def _storage_check_as(uid: int | None, path: str) -> str:
    """``storage_path(path, writing=True)`` in a child process (as ``uid`` when given): "" or the error's message."""
    import multiprocessing

    from tunekit.runner import storage_path

    def child(queue: Any) -> None:
        if uid is not None:
            os.setgid(uid)
            os.setuid(uid)
        try:
            storage_path(path, writing=True)
            queue.put("")
        except PresetError as exc:
            queue.put(str(exc))

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    process = ctx.Process(target=child, args=(queue,))
    process.start()
    process.join(30)
    return str(queue.get(timeout=5))


def test_storage_that_cannot_be_written_or_reached_is_one_line_naming_it() -> None:
    """A folder the user may not write, or not even enter, is refused before anything starts. As root
    every folder is writable, so there the checks run as the unprivileged user ``nobody`` (uid 65534)."""
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="tunekit-storage-"))  # /tmp/…: a path ``nobody`` can walk to
    top.chmod(0o755)
    locked, closed = top / "locked", top / "closed"
    locked.mkdir(mode=0o555)
    closed.mkdir(mode=0o700)
    uid = 65534 if os.geteuid() == 0 else None
    try:
        assert _storage_check_as(uid, str(locked / "runs")) == (
            f"--storage: cannot create or write {locked / 'runs'} ({locked} is not writable); give a folder you can write"
        )
        if uid is not None:  # a folder that cannot be entered (its owner is root)
            assert _storage_check_as(uid, str(closed / "runs")) == (
                f"--storage: cannot reach {closed / 'runs'} (Permission denied: {closed / 'runs'}); give a folder you can write"
            )
        locked.chmod(0o777)
        assert _storage_check_as(uid, str(locked / "runs")) == ""  # the control: writable, accepted
    finally:
        locked.chmod(0o755)
        shutil.rmtree(top)

"""Shared fixtures: one Ray session for every Ray-level test of a test process, tiny presets, no network.

`make test` runs two test processes (pytest-xdist, ``--dist loadfile``): each file runs whole in one of
them, so a module's fixtures are built once, and each process starts its own Ray session."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
# Credentials for the S3-compatible test server (tests/s3_server.py), in this process and so in the shared Ray
# session's workers, as a cluster's nodes have theirs; the test session reaches no real cloud.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

from ray.tune.callback import Callback  # after the environment above: Ray reads it as it is imported

#: Sizing floors low enough for the tiny presets' deliberately short phases (the defaults would lengthen them),
#: and the ceiling at the final training itself: their final trainings are a few epochs, and a fifth would cut the phases the tests size by hand.
TINY_RANGE_TEST: dict[str, Any] = {"min_steps": 10, "points": 5, "max_fraction": 1.0}
TINY_SHORT_RUNS: dict[str, Any] = {"min_steps": 10, "min_points": 1, "max_fraction": 1.0}


def tiny_preset_dict(**overrides: Any) -> dict[str, Any]:
    """MNIST-1D with 2 000 samples (1 440 train, 160 validation, 400 test): a real dataset, a real model, seconds per run."""
    preset: dict[str, Any] = {
        "name": "tiny",
        "dataset": {"name": "mnist1d", "num_samples": 2000},
        "model": {"name": "cnn1d", "width": 16},
        "train": {"epochs": 3, "batch_size": 64, "seed": 0},
        "policy": {"name": "one_cycle", "max_lr": 0.5},
        "weight_decay": 1e-4,
        "search": {
            "range_test": {"min_lr": 0.01, "max_lr": 3.0, "epochs": 1, "eval_every": 5, "eval_samples": 200, **TINY_RANGE_TEST}
        },
    }
    preset.update(overrides)
    return preset


def crash_once(config: dict[str, Any]) -> None:
    """tunekit's trainable, but its first attempt dies right after epoch ``config["crash_after"]``'s
    checkpoint is reported (the file ``config["marker"]`` says it did)."""
    import tunekit.trainable as trainable

    marker, epoch = Path(config["marker"]), config["crash_after"]
    real_report = trainable._report

    def report_then_crash(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        real_report(metrics, state)
        if metrics["epoch"] == epoch and not marker.exists():
            marker.touch()
            raise RuntimeError(f"simulated crash after epoch {epoch}")

    trainable._report = report_then_crash
    try:
        trainable.train_fn({k: v for k, v in config.items() if k not in ("marker", "crash_after")})
    finally:
        trainable._report = real_report


def reported(folder: Path, epoch: int) -> bool:
    """Whether a trial's ``result.json`` under ``folder`` has a row for ``epoch``."""
    for path in folder.glob("*/result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip().endswith("}")]
        if any(row.get("epoch") == epoch for row in rows):
            return True
    return False


def run_crashing_once(preset: Any, folder: Path, name: str, crash_after: int) -> Any:
    """One Tune trial of ``preset`` that crashes once after epoch ``crash_after`` and is retried (max_failures=1),
    with the result loggers tunekit gives every Tuner (:func:`tunekit.retry.result_loggers`) — and, as the retry
    starts, the storage's copy of the trial's results emptied (:class:`StorageCopyInFlight`); its ``Result``,
    after checking that the crash happened."""
    from ray import tune

    from tunekit.presets import preset_to_dict
    from tunekit.retry import result_loggers

    marker = folder / f"{name}-crashed"
    tuner = tune.Tuner(
        tune.with_resources(crash_once, {"cpu": 1}),
        param_space={"preset": preset_to_dict(preset), "marker": str(marker), "crash_after": crash_after},
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(folder),
            callbacks=[StorageCopyInFlight(), *result_loggers()],
            failure_config=tune.FailureConfig(max_failures=1),
            verbose=0,
        ),
    )
    result = tuner.fit()[0]
    assert marker.exists(), "the trial never crashed"
    return result


class StorageCopyInFlight(Callback):
    """Tune callback: as a crashed trial's retry starts, just before Tune's result loggers read its
    ``result.json`` and ``progress.csv`` back from the storage, the storage's copies are empty — as Tune's
    background copy of the driver's folder leaves them between opening and writing (a CI run of 2026-12-07
    lost a retried trial's epoch 1 to such a copy)."""

    def __init__(self) -> None:
        self.retried: set[str] = set()

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.retried.add(trial.trial_id)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if trial.trial_id in self.retried:
            for name in ("result.json", "progress.csv"):
                Path(trial.storage.trial_fs_path, name).write_bytes(b"")


@pytest.fixture
def tiny() -> dict[str, Any]:
    return tiny_preset_dict()


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole test session of this process (starting Ray costs ~5 s here)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


# ------------------------------------------------------------------ browser tests (tests/test_browser.py)

#: Debian's Chromium and its driver; Selenium is pointed at the driver, so Selenium Manager never downloads one.
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
BROWSER_HOWTO = "apt-get install chromium chromium-driver"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (one line: what is missing, how to get it), or None.

    Only absence skips them: a Chromium that is installed but fails makes them fail."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        return f"browser tests did not run: no {' and no '.join(missing)}; enable them with `{BROWSER_HOWTO}`"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "browser tests did not run: no selenium; enable them with `pip install -e '.[dev]'`"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a `browser` test, before its fixtures start a server or a search, where there is no browser to drive.

    Raised here (not from a mark) every skip has this one location: pytest's short summary folds them into one line."""
    if item.get_closest_marker("browser") is not None and (reason := browser_missing()):
        pytest.skip(reason)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say in one line that the browser tests were skipped, when pytest's short summary (-rs, -ra) does not."""
    if "s" in getattr(terminalreporter, "reportchars", ""):
        return  # the short summary folds their skips into one `SKIPPED [n] …: browser tests did not run: …` line
    reasons = {
        str(report.longrepr[2]).removeprefix("Skipped: ")
        for report in terminalreporter.stats.get("skipped", [])
        if "browser" in getattr(report, "keywords", {}) and isinstance(report.longrepr, tuple)
    }
    for reason in sorted(reasons):
        terminalreporter.write_line(reason, yellow=True)

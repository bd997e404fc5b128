"""A real `mlflow server` process for the tracking tests: 127.0.0.1, a free port, a sqlite backend and a served artifacts folder."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 with its own backend store and artifact root.

    ``stop`` SIGKILLs it (the outage the tests play); ``start`` again serves the same store on the same port.
    """

    def __init__(self, folder: Path, artifacts: str | None = None, env: dict[str, str] | None = None) -> None:
        """``artifacts``: where the served artifacts go (default ``folder/artifacts``; ``s3://…`` with ``env``
        naming its endpoint and credentials)."""
        self.folder, self.port = folder, free_port()
        self.artifacts, self.env = artifacts or str(folder / "artifacts"), env or {}
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> None:
        """Start the server and wait until it answers ``/health``."""
        mlflow = Path(sys.executable).with_name("mlflow")
        self.process = subprocess.Popen(
            [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1", "--serve-artifacts",
             "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}", "--artifacts-destination", self.artifacts],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, **self.env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job runner: starts in a third of the time
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server did not start within {timeout_s:.0f} s")

    def stop(self) -> None:
        """SIGKILL the server and everything it started (its workers)."""
        self.process = kill_group(self.process)


def kill_group(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a server started in its own session, with everything it started; returns None (no process left)."""
    if process is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def create_experiments(uri: str, names: list[str], barrier: Any, errors: Any, folder: str) -> None:
    """Worker process: for each name, wait for the other worker, then create (get-or-create) the experiment and one run.

    Any error is put on ``errors`` (a warning counts: the race must be no event at all).
    """
    import warnings

    from tunekit.tracking import Tracker

    warnings.simplefilter("error", RuntimeWarning)  # tunekit says "refused" or "failed" with one
    for name in names:
        barrier.wait(timeout=120)
        try:
            Tracker(uri, name, Path(folder) / f"fallback-{os.getpid()}.jsonl").start_run("racer")
        except Exception as exc:  # reported to the test, which fails on it
            errors.put(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")

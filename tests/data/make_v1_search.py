"""Writes tests/data/search_v1/: search folders as tunekit 0.1.0 (commit 43999cb, search.json version 1) left them.

Run with that release on the path (``git worktree add /tmp/v010 43999cb``, then
``PYTHONPATH=/tmp/v010 python tests/data/make_v1_search.py OUT``). It writes two searches of one
tiny preset under ``OUT``:

* ``reference/`` — run straight through; only its ``search.json`` is kept (the decisions and
  final accuracies a resumed search must reproduce);
* ``killed/`` — the driver SIGKILLed in the weight-decay phase once one bisection trial had
  finished and another had not (as ``tests/test_recipe.py`` kills it). Checkpoints of the
  finished phases are removed to keep the folder small; nothing else is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

PRESET = {
    "name": "tiny-v1",
    "dataset": {"name": "mnist1d", "num_samples": 2000},
    "model": {"name": "cnn1d", "width": 16},
    "train": {"epochs": 3, "batch_size": 64, "seed": 0},
    "policy": {"name": "one_cycle", "max_lr": 0.5},
    "weight_decay": 1e-4,
    "search": {
        "range_test": {
            "min_lr": 0.01,
            "max_lr": 3.0,
            "epochs": 3,
            "eval_every": 4,
            "eval_samples": 400,
            "weight_decays": [1e-3, 1e-4],
        },
        "momentum": {"candidates": [0.95, 0.9], "epochs": 2},
        "weight_decay": {"strategy": "full", "epochs": 2, "max_trials": 4},
        "final": {"epochs": 3, "replicates": 2},
    },
}


def search(out: Path, name: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "tunekit.cli",
        "search",
        str(out / "preset.yaml"),
        "--storage",
        str(out),
        "--name",
        name,
        "--no-tracking",
    ]
    env = {**os.environ, "RAY_AIR_NEW_OUTPUT": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def kill_mid_weight_decay(out: Path) -> None:
    driver = search(out, "killed")
    folder = out / "killed" / "weight_decay"
    while driver.poll() is None:
        for state in folder.glob("experiment_state-*.json"):
            try:
                trials = [json.loads(t[0]) for t in json.loads(state.read_text())["trial_data"]]
            except (json.JSONDecodeError, OSError):
                continue
            finished = [t for t in trials if t["status"] == "TERMINATED"]
            if finished and len(finished) < len(trials):
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait()
                return
        time.sleep(0.2)
    raise SystemExit("the search ended before it could be killed")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "preset.yaml").write_text(yaml.safe_dump(PRESET))
    reference = search(out, "reference")
    print(reference.communicate()[0].decode()[-2000:])
    for path in (out / "reference").iterdir():
        if path.name != "search.json":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    kill_mid_weight_decay(out)
    for phase in ("range_test", "momentum"):
        for checkpoint in (out / "killed" / phase).glob("trial_*/checkpoint_*"):
            shutil.rmtree(checkpoint)


if __name__ == "__main__":
    main(Path(sys.argv[1]))

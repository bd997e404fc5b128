"""The user's own model, data, loss and metric: refused in one line when broken, searched end to end when not.

``tests/data/userpkg`` is a small user project (``acme_ml``: an MLP classifier, a regression MLP,
scikit-learn's wine and diabetes as TensorDatasets, an R² metric) that is neither installed nor on
``PYTHONPATH``: ``tunekit search … --working-dir tests/data/userpkg`` ships it to the Ray workers.

Bad input exits 2 with one ``error:`` line naming the field and the fix, before any trial starts.
Each case runs through the CLI in a subprocess (the package is not importable in this process);
the cases share one subprocess, and so one Ray start (this file run as a script is that
subprocess: ``python tests/test_user_components.py CASES.json RESULTS.json``); an import error
also goes through the installed ``tunekit`` command itself. The two searches run side by side.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
USERPKG = REPO / "tests" / "data" / "userpkg"
TUNEKIT = Path(sys.executable).parent / "tunekit"
#: A line Ray's own logger writes (``2026-11-24 15:29:27,395	WARNING authentication_token_setup.py:85 -- …``).
RAY_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(DEBUG|INFO|WARNING)\s+\S+\.py:\d+ -- ")


def user_env() -> dict[str, str]:
    """The environment of a user's shell: tunekit installed, ``acme_ml`` nowhere on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"})
    return env


def tunekit(*args: str, cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    """The installed ``tunekit`` command, run from ``cwd`` (not the repository, not the package's folder)."""
    return subprocess.run([str(TUNEKIT), *args], capture_output=True, text=True, cwd=cwd, env=user_env(), timeout=timeout)


def ours(stderr: str) -> list[str]:
    """The lines tunekit wrote: Ray's own log lines aside (the first ``ray.init`` warns about token authentication)."""
    return [line for line in stderr.strip().splitlines() if not RAY_LOG_LINE.match(line)]


def preset_of(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((USERPKG / f"{name}.yaml").read_text())
    return loaded


def write_preset(path: Path, base: str, changes: dict[str, Any]) -> Path:
    """``base`` (wine or diabetes) with whole sections replaced, or a dotted ``section.key`` set."""
    preset = preset_of(base)
    for key, value in changes.items():
        section, _, field = key.partition(".")
        if field:
            preset[section] = {**preset[section], field: value}
        else:
            preset[section] = value
    path.write_text(yaml.safe_dump(preset, sort_keys=False))
    return path


# --------------------------------------------------------------------------- bad input

#: (id, base preset, changes, what the one line must say: the field, the culprit, the fix)
Case = tuple[str, str, dict[str, Any], list[str]]
CHECKED_IN_THE_DRIVER: list[Case] = [
    ("module-missing", "wine", {"model.factory": "acme_ml.modelz:mlp"}, ["model.factory", "'acme_ml.modelz'", "--working-dir"]),
    ("attribute-missing", "wine", {"model.factory": "acme_ml.models:mlpp"}, ["model.factory", "'mlpp'", "after the colon"]),
    ("metric-without-mode", "diabetes", {"metric": {"factory": "acme_ml.metrics:r2"}}, ["metric.mode", "required"]),
    (
        "model-kwargs",
        "wine",
        {"model.kwargs": {"in_features": 13, "depth": 3}},
        ["model.kwargs", "'depth'", "acme_ml.models:mlp accepts", "dropout", "fix or remove the key"],
    ),
    ("dataset-kwargs", "wine", {"dataset.kwargs": {"shuffle": True}}, ["dataset.kwargs", "'shuffle'", "fix or remove the key"]),
]
CHECKED_BY_THE_PROBE: list[Case] = [
    (
        "model-raises",
        "wine",
        {"model.factory": "acme_ml.broken:raising_model"},
        ["model.factory", "raising_model", "acme out of widgets"],
    ),
    (
        "model-not-a-module",
        "wine",
        {"model.factory": "acme_ml.broken:not_a_module"},
        ["model.factory", "not a torch.nn.Module", "return the network"],
    ),
    (
        "dataset-two-splits",
        "wine",
        {"dataset.factory": "acme_ml.broken:two_splits", "dataset.kwargs": {}},
        ["dataset.factory", "three splits"],
    ),
    (
        "dataset-empty-split",
        "wine",
        {"dataset.factory": "acme_ml.broken:empty_test", "dataset.kwargs": {}},
        ["dataset.factory", "test split is empty"],
    ),
    (
        "dataset-not-pairs",
        "wine",
        {"dataset.factory": "acme_ml.broken:inputs_only", "dataset.kwargs": {}},
        ["dataset.factory", "(input, target) pair"],
    ),
    (
        "loss-vector",
        "diabetes",
        {"loss": {"factory": "acme_ml.broken:vector_loss"}},
        ["loss.factory", "not a scalar", "batch mean"],
    ),
    ("loss-nan", "diabetes", {"loss": {"factory": "acme_ml.broken:nan_loss"}}, ["loss.factory", "not finite"]),
]
CASES = CHECKED_IN_THE_DRIVER + CHECKED_BY_THE_PROBE


def run_cases(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each case through the CLI (typer's runner) in *this* process: one Ray, shipping USERPKG, for all (``__main__`` below)."""
    # Ray's log handler must meet this process's own stderr, not one that a CliRunner call swapped in and
    # closed (the first ray.init, in the probe cases, warns about token authentication through it)
    import ray  # noqa: F401
    from typer.testing import CliRunner

    from tunekit.cli import app

    out = {}
    for case in cases:
        storage = Path(case["storage"])
        result = CliRunner().invoke(app, ["search", case["preset"], "--working-dir", str(USERPKG), "--storage", str(storage)])
        out[case["id"]] = {
            "exit_code": result.exit_code,
            "stderr": result.stderr,
            "stdout": result.stdout,
            "exception": None if isinstance(result.exception, SystemExit) or result.exception is None else repr(result.exception),
            "storage_written": storage.exists(),
        }
    return out


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every bad-input case, run through the CLI in one subprocess (cwd elsewhere, package not on the path)."""
    root = tmp_path_factory.mktemp("refused")
    cases = [
        {"id": id_, "preset": str(write_preset(root / f"{id_}.yaml", base, changes)), "storage": str(root / id_ / "runs")}
        for id_, base, changes, _ in CASES
    ]
    (root / "cases.json").write_text(json.dumps(cases))
    command = [sys.executable, __file__, str(root / "cases.json"), str(root / "results.json")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=root, env=user_env(), timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    results: dict[str, dict[str, Any]] = json.loads((root / "results.json").read_text())
    return results


@pytest.mark.slow
@pytest.mark.parametrize(("id_", "base", "changes", "says"), CASES, ids=[c[0] for c in CASES])
def test_a_broken_component_exits_2_with_one_line_before_any_trial(
    refused: dict[str, dict[str, Any]], id_: str, base: str, changes: dict[str, Any], says: list[str]
) -> None:
    got = refused[id_]
    assert got["exception"] is None, got["exception"]
    assert got["exit_code"] == 2, got
    lines = ours(got["stderr"])
    assert len(lines) == 1, got["stderr"]
    assert lines[0].startswith("error: ")
    for text in says:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert "Traceback" not in got["stderr"] + got["stdout"]
    assert not got["storage_written"], "a trial folder (or the search's storage) was written"


def test_an_import_error_is_refused_by_the_command_without_starting_ray(tmp_path: Path) -> None:
    """The installed command, as a user types it: a module that does not import needs no Ray to say so."""
    preset = write_preset(tmp_path / "bad.yaml", "wine", {"model.factory": "acme_ml.modelz:mlp"})
    done = tunekit("search", str(preset), "--working-dir", str(USERPKG), "--storage", str(tmp_path / "runs"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    (line,) = ours(done.stderr)
    assert line.startswith("error: model.factory: cannot import module 'acme_ml.modelz'")
    assert not (tmp_path / "runs").exists()
    # the driver imports the factories itself: nothing needs a Ray (whose first start also logs a line of its own)
    assert done.stderr.strip() == line, f"Ray was started before the factories were imported:\n{done.stderr}"


# --------------------------------------------------------------------------- end to end, package shipped


#: The searches of the end-to-end tests: every phase on wine; the regression without the momentum phase (time).
SEARCHES = {"wine": [], "diabetes": ["--phases", "range_test,weight_decay,final"]}


def start_search(name: str, root: Path) -> subprocess.Popen[str]:
    """``tunekit search USERPKG/<name>.yaml --working-dir USERPKG --json``, run from ``root``."""
    command = [str(TUNEKIT), "search", str(USERPKG / f"{name}.yaml"), "--working-dir", str(USERPKG),
               "--storage", str(root / "runs"), "--name", name, "--json", *SEARCHES[name]]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root, env=user_env())


def rows_of(directory: Path, phase: str) -> list[list[dict[str, Any]]]:
    """Every trial of a phase: its reported rows."""
    return [
        [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        for f in sorted((directory / phase).glob("trial_*/result.json"))
    ]


@pytest.fixture(scope="module")
def searches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The classification and the regression search, side by side (each its own Ray): name → folder, summary."""
    roots = {name: tmp_path_factory.mktemp(name) for name in SEARCHES}
    running = {name: start_search(name, root) for name, root in roots.items()}
    out = {}
    for name, process in running.items():
        try:
            stdout, stderr = process.communicate(timeout=480)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, f"{name}: {stderr[-4000:]}"
        out[name] = {"root": roots[name], "summary": json.loads(stdout)}
    return out


@pytest.fixture(scope="module")
def wine(searches: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return searches["wine"]


@pytest.fixture(scope="module")
def diabetes(searches: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return searches["diabetes"]


def assert_decided_on_validation(summary: dict[str, Any], phase: str) -> None:
    """A phase's evidence is its trials' last validation losses: what the decision read. A candidate an
    earlier phase trained exactly so is read from that phase's trial, which the reason names."""
    directory = Path(summary["directory"])
    lasts = [rows[-1]["val_loss"] for rows in rows_of(directory, phase)]
    assert len(lasts) == summary["phases"][phase]["trials"]
    reused = re.findall(r"\((\w+) trial (\w+)\)", summary["phases"][phase]["reason"].partition("not trained again")[2])
    for earlier, trial in reused:
        (result,) = (directory / earlier).glob(f"trial_{trial}*/result.json")
        lasts.append(json.loads(result.read_text().splitlines()[-1])["val_loss"])
    evidence = summary["phases"][phase]["evidence"]
    assert len(evidence) == len(lasts)
    finite = lambda values: sorted(v for v in values if v is not None and math.isfinite(v))  # noqa: E731
    assert finite(evidence.values()) == pytest.approx(finite(lasts))


@pytest.mark.slow
def test_the_shipped_classifier_is_searched_and_decided_on_validation(wine: dict[str, Any]) -> None:
    summary = wine["summary"]
    decided = {phase: p["values"] for phase, p in summary["phases"].items()}
    assert set(decided) == {"range_test", "learning_rate", "momentum", "weight_decay", "final"}
    # every decision is one of the candidates of wine.yaml
    assert 0.001 < decided["range_test"]["max_lr"] <= 3.0
    assert decided["momentum"]["momentum_max"] in (0.95, 0.9)
    assert decided["weight_decay"]["weight_decay"] in (1e-3, 1e-4)
    # the user's components made it into the chosen preset
    preset = summary["preset"]
    assert preset["model"]["factory"] == "acme_ml.models:mlp"
    assert preset["dataset"]["factory"] == "acme_ml.data:wine"
    assert preset["policy"]["max_lr"] == pytest.approx(decided["learning_rate"]["refined_max_lr"])
    # the bisection's weight decay, or — where the LR fell below the range test's — rebalanced to keep max_lr × wd
    trained_wd = decided["learning_rate"].get("balanced_weight_decay", decided["weight_decay"]["weight_decay"])
    assert trained_wd * decided["learning_rate"]["refined_max_lr"] == pytest.approx(
        decided["weight_decay"]["weight_decay"] * decided["range_test"]["max_lr"]
    )
    assert preset["weight_decay"] == pytest.approx(trained_wd)
    # classification: accuracy on the test split, two replicates; wine is easy
    assert summary["metric_name"] == "acc"
    assert len(summary["accuracies"]) == 2
    assert summary["accuracy_mean"] == summary["metric_mean"]
    assert 0.8 <= summary["metric_mean"] <= 1.0
    assert summary["metric_std"] >= 0.0
    # decisions read the validation split (the factory returned none: tunekit carved 20 % of train)
    directory = Path(summary["directory"])
    for phase in ("momentum", "weight_decay"):
        assert_decided_on_validation(summary, phase)
        assert all("val_acc" in r and "val_loss" in r for rows in rows_of(directory, phase) for r in rows)
    finals = rows_of(directory, "final")
    assert len(finals) == 2
    assert sorted(rows[-1]["test_acc"] for rows in finals) == pytest.approx(sorted(summary["accuracies"]))
    print(f"wine: {decided}; test acc {summary['metric_mean']:.4f} ± {summary['metric_std']:.4f}")


@pytest.mark.slow
def test_best_returns_the_chosen_configuration_with_the_users_factories(wine: dict[str, Any]) -> None:
    summary, root = wine["summary"], wine["root"]
    done = tunekit("best", "--storage", str(root / "runs"), "--experiment", "acme-wine", "--format", "json", cwd=root)
    assert done.returncode == 0, done.stderr
    best = json.loads(done.stdout)
    assert best["model"] == {**summary["preset"]["model"]}
    assert best["model"]["factory"] == "acme_ml.models:mlp"
    assert best["model"]["kwargs"]["dropout"] == 0.1
    assert best["dataset"]["factory"] == "acme_ml.data:wine"
    assert best["policy"]["max_lr"] == pytest.approx(summary["phases"]["learning_rate"]["values"]["refined_max_lr"])
    assert best["weight_decay"] == pytest.approx(summary["preset"]["weight_decay"])  # as trained (rebalanced or not)
    assert best["runtime_env"]["working_dir"] == str(USERPKG)


@pytest.mark.slow
def test_continue_trains_on_from_the_searchs_snapshot(wine: dict[str, Any]) -> None:
    """From the search's parent run (its best replicate's snapshot at epoch 5) to epoch 7, the package still shipped."""
    summary, root = wine["summary"], wine["root"]
    done = tunekit("continue", summary["mlflow_run_id"], "--storage", str(root / "runs"), "--set", "epochs=7", "--json", cwd=root)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout)
    assert result["epochs"] == 7
    assert Path(result["restored_from"]).parent.parent == Path(summary["directory"]) / "final"
    rows = [json.loads(line) for line in (Path(result["trial_dir"]) / "result.json").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [6, 7]  # on from the snapshot, not from scratch
    assert 0.5 <= result["test_acc"] <= 1.0


@pytest.mark.slow
def test_the_shipped_regression_is_searched_by_its_own_metric(diabetes: dict[str, Any]) -> None:
    summary = diabetes["summary"]
    decided = {phase: p["values"] for phase, p in summary["phases"].items()}
    assert set(decided) == {"range_test", "weight_decay", "final"}
    assert 0.001 < decided["range_test"]["max_lr"] <= 1.0
    assert decided["range_test"]["range_test_weight_decay"] in (1e-3, 1e-4)
    assert decided["weight_decay"]["weight_decay"] in (1e-3, 1e-4)
    assert decided["final"]["metric"] == "test_r2"
    # R² on the test split, not accuracy: an MLP explains part of the disease progression
    assert summary["metric_name"] == "r2"
    assert "accuracy_mean" not in summary
    assert len(summary["metric_values"]) == 2
    assert math.isfinite(summary["metric_mean"])
    assert 0.2 < summary["metric_mean"] < 1.0
    assert summary["preset"]["loss"]["factory"] == "torch.nn:MSELoss"
    assert summary["preset"]["metric"] == {"factory": "acme_ml.metrics:r2", "kwargs": {}, "mode": "max"}
    # the factory's own validation split is what the decisions read; the final replicates report test_r2
    directory = Path(summary["directory"])
    assert_decided_on_validation(summary, "weight_decay")
    assert all("val_r2" in r for rows in rows_of(directory, "weight_decay") for r in rows)
    finals = rows_of(directory, "final")
    assert sorted(rows[-1]["test_r2"] for rows in finals) == pytest.approx(sorted(summary["metric_values"]))
    print(f"diabetes: {decided}; test r2 {summary['metric_mean']:.4f} ± {summary['metric_std']:.4f}")


# --------------------------------------------------------------------------- Python API, callables


def breast_cancer_splits(seed: int = 0) -> tuple[Any, Any, Any]:
    """A dataset factory defined here: scikit-learn's breast cancer (569 × 30, 2 classes), standardised."""
    import numpy as np
    import torch
    from sklearn.datasets import load_breast_cancer
    from torch.utils.data import TensorDataset

    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    test, val, train = order[:120], order[120:200], order[200:]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-8
    split = lambda i: TensorDataset(torch.tensor((x[i] - mean) / std, dtype=torch.float32), torch.tensor(y[i]))  # noqa: E731
    return split(train), split(val), split(test)


def model_factory(hidden: int) -> Any:
    """A model factory made here at run time: a closure, so tunekit must pickle it (no import string names it)."""

    def build(dropout: float = 0.0) -> Any:
        from torch import nn

        return nn.Sequential(nn.Linear(30, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 2))

    return build


@pytest.mark.slow
def test_the_python_api_takes_the_factories_themselves(ray_session: None, tmp_path: Path) -> None:
    import tunekit
    from tunekit.components import PICKLED
    from tunekit.presets import OneCyclePolicy

    preset = {
        "name": "api-callables",
        "dataset": {"factory": breast_cancer_splits, "kwargs": {"seed": 0}},
        "model": {"factory": model_factory(16), "kwargs": {"dropout": 0.1}},
        "train": {"epochs": 3, "batch_size": 32, "seed": 0},
        "policy": {"name": "one_cycle", "max_lr": 0.1},
        "search": {
            "range_test": {"min_lr": 0.001, "max_lr": 3.0, "epochs": 2, "eval_every": 4, "eval_samples": 80,
                           "weight_decays": [1e-4], "min_steps": 10, "points": 5},
            "final": {"epochs": 3, "replicates": 1},
        },
    }  # fmt: skip
    result = tunekit.search(preset, storage=str(tmp_path / "runs"), phases=["range_test", "final"], track=False, progress=False)
    assert set(result.phases) == {"range_test", "final"}
    assert result.metric == "test_acc"
    assert 0.8 <= result.metric_mean <= 1.0  # breast cancer is nearly linearly separable
    # the module-level function travels as its import string, the closure pickled
    chosen = result.to_dict()["preset"]
    assert chosen["dataset"]["factory"] == f"{__name__}:breast_cancer_splits"
    assert chosen["model"]["factory"].startswith(PICKLED)
    policy = result.preset.policy
    assert isinstance(policy, OneCyclePolicy)
    assert policy.max_lr == pytest.approx(result.phases["range_test"].values["max_lr"])
    print(f"api: max_lr {policy.max_lr:.4g}; test acc {result.metric_mean:.4f}")


if __name__ == "__main__":  # the bad-input cases' subprocess (see the `refused` fixture)
    Path(sys.argv[2]).write_text(json.dumps(run_cases(json.loads(Path(sys.argv[1]).read_text()))))

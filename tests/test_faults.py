"""Faults injected into real searches: a trial that raises is *failed* (with its error), never *diverged*.

The model factory below is a user's factory (the workers import it by its import string) whose
model raises at its ``after``-th forward call — in the first trial to get there (``fail_first``: a
marker file claimed atomically, so exactly one trial of a search fails), or in the trial seeded
``fail_seed`` (one final replicate). The pre-flight probe calls the model once and never fails.
The data is scikit-learn's digits, bundled: each search takes seconds.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.conftest import TINY_RANGE_TEST, TINY_SHORT_RUNS
from tunekit.recipe import SearchError
from tunekit.recipe import search as run_search

pytestmark = [pytest.mark.slow, pytest.mark.ray]

INJECTED = "injected fault"


def _claim(marker: str) -> bool:
    """True for the one caller that creates ``marker`` (O_EXCL: atomic across processes)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class Faulty(nn.Module):
    """An MLP for 8×8 digits that raises at its ``after``-th forward call when it is the faulty one."""

    def __init__(self, fail_first: str, fail_seed: int, error: str, after: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        self.fail_first, self.error, self.after = fail_first, error, after
        self.seeded_to_fail = fail_seed >= 0 and torch.initial_seed() == fail_seed
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.after and (self.seeded_to_fail or (self.fail_first and _claim(self.fail_first))):
            if self.error == "oom":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
            raise RuntimeError(INJECTED)
        out: torch.Tensor = self.net(x)
        return out


def faulty(fail_first: str = "", fail_seed: int = -1, error: str = "runtime", after: int = 4) -> nn.Module:
    """The user's model factory (its keywords come from the preset's ``model.kwargs``)."""
    return Faulty(fail_first, fail_seed, error, after)


def preset(**model: Any) -> dict[str, Any]:
    return {
        "name": "digits-faults",
        "dataset": {"name": "digits"},
        "model": {"factory": "tests.test_faults:faulty", "kwargs": model},
        "train": {"epochs": 3, "batch_size": 64, "seed": 0},
        "policy": {"name": "one_cycle", "max_lr": 0.3},
        "search": {
            "range_test": {"min_lr": 0.01, "max_lr": 3.0, "epochs": 1, "eval_every": 2, **TINY_RANGE_TEST},
            "momentum": {"epochs": 2, **TINY_SHORT_RUNS},
            "final": {"epochs": 2, "replicates": 3},
        },
    }


def range_tests(folder: Path, name: str, model: dict[str, Any], max_failures: int) -> Any:
    """A search of the range-test phase alone (weight decays 1e-4 and 0), the model's faults as ``model`` says."""
    return run_search(
        preset(**model),
        name=name,
        storage=str(folder / "runs"),
        phases=["range_test"],
        track=False,
        max_failures=max_failures,
        overrides={"search.range_test.weight_decays": [1e-4, 0.0]},
    )


def test_a_trial_that_raises_is_failed_with_its_error_not_diverged(
    tmp_path: Path, ray_session: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """One momentum candidate and one final replicate raise: the search decides on the others and says so."""
    from mlflow import MlflowClient

    from tunekit.recipe.report import search_page
    from tunekit.recipe.state import read_state
    from tunekit.report_page import render_html

    result = run_search(
        preset(fail_first=str(tmp_path / "claimed"), fail_seed=2),
        name="faults",
        storage=str(tmp_path / "runs"),
        phases=["momentum", "final"],
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        max_failures=0,
    )
    momentum, final = result.phases["momentum"], result.phases["final"]
    # exactly one momentum candidate failed, with its error; it is not a divergence
    (failed_label,) = momentum.failed
    assert momentum.failed[failed_label] == f"RuntimeError: {INJECTED}"
    assert f"{failed_label}: failed (RuntimeError: {INJECTED})" in momentum.reason
    assert "diverged" not in momentum.reason
    assert momentum.values["momentum_max"] != float(failed_label)  # the choice is among the candidates that ran
    # the replicate seeded 2 failed: left out of the mean, and the reason says so
    assert final.failed == {"seed 2": f"RuntimeError: {INJECTED}"}
    assert "1 of 3 replicates failed, left out of the mean (seed 2: RuntimeError: injected fault)" in final.reason
    assert set(final.evidence) == {"seed 0", "seed 1"}
    assert math.isfinite(result.metric_mean)
    assert result.metric_mean == pytest.approx(sum(final.evidence.values()) / 2)
    # the progress line names the error
    failed_lines = [line for line in capsys.readouterr().out.splitlines() if "FAILED" in line]
    assert len(failed_lines) == 2
    assert all(f": RuntimeError: {INJECTED} — " in line for line in failed_lines), failed_lines
    # search.json keeps the failures; the report page shows them as failed
    state = read_state(str(tmp_path / "runs" / "faults"))
    assert state.done["momentum"].failed == momentum.failed
    page = render_html(search_page(state))
    assert f"failed: RuntimeError: {INJECTED}" in page
    # MLflow: the failed trials' runs are FAILED, tagged with their error; no run is tagged diverged
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("digits-faults").experiment_id])
    failed_runs = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed_runs) == 2
    assert {r.data.tags.get("tunekit.failed") for r in failed_runs} == {f"RuntimeError: {INJECTED}"}
    assert not any("tunekit.diverged" in r.data.tags for r in runs)


def test_a_phase_whose_candidates_all_failed_stops_in_one_line_with_the_fix(tmp_path: Path, ray_session: None) -> None:
    """Every range test runs out of memory: the search stops with the error and what to change — no "diverged"."""
    with pytest.raises(SearchError) as raised:
        range_tests(tmp_path, "oom", {"fail_seed": 0, "error": "oom"}, max_failures=0)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("phase range_test: every range test failed (wd 0.0001 (torch.OutOfMemoryError: CUDA out of memory")
    assert "lower train.batch_size" in message
    assert "resources.gpu" in message
    assert "diverged" not in message


def test_a_retried_range_test_is_read_from_its_last_attempt(tmp_path: Path, ray_session: None) -> None:
    """A range test that crashed once and was retried from scratch keeps its weight decay: the rows
    Ray's logger appended from the first attempt are not read as part of the curve."""
    from tunekit.recipe.records import phase_records

    result = range_tests(tmp_path, "retry", {"fail_first": str(tmp_path / "claimed"), "after": 12}, max_failures=1)
    assert (tmp_path / "claimed").exists()  # the fault fired
    records = phase_records(str(tmp_path / "runs" / "retry"), "range_test")
    assert len(records) == 2
    assert not any(r.error for r in records)
    for r in records:
        lrs, _ = r.curve("lr", "val_loss")
        assert lrs == sorted(set(lrs)), r.label  # one increasing sweep, no LR twice
    rt = result.phases["range_test"]
    assert set(rt.evidence) == {"0.0001", "0"}  # both weight decays read, none dropped as unreadable
    assert "unreadable" not in rt.reason

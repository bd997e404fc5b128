"""`tunekit search` end to end on real (tiny) MNIST-1D runs: every phase decides, decisions chain,
a SIGKILLed driver resumes without rerunning a finished trial, `tunekit report` tells each trial."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from tests.conftest import TINY_RANGE_TEST, TINY_SHORT_RUNS, tiny_preset_dict
from tunekit.cli import app
from tunekit.recipe import SearchState, read_state
from tunekit.report_page import value_text

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SEARCH = {
    "range_test": {
        "min_lr": 0.01,
        "max_lr": 3.0,
        "epochs": 4,
        "eval_every": 4,
        "eval_samples": 400,
        "weight_decays": [1e-3, 1e-4],
        **TINY_RANGE_TEST,
        "max_fraction": None,  # no ceiling: these 4-epoch range tests are longer than the 3-epoch final training
    },
    "learning_rate": {"factors": [1.0, 0.5], "epochs": 2, **TINY_SHORT_RUNS},
    "momentum": {"candidates": [0.95, 0.9], "epochs": 2, **TINY_SHORT_RUNS},
    "weight_decay": {"strategy": "full", "epochs": 2, "max_trials": 4, **TINY_SHORT_RUNS},
    "final": {"epochs": 3, "replicates": 2},
}


def write_preset(folder: Path, **changes: Any) -> Path:
    preset = tiny_preset_dict(search={**SEARCH, **changes.pop("search", {})}, **changes)
    path = folder / "preset.yaml"
    path.write_text(yaml.safe_dump(preset))
    return path


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def trial_configs(directory: Path, phase: str) -> list[dict[str, Any]]:
    """Each trial of a phase as Ray recorded it in the experiment state (what ran, once each)."""
    state = sorted((directory / phase).glob("experiment_state-*.json"))[-1]  # a restored run writes a newer one
    trials = [json.loads(t[0]) for t in json.loads(state.read_text())["trial_data"]]
    return trials


def last_result(directory: Path, phase: str, **config: Any) -> dict[str, Any]:
    """The last result of the one trial of ``phase`` whose config has ``config``'s values, from its result.json."""
    found = [
        json.loads(p.read_text().splitlines()[-1])
        for p in (directory / phase).glob("*/result.json")
        if all(json.loads((p.parent / "params.json").read_text()).get(k) == v for k, v in config.items())
    ]
    assert len(found) == 1, f"{phase}: {len(found)} trials with {config}"
    return found[0]


def result_hashes(directory: Path, phase: str) -> dict[str, str]:
    return {p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (directory / phase).glob("*/result.json")}


def decisions(state: SearchState) -> dict[str, dict[str, Any]]:
    return {phase: done.values for phase, done in state.done.items()}


def trained_weight_decay(phases: dict[str, Any]) -> float:
    """The weight decay the final training uses: the learning_rate phase's rebalanced one, else the bisection's."""
    return float(phases["learning_rate"]["values"].get("balanced_weight_decay", phases["weight_decay"]["values"]["weight_decay"]))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> dict[str, Any]:
    """One uninterrupted search through the CLI (--json), shared by the tests below."""
    root = tmp_path_factory.mktemp("search")
    preset = write_preset(root)
    result = cli("search", str(preset), "--storage", str(root / "runs"), "--name", "ref", "--json")
    summary = json.loads(result.stdout)
    return {"root": root, "preset": preset, "summary": summary, "directory": Path(summary["directory"])}


def test_every_phase_decides_and_the_decisions_chain(reference: dict[str, Any]) -> None:
    summary, directory = reference["summary"], reference["directory"]
    phases = summary["phases"]
    assert list(phases) == ["range_test", "weight_decay", "learning_rate", "momentum", "final"]
    rt, mom, wd = phases["range_test"]["values"], phases["momentum"]["values"], phases["weight_decay"]["values"]
    lr = phases["learning_rate"]["values"]
    assert rt["min_lr"] == pytest.approx(rt["max_lr"] / 10)
    assert rt["range_test_weight_decay"] in (1e-3, 1e-4)
    assert mom["momentum_max"] in (0.95, 0.9)
    assert mom["momentum_min"] == 0.85
    assert wd["weight_decay"] > 0

    # the learning-rate runs tried the range test's max_lr and half of it, then halved on while the smallest
    # won (down to 1/32 of it): the LR chosen is bracketed from below by a smaller one that lost. The run at
    # max_lr × 1 is the weight-decay phase's run at the chosen weight decay (both 2-epoch 1cycles at the range
    # test's max_lr): it ran to its end there, so it is read, not trained again
    wd_run = last_result(directory, "weight_decay", weight_decay=wd["weight_decay"])
    assert not wd_run.get("stopped_by")
    assert wd_run["epoch"] == wd_run["epochs_total"] == 2
    lr_trials = [t["config"] for t in trial_configs(directory, "learning_rate")]
    trained_lrs = [t["policy.max_lr"] for t in lr_trials if "weight_decay" not in t]  # not the weight-decay checks
    assert rt["max_lr"] not in trained_lrs
    assert f"policy.max_lr={rt['max_lr']:.3g} (weight_decay trial " in phases["learning_rate"]["reason"]
    assert "not trained again" in phases["learning_rate"]["reason"]
    tried_lrs = sorted([rt["max_lr"], *trained_lrs], reverse=True)
    assert tried_lrs == pytest.approx([rt["max_lr"] / 2**k for k in range(len(tried_lrs))])
    assert 2 <= len(tried_lrs) <= 6
    assert lr["refined_max_lr"] in tried_lrs
    assert lr["refined_max_lr"] > min(tried_lrs) or len(tried_lrs) == 6
    assert lr["lr_factor"] == pytest.approx(lr["refined_max_lr"] / rt["max_lr"])
    # the weight decay the final training uses: the bisection's where the LR stayed at the range test's max_lr;
    # else the one rebalanced to keep max_lr × weight decay, checked by a run at the chosen LR (the LR and momentum
    # runs are as long) against that LR's own run at the bisection's — where it loses, their geometric mean runs
    # too — the largest within noise of the lowest loss (and the reason says so)
    balanced = lr["refined_max_lr"] < rt["max_lr"]
    rebalanced = wd["weight_decay"] * rt["max_lr"] / lr["refined_max_lr"]
    checks = [t for t in lr_trials if "weight_decay" in t]
    assert [t["policy.max_lr"] for t in checks] == pytest.approx([lr["refined_max_lr"]] * len(checks))
    checked = [t["weight_decay"] for t in checks]
    assert checked in (
        [],
        [pytest.approx(rebalanced)],
        [pytest.approx(rebalanced), pytest.approx(math.sqrt(rebalanced * wd["weight_decay"]))],
    )
    assert bool(checked) == balanced
    assert ("keeps max_lr × weight decay as judged" in phases["learning_rate"]["reason"]) == balanced
    assert ("; checked at max_lr " in phases["learning_rate"]["reason"]) == balanced
    trained_wd = trained_weight_decay(phases)
    assert trained_wd == pytest.approx(wd["weight_decay"]) or trained_wd in [pytest.approx(w) for w in checked]
    # the bisection ran first, around the range tests' best weight decay, at the range test's max_lr
    wd_trials = trial_configs(directory, "weight_decay")
    tried = [t["config"]["weight_decay"] for t in wd_trials]
    assert rt["range_test_weight_decay"] in tried
    assert len(tried) == len(set(tried)) <= 4
    assert [t["config"]["preset"]["policy"]["max_lr"] for t in wd_trials] == pytest.approx([rt["max_lr"]] * len(wd_trials))
    # the LR was refined at the weight decay the bisection chose
    assert {t["config"]["preset"]["weight_decay"] for t in trial_configs(directory, "learning_rate")} == {wd["weight_decay"]}
    # momentum trials ran at the refined LR (min_lr = max_lr / div) and the weight decay trained with: 0.95 → 0.85,
    # the preset's cycle, is a run an earlier phase trained just so — the run the LR was chosen by (by the
    # learning_rate phase, or by weight_decay's) or, where the weight decay changed, its check: read, not trained again
    momenta = sorted(t["config"]["momentum"] for t in trial_configs(directory, "momentum"))
    assert momenta == [[0.9, 0.85]]
    assert "not trained again" in phases["momentum"]["reason"]
    assert "momentum=[0.95,0.85] (" in phases["momentum"]["reason"]
    assert set(phases["momentum"]["evidence"]) == {"0.95", "0.9"}
    for trial in trial_configs(directory, "momentum"):
        policy = trial["config"]["preset"]["policy"]
        assert policy["max_lr"] == pytest.approx(lr["refined_max_lr"])
        assert policy["max_lr"] / policy["div"] == pytest.approx(lr["refined_min_lr"])
        assert trial["config"]["preset"]["weight_decay"] == pytest.approx(trained_wd)
    # the final trainings used every decision; replicates differ in seed, init and batch
    final = trial_configs(directory, "final")
    assert len(final) == 2
    for trial in final:
        preset = trial["config"]["preset"]
        assert preset["policy"]["max_lr"] == pytest.approx(lr["refined_max_lr"])
        assert tuple(preset["policy"]["momentum"]) == (mom["momentum_max"], 0.85)
        assert preset["weight_decay"] == pytest.approx(trained_wd)
        assert trial["config"]["epochs"] == 3
    assert sorted((t["config"]["seed"], t["config"]["init"]) for t in final) == [(0, "msra"), (1, "xavier")]
    assert 0.0 < summary["accuracy_mean"] <= 1.0
    assert len(summary["accuracies"]) == 2
    assert summary["accuracy_std"] >= 0.0
    # the one number read on the test split: the final replicates' accuracy; every decision read validation
    assert (summary["metric_name"], summary["metric_split"]) == ("acc", "test")
    assert (summary["metric_mean"], summary["metric_std"]) == (summary["accuracy_mean"], summary["accuracy_std"])
    assert phases["final"]["values"] == {"metric": "test_acc", "mean": summary["accuracy_mean"], "std": summary["accuracy_std"]}
    assert "test accuracy" in phases["final"]["reason"]
    assert "validation loss" in phases["momentum"]["reason"]
    # the chosen preset carries the decisions
    chosen = summary["preset"]
    assert chosen["policy"]["max_lr"] == pytest.approx(lr["refined_max_lr"])
    assert chosen["weight_decay"] == pytest.approx(trained_wd)
    # compute is accounted per phase, where each run trained: 2 range tests of at most 4 epochs (one ends
    # where its curve diverged), the LR runs and weight-decay checks trained there and 1 momentum run × 2 epochs
    # (the run at 0.95 is the learning_rate phase's)
    ramps = [json.loads(p.read_text().splitlines()[-1]) for p in (directory / "range_test").glob("*/result.json")]
    assert len(ramps) == 2
    assert all(r["trial_epochs"] == pytest.approx(4.0) or r["diverged"] for r in ramps)
    assert any(r["diverged"] and r["trial_epochs"] < 4.0 for r in ramps)  # a range test ended once over
    assert phases["range_test"]["trial_epochs"] == pytest.approx(sum(r["trial_epochs"] for r in ramps))
    assert phases["learning_rate"]["trial_epochs"] == pytest.approx(2.0 * (len(trained_lrs) + len(checks)))
    assert phases["learning_rate"]["trials"] == len(trained_lrs) + len(checks)
    assert phases["momentum"]["trial_epochs"] == pytest.approx(2.0 * len(momenta))
    assert phases["momentum"]["trials"] == len(momenta) == 1
    assert phases["final"]["trial_epochs"] == pytest.approx(6.0)


def test_the_search_is_in_mlflow(reference: dict[str, Any]) -> None:
    summary = reference["summary"]
    client = MlflowClient(summary["tracking_uri"])
    parent = client.get_run(summary["mlflow_run_id"])
    params = parent.data.params
    phases = summary["phases"]
    assert float(params["max_lr"]) == pytest.approx(phases["range_test"]["values"]["max_lr"])
    assert float(params["refined_max_lr"]) == pytest.approx(phases["learning_rate"]["values"]["refined_max_lr"])
    assert float(params["momentum_max"]) == phases["momentum"]["values"]["momentum_max"]
    assert float(params["weight_decay"]) == pytest.approx(phases["weight_decay"]["values"]["weight_decay"])
    assert parent.data.metrics["best_test_acc"] == pytest.approx(summary["accuracy_mean"])
    # with the best replicate's losses on both splits
    assert {"best_test_acc_std", "best_test_loss", "best_val_loss"} <= set(parent.data.metrics)
    assert {f"tunekit.decision.{p}" for p in phases} <= set(parent.data.tags)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    trials = sum(phase["trials"] for phase in phases.values())
    assert len(children) == trials
    assert len({c.data.tags["tunekit.trial_id"] for c in children}) == trials
    best = [c for c in children if c.data.tags.get("tunekit.best") == "true"]
    assert len(best) == 1
    assert best[0].data.tags["tunekit.phase"] == "final"
    assert best[0].data.metrics["test_acc"] == pytest.approx(max(summary["accuracies"]))
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best_config.yaml", "report.md", "plots", "model"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert plots == {f"plots/{p}.png" for p in phases}
    # `tunekit best` hands back the chosen configuration
    best_yaml = yaml.safe_load(cli("best", "--run", parent.info.run_id, "--tracking-uri", summary["tracking_uri"]).stdout)
    assert best_yaml["weight_decay"] == pytest.approx(trained_weight_decay(phases))


def page_sections(page: str) -> dict[str, tuple[str, list[bytes]]]:
    """Each decision section of a report page: phase → (its heading, its embedded PNGs)."""
    import base64

    sections = {}
    for phase, body in re.findall(r'<section class="decision" id="phase-([a-z_]+)">(.*?)</section>', page, re.S):
        heading = re.search(r"<h2>(.*?)</h2>", body, re.S)
        images = [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', body)]
        sections[phase] = (heading.group(1) if heading else "", images)
    return sections


def test_the_report_page_is_on_the_parent_run_and_drawn_again_from_the_folder(reference: dict[str, Any], tmp_path: Path) -> None:
    summary = reference["summary"]
    client = MlflowClient(summary["tracking_uri"])
    parent = client.get_run(summary["mlflow_run_id"])
    # tunekit's experiment opens on MLflow 3's runs table (model training), not the GenAI overview
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    kept = Path(client.download_artifacts(parent.info.run_id, "report.html", str(tmp_path))).read_text()
    # every phase's decision, in order, with its plot embedded as a real PNG
    sections = page_sections(kept)
    assert list(sections) == list(summary["phases"])
    for phase, (heading, images) in sections.items():
        assert phase in heading
        assert len(images) == 1, phase
        assert images[0].startswith(b"\x89PNG\r\n\x1a\n"), phase
        assert len(images[0]) > 5000, phase
    # the chosen configuration names the phase that set each value
    lr = summary["phases"]["learning_rate"]["values"]["refined_max_lr"]
    assert f"<code>policy.max_lr</code></td><td class='num'>{value_text(lr)}</td><td><a href='#phase-learning_rate'>" in kept
    balanced = summary["phases"]["learning_rate"]["values"].get("balanced_weight_decay")  # rebalanced there, if at all
    wd, by = (
        (balanced, "learning_rate") if balanced else (summary["phases"]["weight_decay"]["values"]["weight_decay"], "weight_decay")
    )
    assert f"<code>weight_decay</code></td><td class='num'>{value_text(wd)}</td><td><a href='#phase-{by}'>" in kept
    # the momentum candidates ranked by validation loss, the chosen one marked
    momentum = summary["phases"]["momentum"]
    best_first = sorted(momentum["evidence"], key=momentum["evidence"].get)
    table = kept[kept.index('id="phase-momentum"') :]
    cell = [re.search(rf"<td>{re.escape(label)}(?![0-9])", table) for label in best_first]  # 0.9 is not 0.95's start
    first, second = cell
    assert first is not None
    assert second is not None
    assert first.start() < second.start()
    assert f"{momentum['values']['momentum_max']:g} (chosen)" in table
    assert f"test accuracy {100 * summary['accuracy_mean']:.2f} %" in kept
    # `tunekit report --html` draws the same page from the folder, without MLflow
    out = tmp_path / "page.html"
    cli("report", str(reference["directory"]), "--html", str(out))
    assert out.read_text() == kept


def test_report_has_one_row_per_trial(reference: dict[str, Any], tmp_path: Path) -> None:
    directory, summary = reference["directory"], reference["summary"]
    cli("report", str(directory), "--csv", str(tmp_path / "trials.csv"))
    frame = pd.read_csv(tmp_path / "trials.csv")
    assert len(frame) == sum(phase["trials"] for phase in summary["phases"].values())
    assert set(frame["phase"]) == set(summary["phases"])
    columns = {
        "config",
        "diagnosis",
        "stopped_by",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
        "trial_epochs",
        "train_time_s",
    }
    assert columns <= set(frame.columns)
    # every trial read the validation split; only the final replicates read the test split (train.test_at_end)
    assert frame["val_loss"].notna().all()
    assert frame[frame["phase"] != "final"][["test_loss", "test_acc"]].isna().all().all()
    assert frame[frame["phase"] == "final"][["test_loss", "test_acc"]].notna().all().all()
    assert (frame["status"] == "DONE").all()
    momentum = frame[frame["phase"] == "momentum"]
    # one row per trial the phase trained: 0.95 is an earlier phase's row (the learning_rate phase trained it, at the
    # weight decay it chose)
    assert sorted(json.loads(m)[0] for m in momentum["momentum"]) == [0.9]
    assert frame.groupby("phase")["trial_epochs"].sum()["range_test"] == pytest.approx(
        summary["phases"]["range_test"]["trial_epochs"]
    )
    cli("report", str(directory), "--parquet", str(tmp_path / "trials.parquet"))
    assert len(pd.read_parquet(tmp_path / "trials.parquet")) == len(frame)
    shown = cli("report", str(directory)).stdout
    assert "weight_decay" in shown
    assert "final" in shown


def test_a_sigkilled_driver_resumes_without_rerunning_finished_trials(reference: dict[str, Any], tmp_path: Path) -> None:
    """Kill the driver (SIGKILL) once the bisection has finished a trial and has more to go, then resume.

    After the kill, the searcher's saved state is put back to a version from before that trial's end, as a kill
    between Tune's copies of the experiment state and of the searcher's leaves it: the resumed searcher must read
    the end it missed from the trial's folder (a restored searcher used to wait for it for ever), and take as its own
    the trial Tune recorded after it (it used to suggest that trial's value again, and the value ran twice)."""
    storage = tmp_path / "runs"
    directory = storage / "killed"
    env = {**os.environ, "RAY_AIR_NEW_OUTPUT": "0", "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "tunekit.cli",
        "search",
        str(reference["preset"]),
        "--storage",
        str(storage),
        "--name",
        "killed",
    ]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        finished_before, (saved, stale) = _wait_for_a_finished_bisection_trial(directory, driver)
        before = {"range_test": result_hashes(directory, "range_test")}  # the phase before weight_decay
        finished_results = {tid: h for tid, h in result_hashes(directory, "weight_decay").items() if tid in finished_before}
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        _kill_group(driver)
    state = read_state(str(directory))
    assert "weight_decay" not in state.done, "the kill came too late to test a mid-phase resume"
    assert set(state.done) == {"range_test"}
    saved.write_bytes(stale)

    result = cli("resume", str(directory), "--json")
    assert re.search(
        r"\[2/5 weight_decay\] trial \w+ had ended \(\d+ results\) after the searcher's state was last saved", result.output
    )
    assert re.search(
        r"\[2/5 weight_decay\] trial \w+ was recorded by Tune after the searcher's state was last saved: the searcher takes it",
        result.output,
    )
    resumed = json.loads(result.stdout)

    # the same decisions as the uninterrupted run, and the same final accuracies
    assert decisions(read_state(str(directory))) == decisions(read_state(str(reference["directory"])))
    assert resumed["accuracies"] == reference["summary"]["accuracies"]
    # finished phases were not rerun: their trials' results are byte for byte what they were
    for phase, hashes in before.items():
        assert result_hashes(directory, phase) == hashes
    # within the interrupted phase: each value ran once, the finished trials were not touched
    tried = [t["config"]["weight_decay"] for t in trial_configs(directory, "weight_decay")]
    assert len(tried) == len(set(tried))
    assert sorted(tried) == sorted(t["config"]["weight_decay"] for t in trial_configs(reference["directory"], "weight_decay"))
    after = result_hashes(directory, "weight_decay")
    assert {tid: after[tid] for tid in finished_results} == finished_results
    # and MLflow holds one run per trial, none left RUNNING
    client = MlflowClient(resumed["tracking_uri"])
    parent = client.get_run(resumed["mlflow_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    ids = [c.data.tags["tunekit.trial_id"] for c in children]
    assert len(ids) == len(set(ids)) == sum(p["trials"] for p in resumed["phases"].values())
    assert all(c.info.status == "FINISHED" for c in children)
    assert parent.info.status == "FINISHED"
    # the page drew the plots of the phases decided before the kill again, from the folder
    page = Path(client.download_artifacts(parent.info.run_id, "report.html", str(tmp_path))).read_text()
    assert {phase: len(images) for phase, (_, images) in page_sections(page).items()} == dict.fromkeys(resumed["phases"], 1)


def _wait_for_a_finished_bisection_trial(
    directory: Path, driver: subprocess.Popen[bytes], timeout_s: float = 300
) -> tuple[set[str], tuple[Path, bytes]]:
    """Poll the weight-decay phase's saved experiment state until one trial is TERMINATED and another is not, and
    Tune holds a trial suggested after the latest version of the searcher's saved state in which one of the
    finished trials had not ended yet.

    Returns the finished trials' folders, and the searcher's saved state: its file, and that version."""
    folder = directory / "weight_decay"
    versions: list[tuple[Path, bytes]] = []  # every version of the searcher's file seen, oldest first
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if driver.poll() is not None:
            output = driver.stdout.read().decode() if driver.stdout else ""
            pytest.fail(f"the search ended before it could be killed:\n{output[-3000:]}")
        for saved in folder.glob("searcher-state-*.pkl"):  # whole or absent: the files appear whole
            data = saved.read_bytes()
            if not versions or versions[-1][1] != data:
                versions.append((saved, data))
        for state in folder.glob("experiment_state-*.json"):
            trials = [json.loads(t[0]) for t in json.loads(state.read_text())["trial_data"]]
            ended = {t["trial_id"] for t in trials if t["status"] == "TERMINATED"}
            if not ended or len(ended) == len(trials):
                continue
            for saved, data in reversed(versions):
                searcher = pickle.loads(data)
                if ended & (set(searcher["trial_values"]) - searcher["finished"]):
                    if {t["trial_id"] for t in trials} - set(searcher["trial_values"]):
                        return {f"trial_{t}" for t in ended}, (saved, data)
                    break  # the searcher's next suggestion is not in Tune's saved state yet
        time.sleep(0.05)
    pytest.fail("the weight-decay phase never had a finished trial next to an unfinished one")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Whatever the killed driver left behind (its local Ray) goes too."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def test_snapshot_and_batch_size_phases(tmp_path: Path, ray_session: None) -> None:
    """Weight decay by snapshot-restart and batch size at constant time, on a preset's own 1cycle."""
    preset = write_preset(
        tmp_path,
        search={
            "weight_decay": {"strategy": "snapshot", "epochs": 2, "max_trials": 3, "candidates": [1e-3, 1e-4], **TINY_SHORT_RUNS},
            "batch_size": {"candidates": [32, 128], "time_budget_s": 4},
            "final": {"epochs": 3, "replicates": 1},
        },
        train={"epochs": 6, "batch_size": 64, "seed": 0, "min_epochs": 2},
    )
    result = cli(
        "search", str(preset), "--phases", "weight_decay,batch_size,final", "--storage", str(tmp_path / "runs"),
        "--name", "snap", "--json", "--no-tracking",
    )  # fmt: skip
    summary = json.loads(result.stdout)
    directory = Path(summary["directory"])
    assert list(summary["phases"]) == ["weight_decay", "batch_size", "final"]
    trials = trial_configs(directory, "weight_decay")
    base = [t for t in trials if "restore_from" not in t["config"]]
    continuations = [t for t in trials if "restore_from" in t["config"]]
    assert len(base) == 1
    assert len(continuations) >= 2
    assert len({t["config"]["restore_from"] for t in continuations}) == 1  # all from one snapshot
    # the base run stopped where each continuation still has its 2 epochs left in the 6-epoch cycle
    assert base[0]["config"]["preset"]["train"]["stop_at_epoch"] == 4
    evidence = summary["phases"]["weight_decay"]["evidence"]
    assert len(set(evidence.values())) == len(evidence)  # each weight decay really trained: different losses
    assert summary["phases"]["weight_decay"]["trial_epochs"] >= 2 * len(continuations) + 2
    wd = summary["phases"]["weight_decay"]["values"]["weight_decay"]
    assert wd in {t["config"]["weight_decay"] for t in continuations}
    assert "snapshot" in summary["phases"]["weight_decay"]["reason"]
    batch = summary["phases"]["batch_size"]["values"]
    assert batch["batch_size"] in (32, 128)
    assert batch["batch_max_lr"] == pytest.approx(0.5 * batch["batch_size"] / 64)  # linear scaling from the preset's 0.5 at 64
    (final,) = trial_configs(directory, "final")
    assert final["config"]["batch_size"] == batch["batch_size"]
    assert final["config"]["preset"]["policy"]["max_lr"] == pytest.approx(batch["batch_max_lr"])
    assert final["config"]["preset"]["weight_decay"] == wd
    assert summary["mlflow_run_id"] is None


def test_the_rebalanced_weight_decay_is_checked_by_real_runs_and_read_back_by_the_momentum_phase(
    tmp_path: Path, ray_session: None
) -> None:
    """LR runs at ½ and ¼ of the preset's max_lr only, so the LR chosen is below the one the weight decay was
    judged at and the weight decay is rebalanced; the LR and momentum runs are as long (2 epochs), so the check
    runs: the rebalanced weight decay at the chosen LR, then their geometric mean where it lost. The momentum
    phase reads the run at the preset's momentum and the chosen weight decay back, and trains 0.9 alone."""
    preset = write_preset(
        tmp_path,
        search={"learning_rate": {"factors": [0.5, 0.25], "lowest_factor": 0.25, "epochs": 2, **TINY_SHORT_RUNS}},
    )
    result = cli(
        "search", str(preset), "--phases", "weight_decay,learning_rate,momentum", "--storage", str(tmp_path / "runs"),
        "--name", "check", "--json", "--no-tracking",
    )  # fmt: skip
    summary = json.loads(result.stdout)
    directory, phases = Path(summary["directory"]), summary["phases"]
    judged, lr = phases["weight_decay"]["values"]["weight_decay"], phases["learning_rate"]["values"]
    judged_at = yaml.safe_load(preset.read_text())["policy"]["max_lr"]
    configs = [t["config"] for t in trial_configs(directory, "learning_rate")]
    lrs = sorted(c["policy.max_lr"] for c in configs if "weight_decay" not in c)
    assert lrs == pytest.approx([judged_at / 4, judged_at / 2])
    assert lr["refined_max_lr"] in [pytest.approx(x) for x in lrs]
    rebalanced = judged * judged_at / lr["refined_max_lr"]
    checks = [c for c in configs if "weight_decay" in c]
    assert [c["policy.max_lr"] for c in checks] == pytest.approx([lr["refined_max_lr"]] * len(checks))
    checked = [c["weight_decay"] for c in checks]
    assert checked[0] == pytest.approx(rebalanced)
    assert checked[1:] in ([], [pytest.approx(math.sqrt(judged * rebalanced))])
    reason = phases["learning_rate"]["reason"]
    assert f"; checked at max_lr {lr['refined_max_lr']:.4g}: weight decay " in reason
    assert f"{lr['refined_max_lr']:.4g}, wd {rebalanced:.3g}" in phases["learning_rate"]["evidence"]
    trained = lr.get("balanced_weight_decay", judged)
    assert trained == pytest.approx(judged) or trained in [pytest.approx(w) for w in checked]
    assert len(checked) == (1 if trained == pytest.approx(rebalanced) else 2)  # the middle runs only where it lost
    # the momentum phase trained 0.9 alone, at the weight decay chosen; 0.95 is a learning_rate run read back
    (momentum,) = trial_configs(directory, "momentum")
    assert momentum["config"]["momentum"] == [0.9, 0.85]
    assert momentum["config"]["preset"]["weight_decay"] == pytest.approx(trained)
    assert "momentum=[0.95,0.85] (learning_rate trial " in phases["momentum"]["reason"]
    assert phases["momentum"]["trials"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "no-such-preset"], "no such file and no bundled preset"),
        (["search", "mnist1d", "--phases", "range_test,warmup"], "unknown phase warmup"),
        (["search", "mnist1d", "--set", "max_lr"], "expected key=value"),
        (["search", "mnist1d", "--set", "max_lr=-1"], "max_lr"),
        (["search", "mnist1d", "--phases", "batch_size"], "no search.batch_size section"),
        (["resume", "/nonexistent/search"], "no search.json here"),
        (["report", "/nonexistent/search"], "no search.json here"),
    ],
)
def test_bad_input_is_one_clear_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_taken_name_is_refused(reference: dict[str, Any]) -> None:
    storage = reference["directory"].parent
    result = CliRunner().invoke(app, ["search", str(reference["preset"]), "--storage", str(storage), "--name", "ref"])
    assert result.exit_code == 2
    assert "tunekit resume" in result.output


def test_resuming_a_finished_search_returns_its_result(reference: dict[str, Any]) -> None:
    resumed = json.loads(cli("resume", str(reference["directory"]), "--json").stdout)
    assert resumed["accuracies"] == reference["summary"]["accuracies"]
    assert resumed["phases"] == reference["summary"]["phases"]


def test_ctrl_c_stops_the_search_and_says_how_to_resume(reference: dict[str, Any], tmp_path: Path) -> None:
    env = {**os.environ, "RAY_AIR_NEW_OUTPUT": "0", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "tunekit.cli", "search", str(reference["preset"]), "--storage", str(tmp_path), "--name", "c"]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    try:
        assert driver.stdout is not None
        for raw in driver.stdout:
            lines.append(raw.decode())
            if "range_test] started" in lines[-1]:
                driver.send_signal(signal.SIGINT)
                break
        output = "".join(lines) + driver.communicate(timeout=120)[0].decode()
    finally:
        _kill_group(driver)
    assert driver.returncode == 130, output[-3000:]
    assert f"tunekit resume {tmp_path / 'c'}" in output
    assert "Traceback" not in output
    assert read_state(str(tmp_path / "c")).done == {}

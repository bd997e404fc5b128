"""Each phase's ``decide`` on recorded trials, without Ray — and its searcher, fed the same results, agrees.

``tests/data/records/mnist1d_demo.json`` holds every trial of a real ``make demo`` search (as
tunekit ran it on 2026-11-24 with the learning_rate phase, deciding on the validation split) — see
tests/data/record_search.py.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from ray.tune.search import Searcher

from tunekit.core.judge import Judge
from tunekit.presets import Preset, load_preset, preset_to_dict
from tunekit.recipe import PhaseContext, TrialRecord
from tunekit.recipe.phase import judged, tie_choice
from tunekit.recipe.phases import REGISTRY, BatchSize, Momentum, WeightDecay, phase_named
from tunekit.searchers.snapshot import is_base_run, is_continuation

DEMO = Path(__file__).parent / "data" / "records" / "mnist1d_demo.json"


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    """Each phase's decide draws a figure; a test reads its result and the figure is let go."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def load_demo() -> dict[str, Any]:
    return json.loads(DEMO.read_text())


def records(demo: dict[str, Any], phase: str) -> list[TrialRecord]:
    return [
        TrialRecord(phase, t["trial_id"], t["config"], t["rows"], t["error"], f"/recorded/{t['trial_id']}", None)
        for t in demo["trials"][phase]
    ]


def replay(demo: dict[str, Any], upto: str, tmp: Path) -> tuple[Preset, PhaseContext, dict[str, Any]]:
    """Decide every phase before ``upto`` from its records; return the preset and context ``upto`` runs with."""
    preset = load_preset(demo["preset"])
    earlier: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    for phase in REGISTRY:
        if phase.name == upto:
            break
        if phase.name not in demo["trials"]:
            continue
        context = PhaseContext(str(tmp), phase.judge(preset), dict(earlier))
        result, _ = phase.decide(preset, records(demo, phase.name), context)
        earlier[phase.name] = phase.typed(result)
        overrides.update(result.overrides)
        preset = load_preset(demo["preset"], overrides)
    phase = phase_named(upto)
    return preset, PhaseContext(str(tmp), phase.judge(preset), earlier), earlier


@pytest.mark.parametrize("name", ["range_test", "learning_rate", "momentum", "weight_decay", "final"])
def test_decide_on_recorded_trials_makes_the_recorded_decision(name: str, tmp_path: Path) -> None:
    demo = load_demo()
    preset, context, _ = replay(demo, name, tmp_path)
    result, figure = phase_named(name).decide(preset, records(demo, name), context)
    # the same numbers and the same sentence as the search that ran these trials
    assert result.values == pytest.approx(demo["decided"][name]["values"])
    assert result.reason == demo["decided"][name]["reason"]
    # every phase draws its evidence
    assert figure is not None


def test_decisions_reach_later_phases_typed(tmp_path: Path) -> None:
    demo = load_demo()
    _, context, earlier = replay(demo, "final", tmp_path)
    rt = earlier["range_test"]
    # typed fields, not dict keys
    assert rt.max_lr == pytest.approx(demo["decided"]["range_test"]["values"]["max_lr"])
    assert rt.min_lr == pytest.approx(rt.max_lr / 10)
    assert earlier["momentum"].momentum_max == demo["decided"]["momentum"]["values"]["momentum_max"]
    assert earlier["weight_decay"].weight_decay == demo["decided"]["weight_decay"]["values"]["weight_decay"]
    # the context of the last phase carries every earlier decision
    assert set(context.earlier) == {"range_test", "learning_rate", "momentum", "weight_decay"}


def behind(trials: list[TrialRecord], worse: str, overfit: bool) -> list[TrialRecord]:
    """The recorded learning-rate runs with the run labelled ``worse`` 0.05 behind, out of any tie — and,
    with ``overfit``, a training loss far below the validation loss (they overfit)."""
    out = []
    for r in trials:
        rows = [dict(row, train_loss=0.01) if overfit else dict(row) for row in r.rows]
        if f"{r.config['policy.max_lr']:.4g}" == worse:
            rows[-1]["val_loss"] += 0.05
        out.append(replace(r, rows=rows))
    return out


@pytest.mark.parametrize("overfit", [True, False])
@pytest.mark.parametrize("setting", [True, False])
def test_where_the_lr_falls_the_weight_decay_keeps_max_lr_times_weight_decay(
    setting: bool, overfit: bool, tmp_path: Path
) -> None:
    """The demo's learning-rate runs with 0.7992 out of the tie: 0.3996 is chosen, half the max_lr the
    weight decay (3.2e-05) was judged at, so the final training gets 6.4e-05 — whether or not the runs
    overfit, unless ``search.learning_rate.balance_weight_decay`` is off. Later phases train with it: it
    is an override."""
    demo = load_demo()
    preset, context, _ = replay(demo, "learning_rate", tmp_path)
    preset = load_preset(preset_to_dict(preset), {"search.learning_rate.balance_weight_decay": setting})
    trials = behind(records(demo, "learning_rate"), "0.7992", overfit)
    result, _ = phase_named("learning_rate").decide(preset, trials, context)
    assert result.values["refined_max_lr"] == pytest.approx(0.3996, abs=1e-4)
    assert preset.weight_decay == pytest.approx(3.2e-5)
    if setting:
        assert result.values["balanced_weight_decay"] == pytest.approx(6.4e-5)
        assert result.overrides["weight_decay"] == pytest.approx(6.4e-5)
        assert (
            "the weight decay 3.2e-05 was judged at max_lr 0.7992, 2× the chosen: weight decay 6.4e-05 keeps "
            "max_lr × weight decay as judged" in result.reason
        )
    else:
        assert "balanced_weight_decay" not in result.values
        assert "weight_decay" not in result.overrides
    typed = phase_named("learning_rate").typed(result)
    assert typed.balanced_weight_decay == (pytest.approx(6.4e-5) if setting else None)
    # without this search's weight_decay phase there is no judged weight decay to balance
    alone = replace(context, earlier={k: v for k, v in context.earlier.items() if k != "weight_decay"})
    unjudged, _ = phase_named("learning_rate").decide(preset, trials, alone)
    assert "weight_decay" not in unjudged.overrides
    assert "balanced_weight_decay" not in unjudged.values


@pytest.mark.parametrize(("behind_by", "trained"), [(0.0, 6.4e-5), (0.05, 3.2e-5)], ids=["balance-holds", "judged-wins"])
def test_the_learning_rate_phase_trains_the_weight_decay_its_check_chose(
    behind_by: float, trained: float, tmp_path: Path
) -> None:
    """As above, 0.3996 chosen and 6.4e-05 rebalanced; one more recorded run at 0.3996 and 6.4e-05 checks it against the
    chosen LR's own run at 3.2e-05. Where it ends level, the balance holds; 0.05 behind, beyond the runs' band, the
    judged weight decay is trained. Either way the checks are not LR candidates, and the evidence, the reason and the
    figure show them."""
    demo = load_demo()
    preset, context, _ = replay(demo, "learning_rate", tmp_path)
    trials = behind(records(demo, "learning_rate"), "0.7992", overfit=False)
    own = next(r for r in trials if f"{r.config['policy.max_lr']:.4g}" == "0.3996")
    rows = [dict(row) for row in own.rows]
    rows[-1]["val_loss"] += behind_by
    check = replace(own, trial_id="check", config={**own.config, "weight_decay": 6.4e-5}, rows=rows)
    result, figure = phase_named("learning_rate").decide(preset, [*trials, check], context)
    assert result.values["refined_max_lr"] == pytest.approx(0.3996, abs=1e-4)
    assert result.overrides.get("weight_decay", preset.weight_decay) == pytest.approx(trained)
    assert result.values.get("balanced_weight_decay") == (pytest.approx(6.4e-5) if trained > 3.2e-5 else None)
    assert result.evidence["0.3996, wd 6.4e-05"] == pytest.approx(rows[-1]["val_loss"])
    assert "0.3996, wd 3.2e-05" not in result.evidence  # the chosen LR's own run is there once, as 0.3996
    winner = "6.4e-05: its validation loss" if trained > 3.2e-5 else "3.2e-05 has the lowest validation loss"
    assert f"checked at max_lr 0.3996: weight decay {winner}" in result.reason
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert any("max_lr=0.3996 (" in text and text.endswith("← chosen") for text in legend)
    assert any("max_lr=0.3996, wd 6.4e-05" in text for text in legend)


def test_where_the_lr_stays_at_the_range_tests_the_weight_decay_stays(tmp_path: Path) -> None:
    """The demo's recorded learning-rate runs choose the range test's own max_lr: the weight decay was
    judged there, and stays."""
    demo = load_demo()
    preset, context, _ = replay(demo, "learning_rate", tmp_path)
    result, _ = phase_named("learning_rate").decide(preset, records(demo, "learning_rate"), context)
    assert result.values["refined_max_lr"] == pytest.approx(0.7992, abs=1e-4)
    assert "balanced_weight_decay" not in result.values
    assert "weight_decay" not in result.overrides


def test_the_learning_rate_phase_tries_fractions_of_the_range_tests_max_lr(tmp_path: Path) -> None:
    demo = load_demo()
    preset, context, earlier = replay(demo, "learning_rate", tmp_path)
    plan = phase_named("learning_rate").plan(preset, context)
    turn_up = earlier["range_test"].max_lr
    lrs = sorted(c["policy.max_lr"] for c in plan.searcher.candidates.values())
    # 1, 1/2 and 1/4 of the range test's max_lr — exactly the runs the recorded search made
    assert lrs == pytest.approx([turn_up / 4, turn_up / 2, turn_up])
    assert lrs == pytest.approx(sorted(t["config"]["policy.max_lr"] for t in demo["trials"]["learning_rate"]))
    # the chosen LR reaches the phases after it, min_lr = max_lr / div with it
    chosen = earlier_after(demo, tmp_path)["learning_rate"].refined_max_lr
    momentum_preset, _, _ = replay(demo, "momentum", tmp_path)
    assert momentum_preset.policy.max_lr == pytest.approx(chosen)


def earlier_after(demo: dict[str, Any], tmp: Path) -> dict[str, Any]:
    return replay(demo, "final", tmp)[2]


def drive(searcher: Searcher, trials: list[dict[str, Any]], pick: Any, tmp: Path) -> list[dict[str, Any]]:
    """Play Tune's part: each suggestion runs the recorded trial ``pick(config, trials)`` — its results, then its end."""
    proposed: list[dict[str, Any]] = []
    pending: list[tuple[str, dict[str, Any]]] = []
    for i in range(50):
        config = searcher.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            break
        if config is None:
            assert pending, "the searcher waits with nothing running"
            finish(searcher, *pending.pop(0), pick, trials, tmp)
            continue
        proposed.append(config)
        pending.append((f"t{i}", config))
        if is_base_run(config):  # continuations wait for the snapshot
            finish(searcher, *pending.pop(0), pick, trials, tmp)
    for trial_id, config in pending:
        finish(searcher, trial_id, config, pick, trials, tmp)
    return proposed


def finish(searcher: Searcher, trial_id: str, config: dict[str, Any], pick: Any, trials: list[dict[str, Any]], tmp: Path) -> None:
    recorded = pick(config, trials)
    rows = [dict(row) for row in recorded["rows"]]
    for row in rows:
        if "trial_dir" in row:  # the snapshot searcher copies the base run's checkpoint: give it a real folder
            row["trial_dir"] = str(tmp / "trials" / recorded["trial_id"])
            (tmp / "trials" / recorded["trial_id"] / str(row["checkpoint_dir_name"])).mkdir(parents=True, exist_ok=True)
    for row in rows[:-1]:
        searcher.on_trial_result(trial_id, row)
    searcher.on_trial_complete(trial_id, rows[-1], error=bool(recorded["error"]))  # Tune holds back the last result


def test_the_momentum_searchers_best_is_the_phases_decision(tmp_path: Path) -> None:
    demo = load_demo()
    preset, context, _ = replay(demo, "momentum", tmp_path)
    plan = Momentum().plan(preset, context)

    def pick(config: dict[str, Any], trials: list[dict[str, Any]]) -> dict[str, Any]:
        return next(t for t in trials if t["config"]["momentum"] == config["momentum"])

    drive(plan.searcher, demo["trials"]["momentum"], pick, tmp_path)
    result, _ = Momentum().decide(preset, records(demo, "momentum"), context)
    # the live choice and the recorded one are one judgement
    assert plan.searcher.judge is context.judge
    assert float(plan.searcher.best_label) == result.values["momentum_max"]


def test_momentum_prefer_largest_keeps_the_largest_momentum_the_validation_sample_cannot_tell_from_the_best(
    tmp_path: Path,
) -> None:
    """The recorded demo's momenta end at 0.9 → 0.0903, 0.95 → 0.0978, 0.97 → 0.1166, 0.99 → 0.2465. Its
    runs predate ``val_loss_se``: without it ``prefer: largest`` has no band and 0.9, the lowest, wins.
    With a standard error of 0.01 per run the band is √2·0.01 = 0.014: 0.95 (0.0075 above) ties and,
    the larger, wins; 0.97 (0.026 above) does not. ``prefer: lowest`` (the default) keeps 0.9."""
    demo = load_demo()
    base, context, _ = replay(demo, "momentum", tmp_path)
    largest = load_preset(preset_to_dict(base), {"search.momentum.prefer": "largest"})
    recorded = records(demo, "momentum")
    with_errors = [replace(r, rows=[{**row, "val_loss_se": 0.01} for row in r.rows]) for r in recorded]
    assert Momentum().decide(base, with_errors, context)[0].values["momentum_max"] == 0.9
    assert Momentum().decide(largest, recorded, context)[0].values["momentum_max"] == 0.9
    result, _ = Momentum().decide(largest, with_errors, context)
    assert result.values["momentum_max"] == 0.95
    assert result.overrides["momentum"] == [0.95, 0.85]
    assert "max momentum 0.95: its validation loss 0.09779 is within 0.0141 of the lowest (0.0903 at 0.9)" in result.reason


@pytest.mark.parametrize("resolution", [0.25, 0.5])
def test_the_snapshot_searcher_proposes_what_ran_and_its_best_is_the_phases_decision(resolution: float, tmp_path: Path) -> None:
    """The recorded demo bisected to a quarter decade (0.25); at half a decade (0.5, today's default) the same
    search proposes the recorded values that lie on the half-decade grid, and nothing else, and decides the same."""
    demo = load_demo()
    preset, context, _ = replay(demo, "weight_decay", tmp_path)
    preset = load_preset(preset_to_dict(preset), {"search.weight_decay.resolution": resolution})
    plan = WeightDecay().plan(preset, context)

    def pick(config: dict[str, Any], trials: list[dict[str, Any]]) -> dict[str, Any]:
        same = [t for t in trials if is_continuation(t["config"]) == is_continuation(config)]
        return next(t for t in same if t["config"]["weight_decay"] == config["weight_decay"])

    trials = demo["trials"]["weight_decay"]
    proposed = drive(plan.searcher, trials, pick, tmp_path)
    assert is_base_run(proposed[0])
    ran = sorted(t["config"]["weight_decay"] for t in trials)
    half_decades = [v for v in ran if v == 0 or abs(2 * math.log10(v) - round(2 * math.log10(v))) < 0.05]
    assert len(half_decades) < len(ran)  # the recording has quarter-decade runs
    # the bisection proposes exactly the values the recorded search ran (base run first), or those on half decades
    assert sorted(c["weight_decay"] for c in proposed) == (ran if resolution == 0.25 else half_decades)
    result, _ = WeightDecay().decide(preset, records(demo, "weight_decay"), context)
    assert plan.searcher.judge.window == preset.search.weight_decay.epochs  # the median over each continuation
    assert plan.searcher.best_value == result.values["weight_decay"]


def test_range_tests_that_tie_give_the_median_turn_up_and_the_weight_decay_search_starts_from_them(tmp_path: Path) -> None:
    """The recorded demo ran with ``ties: lowest`` (1e-5's test alone: max_lr 0.799). Its four tests' lowest losses
    (0.862 ± 0.052, 0.902 ± 0.15, 0.914 ± 0.049, 0.951 ± 0.073) all lie within noise of 1e-5's: read with today's
    default, the bounds come from the median of their max_lrs (0.799, 0.899, 0.999, 0.999: of the two middles,
    the larger), and the weight decay bisection starts from the four weight decays instead of around 1e-5."""
    demo = load_demo()
    demo["preset"]["search"]["range_test"]["ties"] = "median"
    preset, context, earlier = replay(demo, "weight_decay", tmp_path)
    rt = earlier["range_test"]
    assert rt.max_lr == pytest.approx(0.9992565)
    assert rt.range_test_weight_decay == 1e-5  # the lowest loss still sets the weight decay the next phases start at
    assert rt.tied_weight_decays == [1e-5, 0.0, 1e-4, 1e-3]
    plan = WeightDecay().plan(preset, context)
    assert plan.searcher.bisection.initial == [1e-3, 1e-4, 1e-5, 0.0]
    # read literally (the recording's setting), the bisection starts half a decade either side of 1e-5
    demo["preset"]["search"]["range_test"]["ties"] = "lowest"
    preset, context, earlier = replay(demo, "weight_decay", tmp_path)
    assert earlier["range_test"].tied_weight_decays is None
    assert WeightDecay().plan(preset, context).searcher.bisection.initial == [3.2e-6, 1e-5, 3.2e-5]


def test_weight_decay_prefer_largest_keeps_the_largest_weight_decay_the_continuations_noise_cannot_tell_from_the_lowest(
    tmp_path: Path,
) -> None:
    """The recorded continuations (which ran with ``prefer: lowest``), each judged by the median of its three epochs:
    3.2e-5's 0.1627 is the lowest. Their epochs jump by σ = 1.4826·|a − 2b + c| / (2√2) (0.037, 0.030, 0.047, 0.125,
    0.436, 0.015): the band is twice the median, 0.0842, and 1e-4's 0.218 (0.055 above) ties and, the largest, wins.
    With the validation sample's band alone (a standard error of 0.02 per run: 0.02·√2 = 0.0283), only 5.7e-5 (0.1825,
    0.0198 above) would tie."""
    demo = load_demo()
    preset, context, _ = replay(demo, "weight_decay", tmp_path)
    trials = [replace(r, rows=[dict(row, val_loss_se=0.02) for row in r.rows]) for r in records(demo, "weight_decay")]
    lowest, _ = WeightDecay().decide(preset, trials, context)
    assert lowest.values["weight_decay"] == 3.2e-5
    largest = load_preset(preset_to_dict(preset), {"search.weight_decay.prefer": "largest"})
    result, _ = WeightDecay().decide(largest, trials, context)
    assert result.values["weight_decay"] == 1e-4
    continuations = [r for r in trials if not is_base_run(r.config)]
    windows = [r.curve("epoch", "val_loss")[1][-3:] for r in continuations]
    band = 2 * statistics.median(1.4826 * abs(a - 2 * b + c) / (2 * math.sqrt(2)) for a, b, c in windows)
    assert band == pytest.approx(0.0842, abs=5e-4)
    assert (
        f"weight decay 0.0001: its validation loss 0.218 is within {band:.3g} of the lowest (0.1627 at 3.2e-05)" in result.reason
    )

    # the same rule without the window's noise: the sampling band alone
    def label(record: TrialRecord) -> str:
        return f"{float(record.config['weight_decay']):.2g}"

    candidates = judged(continuations, label, context.judge)
    values = {c.label: float(c.label) for c in candidates}
    assert tie_choice(continuations, label, candidates, values, 0.0, "weight decay")[0].best == "5.7e-05"


def batch_trial(batch: int, accuracies: list[float], stopped_by: str = "") -> dict[str, Any]:
    rows = [
        {
            "training_iteration": k,
            "epoch": k,
            "val_acc": acc,
            "val_loss": 1 - acc,
            "stopped_by": stopped_by if k == len(accuracies) else "",
        }
        for k, acc in enumerate(accuracies, start=1)
    ]
    return {"trial_id": f"b{batch}", "config": {"batch_size": batch, "max_lr": batch / 256}, "error": None, "rows": rows}


def test_a_trial_the_scheduler_stopped_ranks_after_those_that_finished_in_the_searcher_too(tmp_path: Path) -> None:
    preset = load_preset(
        {
            "name": "b",
            "dataset": {"name": "digits"},
            "model": {"name": "mlp"},
            "policy": {"name": "one_cycle", "max_lr": 0.5},
            "train": {"batch_size": 128},
            "search": {
                "range_test": {"min_lr": 0.01, "max_lr": 3.0},
                "batch_size": {"candidates": [64, 128, 256], "time_budget_s": 5},
            },
        }
    )
    phase = BatchSize()
    context = PhaseContext(str(tmp_path), phase.judge(preset))
    # 256 was stopped by the scheduler at a high accuracy: it did not finish its cycle, so it cannot win
    trials = [batch_trial(64, [0.8, 0.9]), batch_trial(128, [0.85, 0.93]), batch_trial(256, [0.95], stopped_by="peers")]
    plan = phase.plan(preset, context)
    drive(plan.searcher, trials, lambda c, ts: next(t for t in ts if t["config"]["batch_size"] == c["batch_size"]), tmp_path)
    result, _ = phase.decide(
        preset, [TrialRecord("batch_size", t["trial_id"], t["config"], t["rows"], None, "", None) for t in trials], context
    )
    assert result.values["batch_size"] == 128
    assert plan.searcher.best_batch_size == 128


def test_one_judge_is_built_per_phase_from_the_preset() -> None:
    demo = load_demo()
    preset = load_preset(demo["preset"])
    # weight decay by snapshot: the median over each continuation's epochs; by full runs: the last epoch
    assert WeightDecay().judge(preset).window == preset.search.weight_decay.epochs
    full = load_preset(demo["preset"], {"search.weight_decay.strategy": "full"})
    assert WeightDecay().judge(full).window == 1
    assert BatchSize().judge(preset) == Judge("val_acc", "max", window=1)
    assert phase_named("final").judge(preset) == Judge("test_acc", "max", window=1)  # the one number read on test
    rows = [{"training_iteration": 1, "val_loss": 0.5}]
    failed = Judge().candidate("x", rows, error="RuntimeError: boom")  # a trial that raised: scored inf, its error kept
    assert math.isinf(failed.loss)
    assert failed.failed == "RuntimeError: boom"
    assert Judge().candidate("x", rows, error=True).failed  # Ray tells a searcher only that the trial failed
    assert Judge().candidate("x", rows).failed == ""

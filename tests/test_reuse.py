"""A phase does not train again what an earlier phase trained: what a trial trains, and which records stand in."""

from __future__ import annotations

from typing import Any

import pytest
from ray.tune.search import Searcher

from tests.conftest import tiny_preset_dict
from tunekit.core.judge import Judge
from tunekit.presets import load_preset, preset_to_dict
from tunekit.recipe.phase import reusable, reuse_trained, reused_note, trial_base
from tunekit.recipe.records import TrialRecord, training_of
from tunekit.searchers import LearningRateSearcher, MomentumSearcher
from tunekit.searchers.snapshot import RESTORE_KEY

PRESET = load_preset(tiny_preset_dict())


def at(**overrides: Any) -> dict[str, Any]:
    """The trial base of a phase whose preset carries ``overrides`` (earlier decisions), 2-epoch runs."""
    return trial_base(load_preset(preset_to_dict(PRESET), overrides), epochs=2)


def rows(*losses: float, total: int | None = None, **last: Any) -> list[dict[str, Any]]:
    out = [
        {"val_loss": loss, "epoch": k, "epochs_total": total or len(losses), "training_iteration": k}
        for k, loss in enumerate(losses, 1)
    ]
    out[-1].update(last)
    return out


def record(phase: str, config: dict[str, Any], results: list[dict[str, Any]], error: str | None = None) -> TrialRecord:
    plain = {k: v for k, v in config.items() if k != "preset"}
    return TrialRecord(phase, f"{phase}-1", plain, results, error, f"/runs/{phase}/t1", None, training_of(config))


def test_the_learning_rate_phase_and_the_momentum_phase_train_the_same_run_at_the_current_momentum() -> None:
    """The LR phase's run at 0.4 (momentum as the preset has it, 0.95 → 0.85) and the momentum phase's 0.95 candidate
    once 0.4 is decided: two configs, one training."""
    lr_trial = {**at(weight_decay=3e-4), "policy.max_lr": 0.4}
    momentum_candidate = {**at(weight_decay=3e-4, **{"policy.max_lr": 0.4}), "momentum": [0.95, 0.85]}
    assert training_of(lr_trial) == training_of(momentum_candidate) != ""
    # anything a training reads makes it another
    assert training_of({**momentum_candidate, "momentum": [0.9, 0.85]}) != training_of(lr_trial)
    assert training_of({**lr_trial, "epochs": 3}) != training_of(lr_trial)
    assert training_of({**lr_trial, "weight_decay": 1e-4}) != training_of(lr_trial)
    assert training_of({**lr_trial, RESTORE_KEY: "/runs/wd/base/checkpoint_000004"}) != training_of(lr_trial)
    # what no training reads does not
    renamed = {**lr_trial, "preset": {**lr_trial["preset"], "name": "other", "description": "x"}}
    assert training_of(renamed) == training_of(lr_trial)
    searched = at(weight_decay=3e-4, **{"search.momentum.candidates": [0.9]})
    assert training_of({**searched, "policy.max_lr": 0.4}) == training_of(lr_trial)
    assert training_of({"momentum": [0.9, 0.85]}) == ""


def test_only_a_complete_earlier_trial_stands_in_and_one_candidate_is_always_left_to_train() -> None:
    base = at(weight_decay=3e-4, **{"policy.max_lr": 0.4})
    lr_trial = {**at(weight_decay=3e-4), "policy.max_lr": 0.4}
    candidates = {"0.95": {"momentum": [0.95, 0.85]}, "0.9": {"momentum": [0.9, 0.85]}}

    done = record("learning_rate", lr_trial, rows(0.9, 0.5))
    found = reusable(base, candidates, {done.training: done})
    assert list(found) == ["0.95"]
    standing = found["0.95"]
    assert standing.config == {"momentum": [0.95, 0.85]}  # labelled as the momentum phase labels its own
    assert (standing.reused_from, standing.trial_id, standing.rows) == ("learning_rate", done.trial_id, done.rows)

    stopped = record("learning_rate", lr_trial, rows(0.9, total=2, stopped_by="peers"))
    failed = record("learning_rate", lr_trial, rows(0.9, 0.5), error="RuntimeError: CUDA out of memory")
    short = record("learning_rate", lr_trial, rows(0.9, total=2))
    for incomplete in (stopped, failed, short):
        assert not incomplete.complete
        assert reusable(base, candidates, {incomplete.training: incomplete}) == {}

    only = {"0.95": candidates["0.95"]}  # the one candidate is the earlier training: it is trained all the same
    assert reusable(base, only, {done.training: done}) == {}
    assert reused_note([]) == ""
    assert (
        reused_note([standing])
        == "; not trained again, the same training as an earlier phase's: momentum=[0.95,0.85] (learning_rate trial learning_rate-1)"
    )


def test_a_reused_candidate_is_not_suggested_and_is_judged_with_the_others() -> None:
    base = at(weight_decay=3e-4, **{"policy.max_lr": 0.4})
    done = record("learning_rate", {**at(weight_decay=3e-4), "policy.max_lr": 0.4}, rows(0.9, 0.30))
    searcher = MomentumSearcher((0.99, 0.95, 0.9), base_config=base, judge=Judge("val_loss", "min", window=1))
    reused = reuse_trained(searcher, {done.training: done})
    assert [r.label for r in reused] == ["momentum=[0.95,0.85]"]
    suggested = [searcher.suggest(f"t{i}") for i in range(3)]
    assert [c["momentum"][0] for c in suggested[:2]] == [0.99, 0.9]  # type: ignore[index]
    assert suggested[2] is None  # waiting for the two it runs, not for 0.95
    for i, loss in ((0, 0.50), (1, 0.40)):
        searcher.on_trial_complete(f"t{i}", rows(0.9, loss)[-1])
    assert searcher.suggest("t9") == Searcher.FINISHED
    assert searcher.best_momentum == 0.95  # 0.30, the earlier phase's run, is the lowest


def test_the_learning_rate_searcher_brackets_with_a_reused_run() -> None:
    """The run at max_lr × 1 came from the weight-decay phase; 0.4, the smallest, wins → 0.2 is tried next."""
    searcher = LearningRateSearcher([1.6, 0.8, 0.4], floor=0.05, base_config={}, judge=Judge("val_loss", "min", window=1))
    searcher.reuse("1.6", "weight_decay-3", rows(2.0, 1.2))
    first = [searcher.suggest(f"t{i}") for i in range(3)]
    assert [c["policy.max_lr"] for c in first[:2]] == [0.8, 0.4]  # type: ignore[index]
    assert first[2] is None
    searcher.on_trial_complete("t0", rows(2.0, 0.9)[-1])
    searcher.on_trial_complete("t1", rows(2.0, 0.5)[-1])
    assert searcher.suggest("t3")["policy.max_lr"] == pytest.approx(0.2)  # type: ignore[index]
    with pytest.raises(ValueError, match="not a candidate"):
        searcher.reuse("3.2", "x", rows(1.0))


def test_the_rule_keeps_one_candidate_to_train() -> None:
    from tunekit.core.decisions import reusable_labels

    done = {"aaa": object(), "bbb": object()}
    assert reusable_labels({"0.99": "ccc", "0.95": "aaa", "0.9": ""}, done) == ["0.95"]  # "": unknown, never the same
    assert reusable_labels({"0.95": "aaa", "0.9": "bbb"}, done) == ["0.95"]  # all done: the last trains again
    assert reusable_labels({"0.95": "aaa"}, done) == []
    assert reusable_labels({}, done) == []

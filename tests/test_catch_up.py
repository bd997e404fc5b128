"""A driver killed between two of Tune's saved files leaves them one event apart; ``tunekit resume`` brings the
searcher's saved state in step with the experiment state before ``Tuner.restore`` reads it, instead of waiting
for ever (no trial running, the searcher waiting for an end Tune will never report again).

The folders hold Tune's files in their real formats: the searcher's pickle as ``Searcher.save`` writes it, the
experiment state's ``trial_data`` of JSON trial states, each trial's ``result.json`` lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ray.tune.search import Searcher

from tunekit.core.resume import out_of_step
from tunekit.recipe.records import catch_up_saved_searcher
from tunekit.searchers import limited
from tunekit.searchers.bisection import ExponentBisectionSearcher
from tunekit.searchers.grid import MomentumSearcher
from tunekit.searchers.snapshot import SnapshotContinuationSearcher

SAVED = "searcher-state-2026-12-05_14-00-00.pkl"
LOSSES = {1e-3: 0.9, 1e-4: 0.5, 1e-5: 0.7, 0: 0.8}  # 1e-4 best: the bisection goes on between 1e-4 and 1e-5


def rows(loss: float, epochs: int = 3) -> list[dict[str, Any]]:
    return [{"training_iteration": e, "epoch": e, "val_loss": loss + 0.1 * (epochs - e)} for e in range(1, epochs + 1)]


def bisection() -> ExponentBisectionSearcher:
    return ExponentBisectionSearcher("weight_decay", {"preset": {}}, grid=list(LOSSES))


def loss_of(searcher: Any, trial_id: str) -> float:
    return LOSSES.get(searcher.trial_values.get(trial_id), 0.45)  # 0.45: a value past the grid


def run(searcher: Any, trial_id: str, complete: bool = True) -> None:
    """What Tune does with a trial: its results, then (unless the kill came first) its end."""
    results = rows(loss_of(searcher, trial_id))
    for row in results:
        searcher.on_trial_result(trial_id, row)
    if complete:
        searcher.on_trial_complete(trial_id, results[-1])


def save_folder(folder: Path, searcher: Any, statuses: dict[str, str], configs: dict[str, dict[str, Any]] | None = None) -> None:
    """What the kill left: the searcher's pickle, the experiment state with ``statuses`` (and ``configs``), each
    trial's results."""
    folder.mkdir(exist_ok=True)
    searcher.save(str(folder / SAVED))
    configs = configs or {}
    trial_data = [[json.dumps({"trial_id": t, "status": s, "config": configs.get(t, {})}), "{}"] for t, s in statuses.items()]
    (folder / "experiment_state-2026-12-05_14-00-00.json").write_text(json.dumps({"trial_data": trial_data}))
    for trial_id in statuses:
        (folder / f"trial_{trial_id}").mkdir(exist_ok=True)
        lines = [json.dumps(row) for row in rows(loss_of(searcher, trial_id))]
        (folder / f"trial_{trial_id}" / "result.json").write_text("\n".join(lines) + "\n")


def restored(folder: Path, searcher: Any) -> Any:
    """What ``Tuner.restore`` does with the saved pickle."""
    searcher.restore(str(folder / SAVED))
    return searcher


def test_out_of_step() -> None:
    statuses = {"a": "TERMINATED", "b": "ERROR", "c": "RUNNING"}
    assert out_of_step({"a", "b", "c"}, {"a", "b", "c", "d"}, statuses) == (["a", "b"], ["d"], [])
    assert out_of_step({"c"}, {"a", "b", "c"}, statuses) == ([], [], [])  # in step: nothing to do
    # Tune recorded b and c after the searcher's file was saved: adopted in Tune's order
    assert out_of_step({"a"}, {"a"}, statuses) == (["a"], [], ["b", "c"])
    # a trial the searcher suggested and no longer counts (a snapshot's base run) is known: not adopted
    assert out_of_step({"c"}, {"b", "c"}, statuses, known={"a"}) == ([], [], [])


def killed_before_d_ended() -> tuple[ExponentBisectionSearcher, ExponentBisectionSearcher]:
    """(uninterrupted, killed): both suggested a, b, c, d and saw them run; ``killed`` missed d's end (its file was
    saved one event before Tune's)."""
    uninterrupted, killed = bisection(), bisection()
    for searcher in (uninterrupted, killed):
        for t in "abcd":
            searcher.suggest(t)
    for t in "abcd":
        run(uninterrupted, t)
        run(killed, t, complete=t != "d")
    return uninterrupted, killed


def test_an_end_the_saved_searcher_missed_is_read_from_the_trials_folder(tmp_path: Path) -> None:
    uninterrupted, killed = killed_before_d_ended()  # Tune saved d TERMINATED; the searcher's file was one event older
    save_folder(tmp_path, killed, dict.fromkeys("abcd", "TERMINATED"))
    assert restored(tmp_path, bisection()).suggest("e") is None  # the hang: waiting for d, which Tune will not run

    notes = catch_up_saved_searcher(str(tmp_path), bisection())
    assert len(notes) == 1
    assert "trial d had ended (3 results)" in notes[0]
    caught_up = restored(tmp_path, bisection())
    assert caught_up.finished == set("abcd")
    assert caught_up.bisection.observations == uninterrupted.bisection.observations
    assert caught_up.suggest("e") == uninterrupted.suggest("e") == {"preset": {}, "weight_decay": 3.2e-05}
    assert catch_up_saved_searcher(str(tmp_path), bisection()) == []  # now in step: the file is left as it is


@pytest.mark.parametrize("ended", [False, True], ids=["suggested", "suggested-and-ended"])
def test_a_suggestion_tune_never_recorded_is_suggested_again(tmp_path: Path, ended: bool) -> None:
    """The searcher's file has e; Tune's experiment state is older (a sync skipped while the last still ran can
    make it several events older: e may even have ended). The phase decides from Tune's trials, so e is dropped."""
    killed = bisection()
    for t in "abcd":
        killed.suggest(t)
        run(killed, t)
    before = list(killed.bisection.observations)
    proposed = killed.suggest("e")
    run(killed, "e", complete=ended)
    save_folder(tmp_path, killed, dict.fromkeys("abcd", "TERMINATED"))
    (note,) = catch_up_saved_searcher(str(tmp_path), bisection())
    assert "trial e was suggested but never recorded by Tune" in note
    again = restored(tmp_path, bisection())
    assert "e" not in again.trial_values
    assert "e" not in again.finished
    assert again.bisection.observations == before
    assert again.suggest("f") == proposed
    assert again.trial_values["f"] == 3.2e-05


def killed_before_an_end_tune_then_suggested_past(tmp_path: Path, tune_config: dict[str, Any], status: str) -> tuple[Any, Any]:
    """The searcher's file was saved before d's end; Tune's state is two events newer: d ended, and e, the value the
    searcher suggested after it, recorded with ``tune_config`` (what the kill in tests/test_recipe.py's resume
    test left, where e then ran a second time beside the value suggested again). Returns (uninterrupted, killed)."""
    uninterrupted, killed = killed_before_d_ended()
    assert uninterrupted.suggest("e") == {"preset": {}, "weight_decay": 3.2e-05}
    run(uninterrupted, "e", complete=status == "TERMINATED")
    save_folder(tmp_path, killed, {**dict.fromkeys("abcd", "TERMINATED"), "e": status}, {"e": tune_config})
    return uninterrupted, killed


@pytest.mark.parametrize("status", ["PENDING", "RUNNING", "TERMINATED"])
def test_a_trial_tune_recorded_after_the_searchers_file_was_saved_is_adopted(tmp_path: Path, status: str) -> None:
    uninterrupted, _ = killed_before_an_end_tune_then_suggested_past(tmp_path, {"preset": {}, "weight_decay": 3.2e-05}, status)
    notes = catch_up_saved_searcher(str(tmp_path), bisection())
    assert "trial d had ended (3 results)" in notes[0]
    assert "trial e was recorded by Tune after the searcher's state was last saved: the searcher takes it" in notes[1]
    assert len(notes) == 2
    caught_up = restored(tmp_path, bisection())
    assert caught_up.trial_values == uninterrupted.trial_values  # e is the searcher's: its value is not suggested again
    if status == "TERMINATED":
        assert "its end read (3 results)" in notes[1]
        assert caught_up.bisection.observations == uninterrupted.bisection.observations
        assert caught_up.suggest("f") == uninterrupted.suggest("f")
    else:
        assert caught_up.awaited() == {"e"}
        assert caught_up.suggest("f") is None  # waits for e, which Tune runs (it suggested e's value again before)
    state = json.loads(next(tmp_path.glob("experiment_state-*.json")).read_text())
    assert [json.loads(t[0])["trial_id"] for t in state["trial_data"]] == list("abcde")  # Tune's trials untouched
    assert catch_up_saved_searcher(str(tmp_path), bisection()) == []


def test_a_trial_tune_recorded_that_the_searcher_would_not_suggest_is_dropped_from_tunes_trials(tmp_path: Path) -> None:
    killed_before_an_end_tune_then_suggested_past(tmp_path, {"preset": {}, "weight_decay": 5e-05}, "RUNNING")
    notes = catch_up_saved_searcher(str(tmp_path), bisection())
    assert (
        "trial e was recorded by Tune after the searcher's state was last saved, and is not what the searcher suggests"
        in notes[1]
    )
    state = json.loads(next(tmp_path.glob("experiment_state-*.json")).read_text())
    assert [json.loads(t[0])["trial_id"] for t in state["trial_data"]] == list("abcd")  # Tune does not run e again
    caught_up = restored(tmp_path, bisection())
    assert "e" not in caught_up.trial_values
    assert caught_up.suggest("f") == {"preset": {}, "weight_decay": 3.2e-05}
    assert catch_up_saved_searcher(str(tmp_path), bisection()) == []


def test_candidates_and_a_reused_one(tmp_path: Path) -> None:
    def momentum() -> MomentumSearcher:
        searcher = MomentumSearcher((0.95, 0.9), base_config={"preset": {}})
        searcher.reuse("0.95", "lr-trial", rows(0.5))
        return searcher

    killed = momentum()
    assert isinstance(killed.suggest("a"), dict)
    assert killed.suggest("b") is None  # one candidate left to train, and it is running
    save_folder(tmp_path, killed, {"a": "ERROR"})
    (note,) = catch_up_saved_searcher(str(tmp_path), momentum())
    assert "trial a" in note
    caught_up = restored(tmp_path, momentum())
    assert caught_up.suggested() == {"a"}  # the candidate read from an earlier phase is no trial of Tune's
    assert caught_up.scores["0.9"].failed  # it ended in an error: judged worst
    assert caught_up.suggest("b") == Searcher.FINISHED


def test_the_limiter_frees_the_slot_of_a_trial_its_searcher_no_longer_awaits(tmp_path: Path) -> None:
    searcher = bisection()
    limiter = limited(searcher, 1)
    for t in "abcd":
        searcher.suggest(t)
        run(searcher, t)
    limiter.live_trials = {"d"}  # saved live, ended since (caught up)
    limiter.num_unfinished_live_trials = 1
    assert limiter.suggest("e") == {"preset": {}, "weight_decay": 3.2e-05}
    assert limiter.live_trials == {"e"}


def test_the_snapshot_base_run(tmp_path: Path) -> None:
    def snapshot() -> SnapshotContinuationSearcher:
        return SnapshotContinuationSearcher("weight_decay", {"preset": {}}, grid=list(LOSSES))

    killed = snapshot()
    base = killed.suggest("base")
    assert killed.awaited() == {"base"}
    save_folder(tmp_path, killed, {})  # Tune never recorded the base run
    (note,) = catch_up_saved_searcher(str(tmp_path), snapshot())
    assert "trial base was suggested but never recorded" in note
    assert restored(tmp_path, snapshot()).suggest("base2") == base


def test_an_experiment_state_cut_short_is_set_aside_and_the_phase_starts_again(tmp_path: Path) -> None:
    """On object storage an experiment state copied while Tune rewrote it can be half a document. Tune would then
    restore the searcher but no trial, and decide from what runs after (tried on a real folder: one trial ran, and the
    phase decided from it alone); instead the saved state is set aside and the phase runs again from its start."""
    from ray import tune

    killed = bisection()
    killed.suggest("a")
    save_folder(tmp_path, killed, {"a": "RUNNING"})
    (tmp_path / "tuner.pkl").write_bytes(b"tuner")
    state = tmp_path / "experiment_state-2026-12-05_14-00-00.json"
    state.write_text(state.read_text()[:20])
    assert tune.Tuner.can_restore(str(tmp_path))
    (note,) = catch_up_saved_searcher(str(tmp_path), bisection())
    assert note.startswith(f"{state.name} was saved cut short (Tune was rewriting it): the phase runs again from its start")
    assert not tune.Tuner.can_restore(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"cut-{SAVED}", f"cut-{state.name}", "cut-tuner.pkl", "trial_a"])

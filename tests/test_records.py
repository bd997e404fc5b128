"""Reading a trial's rows back: a retried trial's results file holds every attempt, appended."""

from __future__ import annotations

from tunekit.recipe.records import error_line, last_attempt


def rows(*steps: int) -> list[dict[str, float]]:
    return [{"training_iteration": s, "attempt_row": i} for i, s in enumerate(steps)]


def steps_of(kept: list[dict[str, float]]) -> list[tuple[float, float]]:
    return [(r["training_iteration"], r["attempt_row"]) for r in kept]


def test_an_attempt_restarted_from_scratch_replaces_the_first_one() -> None:
    # attempt 1 reported steps 1-4 and crashed; attempt 2 started again at 1 and ran to 6
    kept = last_attempt(rows(1, 2, 3, 4, 1, 2, 3, 4, 5, 6))
    assert steps_of(kept) == [(1, 4), (2, 5), (3, 6), (4, 7), (5, 8), (6, 9)]


def test_an_attempt_restored_from_a_checkpoint_keeps_the_steps_before_it() -> None:
    # attempt 1 reported 1-5 (checkpoint at 3) and crashed; attempt 2 went on from the checkpoint: 4, 5, 6
    kept = last_attempt(rows(1, 2, 3, 4, 5, 4, 5, 6))
    assert steps_of(kept) == [(1, 0), (2, 1), (3, 2), (4, 5), (5, 6), (6, 7)]


def test_a_trial_that_ran_once_is_read_as_it_is() -> None:
    assert steps_of(last_attempt(rows(1, 2, 3))) == [(1, 0), (2, 1), (3, 2)]
    assert last_attempt([]) == []


def test_the_error_line_is_the_traceback_line_naming_the_error() -> None:
    trace = "ray::ImplicitFunc.train()\n  File \"x.py\", line 3, in f\n    raise RuntimeError('boom')\nRuntimeError: boom\n\n"
    assert error_line(trace) == "RuntimeError: boom"
    assert error_line("") == "an error without a message"

"""Where a searcher's saved state and Tune's disagree after a killed driver, and what to do about it.

Tune saves a phase's state as several files (``experiment_state-*.json`` with every trial's status,
``searcher-state-*.pkl`` with the searcher's) and copies them to the storage after every event, one
file at a time. A driver killed between two of those copies leaves the files one event apart:

* a trial the experiment state has **ended** (``TERMINATED``, ``ERROR``) that the saved searcher
  still awaits — Tune never reports that end again, and a searcher waiting for it (a bisection
  before its next value) waits for ever, with no trial running;
* a trial the searcher **suggested** that the experiment state does not hold — Tune never runs
  it, and the searcher waits for it just the same;
* a trial the experiment state holds that the saved searcher **never suggested** (its file was
  saved before the suggestion) — Tune runs it again, the searcher ignores its end, and suggests
  its value a second time.

The first is caught up (the searcher reads the trial's end from its folder); the second is
forgotten (its value is suggested again, as a new trial); the third is adopted, in Tune's order,
where it is what the caught-up searcher suggests next, and dropped from Tune's trials where not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

#: Tune's saved state files, each ``<prefix><session time>.<ext>``: every trial's status (written in place,
#: the one file that can be read half-written), the searcher's pickle, and the rest (and ``tuner.pkl``).
EXPERIMENT_STATE = ("experiment_state-", ".json")
SEARCHER_STATE = ("searcher-state-", ".pkl")
TUNE_STATE_FILES = (
    EXPERIMENT_STATE[0],
    SEARCHER_STATE[0],
    "search_gen_state-",
    "callback-states-",
    "basic-variant-state-",
    "tuner.pkl",
)

#: The statuses Tune does not run again on ``Tuner.restore`` (tunekit resumes without ``resume_errored``).
ENDED = frozenset({"TERMINATED", "ERROR"})


class OutOfStep(NamedTuple):
    """What to do to a saved searcher before ``Tuner.restore`` reads it; all empty when it is in step."""

    catch_up: list[str]  # awaited by the searcher, ended by Tune: read their ends
    forget: list[str]  # suggested by the searcher, unknown to Tune: suggest their values again
    adopt: list[str]  # recorded by Tune, never suggested by the searcher: in Tune's order


def out_of_step(
    awaited: Iterable[str], suggested: Iterable[str], statuses: Mapping[str, str], known: Iterable[str] = ()
) -> OutOfStep:
    """The trials the searcher awaits that Tune has ended, those it suggested that Tune does not know, and those
    Tune recorded that it never suggested (``statuses``: trial id → Tune's status, in the experiment state's
    order; ``known``: every trial the searcher suggested, those it no longer counts as suggested too)."""
    suggested = set(suggested)
    catch_up = sorted(t for t in awaited if statuses.get(t) in ENDED)
    forget = sorted(t for t in suggested if t not in statuses)
    ours = suggested | set(known)
    return OutOfStep(catch_up, forget, [t for t in statuses if t not in ours])


def recorded_as_suggested(suggestion: Mapping[str, Any], recorded: Mapping[str, Any]) -> bool:
    """Whether the config Tune recorded for a trial (``recorded``, read back from its JSON) holds every key of a
    searcher's ``suggestion`` (as Tune's encoder writes it: lists, not tuples) with the same value."""
    return all(k in recorded and recorded[k] == v for k, v in suggestion.items())

"""search.json as one typed state: round trip, folders written by tunekit 0.1.0, one-line refusals.

``tests/data/search_v1/`` holds searches the 0.1.0 release wrote (tests/data/make_v1_search.py):
``reference/search.json`` of a search run straight through, and ``killed/``, a search whose
driver was SIGKILLed in the middle of its weight-decay bisection. Both decided on the test split:
the finished one still loads and reports; the killed one cannot be continued by a tunekit that
decides on a validation split, and says so in one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunekit.cli import app
from tunekit.recipe import STATE_VERSION, SearchError, SearchState, read_state, resume
from tunekit.recipe.state import STATE_FILE

V1 = Path(__file__).parent / "data" / "search_v1"


def copy_v1(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(V1 / name, folder)
    return folder


def test_a_finished_search_of_tunekit_010_loads_typed(tmp_path: Path) -> None:
    folder = copy_v1(tmp_path, "reference")
    state = read_state(str(folder))
    raw = json.loads((V1 / "reference" / STATE_FILE).read_text())
    assert raw["version"] == 1
    # every decision and the end, typed
    assert list(state.done) == ["range_test", "momentum", "weight_decay", "final"]
    assert state.done["weight_decay"].values == raw["done"]["weight_decay"]["values"]
    assert state.result is not None
    assert state.result.accuracies == raw["result"]["accuracies"]
    assert state.tracking is None
    assert (state.version, state.written_by) == (1, None)
    assert state.decided_on == "test"  # version 1 decided on the test split
    state.check_resumable()  # finished: nothing left to continue, nothing to refuse
    # the folder was copied: the state lives where it was found, not where it was written
    assert state.directory == str(folder.resolve())
    assert state.storage == str(tmp_path.resolve())
    # the preset with every decision applied
    assert state.preset_now().weight_decay == raw["done"]["weight_decay"]["values"]["weight_decay"]


def test_a_saved_state_reads_back_equal_and_says_its_version(tmp_path: Path) -> None:
    state = read_state(str(copy_v1(tmp_path, "reference")))
    state.save()
    written = json.loads((Path(state.directory) / STATE_FILE).read_text())
    assert written["version"] == STATE_VERSION == 3
    assert written["written_by"]
    # written back as version 3, it still says its decisions read the test split
    assert written["decided_on"] == "test"
    assert read_state(state.directory) == state
    # a new search decides on the validation split
    fresh = SearchState(state.name, state.directory, state.storage, state.preset, state.phases)
    assert fresh.decided_on == "val"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"version": 9, "name": "x"}', "version 9 is not one this tunekit reads"),
        ("{not json", "not a tunekit search state"),
        ('{"version": 2, "name": "x"}', "not a tunekit search state"),
    ],
)
def test_a_state_this_release_cannot_read_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / STATE_FILE).write_text(text)
    with pytest.raises(SearchError, match=message):
        read_state(str(tmp_path))
    # and the CLI says it in one line, exit 2
    result = CliRunner().invoke(app, ["resume", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_state_keeps_the_request_apart_from_the_decisions(tmp_path: Path) -> None:
    state = read_state(str(copy_v1(tmp_path, "reference")))
    request = SearchState(state.name, state.directory, state.storage, state.preset, state.phases)
    # nothing decided yet: the preset as asked
    assert request.preset_now().policy.max_lr == state.preset["policy"]["max_lr"]
    assert state.preset_now().policy.max_lr == state.done["range_test"].values["max_lr"]


def test_a_finished_search_of_tunekit_010_still_reports(tmp_path: Path) -> None:
    folder = copy_v1(tmp_path, "reference")
    reference = read_state(str(V1 / "reference"))
    # a finished search just returns its result: nothing is rerun, nothing is refused
    result = CliRunner().invoke(app, ["resume", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    reported = json.loads(result.stdout)
    assert reported["accuracies"] == pytest.approx(reference.result.accuracies, abs=1e-9)
    assert reported["accuracy_mean"] == pytest.approx(reference.result.accuracy_mean)
    assert reported["metric_name"] == "acc"
    assert reported["metric_split"] == "test"
    assert reported["directory"] == str(folder.resolve())


def test_a_search_killed_under_tunekit_010_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = copy_v1(tmp_path, "killed")
    before = read_state(str(folder))
    assert list(before.done) == ["range_test", "momentum"]  # killed in the weight-decay phase
    assert before.decided_on == "test"
    written = (folder / STATE_FILE).read_text()

    # its finished phases decided on the test split: the rest cannot be judged on another one
    with pytest.raises(SearchError, match="decided on the test split") as caught:
        before.check_resumable()
    assert "\n" not in str(caught.value)
    assert "range_test, momentum" in str(caught.value)
    with pytest.raises(SearchError, match="decided on the test split"):
        resume(str(folder), progress=False)

    # the CLI says it in one line, exit 2, before anything starts
    result = CliRunner().invoke(app, ["resume", str(folder)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "test split" in lines[0]
    assert "validation split" in lines[0]
    assert "tunekit search" in lines[0]
    assert "Traceback" not in result.output
    # and the folder is left as it was
    assert (folder / STATE_FILE).read_text() == written

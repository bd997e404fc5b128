"""``search.json``: everything a search knows, typed, written atomically after every step.

A search folder (``<storage>/<name>/``) holds one Tune experiment per phase and this file: the
request (preset, phases, storage, tracking), each finished phase's :class:`PhaseResult`, and
the end. ``tunekit resume`` needs nothing else.

Versions 1 (tunekit ≤ 0.1.0) and 2 decided on the test split; version 3 decides on a validation
split (``decided_on``). Older folders still load — a finished one reports as it did — but an
unfinished one cannot be continued: its remaining trials would be judged on another split than
its finished ones (:meth:`SearchState.check_resumable`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tunekit.core.storage import is_uri, join, parent, storage_failure
from tunekit.presets import Preset, load_preset
from tunekit.recipe.errors import SearchError
from tunekit.recipe.results import PhaseResult
from tunekit.storage import read_text, write_text

STATE_FILE = "search.json"
STATE_VERSION = 3
#: Versions this release reads (1: tunekit 0.1.0; 2: phases as modules; both decided on the test split).
READABLE_VERSIONS = (1, 2, 3)


@dataclass
class TrackingState:
    """Where the search logs in MLflow; ``parent_run_id`` is set once the parent run exists."""

    uri: str
    experiment: str
    parent_run_id: str | None = None


@dataclass
class SearchEnd:
    """The end of a search: the chosen preset and the final replicates' test metric (``metric``)."""

    preset: dict[str, Any]
    accuracy_mean: float  # the metric's mean (the accuracy's, for a classifier)
    accuracy_std: float
    accuracies: list[float]
    best_checkpoint: str | None = None
    finished: str = ""
    metric: str = "test_acc"


@dataclass
class SearchState:
    """The contents of ``search.json``. ``preset`` is the request; :meth:`preset_now` applies the decisions."""

    name: str
    directory: str
    storage: str
    preset: dict[str, Any]
    phases: list[str]
    shared_storage: bool = False
    max_failures: int = 2
    tracking: TrackingState | None = None
    done: dict[str, PhaseResult] = field(default_factory=dict)
    result: SearchEnd | None = None
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))
    train_samples: int | None = None  # what the phases were sized for (None: version 1, sized in epochs)
    written_by: str | None = None  # the tunekit version that wrote the file (None: version 1)
    decided_on: str = "val"  # the split the decisions read ("test" before version 3)
    version: int = STATE_VERSION

    def preset_now(self) -> Preset:
        """The requested preset with every finished phase's decision applied, in phase order."""
        overrides: dict[str, Any] = {}
        for result in self.done.values():
            overrides.update(result.overrides)
        return load_preset(self.preset, overrides)

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps({"version": data.pop("version"), **data}, indent=1, default=float)

    @classmethod
    def from_json(cls, text: str, directory: str) -> SearchState:
        """Parse a ``search.json`` found in ``directory`` (a moved folder is where it is now).

        Raises:
            SearchError: not a search state this release reads.
        """
        where = join(directory, STATE_FILE)
        try:
            data = json.loads(text)
            if data.get("version") not in READABLE_VERSIONS:
                raise SearchError(
                    f"{where}: version {data.get('version')} is not one this tunekit reads ({READABLE_VERSIONS}); "
                    "upgrade tunekit or start a new search"
                )
            known = {f.name for f in fields(cls)}
            state = cls(**{k: v for k, v in data.items() if k in known})
            if data["version"] < 3:
                state.decided_on = "test"
            state.tracking = TrackingState(**data["tracking"]) if data.get("tracking") else None
            state.done = {k: PhaseResult(**v) for k, v in data.get("done", {}).items()}
            state.result = SearchEnd(**data["result"]) if data.get("result") else None
        except (json.JSONDecodeError, TypeError, AttributeError, KeyError) as exc:
            raise SearchError(f"{where}: not a tunekit search state ({exc}); give the folder `tunekit search` printed") from None
        state._relocate(directory)
        return state

    def check_resumable(self) -> None:
        """Raise when this unfinished search decided on the test split: this tunekit cannot continue it consistently."""
        if self.result is None and self.decided_on != "val":
            done = ", ".join(self.done) or "none"
            raise SearchError(
                f"{join(self.directory, STATE_FILE)}: this search (version {self.version}, written by "
                f"{self.written_by or 'tunekit 0.1.0'}) decided on the test split; this tunekit decides on a validation "
                f"split, so its unfinished phases cannot be continued consistently (finished: {done}); "
                "start it again with `tunekit search`"
            )

    def _relocate(self, directory: str) -> None:
        """A folder that was moved or copied resumes where it is now, not where it was written."""
        if is_uri(directory) or is_uri(self.directory):  # object storage: as given now (its query string too)
            if directory != self.directory:
                self.directory, self.storage = directory, parent(directory)
            return
        if Path(directory).resolve() == Path(self.directory).resolve():
            return
        self.directory = str(Path(directory).resolve())
        self.storage = str(Path(self.directory).parent)

    def save(self) -> None:
        """Write ``search.json`` as this release's version (a state read from version 1 is written back as 2)."""
        from tunekit import __version__

        self.version, self.written_by = STATE_VERSION, __version__
        write_text(join(self.directory, STATE_FILE), self.to_json())


def read_state(directory: str) -> SearchState:
    """The ``search.json`` of a search folder.

    Raises:
        SearchError: the folder holds no search, or not one this release reads.
    """
    try:
        text = read_text(join(directory, STATE_FILE))
    except (OSError, ValueError) as exc:  # object storage that cannot be reached, a bucket that is not there
        raise SearchError(
            f"{directory}: cannot read {STATE_FILE} ({storage_failure(str(exc))}); check the URI, the endpoint and the credentials"
        ) from None
    if text is None:
        raise SearchError(
            f"{directory}: no {STATE_FILE} here; give the search folder `tunekit search` printed (<storage>/<name>)"
        )
    return SearchState.from_json(text, directory)

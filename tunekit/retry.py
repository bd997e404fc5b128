"""A retried trial keeps the results it reported before it crashed.

Tune's driver writes each trial's results (``result.json``, ``progress.csv``) into a staging folder and copies
that folder to the storage in the background with the experiment's state, at most every
``TUNE_GLOBAL_CHECKPOINT_S`` (10 s and more by default). When a crashed trial is retried from its checkpoint,
Tune's result loggers first replace the staging copy of those files by the storage's. The storage's copy can
be behind: it lacks whatever was reported since the last copy, and a copy still in flight may have left it
stale or half-written. Two CI runs of 2026-12-07 lost that way the first epochs of a retried trial's curve
(``[3, 4]`` instead of ``[1, 2, 3, 4]``; ``[2, …, 20]`` instead of ``[1, …, 20]``), the curve every phase reads.

:func:`result_loggers` are Tune's own JSON and CSV loggers, except that they keep the driver's copy when it
is at least as long as the storage's: both files only ever grow by appended rows, and the storage's copy
is made from the driver's, so the longer copy is the newer one. A driver that has no copy of its own (an
experiment resumed on another machine) still reads the storage's back, as Tune does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback


def storage_copy_is_newer(trial: Any, file_name: str) -> bool:
    """Whether the storage's copy of ``file_name`` in ``trial``'s folder should replace the driver's: the
    driver has none, or the storage's is longer. When the storage cannot say (unreachable), the driver's
    own copy is kept."""
    local = Path(trial.local_path, file_name)
    if not local.is_file():
        return True
    remote = Path(trial.storage.trial_fs_path, file_name).as_posix()
    try:
        info = trial.storage.storage_filesystem.get_file_info(remote)
    except Exception:  # the storage cannot be asked: the driver's copy is what there is
        return False
    return info.size is not None and info.size > local.stat().st_size


class _KeepsTheNewerCopy:
    """Mixin for Tune's result loggers: read the storage's copy back only if it is the newer one."""

    def _restore_from_remote(self, file_name: str, trial: Any) -> None:
        if storage_copy_is_newer(trial, file_name):
            super()._restore_from_remote(file_name, trial)  # type: ignore[misc]


class JsonResults(_KeepsTheNewerCopy, JsonLoggerCallback):
    """Tune's ``result.json`` logger; a retried trial keeps the rows it reported before its crash."""


class CsvResults(_KeepsTheNewerCopy, CSVLoggerCallback):
    """Tune's ``progress.csv`` logger; a retried trial keeps the rows it reported before its crash."""


def result_loggers() -> list[Any]:
    """The result loggers every Tuner tunekit builds carries instead of Tune's defaults (Tune adds its own
    only where none of the kind is given); put them after any callback that adds to a result."""
    return [JsonResults(), CsvResults()]

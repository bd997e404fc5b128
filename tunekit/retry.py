"""A retried trial keeps the results it reported before it crashed.

Tune's driver writes each trial's results (``result.json``, ``progress.csv``) into a staging folder and copies
that folder to the storage with the experiment's state, at most every ``TUNE_GLOBAL_CHECKPOINT_S`` (10 s and
more by default). When a crashed trial is retried from its checkpoint, Tune first replaces the staging copy of
those files by the storage's — which lacks whatever was reported since the last copy. A trial that crashed
a few seconds after its epoch-2 checkpoint came back with the rows of epochs 3 and 4 only: its first epochs
were gone from the curve every phase reads. :class:`ResultsKeptOnRetry` copies the trial's staging folder to
the storage as the retry is decided, before Tune reads it back, so the curve keeps every epoch it reported.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from ray.tune.callback import Callback


def persist_trial_files(trial: Any) -> None:
    """Copy what Tune's driver has written for ``trial`` (its staging folder) to the trial's folder on the
    storage now; on a failure to copy, one warning (the retry goes on with what the storage holds)."""
    import pyarrow.fs

    storage = trial.storage
    staging = storage.trial_driver_staging_path
    if not os.path.isdir(staging):
        return
    try:
        pyarrow.fs.copy_files(
            staging,
            storage.trial_fs_path,
            source_filesystem=pyarrow.fs.LocalFileSystem(),
            destination_filesystem=storage.storage_filesystem,
        )
    except Exception as error:  # never let bookkeeping end a search
        warnings.warn(
            f"trial {trial.trial_id}: could not copy its results to {storage.trial_fs_path} before the retry "
            f"({type(error).__name__}: {error}); the epochs reported since Tune's last copy may be missing from its curve",
            RuntimeWarning,
            stacklevel=2,
        )


class ResultsKeptOnRetry(Callback):
    """Tune callback: a trial that is retried after a crash keeps the results it reported before (see the module)."""

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        persist_trial_files(trial)

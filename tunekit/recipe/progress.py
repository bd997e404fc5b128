"""What a person watching a search sees: one line per trial start and end, and Ray kept quiet."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from typing import Any

from ray.tune.callback import Callback

from tunekit.core.judge import number
from tunekit.core.storage import located
from tunekit.recipe.records import TrialRecord, config_label, trial_error
from tunekit.searchers.snapshot import is_continuation


class Progress(Callback):
    """Tune callback printing one line per trial start and end: phase, trials running/done, best so far."""

    def __init__(self, phase: str, index: int, total: int, enabled: bool = True, storage: str = "") -> None:
        self.phase, self.index, self.total, self.enabled = phase, index, total, enabled
        self.storage = storage  # where the trials live: their folders are printed as locations there
        self.best: tuple[float, str] | None = None

    def _echo(self, text: str) -> None:
        if self.enabled:
            print(f"[{self.index}/{self.total} {self.phase}] {text}", file=sys.stdout, flush=True)

    @staticmethod
    def _label(trial: Any) -> str:
        text = config_label(trial.config) or trial.trial_id
        return text + (" (from snapshot)" if is_continuation(trial.config) else "")

    @staticmethod
    def _counts(trials: list[Any], trial: Any, now: str) -> str:
        # Tune calls back before it updates this trial's status: count it as it is about to be
        status = {t.trial_id: t.status for t in trials} | {trial.trial_id: now}
        running = sum(1 for s in status.values() if s == "RUNNING")
        done = sum(1 for s in status.values() if s in ("TERMINATED", "ERROR"))
        return f"{running} running, {done} done"

    def reused(self, records: Sequence[TrialRecord]) -> None:
        """One line per candidate an earlier phase already trained (read, not trained again); each counts as a rival."""
        for record in records:
            r = record.last
            loss, se = number(r.get("val_loss")), number(r.get("val_loss_se"))
            spread = f" ± {se:.4f}" if math.isfinite(se) else ""
            if math.isfinite(loss) and (self.best is None or loss < self.best[0]):
                self.best = (loss, record.label)
            self._echo(
                f"read {record.label} from {record.reused_from} trial {record.trial_id}, the same training: "
                f"val_loss {loss:.4f}{spread} at epoch {r.get('epoch')} (not trained again)"
            )

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._echo(f"started {self._label(trial)} — {self._counts(trials, trial, 'RUNNING')}")

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        r = trial.last_result or {}
        loss = number(r.get("val_loss"))
        se = number(r.get("val_loss_se"))
        spread = f" ± {se:.4f}" if math.isfinite(se) else ""  # the loss's standard error over the split's samples
        shown = {"val_loss", "val_loss_se"}
        metrics = ", ".join(f"{k} {number(v):.4f}" for k, v in r.items() if k.startswith(("val_", "test_")) and k not in shown)
        shape = r.get("diagnosis") or ""
        stopped = f", stopped: {r['stopped_by']}" if r.get("stopped_by") else ""
        label = self._label(trial)
        if self.phase != "range_test" and math.isfinite(loss) and (self.best is None or loss < self.best[0]):
            self.best = (loss, label)
        best = f"; best so far {self.best[1]} ({self.best[0]:.4f})" if self.best else ""
        where = f"epoch {r.get('epoch')}"
        if self.phase == "range_test":  # a ramp: where on it, and whether its curve diverged (the loop ends it there)
            where = f"lr {number(r.get('lr')):.4g}, step {r.get('step')}{', diverged: ended there' if r.get('diverged') else ''}"
        self._echo(
            f"done {label}: val_loss {loss:.4f}{spread}{', ' + metrics if metrics else ''} at {where}"
            f"{' (' + shape + stopped + ')' if shape or stopped else ''} — {self._counts(trials, trial, 'TERMINATED')}{best}"
        )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        error = trial_error(trial)
        self._echo(
            f"FAILED {self._label(trial)}{': ' + error if error else ''} — {self._counts(trials, trial, 'ERROR')} "
            f"(logs: {located(self.storage, trial.path)})"
        )


class _BenignSyncRace(logging.Filter):
    """Drops Ray's "Saving experiment state ... failed" (and, on object storage, its syncer's "Last sync
    command failed") when all that failed is copying a temp file the next save already replaced
    (saving after every event makes a save overlap the previous copy; the next copy carries the
    state, and the final save waits for its copy)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, FileNotFoundError) and "-tmp-" in str(error):
            return False
        text = record.getMessage()  # the syncer puts the traceback in the message itself
        return not (text.startswith("Last sync command failed") and "FileNotFoundError" in text and "-tmp-" in text)


#: Ray's loggers that report the race: the experiment state's save, and the syncer that uploads it.
_SYNC_LOGGERS = ("ray.tune.execution.experiment_state", "ray.train._internal.syncer")


def quiet_benign_sync_races() -> None:
    """Install :class:`_BenignSyncRace` on Ray's loggers that report it (once)."""
    for name in _SYNC_LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(f, _BenignSyncRace) for f in log.filters):
            log.addFilter(_BenignSyncRace())

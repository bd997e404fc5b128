"""The one place mlflow is imported: runs, nested trial runs, batched metrics, a local fallback.

Layout in the tracking store: one **parent run** per search (or per ``tunekit train``), one
**nested child run per trial** (tag ``mlflow.parentRunId``), params = the trial's flattened
config, metrics with ``step`` = epoch (or iteration in a range test), tags ``tunekit.phase``,
``tunekit.diagnosis``, ``tunekit.stopped_by``. Trials never talk to MLflow themselves: the
driver logs for them, so a tracking server only needs to be reachable from the driver.
"""

from tunekit.tracking.mlflow_log import (
    FALLBACK_FILE,
    MLflowTrialLogger,
    Tracker,
    TrackingError,
    check_tracking_uri,
    default_store,
    default_tracking_uri,
    replay_fallback,
)

__all__ = [
    "FALLBACK_FILE",
    "MLflowTrialLogger",
    "Tracker",
    "TrackingError",
    "check_tracking_uri",
    "default_store",
    "default_tracking_uri",
    "replay_fallback",
]

"""The one place mlflow is imported: runs, nested trial runs, batched metrics, a local fallback.

Layout in the tracking store: one **parent run** per search (or per ``tunekit train``), one
**nested child run per trial** (tag ``mlflow.parentRunId``), params = the trial's flattened
config, metrics with ``step`` = epoch (or iteration in a range test), tags ``tunekit.phase``,
``tunekit.diagnosis``, ``tunekit.stopped_by``. Trials never talk to MLflow themselves: the
driver logs for them, so a tracking server only needs to be reachable from the driver.

Every call to the store goes through :class:`Tracker`: while the store is unreachable, the search goes
on and what it could not send (runs created, metrics, params, tags, artifacts) waits in the search
folder's ``mlflow-fallback.jsonl``; it is replayed before the next write once the store answers, or on
demand with :func:`replay_fallback` (``replay_fallback(search_folder, tracking_uri)``).
"""

from tunekit.tracking.mlflow_log import (
    FALLBACK_FILE,
    MLflowTrialLogger,
    Tracker,
    TrackingError,
    check_tracking_uri,
    default_store,
    default_tracking_uri,
    get_or_create_experiment,
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
    "get_or_create_experiment",
    "replay_fallback",
]

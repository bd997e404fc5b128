"""Run one preset as one Ray Tune trial (``tunekit train``, ``range-test`` and ``continue``).

Starts (or joins) Ray, builds a ``Tuner`` around :func:`tunekit.trainable.train_fn` with the
preset's resources, and returns the trial's final metrics and its history. Also where every
command finds its storage folder and MLflow store (:func:`tracking_uri_for`), and where a
range test's curve is written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunekit.core.storage import is_remote, is_uri, join, located, storage_failure
from tunekit.presets import Preset, PresetError, load_preset, preset_to_dict
from tunekit.storage import delete_file, exists, is_dir, make_dirs, write_text
from tunekit.train.paths import preflight

DEFAULT_STORAGE = "~/tunekit_runs"
#: The range test's curve, one row per evaluation, in this column order.
RANGE_CURVE_COLUMNS = ("lr", "val_loss", "step", "val_loss_se", "momentum", "train_loss", "weight_decay", "diverged")
#: Its file name in the trial folder, unless asked to write it elsewhere.
RANGE_CURVE_FILE = "range_test.csv"


@dataclass
class TrialOutcome:
    """The end of one trial: last metrics, every reported row, where its files are."""

    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    run_id: str | None = None  # the MLflow parent run, when tracking
    trial_run_id: str | None = None  # the trial's own (nested) MLflow run
    tracking_uri: str | None = None
    path: str = ""
    checkpoint: str | None = None
    error: str | None = None
    wall_s: float = 0.0

    @property
    def failure(self) -> str | None:
        """Why the trial failed in one line — the error's last line, then where its logs are — or None."""
        if not self.error:
            return None
        last = (self.error.strip().splitlines() or [self.error])[-1]
        return f"{last} (logs under {self.path})"


def ensure_ray(address: str | None = None, num_cpus: int | None = None, runtime_env: dict[str, Any] | None = None) -> None:
    """Start a local Ray (or connect to ``address``) unless one is already up.

    The dashboard's web UI and job server stay off. Ray's own services still listen where Ray puts
    them (its metrics and agent ports bind the machine's address, not only loopback): run it on a
    network you trust, as Ray's security notes say. ``runtime_env`` (see
    :func:`runtime_env_of`) goes to every worker of this job; a Ray that is already up keeps its own.
    """
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with RunConfig(verbose=0): no progress tables on stdout
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": False}
    if runtime_env:
        kwargs["runtime_env"] = runtime_env
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", **kwargs)


def runtime_env_of(preset: Preset) -> dict[str, Any] | None:
    """The Ray ``runtime_env`` that ships the user's code to the workers (``preset.runtime_env``), or None.

    Local folders become absolute paths, and they are put on this process's ``sys.path`` too: the
    driver imports the factories to check them before anything starts.
    """
    import sys

    env = preset.runtime_env
    if env is None:
        return None
    out: dict[str, Any] = {}
    if env.working_dir:
        out["working_dir"] = str(Path(env.working_dir).expanduser().resolve())
        _importable(out["working_dir"], sys.path)
    if env.py_modules:
        out["py_modules"] = [str(Path(m).expanduser().resolve()) for m in env.py_modules]
        for module in out["py_modules"]:
            _importable(str(Path(module).parent), sys.path)
    if env.pip:
        out["pip"] = list(env.pip)
    if env.env_vars:
        out["env_vars"] = dict(env.env_vars)
    return out or None


def _importable(folder: str, path: list[str]) -> None:
    if not Path(folder).is_dir():
        raise PresetError(f"runtime_env: {folder} is not a folder; give the folder that holds your package")
    if folder not in path:
        path.insert(0, folder)


def prepare(preset: Preset, address: str | None = None) -> Any:
    """Everything checked before a trial starts: the data's folder, the user's components (a probe on a
    worker), with Ray up and shipping ``preset.runtime_env``. Returns the probe's report (None when
    every component is bundled).

    Raises:
        PresetError: bad ``runtime_env``, or more ``resources.workers`` than the cluster holds; ComponentError: a
            component that fails; DatasetError: missing data.
    """
    from tunekit.components import check_components
    from tunekit.probe import needs_probe, probe

    env = runtime_env_of(preset)
    preflight(preset.dataset)
    check_components(preset)  # imports and signatures, here: seconds, before Ray starts
    if needs_probe(preset) or env:
        ensure_ray(address, runtime_env=env)
    # -- data-parallel trials (tunekit.data_parallel): the cluster must hold the workers, said before anything starts
    if preset.resources.workers > 1:
        from tunekit.data_parallel import check_cluster

        ensure_ray(address, runtime_env=env)
        check_cluster(preset.resources.workers, preset.resources.cpu, preset.resources.gpu)
    # --
    return probe(preset)


def alive_nodes() -> int:
    """How many nodes the connected Ray cluster has (1 when Ray is not running)."""
    import ray

    if not ray.is_initialized():
        return 1
    return sum(1 for node in ray.nodes() if node.get("Alive"))


def _local_root(root: str) -> str:
    """A local folder for files tunekit keeps beside the runs (the sqlite store, the fallback file)."""
    return str(Path(DEFAULT_STORAGE).expanduser()) if is_uri(root) else root


class StorageError(PresetError):
    """``--storage`` cannot hold the runs (a path through a file, a folder that cannot be written);
    the message names the path and the fix. Raised before anything starts."""


def storage_path(path: str | None, *, writing: bool = False) -> str:
    """An absolute storage path (Ray wants one) or a URI (``s3://…``) unchanged.

    ``writing``: the runs will be written there; a local path that cannot be (its nearest existing
    ancestor is a file, or not writable) raises :class:`StorageError`.
    """
    path = path or os.environ.get("TUNEKIT_STORAGE") or DEFAULT_STORAGE
    if is_uri(path):
        if writing and is_remote(path):
            _check_writable(path)
        return path
    resolved = Path(path).expanduser().resolve()
    if writing:
        try:
            existing = next(p for p in (resolved, *resolved.parents) if p.exists())
        except OSError as exc:  # a folder on the way may not be entered
            raise StorageError(
                f"--storage: cannot reach {resolved} ({exc.strerror}: {exc.filename}); give a folder you can write"
            ) from None
        if not existing.is_dir():
            raise StorageError(f"--storage: {existing} is a file, not a folder; give a folder for the runs, e.g. {existing}-runs")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise StorageError(
                f"--storage: cannot create or write {resolved} ({existing} is not writable); give a folder you can write"
            )
    return str(resolved)


#: The object a storage check writes and deletes again (object storage has no permissions to read locally).
WRITE_CHECK_FILE = ".tunekit-write-check"


def _check_writable(uri: str) -> None:
    """Write and delete one small object under ``uri``: object storage that cannot be reached, a bucket that
    does not exist or credentials that are refused say so here, in one line, before anything starts."""
    probe = join(uri, WRITE_CHECK_FILE)
    try:
        write_text(probe, "tunekit\n")
        delete_file(probe)
    except (OSError, ValueError) as exc:  # pyarrow: OSError for the service's answer, ValueError for a bad URI
        raise StorageError(
            f"--storage: cannot write {uri} ({storage_failure(str(exc))}); check the bucket, the endpoint "
            "(AWS_ENDPOINT_URL, or ?endpoint_override=host:port&scheme=http in the URI) and the credentials"
        ) from None


#: The file a run's folder gets the moment a process takes it (before anything else is written there).
CLAIM_FILE = ".tunekit-claim"


class NameTaken(PresetError):
    """The run's folder is another run's: its ``search.json`` is there, or a starting run claimed it."""


def default_name(preset_name: str) -> str:
    """``<preset>-<date>-<time>``: a new run's folder when no name is given (unique once claimed)."""
    return f"{preset_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def claim_name(root: str, name: str | None, default: str, taken_by: str | None = None) -> str:
    """Take the folder ``root/<name>`` for a new run so that no other process can: its claim file is
    created with ``O_EXCL`` (atomic on a local or NFS disk), and a folder that holds ``taken_by``
    (``search.json``) is another run's too.

    An explicit ``name`` is claimed or refused; without one, ``default`` is tried, then
    ``default-2``, ``default-3``, … — two runs started in the same second get folders of their own.
    On object storage (``s3://…``) nothing is atomic: the claim is checked, then written.

    Raises:
        NameTaken: the explicit ``name`` is taken (the message names the folder and the way out).
    """
    for attempt in range(1, 1000):
        candidate = name or (default if attempt == 1 else f"{default}-{attempt}")
        why = _claim(root, candidate, taken_by)
        if why is None:
            return candidate
        if name:
            raise NameTaken(f"--name {name}: {why}")
    raise NameTaken(f"--name: every name from {default} to {default}-999 is taken under {root}; give --name")


def name_taken(root: str, name: str, taken_by: str | None = None) -> str | None:
    """Why ``root/name`` is another run's (its ``taken_by`` file, or a claim), or None — a look, not a claim."""
    folder = join(root, name)
    if taken_by and exists(join(folder, taken_by)):
        return f"a search already lives in {folder}; `tunekit resume {folder}` or pick another name"
    if exists(join(folder, CLAIM_FILE)):
        return (
            f"another run took {folder} (its {CLAIM_FILE} is there); pick another name, "
            "or delete that file if no run is starting there"
        )
    return None


def release_name(root: str, name: str) -> None:
    """Give a claimed folder back (a run refused before it wrote anything): its claim file, and the folders
    the claim created if they are still empty — a refused run leaves nothing behind."""
    folder = join(root, name)
    if is_uri(folder):  # object storage: folders are prefixes, gone with their last file
        delete_file(join(folder, CLAIM_FILE))
        return
    claim = Path(folder, CLAIM_FILE)
    created = claim.read_text().splitlines()[1:] if claim.is_file() else []
    claim.unlink(missing_ok=True)
    for path in [folder, *created]:  # innermost first: the folder, then what it was created in
        with contextlib.suppress(OSError):  # not empty: something else lives there
            Path(path).rmdir()


def _claim(root: str, name: str, taken_by: str | None) -> str | None:
    """None once ``root/name`` is claimed for this process; else why it cannot be."""
    folder = join(root, name)
    if is_uri(folder):  # object storage: looked at, then written (nothing there is atomic)
        why = name_taken(root, name, taken_by)
        if why:
            return why
        make_dirs(folder)
        write_text(join(folder, CLAIM_FILE), f"{os.getpid()}\n")
        return None
    if taken_by and Path(folder, taken_by).exists():
        return name_taken(root, name, taken_by)
    made = [str(p) for p in Path(root).parents if not p.exists()][::-1] + ([root] if not Path(root).exists() else [])
    Path(folder).mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(Path(folder, CLAIM_FILE), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return name_taken(root, name)
    with os.fdopen(fd, "w") as fh:  # who claimed it, and the folders above it the claim created (innermost first)
        fh.write("\n".join([str(os.getpid()), *reversed(made)]) + "\n")
    return None


def tracking_uri_for(uri: str | None, storage: str | None, *, must_exist: bool = False) -> str:
    """The MLflow store of the runs under ``storage``: ``uri``, else ``$MLFLOW_TRACKING_URI``, else sqlite beside them.

    Every command resolves its store here, so what ``train``, ``range-test`` and ``search`` write for
    one ``--storage`` is what ``best`` and ``continue`` read for it. The sqlite default lives in the
    storage folder, or in ``~/tunekit_runs`` when the storage is a URI (``s3://…``): sqlite needs a
    local file.

    Args:
        uri: an explicit store (``--tracking-uri``); wins over everything.
        storage: the runs' storage (folder or URI), as :func:`storage_path` reads it.
        must_exist: the caller reads: a missing sqlite default is an error, not a new empty store.

    Raises:
        TrackingError: ``must_exist`` and no sqlite store where the runs' one would be; the message
            names ``--tracking-uri`` and ``--storage``.
    """
    from tunekit.tracking import TrackingError, default_store, default_tracking_uri

    if uri or os.environ.get("MLFLOW_TRACKING_URI"):
        return uri or os.environ["MLFLOW_TRACKING_URI"]
    folder = _local_root(storage_path(storage))
    if must_exist and not default_store(folder).is_file():
        raise TrackingError(
            f"--tracking-uri: no MLflow store at {default_store(folder)}; pass --tracking-uri (or --storage of the runs)"
        )
    return default_tracking_uri(folder)


def load_trial(preset: str | Path | Mapping[str, Any], overrides: Mapping[str, Any]) -> tuple[Preset, dict[str, Any]]:
    """The validated preset of one trial, and the trial-config keys among ``overrides`` that are no preset field.

    The one such key is :data:`~tunekit.searchers.snapshot.RESTORE_KEY` (the snapshot to continue
    from); a local one must exist. The dataset is checked too, so nothing starts on bad input.

    Raises:
        PresetError: a bad preset or override, or a snapshot folder that does not exist.
        DatasetError: the dataset is not where the preset says.
    """
    from tunekit.searchers.snapshot import RESTORE_KEY

    fields = dict(overrides)
    extra = {RESTORE_KEY: fields.pop(RESTORE_KEY)} if RESTORE_KEY in fields else {}
    loaded = load_preset(preset, fields)
    preflight(loaded.dataset)
    if RESTORE_KEY in extra:
        source = str(extra[RESTORE_KEY])
        try:
            found = is_dir(source)
        except OSError as exc:  # object storage that cannot be reached
            raise PresetError(f"{RESTORE_KEY}: cannot read {source} ({exc}); check the URI and its credentials") from None
        if not found:
            raise PresetError(f"{RESTORE_KEY}: {source} does not exist; give a checkpoint folder of an earlier trial")
    return loaded, extra


def write_range_curve(history: list[dict[str, Any]], path: str | Path) -> dict[str, Any]:
    """Write a range test's rows as CSV (:data:`RANGE_CURVE_COLUMNS` and every ``val_<metric>``) to ``path``
    (a local file or a URI).

    Returns its summary: ``curve`` (the file), ``points``, ``diverged`` (the last row did), and the
    ``lowest_val_loss`` with ``lr_at_lowest_val_loss`` — both None when no validation loss is finite.
    """
    metrics = sorted({k for row in history for k in row if k.startswith("val_") and k not in RANGE_CURVE_COLUMNS})
    columns = [*RANGE_CURVE_COLUMNS[:2], *metrics, *RANGE_CURVE_COLUMNS[2:]]
    rows: list[dict[str, Any]] = [{c: row.get(c) for c in columns} for row in history]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text(str(path), text.getvalue())
    finite = [r for r in rows if isinstance(r["val_loss"], float) and math.isfinite(r["val_loss"])]
    best = min(finite, key=lambda r: r["val_loss"]) if finite else None
    return {
        "curve": str(path),
        "points": len(rows),
        "diverged": bool(rows and rows[-1]["diverged"]),
        "lowest_val_loss": best["val_loss"] if best else None,
        "lr_at_lowest_val_loss": best["lr"] if best else None,
    }


def run_trial(
    preset: Preset,
    *,
    storage: str | None = None,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    max_failures: int = 1,
    address: str | None = None,
    keep_checkpoints: int | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    track: bool = True,
    parent_run_id: str | None = None,
    shared_storage: bool = False,
) -> TrialOutcome:
    """Train ``preset`` as one Tune trial and wait for it.

    Args:
        preset: what to train (a range-test preset runs a range test).
        storage: experiment storage (local folder or URI); default ``~/tunekit_runs``.
        name: experiment name; default ``<preset name>-<timestamp>``.
        config: extra trial-config keys (overrides, :data:`~tunekit.searchers.snapshot.RESTORE_KEY`).
        max_failures: retries from the last checkpoint after a crash.
        address: a Ray cluster to use instead of a local one.
        keep_checkpoints: keep only the newest N checkpoints (None: all). Ray forces an
            experiment-state sync every N checkpoints, so a small N costs time every epoch.
        tracking_uri: MLflow store; default as :func:`tracking_uri_for` resolves it (sqlite next to the runs).
        experiment: MLflow experiment name; default the preset's name.
        track: log to MLflow at all (a parent run, and the trial as its nested child run).
        parent_run_id: log the trial under this existing parent run instead (``tunekit continue``).
        shared_storage: a local-looking ``storage`` is a mount every node sees (NFS); otherwise a local
            path on a multi-node cluster raises :class:`~tunekit.core.storage.SharedStorageError`.
    """
    from ray import tune

    from tunekit.core.storage import check_shared_storage
    from tunekit.retry import result_loggers
    from tunekit.trainable import trainable

    root = storage_path(storage, writing=True)  # before anything starts
    prepare(preset, address)
    ensure_ray(address)
    check_shared_storage(root, alive_nodes(), shared_storage)  # before anything is written
    name = name or claim_name(root, None, default_name(preset.name))  # a folder of its own, even started alongside another
    phase = "range_test" if preset.policy.name == "range_test" else "train"
    callbacks: list[Any] = []
    log = logger = None
    if track:
        from tunekit.tracking import MLflowTrialLogger
        from tunekit.tracking.search_log import SearchLog, record_trial

        tracking_uri = tracking_uri_for(tracking_uri, root)
        experiment = experiment or preset.name
        folder = Path(_local_root(root)) / name
        if parent_run_id is None:
            log = SearchLog(name, preset, tracking_uri, experiment, folder, phases=[phase], command=phase, storage=root)
            logger = log.callback(phase)
        else:  # a continuation: a new trial run under an existing search
            logger = MLflowTrialLogger(
                tracking_uri,
                experiment,
                parent_run_id,
                phase="continue",
                fallback=folder / "mlflow-fallback.jsonl",
                storage=root,
            )
        callbacks.append(logger)
    tuner = tune.Tuner(
        trainable(preset),
        param_space={"preset": preset_to_dict(preset), **(config or {})},
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(
            name=name,
            storage_path=root,
            callbacks=[*callbacks, *result_loggers()],  # a retry keeps the epochs reported before its crash
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=keep_checkpoints),
            verbose=0,
        ),
    )
    started = time.perf_counter()
    result = tuner.fit()[0]
    history = result.metrics_dataframe.to_dict("records") if result.metrics_dataframe is not None else []
    trial_run = next(iter(logger.runs.values()), None) if logger is not None else None
    if log is not None:
        record_trial(log, preset, result, trial_run)
    return TrialOutcome(
        run_id=log.parent_run_id if log is not None else parent_run_id,
        trial_run_id=trial_run,
        tracking_uri=tracking_uri if track else None,
        metrics=dict(result.metrics or {}),
        history=history,
        path=located(root, result.path),
        checkpoint=located(root, result.checkpoint.path) if result.checkpoint else None,
        error=str(result.error) if result.error else None,
        wall_s=time.perf_counter() - started,
    )

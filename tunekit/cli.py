"""``tunekit`` on the command line: parse, build, run — no logic of its own.

Bad input (an unknown preset key, a negative LR, a missing data folder) prints one
``error: <field>: <what to do>`` line and exits with code 2 before anything starts.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from tunekit.core.storage import join
from tunekit.presets import (
    Preset,
    PresetError,
    RangeTestPolicy,
    bundled_presets,
    load_preset,
    parse_overrides,
    range_test_preset,
)
from tunekit.runner import RANGE_CURVE_FILE, TrialOutcome, load_trial, run_trial, write_range_curve
from tunekit.train.paths import DatasetError

app = typer.Typer(
    help="Leslie Smith's disciplined approach to hyper-parameters, run as Ray Tune searches.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

PresetArg = Annotated[str, typer.Argument(help="A preset YAML file, or the name of a bundled preset (see `tunekit presets`).")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a preset value: key=value (dotted path or alias, e.g. max_lr=0.8, train.epochs=5). Repeatable."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Where Ray Tune keeps trials and checkpoints (folder or URI). Default ~/tunekit_runs or $TUNEKIT_STORAGE.",
    ),
]
NameOpt = Annotated[str | None, typer.Option("--name", help="Experiment name (default: preset name and a timestamp).")]
AddressOpt = Annotated[str | None, typer.Option("--address", help="Use an existing Ray cluster (auto or ray://host:port).")]
TrackingOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking store (http://host:port, or a database URI). Default: sqlite next to the runs, or $MLFLOW_TRACKING_URI.",
    ),
]
ExperimentOpt = Annotated[str | None, typer.Option("--experiment", help="MLflow experiment name (default: the preset's name).")]
NoTrackOpt = Annotated[bool, typer.Option("--no-tracking", help="Do not log to MLflow.")]
WorkingDirOpt = Annotated[
    str | None,
    typer.Option(
        "--working-dir",
        help="Ship this folder (your package, your presets) to every Ray worker; the same as runtime_env.working_dir in the preset.",
    ),
]
SharedOpt = Annotated[
    bool, typer.Option("--shared-storage", help="The --storage folder is a mount every cluster node sees (NFS).")
]

USAGE_ERROR = 2


def _fail(message: str, code: int = USAGE_ERROR) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _load(preset: str, sets: list[str] | None, working_dir: str | None = None) -> tuple[Preset, dict[str, Any]]:
    """Validate the preset with its overrides; split off trial-only keys. Exits 2 on bad input."""
    try:
        overrides = parse_overrides(sets or [])
        if working_dir is not None:
            if not Path(working_dir).is_dir():
                raise PresetError(f"--working-dir: {working_dir} is not a folder; give the folder that holds your package")
            overrides["runtime_env.working_dir"] = str(Path(working_dir).resolve())
        return load_trial(preset, overrides)
    except (PresetError, DatasetError) as exc:
        raise _fail(str(exc)) from None


@contextlib.contextmanager
def _quiet_stdout(enabled: bool) -> Iterator[None]:
    """With --json, whatever Ray prints goes to stderr so stdout holds only the JSON."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


@contextlib.contextmanager
def _storage_refusals() -> Iterator[None]:
    """A node-local --storage on a multi-node cluster is bad input: one line, exit 2."""
    from tunekit.core.storage import SharedStorageError

    try:
        yield
    except SharedStorageError as exc:
        raise _fail(f"--storage: {exc}") from None


def _run_trial(what: str, preset: Preset, json_: bool, **options: Any) -> TrialOutcome:
    """Run one trial (see :func:`tunekit.runner.run_trial`); a failed one is one line, ``<what> failed: …``, exit 1."""
    try:
        with _storage_refusals(), _quiet_stdout(json_):
            outcome = run_trial(preset, **options)
    except (PresetError, DatasetError) as exc:  # a user component the probe refused: nothing ran
        raise _fail(str(exc)) from None
    if outcome.failure:
        raise _fail(f"{what} failed: {outcome.failure}", 1)
    return outcome


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _finite_tree(obj: Any) -> Any:
    """NaN and infinities become null, at any depth, so the JSON is strict."""
    if isinstance(obj, dict):
        return {k: _finite_tree(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_tree(v) for v in obj]
    return _finite(obj)


def _emit_json(obj: dict[str, Any]) -> None:
    typer.echo(json.dumps(_finite_tree(obj), default=float, allow_nan=False))


_SUMMARY_KEYS = (
    "train_loss",
    "epoch",
    "step",
    "lr",
    "weight_decay",
    "diverged",
    "samples_per_s",
    "train_time_s",
)


def _split_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Every ``val_*`` and ``test_*`` value of a result: the split is in the name."""
    return {k: v for k, v in sorted(metrics.items()) if k.startswith(("val_", "test_"))}


def _summary(metrics: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {**_split_metrics(metrics), **{k: metrics.get(k) for k in _SUMMARY_KEYS}}
    out["epochs"] = out.pop("epoch")
    return {**out, **extra}


def _shown(metrics: dict[str, Any]) -> str:
    """``test_acc 0.9812, test_loss 0.0612, val_acc …``: test first, it is what a finished run reports."""
    values = _split_metrics(metrics)
    order = sorted(values, key=lambda k: (not k.startswith("test_"), k))
    return ", ".join(f"{k} {float(values[k]) if values[k] is not None else math.nan:.4f}" for k in order) or "no metrics"


def _check_tracking(uri: str | None, enabled: bool) -> None:
    """An unusable tracking store (--tracking-uri, else $MLFLOW_TRACKING_URI) is bad input: say so in one line
    naming it (exit 2) before any trial runs."""
    source = "--tracking-uri" if uri else "$MLFLOW_TRACKING_URI"
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not enabled or not uri:
        return
    from tunekit.tracking import TrackingError, check_tracking_uri

    try:
        check_tracking_uri(uri, source=source)
    except TrackingError as exc:
        raise _fail(str(exc)) from None


def _check_search_store(state: Any) -> None:
    """An unfinished search logs on into the store it began in: it must answer before anything resumes.

    Raises:
        TrackingError: it does not (the message says to start it again).
    """
    if state.result is None and state.tracking is not None:
        from tunekit.tracking import check_tracking_uri

        check_tracking_uri(
            state.tracking.uri,
            source="the search's tracking store",
            fix="start that MLflow server again (the search logs into it), then resume",
        )


@app.command()
def train(
    preset: PresetArg,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    storage: StorageOpt = None,
    name: NameOpt = None,
    address: AddressOpt = None,
    tracking_uri: TrackingOpt = None,
    experiment: ExperimentOpt = None,
    no_tracking: NoTrackOpt = False,
    shared_storage: SharedOpt = False,
    working_dir: WorkingDirOpt = None,
) -> None:
    """Train one preset as a Ray Tune trial (logged to MLflow) and print its final metrics."""
    loaded, extra = _load(preset, set_, working_dir)
    _check_tracking(tracking_uri, not no_tracking)
    outcome = _run_trial(
        "the trial",
        loaded,
        json_,
        storage=storage,
        name=name,
        config=extra,
        address=address,
        tracking_uri=tracking_uri,
        experiment=experiment,
        track=not no_tracking,
        shared_storage=shared_storage,
    )
    result = _summary(
        outcome.metrics, {"trial_dir": outcome.path, "checkpoint": outcome.checkpoint, "mlflow_run_id": outcome.run_id}
    )
    if json_:
        _emit_json(result)
        return
    m = outcome.metrics
    status = "DIVERGED" if m.get("diverged") else "done"
    typer.echo(f"{loaded.name}: {status} after {m.get('epoch')} epochs — {_shown(m)}")
    typer.echo(f"trial: {outcome.path}")
    if outcome.checkpoint:
        typer.echo(f"checkpoint: {outcome.checkpoint}")
    _echo_mlflow(outcome)


def _echo_mlflow(outcome: Any) -> None:
    """Where the MLflow run is (a TrialOutcome or a SearchResult: both carry run_id and tracking_uri), as
    the UI page that shows it — through ``tunekit ui`` for a local store."""
    if not (outcome.run_id and outcome.tracking_uri):
        return
    from tunekit.tracking.mlflow_log import ui_url

    uri = outcome.tracking_uri
    try:
        from mlflow.tracking import MlflowClient

        experiment = MlflowClient(uri).get_run(outcome.run_id).info.experiment_id
    except Exception:  # the store went away since: say where the run is, without a link
        typer.echo(f"mlflow: run {outcome.run_id} in {uri}")
        return
    if uri.startswith(("http://", "https://")):
        typer.echo(f"mlflow: run {outcome.run_id} — open {ui_url(uri, experiment, outcome.run_id)}")
    else:
        page = ui_url(f"http://127.0.0.1:{UI_PORT}", experiment, outcome.run_id)
        typer.echo(f"mlflow: run {outcome.run_id} — browse with: {_ui_command(uri)} (then open {page})")


def _ui_command(uri: str) -> str:
    """The ``tunekit ui`` line that serves ``uri``: by its runs' folder for the sqlite store beside them."""
    from tunekit.runner import DEFAULT_STORAGE
    from tunekit.tracking.mlflow_log import SQLITE_FILE

    store = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if store is None or store.name != SQLITE_FILE:
        return f"tunekit ui --tracking-uri {uri}"
    if store.parent == Path(DEFAULT_STORAGE).expanduser().resolve():
        return "tunekit ui"
    return f"tunekit ui --storage {store.parent}"


@app.command("range-test")
def range_test(
    preset: PresetArg,
    set_: SetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write the curve as CSV (lr,val_loss,val_acc,step,…). Default: range_test.csv in the trial folder."
        ),
    ] = None,
    json_: JsonOpt = False,
    storage: StorageOpt = None,
    name: NameOpt = None,
    address: AddressOpt = None,
    tracking_uri: TrackingOpt = None,
    experiment: ExperimentOpt = None,
    no_tracking: NoTrackOpt = False,
    shared_storage: SharedOpt = False,
    working_dir: WorkingDirOpt = None,
) -> None:
    """Run one LR range test (LR linear from min to max, validation loss every k iterations)."""
    loaded, extra = _load(preset, set_, working_dir)
    _check_tracking(tracking_uri, not no_tracking)
    from tunekit.recipe import SearchError, plan_search

    try:  # sized to the data: enough optimizer steps and evaluations to read the curve
        test = range_test_preset(plan_search(loaded, ["range_test"]).preset)
    except (PresetError, SearchError) as exc:
        raise _fail(str(exc)) from None
    outcome = _run_trial(
        "the range test",
        test,
        json_,
        storage=storage,
        name=name or f"{loaded.name}-range-test",
        config=extra,
        address=address,
        max_failures=0,
        tracking_uri=tracking_uri,
        experiment=experiment,
        track=not no_tracking,
        shared_storage=shared_storage,
    )
    result = {**write_range_curve(outcome.history, out or join(outcome.path, RANGE_CURVE_FILE)), "trial_dir": outcome.path}
    if json_:
        _emit_json(result)
        return
    policy = test.policy
    assert isinstance(policy, RangeTestPolicy)
    typer.echo(
        f"{loaded.name}: range test of {result['points']} points, LR {policy.min_lr:g} → {policy.max_lr:g} (weight decay {test.weight_decay:g})"
    )
    if result["lowest_val_loss"] is not None:
        typer.echo(
            f"lowest validation loss {result['lowest_val_loss']:.4f} at lr {result['lr_at_lowest_val_loss']:.4g}{' (then diverged)' if result['diverged'] else ''}"
        )
    typer.echo(f"curve: {result['curve']}")
    _echo_mlflow(outcome)


@app.command()
def diagnose(
    curve: Annotated[
        Path,
        typer.Argument(help="CSV with columns step,val_loss (or lr,val_loss with --range-test, as `tunekit range-test` writes)."),
    ],
    range_test_: Annotated[
        bool, typer.Option("--range-test", help="Read an LR range test: also pick max_lr and min_lr.")
    ] = False,
    min_lr_factor: Annotated[
        float, typer.Option("--min-lr-factor", help="min_lr = max_lr / this (10 for 1cycle, 3-4 for CLR).")
    ] = 10.0,
    json_: JsonOpt = False,
) -> None:
    """Read a test-loss curve: horizontal, underfitting, overfitting or diverging — and why."""
    from tunekit.core.curves import diagnose as diagnose_curve
    from tunekit.core.lr_range import RangeTestError, analyse_range_test

    x_col = "lr" if range_test_ else "step"
    xs, ys = _read_curve(curve, x_col)
    verdict = diagnose_curve(xs, ys)
    result: dict[str, Any] = verdict.to_dict()
    if range_test_:
        try:
            found = analyse_range_test(xs, ys, min_lr_factor=min_lr_factor)
        except RangeTestError as exc:
            raise _fail(f"{curve}: {exc}") from None
        result.update({k: v for k, v in found.to_dict().items() if k not in result or k in ("noise", "tolerance")})
        result["range_test"] = found.to_dict()
    if json_:
        _emit_json(result)
        return
    typer.echo(f"{curve.name}: {verdict.shape.value} — {verdict.reason}")
    if range_test_:
        typer.echo(
            f"max_lr {found.max_lr:.4g}, min_lr {found.min_lr:.4g} (÷{min_lr_factor:g}); lowest test loss at lr {found.lr_at_min_loss:.4g}"
        )
        if found.turn_up_lr is not None:
            typer.echo(f"the loss turns up at lr {found.turn_up_lr:.4g}")
        typer.echo(f"for comparison, fastai's steep {found.steepest_lr:.4g} and valley {found.valley_lr:.4g}")
        for note in found.notes:
            typer.echo(f"note: {note}")


def _read_curve(path: Path, x_col: str) -> tuple[list[float], list[float]]:
    """Two float columns from a CSV; one clear error (exit 2) for a missing file, column or number."""
    if not path.is_file():
        raise _fail(f"{path}: no such file")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        # val_loss, as tunekit writes it now; test_loss, as curves recorded before the validation split
        y_col = next((c for c in ("val_loss", "test_loss", "loss") if c in columns), "val_loss")
        for col in (x_col, y_col):
            if col not in columns:
                raise _fail(f"{path}: needs a '{col}' column (has: {', '.join(columns) or 'none'})")
        xs, ys = [], []
        for line, row in enumerate(reader, start=2):
            try:
                xs.append(float(row[x_col]))
                ys.append(float(row[y_col]) if row[y_col] not in ("", None) else math.nan)
            except ValueError:
                raise _fail(f"{path}:{line}: '{row[x_col]}', '{row[y_col]}' are not numbers") from None
    return xs, ys


def _store_to_read(uri: str | None, storage: str | None) -> str:
    """The MLflow store that train/search wrote for --storage (see :func:`tunekit.runner.tracking_uri_for`); exit 2 when missing."""
    from tunekit.runner import tracking_uri_for
    from tunekit.tracking import TrackingError, check_tracking_uri

    source = "$MLFLOW_TRACKING_URI" if not uri and os.environ.get("MLFLOW_TRACKING_URI") else "--tracking-uri"
    try:
        found = tracking_uri_for(uri, storage, must_exist=True)
        check_tracking_uri(found, source=source)
    except TrackingError as exc:
        raise _fail(str(exc)) from None
    return found


@app.command()
def best(
    experiment: Annotated[
        str | None,
        typer.Option(
            "--experiment",
            help="MLflow experiment: its latest finished search (or training); with --metric, its best one by that metric.",
        ),
    ] = None,
    run: Annotated[str | None, typer.Option("--run", help="The search's parent run id (or one of its trial runs).")] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric",
            help="Pick the best finished search of --experiment by this final metric, as the searches log it on their "
            "parent run (test_acc, test_loss, …): lower is better for a loss, else as the preset's metric mode says.",
        ),
    ] = None,
    tracking_uri: TrackingOpt = None,
    storage: StorageOpt = None,
    format_: Annotated[str, typer.Option("--format", help="yaml (a preset, ready to save) or json.")] = "yaml",
) -> None:
    """Print the configuration a search (or training) chose, from MLflow alone — no Ray needed.

    --experiment reads its latest finished search, not its best; --metric picks the best one instead.
    """
    import yaml

    from tunekit.tracking import TrackingError
    from tunekit.tracking.queries import NotFound, best_config

    if format_ not in ("yaml", "json"):
        raise _fail(f"--format: 'yaml' or 'json', got {format_!r}")
    uri = _store_to_read(tracking_uri, storage)
    try:
        config = best_config(uri, experiment, run, metric)
    except (NotFound, TrackingError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(json.dumps(config) if format_ == "json" else yaml.safe_dump(config, sort_keys=False).rstrip())


@app.command("continue")
def continue_(
    run_id: Annotated[str, typer.Argument(help="An MLflow run: a trial run, or a search's parent run (its best trial).")],
    set_: SetOpt = None,
    tracking_uri: TrackingOpt = None,
    storage: StorageOpt = None,
    json_: JsonOpt = False,
    address: AddressOpt = None,
) -> None:
    """Train on from a run's recorded snapshot, with new settings, as a new trial run of the same search."""
    from tunekit.searchers.snapshot import RESTORE_KEY
    from tunekit.tracking.queries import NotFound, load_snapshot

    uri = _store_to_read(tracking_uri, storage)
    try:
        snapshot = load_snapshot(uri, run_id)
    except NotFound as exc:
        raise _fail(str(exc)) from None
    try:
        loaded = load_preset(snapshot.state["preset"], parse_overrides(set_ or []))
    except PresetError as exc:
        raise _fail(str(exc)) from None
    outcome = _run_trial(
        "the continuation",
        loaded,
        json_,
        storage=storage,
        config={RESTORE_KEY: snapshot.checkpoint},
        address=address,
        tracking_uri=uri,
        experiment=snapshot.experiment,
        parent_run_id=snapshot.parent_run_id,
    )
    result = _summary(
        outcome.metrics,
        {
            "trial_dir": outcome.path,
            "checkpoint": outcome.checkpoint,
            "mlflow_run_id": outcome.trial_run_id,
            "restored_from": snapshot.checkpoint,
        },
    )
    if json_:
        _emit_json(result)
        return
    typer.echo(
        f"continued {run_id} from {snapshot.checkpoint}: epoch {snapshot.state['epoch']} → {outcome.metrics.get('epoch')}, {_shown(outcome.metrics)}"
    )
    typer.echo(f"MLflow run {outcome.trial_run_id} under search {snapshot.parent_run_id}")


PhasesOpt = Annotated[
    str | None,
    typer.Option(
        "--phases",
        help="Comma-separated subset of range_test,momentum,weight_decay,dropout,batch_size,final (default: all that apply).",
    ),
]


@app.command()
def search(
    preset: PresetArg,
    set_: SetOpt = None,
    phases: PhasesOpt = None,
    json_: JsonOpt = False,
    storage: StorageOpt = None,
    name: NameOpt = None,
    address: AddressOpt = None,
    tracking_uri: TrackingOpt = None,
    experiment: ExperimentOpt = None,
    no_tracking: NoTrackOpt = False,
    shared_storage: SharedOpt = False,
    working_dir: WorkingDirOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print each phase's trials, steps and evaluations on this data; run nothing.")
    ] = False,
) -> None:
    """Run the disciplined search (range test → weight decay → learning rate → momentum → dropout, batch size → final) on a preset."""
    from tunekit.recipe import SearchError, SearchInterrupted, plan_phases, plan_search
    from tunekit.recipe import search as run_search
    from tunekit.runner import prepare

    loaded, extra = _load(preset, set_, working_dir)
    if extra:
        raise _fail(f"--set {', '.join(extra)}: not a preset field; a search starts from scratch")
    try:
        chosen = plan_phases(loaded, phases.split(",") if phases is not None else None)
        if dry_run:
            probed = prepare(loaded, address)
            plan = plan_search(loaded, chosen, probed.train_samples if probed else None)
            plan_phases(plan.preset, chosen)  # the sized phases must still fit
    except (SearchError, PresetError, DatasetError) as exc:
        raise _fail(str(exc)) from None
    if dry_run:
        _emit_json(plan.to_dict()) if json_ else typer.echo(plan.table())
        return
    _check_tracking(tracking_uri, not no_tracking)
    from tunekit.tracking import TrackingError

    try:
        with _quiet_stdout(json_):
            result = run_search(
                loaded,
                name=name,
                storage=storage,
                phases=chosen,
                address=address,
                tracking_uri=tracking_uri,
                experiment=experiment,
                track=not no_tracking,
                shared_storage=shared_storage,
            )
    except SearchInterrupted as exc:
        raise _fail(str(exc), 130) from None
    except (SearchError, PresetError, DatasetError, TrackingError) as exc:
        raise _fail(str(exc)) from None
    _end_search(result, json_)


def _end_search(result: Any, json_: bool) -> None:
    if json_:
        _emit_json(result.to_dict())
        return
    _echo_mlflow(result)
    typer.echo(f"search folder: {result.directory} (tunekit report {result.directory})")


@app.command()
def resume(
    directory: Annotated[str, typer.Argument(help="The search folder (<storage>/<name>) that `tunekit search` printed.")],
    json_: JsonOpt = False,
    address: AddressOpt = None,
) -> None:
    """Continue a search after Ctrl-C or a killed driver: finished phases are kept, the unfinished one resumes."""
    from tunekit.recipe import SearchError, SearchInterrupted, read_state
    from tunekit.recipe import resume as run_resume
    from tunekit.runner import storage_path
    from tunekit.tracking import TrackingError

    try:
        _check_search_store(read_state(storage_path(directory)))
        with _quiet_stdout(json_):
            result = run_resume(directory, address=address)
    except SearchInterrupted as exc:
        raise _fail(str(exc), 130) from None
    except (SearchError, PresetError, TrackingError) as exc:
        raise _fail(str(exc)) from None
    if not json_:
        typer.echo(result.table())
    _end_search(result, json_)


@app.command()
def replay(
    directory: Annotated[str, typer.Argument(help="The folder of a search (or training) whose MLflow writes were kept.")],
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="The store to push them to (default: the search's own store).")
    ] = None,
) -> None:
    """Push what a run kept while MLflow was unreachable (mlflow-fallback.jsonl) into the store, in order."""
    from tunekit.recipe import SearchError, read_state
    from tunekit.runner import storage_path
    from tunekit.tracking import FALLBACK_FILE, TrackingError, check_tracking_uri, replay_fallback

    folder = Path(storage_path(directory))
    kept = folder / FALLBACK_FILE
    if not kept.is_file():
        raise _fail(f"{directory}: no {FALLBACK_FILE} here; nothing waits to reach MLflow (or give the run's folder)")
    uri = tracking_uri
    if uri is None:
        try:
            tracking = read_state(str(folder)).tracking
        except SearchError:
            tracking = None
        if tracking is None:
            raise _fail(f"{directory}: not a search folder with a store; give the store with --tracking-uri")
        uri = tracking.uri
    try:
        check_tracking_uri(uri)
        done = replay_fallback(folder, uri)
    except TrackingError as exc:
        raise _fail(str(exc)) from None
    left = sum(1 for line in kept.read_text().splitlines() if line.strip()) if kept.is_file() else 0
    typer.echo(f"replayed {done} MLflow operations into {uri}" + (f"; {left} still wait in {kept}" if left else ""))
    if left:
        raise typer.Exit(1)


@app.command()
def report(
    directory: Annotated[str, typer.Argument(help="A search folder (<storage>/<name>).")],
    csv_: Annotated[Path | None, typer.Option("--csv", help="Write the table as CSV to this file.")] = None,
    parquet: Annotated[Path | None, typer.Option("--parquet", help="Write the table as Parquet to this file.")] = None,
    html_: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Write the search's report page to this file instead: the chosen configuration, each decision "
            "with its reason, ranked candidates and plot, the result and the compute (the report.html MLflow keeps).",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """One row per trial of a search: phase, config, diagnosis, stopped_by, final metrics, compute."""
    from tunekit.recipe import SearchError, report_frame
    from tunekit.recipe.report import report_compute

    if sum(x is not None for x in (csv_, parquet, html_)) > 1:
        raise _fail("--csv, --parquet and --html: give one of them")
    if html_ is not None:
        _write_html_report(directory, html_)
        return
    try:
        frame = report_frame(directory)
    except SearchError as exc:
        raise _fail(str(exc)) from None
    if csv_ is not None:
        frame.to_csv(csv_, index=False)
        typer.echo(f"{len(frame)} trials → {csv_}")
    elif parquet is not None:
        frame.to_parquet(parquet, index=False)
        typer.echo(f"{len(frame)} trials → {parquet}")
    elif json_:
        typer.echo(frame.to_json(orient="records"))
    else:
        import pandas as pd

        metrics = [c for c in frame.columns if c.startswith(("val_", "test_"))]
        columns = ["phase", "config", "status", "diagnosis", "stopped_by", "epoch", *metrics, "trial_epochs", "wall_s"]
        with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60):
            typer.echo(frame[[c for c in columns if c in frame]].to_string(index=False) if len(frame) else "no trials yet")
        typer.echo(f"compute: {report_compute(directory).summary()}")


def _write_html_report(directory: str, out: Path) -> None:
    """``tunekit report DIR --html out.html``: the search's page, from its folder alone."""
    from tunekit.recipe import SearchError
    from tunekit.recipe.report import search_page
    from tunekit.recipe.state import read_state
    from tunekit.report_page import render_html
    from tunekit.runner import storage_path

    if not out.parent.is_dir():
        raise _fail(f"--html: no folder {out.parent}; create it or write the page elsewhere")
    try:
        page = search_page(read_state(storage_path(directory)))
    except SearchError as exc:
        raise _fail(str(exc)) from None
    out.write_text(render_html(page), encoding="utf-8")
    unread = [d.phase for d in page.decisions if d.note]
    typer.echo(
        f"{len(page.decisions)} decisions → {out}" + (f" (no plot for {', '.join(unread)}: see the page)" if unread else "")
    )


#: Where ``tunekit ui`` serves MLflow's UI unless told otherwise (``mlflow ui``'s own default).
UI_PORT = 5000


@app.command()
def ui(
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    host: Annotated[str, typer.Option("--host", help="The address the UI listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The UI's port.")] = UI_PORT,
    links_only: Annotated[bool, typer.Option("--links-only", help="Print the links and start nothing.")] = False,
) -> None:
    """MLflow's UI on the runs' store, with the links that open each experiment on its runs table.

    MLflow 3's UI opens an experiment on the GenAI overview unless its "Model training" switch was
    chosen; the links printed here open the runs table (and the newest search's run, its report.html
    under Artifacts). A server store (http://…) is only linked to: it already serves its UI.
    """
    import socket

    uri = _store_to_read(tracking_uri, storage)
    served = uri.startswith(("http://", "https://"))
    base = uri if served else f"http://{host}:{port}"
    if not (served or links_only):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise _fail(
                    f"--port: {host}:{port} cannot be used ({exc.strerror}); give another, e.g. --port {port + 1}"
                ) from None
    for line in _ui_links(uri, base):
        typer.echo(line)
    if served or links_only:
        return
    typer.echo(f"serving {uri} at {base} (Ctrl-C stops)")
    sys.stdout.flush()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    os.execv(sys.executable, command)


def _ui_links(uri: str, base: str) -> list[str]:
    """One line per experiment with runs (its runs table), then the newest search's run."""
    from mlflow.tracking import MlflowClient

    from tunekit.tracking.mlflow_log import ui_url

    client = MlflowClient(uri)
    lines = []
    experiments = [e for e in client.search_experiments() if client.search_runs([e.experiment_id], max_results=1)]
    for e in experiments:
        lines.append(f"experiment {e.name}: {ui_url(base, e.experiment_id)}")
    if not experiments:
        lines.append(f"no runs in {uri} yet: {base}")
        return lines
    newest = client.search_runs(
        [e.experiment_id for e in experiments],
        filter_string="tags.`tunekit.command` = 'search'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if newest:
        run = newest[0].info
        lines.append(f"newest search {run.run_name}: {ui_url(base, run.experiment_id, run.run_id)} (Artifacts → report.html)")
    return lines


@app.command()
def presets(json_: JsonOpt = False) -> None:
    """List the bundled presets."""
    found = bundled_presets()
    if json_:
        _emit_json({name: str(path) for name, path in sorted(found.items())})
        return
    for name, path in sorted(found.items()):
        try:
            description = load_preset(path).description
        except PresetError as exc:  # a broken bundled preset is a bug; show it rather than hide it
            description = f"INVALID: {exc}"
        typer.echo(f"{name:24s} {description}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

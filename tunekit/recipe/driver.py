"""The driver: one loop over the registered phases, each one Tune experiment and one decision.

``search()`` writes the request to ``search.json`` and runs; ``resume()`` reads it back and runs
on — finished phases are skipped, the unfinished one resumes through ``Tuner.restore`` (its
searcher's state included). Ray saves each phase's experiment state after every event
(``TUNE_GLOBAL_CHECKPOINT_S=0``), so a killed driver loses no finished trial, and every decision
is a pure function of its phase's records, so a resumed search decides exactly as one that ran
straight through.
"""

from __future__ import annotations

import copy
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from tunekit.core.decisions import mean_std
from tunekit.core.judge import number
from tunekit.core.storage import join
from tunekit.presets import OneCyclePolicy, Preset, load_preset, preset_to_dict
from tunekit.recipe.errors import SearchError, SearchInterrupted
from tunekit.recipe.phase import (
    Phase,
    PhaseContext,
    PhasePlan,
    decision_metric,
    final_epochs,
    reused_note,
    search_section,
    trained_before,
)
from tunekit.recipe.phases import PHASES, REGISTRY, phase_named
from tunekit.recipe.phases.final import kept_replicate, replicates_in_order
from tunekit.recipe.plan import SearchPlan, plan_search
from tunekit.recipe.records import TrialRecord, catch_up_saved_searcher, phase_records, records_of, trial_folder
from tunekit.recipe.report import with_replicate_walls
from tunekit.recipe.results import PhaseResult, SearchResult, compute_of, final_epochs_of, wall_of_trial
from tunekit.recipe.state import STATE_FILE, SearchEnd, SearchState, TrackingState, read_state
from tunekit.storage import read_text


def search(
    preset: str | Path | Mapping[str, Any] | Preset,
    *,
    name: str | None = None,
    storage: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    phases: Iterable[str] | None = None,
    address: str | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    track: bool = True,
    shared_storage: bool = False,
    max_failures: int = 2,
    progress: bool = True,
) -> SearchResult:
    """Run the disciplined search on ``preset`` and return the chosen configuration and its evidence.

    Args:
        preset: a preset (object, mapping, YAML path or bundled name) with a ``search`` section.
        name: the search's name (its folder under ``storage``); default ``<preset>-<timestamp>``.
        storage: where trials, checkpoints and snapshots go (folder or URI; shared on a cluster).
        overrides: preset overrides (dotted paths or aliases), as ``--set`` gives them.
        phases: a subset of :data:`PHASES` (kept in the recipe's order); default all that apply
            (``batch_size`` only when the preset has a ``search.batch_size`` section).
        address: a Ray cluster to use (``auto``, ``ray://host:port``) instead of a local Ray.
        tracking_uri, experiment, track: MLflow (default: sqlite next to the runs).
        shared_storage: the (local-looking) storage path is a mount every node sees.
        max_failures: retries of a crashed trial from its last checkpoint.
        progress: print one line per trial and the summary table.

    Raises:
        SearchError: the request is invalid (unknown phase, no ``search`` section, folder taken).
        PresetError: the preset or an override is invalid.
        SearchInterrupted: Ctrl-C; :func:`resume` continues.
    """
    from tunekit.runner import (
        NameTaken,
        claim_name,
        default_name,
        name_taken,
        prepare,
        release_name,
        storage_path,
        tracking_uri_for,
    )

    loaded = preset if isinstance(preset, Preset) else load_preset(preset)
    if overrides:
        loaded = load_preset(preset_to_dict(loaded), overrides)
    chosen = plan_phases(loaded, phases)
    root = storage_path(storage, writing=True)
    if name is not None and (why := name_taken(root, name, STATE_FILE)):  # said before the probe; claimed after it
        raise SearchError(f"--name {name}: {why}")
    probed = prepare(loaded, address)  # the user's components, tried on a worker before anything is written
    plan = plan_search(loaded, chosen, probed.train_samples if probed else None)
    loaded = plan.preset  # every phase sized to the data, in optimizer steps and evaluation points
    plan_phases(loaded, chosen)  # the sized phases must still fit (a snapshot's continuations in the schedule)
    try:  # the folder is this search's from here: another search started alongside gets its own
        name = claim_name(root, name, default_name(loaded.name), taken_by=STATE_FILE)
    except NameTaken as exc:
        raise SearchError(str(exc)) from None
    directory = join(root, name)
    try:
        state = SearchState(name, directory, root, preset_to_dict(loaded), chosen, shared_storage, max_failures)
        state.train_samples = plan.train_samples
        if track:
            state.tracking = TrackingState(tracking_uri_for(tracking_uri, root), experiment or loaded.name)
        return Driver(state, address=address, progress=progress, plan=plan).run()
    except BaseException:
        if read_text(join(directory, STATE_FILE)) is None:  # refused before it wrote anything: the name is free again
            release_name(root, name)
        raise


def resume(directory: str, *, address: str | None = None, progress: bool = True) -> SearchResult:
    """Continue a search after Ctrl-C or a killed driver: finished phases are not rerun, the
    unfinished one resumes through ``Tuner.restore``; a finished search just returns its result."""
    from tunekit.runner import storage_path

    return Driver(read_state(storage_path(directory)), address=address, progress=progress).run()


def plan_phases(preset: Preset, phases: Iterable[str] | None) -> list[str]:
    """The phases a search of ``preset`` runs, in the recipe's order; bad requests raise :class:`SearchError`."""
    search_section(preset)
    if phases is None:
        wanted = [p.name for p in REGISTRY if p.applies(preset)]
    else:
        wanted = [p.strip() for p in phases if p.strip()]
        unknown = [p for p in wanted if p not in PHASES]
        if unknown:
            raise SearchError(f"--phases: unknown phase {', '.join(unknown)}; choose from {', '.join(PHASES)}")
        if not wanted:
            raise SearchError(f"--phases: empty; choose from {', '.join(PHASES)}")
    for phase in REGISTRY:
        if phase.name in wanted:
            phase.check(preset)
    if "range_test" not in wanted and not isinstance(preset.policy, OneCyclePolicy):
        raise SearchError(
            f"--phases: without range_test the preset's own policy must be one_cycle (it is {preset.policy.name}); "
            "include range_test or give the preset a one_cycle policy"
        )
    return [p for p in PHASES if p in wanted]


class Driver:
    """Runs the phases of one search; everything it knows lives in its :class:`SearchState`."""

    def __init__(self, state: SearchState, address: str | None, progress: bool, plan: SearchPlan | None = None) -> None:
        self.state = state
        self.address = address
        self.progress = progress
        self.plan = plan  # the sizing of a new search (with what it changed); a resumed one is sized again
        self.log: Any = None  # the search's MLflow record (tunekit.tracking.search_log.SearchLog)

    def _echo(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stdout, flush=True)

    def _tag(self, index: int, phase: str) -> str:
        return f"[{index}/{len(self.state.phases)} {phase}]"

    # -- the loop

    def run(self) -> SearchResult:
        from tunekit.runner import ensure_ray, runtime_env_of

        if self.state.result is not None:
            return self._result()
        self.state.check_resumable()
        ensure_ray(self.address, runtime_env=runtime_env_of(load_preset(self.state.preset)))
        self._check_storage()  # before anything is written: a refused search leaves nothing behind
        self._start_tracking()
        self.state.save()
        self._echo(f"search {self.state.name}: phases {', '.join(self.state.phases)} → {self.state.directory}")
        if self.plan is None and self.state.train_samples:
            self.plan = plan_search(load_preset(self.state.preset), self.state.phases, self.state.train_samples)
        if self.plan is not None:
            self._echo(self.plan.table())
        for index, name in enumerate(self.state.phases, start=1):
            done = self.state.done.get(name)
            if done is not None:
                self._echo(f"{self._tag(index, name)} already done: {done.reason}")
                continue
            result = self._run_phase(phase_named(name), index)
            self.state.done[name] = result
            self.state.save()
            self._echo(f"{self._tag(index, name)} decided: {result.reason}")
        return self._finish()

    def _run_phase(self, phase: Phase, index: int) -> PhaseResult:
        """Plan, fit and decide one phase; its judge is built once and serves the searcher and the decision."""
        started = time.perf_counter()
        preset = self.state.preset_now()
        context = PhaseContext(
            directory=self.state.directory,
            judge=phase.judge(preset),
            earlier={name: phase_named(name).typed(result) for name, result in self.state.done.items()},
            shared_storage=self.state.shared_storage,
            trained=trained_before(phase, self.state.directory, self.state.done),
            train_samples=self.state.train_samples,
        )
        plan = phase.plan(preset, context)
        records = self._fit(phase.name, index, plan)
        reused = plan.reused  # trained by an earlier phase: judged here, counted there
        result, figure = phase.decide(preset, records + reused, context)
        result.reason += reused_note(reused)
        self._record_decision(result, figure)
        result.trials = len(records)
        result.trial_epochs = sum(r.trial_epochs for r in records)
        result.wall_s = time.perf_counter() - started
        result.trial_wall_s = [wall_of_trial(r.rows) for r in records]
        return result

    def _record_decision(self, result: PhaseResult, figure: Any) -> None:
        if self.log is not None:
            self.log.decide(result.phase, result.values, result.reason, figure)
            result.plot = self.log.decisions[-1].plot
        elif figure is not None:
            from tunekit.plots import close

            close(figure)

    def _check_storage(self) -> None:
        """On a multi-node cluster, checkpoints and snapshots must be where every node can read them."""
        from tunekit.core.storage import check_shared_storage
        from tunekit.runner import alive_nodes

        try:
            check_shared_storage(self.state.storage, alive_nodes(), self.state.shared_storage)
        except ValueError as exc:
            raise SearchError(f"--storage: {exc}") from None

    def _start_tracking(self) -> None:
        tracking = self.state.tracking
        if tracking is None:
            return
        from tunekit.runner import _local_root
        from tunekit.tracking.search_log import Decision, SearchLog

        self.log = SearchLog(
            self.state.name,
            load_preset(self.state.preset),
            tracking.uri,
            tracking.experiment,
            Path(_local_root(self.state.storage)) / self.state.name,
            phases=list(self.state.phases),
            parent_run_id=tracking.parent_run_id or "",
            storage=self.state.storage,
        )
        if not tracking.parent_run_id:
            tracking.parent_run_id = self.log.parent_run_id
            self.state.save()
        self.log.decisions = [Decision(p.phase, p.values, p.reason, p.plot) for p in self.state.done.values()]

    # -- one phase as one Tune experiment

    def _fit(self, phase: str, index: int, built: PhasePlan) -> list[TrialRecord]:
        """Run (or resume) ``phase``'s experiment of ``built`` and return its trials."""
        from ray import tune

        from tunekit.recipe.progress import quiet_benign_sync_races
        from tunekit.storage import tune_filesystem
        from tunekit.trainable import trainable

        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")  # experiment state after every event: no finished trial lost
        quiet_benign_sync_races()
        path = join(self.state.directory, phase)
        before = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
        resume = tune.Tuner.can_restore(path)
        if resume:
            self._echo(f"{self._tag(index, phase)} resuming the unfinished phase from {path}")
            if hasattr(built.searcher, "awaited"):  # a tunekit searcher: a kill between two saved files is caught up
                for note in catch_up_saved_searcher(path, copy.deepcopy(built.searcher)):
                    self._echo(f"{self._tag(index, phase)} {note}")
                resume = tune.Tuner.can_restore(path)  # not if a saved state cut short was set aside
        if resume:
            tuner = tune.Tuner.restore(
                path,
                trainable=trainable(built.preset),
                resume_unfinished=True,
                resume_errored=False,
                storage_filesystem=tune_filesystem(path),
            )
        else:
            tuner = self._tuner(phase, index, built)
        grid = tuner.fit()
        if before is not None:
            interrupted = signal.getsignal(signal.SIGINT) is before  # Ray's handler put the old one back on Ctrl-C
            signal.signal(signal.SIGINT, before)
            if interrupted:
                raise SearchInterrupted(self.state.directory, phase)
        records = records_of(phase, grid, path)
        if not records:
            raise RuntimeError(f"phase {phase}: no trial ran (see the logs under {path})")
        return records

    def _tuner(self, phase: str, index: int, plan: Any) -> Any:
        from ray import tune

        from tunekit.data_parallel import concurrent_trials
        from tunekit.recipe.progress import Progress
        from tunekit.retry import result_loggers
        from tunekit.searchers import limited
        from tunekit.storage import tune_filesystem
        from tunekit.trainable import trainable

        resources = plan.preset.resources
        at_once = concurrent_trials(resources.workers, resources.cpu, resources.gpu)  # data-parallel: what the nodes hold
        callbacks: list[Any] = []
        if plan.scheduler is not None:
            callbacks.append(plan.scheduler.recorder())  # before the loggers: they read its stamps
        if self.log is not None:
            callbacks.append(self.log.callback(phase))
        progress = Progress(phase, index, len(self.state.phases), self.progress, storage=self.state.directory)
        progress.reused(plan.reused)
        callbacks += [progress, *result_loggers()]  # a retry keeps the epochs reported before its crash
        return tune.Tuner(
            trainable(plan.preset),
            tune_config=tune.TuneConfig(
                search_alg=limited(plan.searcher, at_once),
                scheduler=plan.scheduler,
                num_samples=-1,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=phase,
                storage_path=self.state.directory,
                storage_filesystem=tune_filesystem(self.state.directory),  # a killed driver leaves no file cut short
                callbacks=callbacks,
                failure_config=tune.FailureConfig(max_failures=self.state.max_failures),
                verbose=0,
            ),
        )

    # -- the end

    def _finish(self) -> SearchResult:
        preset = self.state.preset_now()
        records: list[TrialRecord] = []
        if "final" in self.state.done:
            preset = load_preset(preset_to_dict(preset), {"epochs": final_epochs(preset)})
            records = replicates_in_order(phase_records(self.state.directory, "final"))
        metric, mode = decision_metric(preset, "test")
        sign = -1.0 if mode == "max" else 1.0
        values = [number(r.last.get(metric)) for r in records]
        best = kept_replicate(records, metric, sign)
        mean, std = mean_std(values) if values else (math.nan, math.nan)
        checkpoint = best.checkpoint if best else None
        end = SearchEnd(preset_to_dict(preset), mean, std, values, checkpoint, time.strftime("%Y-%m-%dT%H:%M:%S"), metric)
        if self.log is not None:  # before search.json says "finished": a failed upload is redone by resume
            self._finish_tracking(preset, best, metric, mean, std, end)
        self.state.result = end
        self.state.save()
        result = self._result()
        self._echo("")
        self._echo(result.table())
        self._echo(f"chosen configuration: {self.state.directory}/{STATE_FILE} (and `tunekit best` from MLflow)")
        return result

    def _finish_tracking(
        self, preset: Preset, best: TrialRecord | None, metric: str, mean: float, std: float, end: SearchEnd
    ) -> None:
        from tunekit.recipe.report import search_page
        from tunekit.tracking.queries import run_of_trial
        from tunekit.tracking.search_log import final_model

        tracking = self.state.tracking
        if tracking is None or tracking.parent_run_id is None:  # _start_tracking set both
            return
        run = run_of_trial(tracking.uri, tracking.parent_run_id, best.trial_id) if best else None
        state, meta = final_model(best.checkpoint) if best and best.checkpoint else (None, None)
        metrics = {metric: mean, f"{metric}_std": std} if math.isfinite(mean) else {}
        if best is not None:
            for key in ("test_loss", "val_loss"):
                metrics.setdefault(key, number(best.last.get(key)))
        metrics["trial_epochs"] = sum(p.trial_epochs for p in self.state.done.values())
        compute = compute_of(self.state.done, final_epochs_of(preset))
        page = search_page(replace(self.state, result=end))  # the page `tunekit report --html` draws from the folder
        self.log.finish(
            run,
            preset,
            metrics,
            model_state=state,
            model_meta=meta,
            compute=compute.metrics(),
            compute_summary=compute.summary(),
            page=page,
        )

    def _result(self) -> SearchResult:
        end = self.state.result
        assert end is not None  # _finish wrote it
        tracking = self.state.tracking
        return SearchResult(
            name=self.state.name,
            directory=self.state.directory,
            preset=load_preset(end.preset),
            phases=with_replicate_walls(self.state.done, self.state.directory),
            accuracy_mean=number(end.accuracy_mean),
            accuracy_std=number(end.accuracy_std),
            accuracies=[float(a) for a in end.accuracies],
            best_checkpoint=end.best_checkpoint,
            run_id=tracking.parent_run_id if tracking else None,
            tracking_uri=tracking.uri if tracking else None,
            metric=end.metric,
        )


def trial_dirname(trial: Any) -> str:
    """``trial_<id>``: short folder names (Ray's default spells out the whole nested preset)."""
    return trial_folder(trial.trial_id)

"""A search in MLflow: the parent run, its phases' trial runs, each decision with its plot, the best.

The recipe (``tunekit.search``) and the single-trial commands drive this; a person reads the
result in the MLflow UI: the parent carries the preset as ``preset.*`` params and the decisions as
plain params (``max_lr``, ``min_lr``, ``momentum_max``, ``weight_decay``, ``batch_size``), the ``best_*`` metrics, the plots under
``plots/``, ``best_config.yaml`` (a preset ready to reuse), ``report.html`` (one page: the chosen
configuration, each decision with its reason, ranked evidence and plot inline, the result and the
compute) and ``report.md`` (the same for terminals and diffs); the best trial run is tagged
``tunekit.best = "true"``.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunekit.core.storage import located
from tunekit.presets import Preset, preset_to_dict, preset_to_yaml
from tunekit.report_page import BEST_CONFIG, DecisionView, ReportPage, render_html, render_markdown
from tunekit.tracking.mlflow_log import FALLBACK_FILE, MLflowTrialLogger, Tracker, check_tracking_uri

#: What ``tunekit best`` reads and the UI shows (and ``BEST_CONFIG``, the chosen preset).
REPORT = "report.md"
REPORT_HTML = "report.html"
MODEL_STATE = "model/state_dict.pt"
MODEL_META = "model/meta.json"  # num_classes and input_shape, to rebuild the architecture


@dataclass
class Decision:
    phase: str
    values: dict[str, float]
    reason: str
    plot: str | None = None  # artifact path of its figure
    image: bytes | None = field(default=None, repr=False)  # the figure as PNG (this process's decisions only)


@dataclass
class SearchLog:
    """One search's MLflow record. Create it before any trial runs: it checks the store first.

    Args:
        name: the search's name (the parent run's name).
        preset: the preset searched (logged as the parent's params).
        tracking_uri, experiment: where to log.
        folder: a local folder for the fallback file and the files uploaded as artifacts.
        phases: the phases this search will run (a tag on the parent).
        parent_run_id: an existing parent run to log into (a resumed search); default a new one.
        storage: where the runs live (folder or URI): the trial and checkpoint paths Ray reports are
            recorded as locations there.
    """

    name: str
    preset: Preset
    tracking_uri: str
    experiment: str
    folder: Path
    phases: list[str] = field(default_factory=list)
    command: str = "search"
    decisions: list[Decision] = field(default_factory=list)
    parent_run_id: str = ""
    storage: str = ""

    def __post_init__(self) -> None:
        check_tracking_uri(self.tracking_uri)
        self.folder = Path(self.folder)
        self.tracker = Tracker(self.tracking_uri, self.experiment, self.folder / FALLBACK_FILE)
        if self.parent_run_id:  # a resumed search logs on into its parent run
            return
        self.parent_run_id = self.tracker.start_run(
            self.name,
            # the preset under "preset.": the decisions (max_lr, weight_decay, …) own the plain names
            params={"preset": preset_to_dict(self.preset)},
            tags={"tunekit.command": self.command, "tunekit.phases": ",".join(self.phases)},
        )

    def callback(self, phase: str) -> MLflowTrialLogger:
        """The Tune callback that logs ``phase``'s trials as nested runs of this search."""
        return MLflowTrialLogger(
            self.tracking_uri,
            self.experiment,
            self.parent_run_id,
            phase=phase,
            fallback=self.tracker.fallback,
            storage=self.storage,
        )

    def decide(self, phase: str, values: dict[str, Any], reason: str, figure: Any = None) -> None:
        """Record a phase's decision on the parent: values as params (numbers as metrics too), the reason as a tag,
        the figure as a PNG."""
        plot, image = None, None
        if figure is not None:
            plot = f"plots/{phase}.png"
            image = self._upload_figure(figure, plot)
        self.tracker.log(
            self.parent_run_id,
            metrics={f"decision_{k}": float(v) for k, v in values.items() if isinstance(v, int | float)},
            params={k: str(v) for k, v in values.items()},
            tags={f"tunekit.decision.{phase}": reason[:5000]},
        )
        self.decisions.append(Decision(phase, dict(values), reason, plot, image))

    def figure(self, figure: Any, artifact: str) -> None:
        """Attach any figure to the parent run (e.g. the final replicates)."""
        self._upload_figure(figure, artifact)

    def finish(
        self,
        best_run_id: str | None,
        best_preset: Preset,
        metrics: dict[str, float],
        model_state: dict[str, Any] | None = None,
        status: str = "FINISHED",
        model_meta: dict[str, Any] | None = None,
        compute: dict[str, float] | None = None,
        compute_summary: str = "",
        page: ReportPage | None = None,
    ) -> None:
        """Tag the best trial run, put ``best_*`` metrics, the chosen preset, the model and the report on the parent.

        ``compute`` (``search_trial_epochs``, ``search_wall_s``, ``search_cost_in_final_trainings``, …)
        goes on the parent as metrics under its own names; ``compute_summary`` is its line in the report.
        ``page`` is the report (a search's, built from its folder); default, one from this log's decisions.
        """
        if best_run_id:
            self.tracker.log(best_run_id, tags={"tunekit.best": "true"})
        self.tracker.log(
            self.parent_run_id,
            metrics={f"best_{k}": float(v) for k, v in metrics.items()} | {k: float(v) for k, v in (compute or {}).items()},
            tags={"tunekit.best_run_id": best_run_id or ""},
        )
        self._upload_text(preset_to_yaml(best_preset), BEST_CONFIG)
        if model_state is not None:
            import torch

            path = self._local(MODEL_STATE)
            torch.save(model_state, path)
            self.tracker.artifact(self.parent_run_id, path, str(Path(MODEL_STATE).parent))
            self._upload_text(json.dumps(model_meta or {}), MODEL_META)
        page = page or self.page(metrics, compute, compute_summary)
        self._upload_text(render_markdown(page), REPORT)
        self._upload_text(render_html(page), REPORT_HTML)
        self.tracker.finish(self.parent_run_id, status)
        self._tell_what_waits()

    def _tell_what_waits(self) -> None:
        """At the end: what could not reach the store yet, and how to push it once the store is back."""
        waiting = self.tracker.pending()
        if waiting:
            warnings.warn(
                f"{waiting} MLflow operations of {self.name} wait in {self.tracker.fallback}: once {self.tracking_uri} "
                f"answers, push them with: tunekit replay {self.folder} --tracking-uri {self.tracking_uri}",
                RuntimeWarning,
                stacklevel=3,
            )

    def page(self, metrics: dict[str, float], compute: dict[str, float] | None = None, compute_summary: str = "") -> ReportPage:
        """The report page of this log's decisions (their plots as drawn in this process), result and compute."""
        return ReportPage(
            self.name,
            self.preset.name,
            list(self.phases),
            decisions=[DecisionView(d.phase, d.values, d.reason, image=d.image, plot=d.plot) for d in self.decisions],
            metrics=metrics,
            compute_summary=compute_summary,
            compute=compute or {},
        )

    # ------------------------------------------------------------------ files

    def _local(self, artifact: str) -> Path:
        path = self.folder / "artifacts" / f"{time.strftime('%Y%m%d-%H%M%S')}-{self.parent_run_id[:8]}" / artifact
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _upload_figure(self, figure: Any, artifact: str) -> bytes:
        """Save, upload and close ``figure``; returns its PNG."""
        from tunekit.plots import close

        path = self._local(artifact)
        figure.savefig(path, dpi=100)
        close(figure)
        self.tracker.artifact(self.parent_run_id, path, str(Path(artifact).parent) if "/" in artifact else None)
        return path.read_bytes()

    def _upload_text(self, text: str, artifact: str) -> None:
        path = self._local(artifact)
        path.write_text(text)
        self.tracker.artifact(self.parent_run_id, path, str(Path(artifact).parent) if "/" in artifact else None)


def record_trial(log: SearchLog, preset: Preset, result: Any, trial_run: str | None) -> None:
    """Record a single-trial run (``tunekit train`` / ``range-test``) as a search: its final metrics,
    its validation-loss plot and model, or for a range test the bounds it reads."""
    metrics = {
        k: float(v)
        for k, v in (result.metrics or {}).items()
        if (k == "epoch" or k.startswith(("val_", "test_"))) and isinstance(v, int | float) and math.isfinite(v)
    }
    chance = _chance(result.metrics_dataframe)
    history = result.metrics_dataframe
    if preset.policy.name == "range_test" and history is not None and len(history):
        from tunekit.core.lr_range import RangeTestError, analyse_range_test
        from tunekit.plots import range_test_figure

        lrs, losses = history["lr"].tolist(), history["val_loss"].tolist()
        try:
            found = analyse_range_test(lrs, losses, chance_loss=chance)
            why = f"max_lr = {found.max_lr:.3g}: the largest LR before the validation loss turned up"
            if found.turn_up_lr is not None:
                why += f" (at {found.turn_up_lr:.3g})"
            log.decide(
                "range_test",
                {"max_lr": found.max_lr, "min_lr": found.min_lr},
                why + "; " + "; ".join(found.notes),
                range_test_figure({"validation loss": (lrs, losses)}, found.max_lr, found.min_lr),
            )
        except RangeTestError as exc:
            log.decide("range_test", {}, f"no bounds: {exc}")
    if preset.policy.name != "range_test" and history is not None and len(history):
        from tunekit.core.curves import diagnose
        from tunekit.plots import curves_figure

        epochs, losses = history["epoch"].tolist(), history["val_loss"].tolist()
        shape = diagnose(epochs, losses, chance_loss=chance).shape.value
        log.figure(curves_figure({"trial": (epochs, losses, shape)}, f"validation loss ({shape})"), "plots/val_loss.png")
    best_run = None if preset.policy.name == "range_test" else trial_run
    checkpoint = located(log.storage, result.checkpoint.path) if best_run and result.checkpoint is not None else None
    model_state, meta = final_model(checkpoint) if checkpoint else (None, None)
    log.finish(
        best_run, preset, metrics, status="FAILED" if result.error else "FINISHED", model_state=model_state, model_meta=meta
    )


def _chance(history: Any) -> float | None:
    """The chance-level loss a run reported (cross-entropy classification only), else None."""
    if history is None or "chance_loss" not in history or not len(history):
        return None
    value = float(history["chance_loss"].iloc[-1])
    return value if math.isfinite(value) else None


def final_model(checkpoint: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The trained weights in a trial checkpoint folder (a local folder or a URI), and what rebuilding the model needs."""
    from tunekit.storage import local_copy
    from tunekit.trainable import load_state

    with local_copy(checkpoint) as folder:
        state = load_state(folder)
    meta = {"num_classes": state.get("num_classes"), "input_shape": state.get("input_shape"), "epoch": state["epoch"]}
    return state["model"], meta

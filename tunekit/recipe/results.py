"""What a search hands back: each phase's decision with its evidence and cost, and the final accuracy."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tunekit.presets import Preset, preset_to_dict
from tunekit.report_page import value_text


@dataclass
class PhaseResult:
    """One finished phase: what it decided (as preset overrides), why, and what it cost."""

    phase: str
    overrides: dict[str, Any]  # applied to the preset for every later phase
    values: dict[str, Any]  # the decided values (the fields of the phase's typed decision), for tables and MLflow
    reason: str
    evidence: dict[str, float] = field(default_factory=dict)  # candidate → its score
    trials: int = 0
    trial_epochs: float = 0.0
    wall_s: float = 0.0  # the phase's wall time on the driver (its trials ran side by side)
    plot: str | None = None  # MLflow artifact path of its figure
    # each trial's own wall time (Ray's time_total_s), in record order; [] in a search.json written before it was kept
    trial_wall_s: list[float] = field(default_factory=list)
    # candidate → the error that ended it, one line ("RuntimeError: …"): failed, which is not diverged
    failed: dict[str, str] = field(default_factory=dict)


#: The phase whose replicates are the result; every other phase is the search.
FINAL = "final"


@dataclass(frozen=True)
class Compute:
    """What a search cost, the search (every phase but ``final``) apart from the final replicates.

    Trial-epochs add up every trial's epochs; wall times are the driver's, phase after phase
    (trials inside a phase run side by side). Both are also given in *final trainings*: the
    trial-epochs over one final training's epochs, the wall time over the median wall time of one
    final replicate (None when no final replicate's wall time is known: no final phase, or a
    ``search.json`` written before it was kept).
    """

    search_trials: int
    search_trial_epochs: float
    search_wall_s: float
    final_replicates: int
    final_trial_epochs: float
    final_wall_s: float | None  # the final phase's wall time (None: it did not run)
    final_epochs: float | None  # one final training's epochs (search.final.epochs or train.epochs)
    final_replicate_wall_s: float | None  # the median wall time of one final replicate

    @property
    def search_cost_in_final_trainings(self) -> float | None:
        """The search's trial-epochs as a number of final trainings."""
        return self.search_trial_epochs / self.final_epochs if self.final_epochs else None

    @property
    def search_wall_in_final_trainings(self) -> float | None:
        """The search's wall time as a number of final trainings (one replicate's median wall time)."""
        return self.search_wall_s / self.final_replicate_wall_s if self.final_replicate_wall_s else None

    def to_dict(self) -> dict[str, float | int | None]:
        """Flat keys, as ``tunekit search --json`` prints them (None: unknown)."""
        return {
            "search_trials": self.search_trials,
            "search_trial_epochs": self.search_trial_epochs,
            "search_wall_s": self.search_wall_s,
            "final_replicates": self.final_replicates,
            "final_trial_epochs": self.final_trial_epochs,
            "final_wall_s": self.final_wall_s,
            "final_epochs": self.final_epochs,
            "final_replicate_wall_s": self.final_replicate_wall_s,
            "search_cost_in_final_trainings": self.search_cost_in_final_trainings,
            "search_wall_in_final_trainings": self.search_wall_in_final_trainings,
        }

    def metrics(self) -> dict[str, float]:
        """The known numbers, as MLflow metrics (unknown ones left out)."""
        return {k: float(v) for k, v in self.to_dict().items() if v is not None and math.isfinite(v)}

    def summary(self) -> str:
        """``search 48 trial-epochs (1.6 final trainings), 1 min 5 s (2.7 final trainings of wall time);
        final 3 × 30 epochs (90 trial-epochs), 1 min 12 s (median replicate 24 s)``."""
        cost, wall = self.search_cost_in_final_trainings, self.search_wall_in_final_trainings
        if not self.search_trials:
            text = "no search phase"
        else:
            text = f"search {self.search_trial_epochs:.0f} trial-epochs"
            if cost is not None:
                text += f" ({_trainings(cost)})"
            text += f", {duration(self.search_wall_s)}"
            if wall is not None:
                text += f" ({_trainings(wall)} of wall time)"
            elif self.final_replicates:
                text += " (one final replicate's wall time not recorded)"
        if not self.final_replicates:
            epochs = f"{self.final_epochs:g} epochs" if self.final_epochs else "unknown length"
            return f"{text}; no final replicates (one final training: {epochs})"
        epochs = f"{self.final_epochs:g}" if self.final_epochs else "?"
        text += f"; final {self.final_replicates} × {epochs} epochs ({self.final_trial_epochs:.0f} trial-epochs)"
        if self.final_wall_s is not None:
            text += f", {duration(self.final_wall_s)}"
        if self.final_replicate_wall_s is not None:
            text += f" (median replicate {duration(self.final_replicate_wall_s)})"
        return text


def compute_of(phases: Mapping[str, PhaseResult], final_epochs: float | None) -> Compute:
    """The compute of a search from its finished phases; ``final_epochs`` is one final training's
    epochs (see :func:`final_epochs_of`)."""
    search = [p for name, p in phases.items() if name != FINAL]
    final = phases.get(FINAL)
    walls = [w for w in (final.trial_wall_s if final else []) if w is not None and math.isfinite(w) and w > 0]
    return Compute(
        search_trials=sum(p.trials for p in search),
        search_trial_epochs=float(sum(p.trial_epochs for p in search)),
        search_wall_s=float(sum(p.wall_s for p in search)),
        final_replicates=final.trials if final else 0,
        final_trial_epochs=float(final.trial_epochs) if final else 0.0,
        final_wall_s=float(final.wall_s) if final else None,
        final_epochs=float(final_epochs) if final_epochs else None,
        final_replicate_wall_s=statistics.median(walls) if walls else None,
    )


def final_epochs_of(preset: Preset) -> float | None:
    """One final training's epochs: ``search.final.epochs``, else ``train.epochs``."""
    if preset.search is not None and preset.search.final.epochs:
        return float(preset.search.final.epochs)
    return float(preset.train.epochs) if preset.train.epochs else None


def wall_of_trial(rows: Sequence[Mapping[str, Any]]) -> float:
    """One trial's wall time from its results: Ray's ``time_total_s`` (setup included, kept across
    restores), else tunekit's ``train_time_s``; NaN when neither was reported."""
    for key in ("time_total_s", "train_time_s"):
        seen = [float(r[key]) for r in rows if isinstance(r.get(key), int | float) and math.isfinite(r[key])]
        if seen:
            return max(seen)
    return math.nan


def duration(seconds: float | None) -> str:
    """``48 s``, ``1 min 5 s``, ``2 h 3 min``; ``unknown`` for None or NaN."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _trainings(ratio: float) -> str:
    shown = f"{ratio:.2g}" if ratio < 10 else f"{ratio:.0f}"
    return f"{shown} final training{'' if shown == '1' else 's'}"


@dataclass
class SearchResult:
    """A finished search: the chosen preset, each phase's decision, the final test metric ± std.

    ``metric`` is what the final replicates report on the test split (``test_acc``, ``test_r2``, or
    ``test_loss`` without a metric); ``accuracy_mean``/``accuracy_std`` hold its mean and std
    whatever it is (the names are kept from when it was always the accuracy).
    """

    name: str
    directory: str
    preset: Preset
    phases: dict[str, PhaseResult]
    accuracy_mean: float = math.nan
    accuracy_std: float = math.nan
    accuracies: list[float] = field(default_factory=list)
    best_checkpoint: str | None = None
    run_id: str | None = None
    tracking_uri: str | None = None
    metric: str = "test_acc"

    @property
    def metric_mean(self) -> float:
        return self.accuracy_mean

    @property
    def metric_std(self) -> float:
        return self.accuracy_std

    @property
    def trial_epochs(self) -> float:
        """Compute spent by every phase (the final replicates included), in trial-epochs."""
        return sum(p.trial_epochs for p in self.phases.values())

    @property
    def compute(self) -> Compute:
        """The search's compute apart from the final replicates', and both in final trainings."""
        return compute_of(self.phases, final_epochs_of(self.preset))

    def to_dict(self) -> dict[str, Any]:
        accuracy = self.metric == "test_acc"
        return {
            "name": self.name,
            "directory": self.directory,
            "metric_name": self.metric.removeprefix("test_"),
            "metric_split": "test",
            "metric_mean": self.metric_mean,
            "metric_std": self.metric_std,
            **({"accuracy_mean": self.accuracy_mean, "accuracy_std": self.accuracy_std} if accuracy else {}),
            "metric_values" if not accuracy else "accuracies": self.accuracies,
            "trial_epochs": self.trial_epochs,
            **self.compute.to_dict(),
            "best_checkpoint": self.best_checkpoint,
            "mlflow_run_id": self.run_id,
            "tracking_uri": self.tracking_uri,
            "phases": {k: asdict(v) for k, v in self.phases.items()},
            "preset": preset_to_dict(self.preset),
        }

    def table(self) -> str:
        """The summary a terminal shows at the end: chosen values, evidence and compute per phase."""
        rows = [("phase", "decision", "trials", "trial-epochs", "wall")]
        for p in self.phases.values():
            decided = ", ".join(f"{k} {value_text(v)}" for k, v in p.values.items())
            rows.append((p.phase, decided, str(p.trials), f"{p.trial_epochs:.1f}", f"{p.wall_s:.0f} s"))
        lines = text_table(rows)
        lines.append("")
        lines += [f"{p.phase}: {p.reason}" for p in self.phases.values()]
        lines.append("")
        if math.isfinite(self.accuracy_mean):
            from tunekit.recipe.phases.final import describe

            lines.append(
                f"final {describe(self.metric, self.accuracy_mean, self.accuracy_std)} on the test split "
                f"({len(self.accuracies)} replicates; every decision read the validation split)"
            )
        lines.append(f"compute: {self.compute.summary()}")
        return "\n".join(lines)


def text_table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Rows as aligned text columns, the first row a header underlined with dashes."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines

"""What a search hands back: each phase's decision with its evidence and cost, and the final accuracy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tunekit.presets import Preset, preset_to_dict


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
    wall_s: float = 0.0
    plot: str | None = None  # MLflow artifact path of its figure


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
        """Compute spent by every phase, in trial-epochs."""
        return sum(p.trial_epochs for p in self.phases.values())

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
            decided = ", ".join(f"{k} {_fmt(v)}" for k, v in p.values.items())
            rows.append((p.phase, decided, str(p.trials), f"{p.trial_epochs:.1f}", f"{p.wall_s:.0f} s"))
        lines = text_table(rows)
        lines.append("")
        lines += [f"{p.phase}: {p.reason}" for p in self.phases.values()]
        if math.isfinite(self.accuracy_mean):
            lines.append("")
            from tunekit.recipe.phases.final import describe

            lines.append(
                f"final {describe(self.metric, self.accuracy_mean, self.accuracy_std)} on the test split "
                f"({len(self.accuracies)} replicates; every decision read the validation split); "
                f"search compute {self.trial_epochs:.0f} trial-epochs"
            )
        return "\n".join(lines)


def text_table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Rows as aligned text columns, the first row a header underlined with dashes."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _fmt(value: float) -> str:
    if isinstance(value, float) and value and (abs(value) < 1e-2 or abs(value) >= 1e4):
        return f"{value:.2g}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)

"""A search's plan, before anything runs: each phase sized to the data, and what it will cost.

``plan_search`` counts the training samples, asks every phase to size itself
(:meth:`~tunekit.recipe.phase.Phase.size`, in optimizer steps and evaluation points) and returns
the preset with the sized ``search.*`` values filled in — what the trials then run — with a table a
person can check first (``tunekit search --dry-run`` prints it and stops).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from tunekit.core.decisions import range_test_sweep
from tunekit.core.sizing import steps_per_epoch
from tunekit.presets import Preset, load_preset, preset_to_dict
from tunekit.recipe.phase import PhaseSize
from tunekit.recipe.phases import phase_named
from tunekit.recipe.results import text_table


@dataclass
class SearchPlan:
    """The sized preset, the phases it runs and each one's size on ``train_samples`` samples."""

    preset: Preset
    phases: list[str]
    train_samples: int
    sizes: dict[str, PhaseSize]

    @property
    def trial_epochs(self) -> float:
        """The compute the plan may spend, in trial-epochs (phases sized by wall time left out)."""
        return sum(s.trial_epochs for s in self.sizes.values() if math.isfinite(s.trial_epochs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "train_samples": self.train_samples,
            "batch_size": self.preset.train.batch_size,
            "steps_per_epoch": steps_per_epoch(self.train_samples, self.preset.train.batch_size),
            "trial_epochs_at_most": self.trial_epochs,
            "phases": {name: asdict(size) for name, size in self.sizes.items()},
        }

    def table(self) -> str:
        """The plan a terminal shows before the first trial: per phase, trials, their length and evaluations."""
        batch = self.preset.train.batch_size
        head = (
            f"plan: {self.train_samples} training samples, batch {batch} "
            f"({steps_per_epoch(self.train_samples, batch)} optimizer steps per epoch)"
        )
        rows = [("phase", "trials", "epochs/trial", "steps/trial", "evaluations/trial", "trial-epochs")]
        for name, s in self.sizes.items():
            rows.append((name, s.trials, _cell(s.epochs), _cell(s.steps), _cell(s.points), _cell(s.trial_epochs, "≤ ")))
        lines = [head, *text_table(rows)]
        lines += [f"{name}: {s.note}" for name, s in self.sizes.items() if s.note]
        by_time = " (batch_size: by wall time)" if "batch_size" in self.sizes else ""
        lines.append(f"at most {self.trial_epochs:.0f} trial-epochs{by_time}")
        return "\n".join(lines)


def _cell(value: float, prefix: str = "") -> str:
    if not math.isfinite(value) or value == 0:
        return "by time" if not math.isfinite(value) else "-"
    return prefix + (f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}")


def plan_search(preset: Preset, phases: Iterable[str], train_samples: int | None = None) -> SearchPlan:
    """Size every phase of ``phases`` to the data (counted unless given) and fill the sizes into the preset."""
    from tunekit.train.data import train_samples as count

    samples = train_samples if train_samples is not None else count(preset.dataset, preset.train.seed)
    names = list(phases)
    overrides: dict[str, Any] = {}
    if "range_test" in names and preset.search is not None:  # how many range tests run: does weight_decay follow?
        later = names[names.index("range_test") + 1 :]
        overrides["search.range_test.sweep"] = range_test_sweep(preset.search.range_test.sweep, "weight_decay" in later)
        preset = load_preset(preset_to_dict(preset), overrides)
    sizes = {name: phase_named(name).size(preset, samples) for name in names}
    for size in sizes.values():
        overrides.update(size.overrides)
    sized = load_preset(preset_to_dict(preset), overrides) if overrides else preset
    return SearchPlan(sized, names, samples, sizes)

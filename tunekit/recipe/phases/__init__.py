"""The phases of the disciplined search, in the recipe's order (Smith 2018, Sec. 5).

Adding a phase is one module with a :class:`~tunekit.recipe.phase.Phase` subclass and one line
in :data:`REGISTRY` (see ARCHITECTURE.md).
"""

from __future__ import annotations

from tunekit.recipe.phase import Phase
from tunekit.recipe.phases.batch_size import BatchSize, BatchSizeDecision
from tunekit.recipe.phases.dropout import Dropout, DropoutDecision
from tunekit.recipe.phases.final import Final, FinalDecision
from tunekit.recipe.phases.learning_rate import LearningRate, LearningRateDecision
from tunekit.recipe.phases.momentum import Momentum, MomentumDecision
from tunekit.recipe.phases.range_test import RangeTest, RangeTestDecision
from tunekit.recipe.phases.weight_decay import WeightDecay, WeightDecayDecision

#: Every phase, in the order a search runs them.
#: Weight decay comes before the learning rate is refined, so the LR is refined at the weight decay the
#: final training will use (the range tests' own best weight decay is often 0: short runs do not yet
#: need regularising). On the benchmark suite that is what made the short runs pick the LR full
#: trainings pick (BENCHMARKS.md).
REGISTRY: tuple[Phase, ...] = (RangeTest(), WeightDecay(), LearningRate(), Momentum(), Dropout(), BatchSize(), Final())
#: Their names, in order: what ``--phases`` accepts.
PHASES: tuple[str, ...] = tuple(p.name for p in REGISTRY)


def phase_named(name: str) -> Phase:
    """The registered phase called ``name``."""
    return next(p for p in REGISTRY if p.name == name)


__all__ = [
    "PHASES",
    "REGISTRY",
    "BatchSize",
    "BatchSizeDecision",
    "Dropout",
    "DropoutDecision",
    "Final",
    "FinalDecision",
    "LearningRate",
    "LearningRateDecision",
    "Momentum",
    "MomentumDecision",
    "RangeTest",
    "RangeTestDecision",
    "WeightDecay",
    "WeightDecayDecision",
    "phase_named",
]

"""The disciplined search (Smith 2018, Sec. 5) as a sequence of Ray Tune experiments.

``tunekit.search(preset)`` runs the phases of :data:`~tunekit.recipe.phases.REGISTRY` in order,
each one a Tune experiment under one search folder (``<storage>/<name>/<phase>/``), each
decision feeding the next:

1. ``range_test`` — one LR range test per candidate weight decay (Fig. 10) → ``max_lr``,
   ``min_lr`` and a first ranking of the weight decays;
2. ``momentum`` — short 1cycle runs at maximum momentum 0.99 / 0.97 / 0.95 / 0.9 (→ 0.85);
3. ``weight_decay`` — exponent bisection, by full short runs or snapshot-restart continuations;
4. ``batch_size`` — candidates at constant wall time (Sec. 4.2), when the preset asks for it;
5. ``final`` — 1cycle with the chosen values, replicated (seeds, msra/xavier, jittered batch).

Layout: :mod:`~tunekit.recipe.phase` (the Phase protocol), :mod:`~tunekit.recipe.phases` (one
module per phase and the registry), :mod:`~tunekit.recipe.driver` (the loop, ``search``,
``resume``), :mod:`~tunekit.recipe.state` (``search.json``), :mod:`~tunekit.recipe.records`
(trials as plain data), :mod:`~tunekit.recipe.report` (``tunekit report``). ARCHITECTURE.md at the
repository root walks one search through them.
"""

from tunekit.core.judge import Judge
from tunekit.recipe.driver import Driver, plan_phases, resume, search, trial_dirname
from tunekit.recipe.errors import SearchError, SearchInterrupted
from tunekit.recipe.phase import Decided, Phase, PhaseContext, PhasePlan, PhaseSize
from tunekit.recipe.phases import PHASES, REGISTRY
from tunekit.recipe.plan import SearchPlan, plan_search
from tunekit.recipe.progress import Progress
from tunekit.recipe.records import TrialRecord, config_label, phase_records, records_of
from tunekit.recipe.report import report_frame
from tunekit.recipe.results import PhaseResult, SearchResult
from tunekit.recipe.state import STATE_FILE, STATE_VERSION, SearchState, read_state

__all__ = [
    "PHASES",
    "REGISTRY",
    "STATE_FILE",
    "STATE_VERSION",
    "Decided",
    "Driver",
    "Judge",
    "Phase",
    "PhaseContext",
    "PhasePlan",
    "PhaseResult",
    "PhaseSize",
    "Progress",
    "SearchError",
    "SearchInterrupted",
    "SearchPlan",
    "SearchResult",
    "SearchState",
    "TrialRecord",
    "config_label",
    "phase_records",
    "plan_phases",
    "plan_search",
    "read_state",
    "records_of",
    "report_frame",
    "resume",
    "search",
    "trial_dirname",  # experiments pickled by tunekit 0.1.0 name it here
]

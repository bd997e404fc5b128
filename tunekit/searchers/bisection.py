"""``ExponentBisectionSearcher``: weight decay (or any log-scale regulariser) by exponent bisection.

The rule is :class:`tunekit.core.bisection.Bisection`; this class only turns its proposals into
trial configs and finished trials into observations. Paper: Sec. 4.4, Sec. 5 checklist item 4.

    searcher = ExponentBisectionSearcher("weight_decay", base_config={"preset": preset_to_dict(p)})
    tune.Tuner(trainable(p), tune_config=tune.TuneConfig(search_alg=limited(searcher, 4), num_samples=-1))
"""

from __future__ import annotations

from typing import Any, Literal

from ray.tune.search import Searcher

from tunekit.core.bisection import Bisection, guess_grid
from tunekit.core.decisions import Candidate
from tunekit.core.judge import Judge
from tunekit.searchers.base import TunekitSearcher

NO_IDEA_GRID = (1e-3, 1e-4, 1e-5, 0.0)


def start_bisection(
    grid: list[float] | tuple[float, ...] | None,
    guess: float | None,
    scale: Literal["log", "linear"],
    resolution: float,
    max_trials: int,
    tie_tolerance: float,
) -> Bisection:
    """The bisection a searcher starts from: a grid, a guess, or the "no idea" grid."""
    if grid is not None and guess is not None:
        raise ValueError("give grid or guess, not both")
    initial = list(grid) if grid is not None else guess_grid(guess, scale) if guess is not None else list(NO_IDEA_GRID)
    return Bisection(
        initial, scale=scale, resolution=resolution, max_trials=max(max_trials, len(initial)), tie_tolerance=tie_tolerance
    )


class ExponentBisectionSearcher(TunekitSearcher):
    """Propose the grid in parallel, wait (``None``) for results, bisect, then ``FINISHED``.

    Args:
        param: the config key to search (``weight_decay``, or a dotted path such as ``model.dropout``).
        base_config: the trial config each suggestion starts from.
        grid: starting values; default the "no idea" grid (1e-3, 1e-4, 1e-5, 0) unless ``guess`` is given.
        guess: start from {g·10^-0.5, g, g·10^0.5} instead.
        scale: "log" or "linear".
        resolution, max_trials: when to stop (see :class:`~tunekit.core.bisection.Bisection`).
        tie_tolerance: losses closer than this count as equal; then a horizontal curve wins.
        judge: see :class:`~tunekit.searchers.base.TunekitSearcher`.
    """

    def __init__(
        self,
        param: str = "weight_decay",
        base_config: dict[str, Any] | None = None,
        grid: list[float] | tuple[float, ...] | None = None,
        guess: float | None = None,
        scale: Literal["log", "linear"] = "log",
        resolution: float = 0.25,
        max_trials: int = 8,
        tie_tolerance: float = 0.0,
        judge: Judge | None = None,
    ) -> None:
        super().__init__(base_config, judge)
        self.param = param
        self.bisection = start_bisection(grid, guess, scale, resolution, max_trials, tie_tolerance)
        self.queue: list[float] = []
        self.tie_tolerance = tie_tolerance
        self.judged: dict[str, Candidate] = {}  # trial id → its judged result

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # Ray allows FINISHED
        if not self.queue:
            self.queue.extend(self.bisection.propose())
        if self.queue:
            value = self.queue.pop(0)
            self.trial_values[trial_id] = value
            return self.trial_config(value)
        if self.bisection.done() and not self._running():
            return Searcher.FINISHED
        return None  # waiting for results

    def upgrade(self, state: dict[str, Any]) -> dict[str, Any]:
        if "curves" not in state:
            return state
        state = super().upgrade(state)
        judge: Judge = state["judge"]
        state.setdefault("tie_tolerance", state["bisection"].tie_tolerance)
        state["judged"] = {t: judge.candidate(t, state["rows"].get(t, [])) for t in state.get("finished", ())}
        return state

    def unobserve(self, trial_id: str, value: Any) -> None:
        self.judged.pop(trial_id, None)
        self.bisection.observations = [o for o in self.bisection.observations if o.value != value]

    def requeue(self, value: Any) -> None:
        self.queue.insert(0, value)  # still among the bisection's proposals: it waits for its observation

    def trial_config(self, value: float) -> dict[str, Any]:
        """The config of the trial that evaluates ``value``."""
        return self.config_with(**{self.param: value})

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id not in self.trial_values or trial_id in self.finished:
            return
        judged = self.candidate(trial_id, result, error)
        self.judged[trial_id] = judged
        self.bisection.observe(self.trial_values[trial_id], judged.loss, judged.shape)
        self.finished.add(trial_id)

    def _running(self) -> bool:
        return any(t not in self.finished for t in self.trial_values)

    @property
    def best_value(self) -> float | None:
        """The judge's best value so far, as the phase decides it (None before any result, or when every trial diverged)."""
        best = self.judge.choose(list(self.judged.values()), self.param, tie_tolerance=self.tie_tolerance).best
        return None if best is None else float(self.trial_values[best])

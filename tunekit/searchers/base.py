"""What every tunekit searcher shares: curves per trial, judging a trial, plain-data state.

A tunekit searcher proposes configs ``{**base_config, <its values>}`` for
:func:`tunekit.trainable.train_fn`, learns from results, and keeps its state as plain data
(``get_state``/``set_state``), so ``save``/``restore`` — and with them ``Tuner.restore`` —
bring it back exactly. Ray 2.60 keeps only one pending trial of a custom searcher unless it is
wrapped in ``ConcurrencyLimiter(searcher, max_concurrent=N, batch=False)``: use
:func:`limited` (DESIGN.md).
"""

from __future__ import annotations

import copy
import math
from typing import Any

from ray.tune.search import ConcurrencyLimiter, Searcher

from tunekit._state import PickledState
from tunekit.core.curves import Shape
from tunekit.core.decisions import score_curve


class TunekitSearcher(PickledState, Searcher):
    """Base class: records each trial's curve and turns a finished trial into (loss, shape).

    Args:
        base_config: the trial config every suggestion starts from (``{"preset": …}``).
        metric, mode: what to judge by; may also arrive through ``set_search_properties``.
        judge_step: judge a trial by its metric at this step (``time_attr``); None: its last result.
            The value there is the median of the last ``judge_window`` results up to it.
        judge_window: results whose median is the trial's value (1: the single result).
        time_attr: the result field counting steps.
    """

    def __init__(
        self,
        base_config: dict[str, Any] | None = None,
        metric: str | None = "test_loss",
        mode: str | None = "min",
        judge_step: float | None = None,
        time_attr: str = "training_iteration",
        judge_window: int = 3,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        if judge_window < 1:
            raise ValueError(f"judge_window must be ≥ 1, got {judge_window=}")
        self.judge_window = judge_window
        self.base_config: dict[str, Any] = copy.deepcopy(base_config or {})
        self.judge_step = judge_step
        self.time_attr = time_attr
        self.curves: dict[str, tuple[list[float], list[float]]] = {}
        self.chance: dict[str, float] = {}
        self.trial_values: dict[str, Any] = {}  # trial id → the value it evaluates
        self.finished: set[str] = set()

    # ------------------------------------------------------------------ Ray hooks

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any) -> bool:
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if self._metric is None or self._metric not in result:
            return
        steps, values = self.curves.setdefault(trial_id, ([], []))
        steps.append(float(result.get(self.time_attr, len(steps) + 1)))
        raw = result[self._metric]
        value = float(raw) if raw is not None else math.nan
        values.append(math.nan if result.get("diverged") else self._sign * value)
        if "chance_loss" in result and self._mode == "min":
            self.chance[trial_id] = float(result["chance_loss"])

    def get_state(self) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("__")}

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(copy.deepcopy(state))

    # ------------------------------------------------------------------ helpers

    @property
    def _sign(self) -> float:
        if self._mode not in ("min", "max"):
            raise ValueError(f"{type(self).__name__} needs metric and mode: pass them here or in TuneConfig(metric=…, mode=…)")
        return 1.0 if self._mode == "min" else -1.0

    def judge(self, trial_id: str, result: dict[str, Any] | None, error: bool) -> tuple[float, Shape]:
        """(loss to minimise, curve shape) of a finished trial; an error or divergence is worst."""
        if result is not None and self._metric in result:
            recorded = self.curves.get(trial_id, ([], []))[0]
            if not recorded or float(result.get(self.time_attr, math.nan)) != recorded[-1]:
                self.on_trial_result(trial_id, result)  # Tune does not send a stopping result to searchers
        steps, values = self.curves.get(trial_id, ([], []))
        return score_curve(
            steps,
            values,
            judge_step=self.judge_step,
            window=self.judge_window,
            chance_loss=self.chance.get(trial_id),
            diverged=error or bool((result or {}).get("diverged")),
        )

    def config_with(self, **values: Any) -> dict[str, Any]:
        """``base_config`` with ``values`` as overrides (dotted paths or aliases)."""
        config = copy.deepcopy(self.base_config)
        config.update(values)
        return config


def limited(searcher: Searcher, max_concurrent: int) -> ConcurrencyLimiter:
    """Wrap a searcher so Tune runs up to ``max_concurrent`` of its trials at once (batch=False)."""
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent, batch=False)

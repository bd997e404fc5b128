"""Searchers over a list of candidates, judged together: momentum, batch size and the learning rate.

Each is one parameterisation of :class:`CandidateSearcher` (a labelled list of config
overrides, ranked by the core rule at the end), not copies of each other;
:class:`LearningRateSearcher` adds a smaller LR while the smallest one tried wins.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from ray.tune.search import Searcher

from tunekit.core.budget import scaled_lr
from tunekit.core.decisions import (
    Candidate,
    Choice,
    TieSide,
    balanced_weight_decay,
    choose_candidate,
    choose_lr,
    lr_label,
    next_balance_check,
    next_lower_lr,
    walk_next,
    walk_start,
    weight_decay_label,
)
from tunekit.core.judge import Judge, number, tie_side_of
from tunekit.searchers.base import REUSED, TunekitSearcher

#: Batch sizes are compared by their *final* validation accuracy at constant wall time (Sec. 4.2);
#: the recipe passes the preset's own metric instead.
BATCH_SIZE_JUDGE = Judge("val_acc", "max", window=1)


class CandidateSearcher(TunekitSearcher):
    """Run every candidate (in parallel, under a ``ConcurrencyLimiter``), then ``FINISHED``.

    Args:
        candidates: label → config overrides for that trial.
        base_config, judge: see :class:`~tunekit.searchers.base.TunekitSearcher`.
        tie_tolerance: losses closer than this count as equal; then a horizontal curve wins.
        what: what the candidates are, for the reason of the choice ("max momentum").
    """

    def __init__(
        self,
        candidates: dict[str, dict[str, Any]],
        base_config: dict[str, Any] | None = None,
        judge: Judge | None = None,
        tie_tolerance: float = 0.0,
        what: str = "candidate",
    ) -> None:
        super().__init__(base_config, judge)
        if not candidates:
            raise ValueError("candidates is empty: give at least one")
        self.candidates = dict(candidates)
        self.todo = list(candidates)
        self.tie_tolerance = tie_tolerance
        self.what = what
        self.scores: dict[str, Candidate] = {}

    def reuse(self, label: str, key: str, results: list[dict[str, Any]]) -> None:
        """Take candidate ``label`` as done, with the ``results`` an earlier trial (``key``) reported for exactly its
        training: it is not suggested, and it is judged with the others."""
        if label not in self.candidates:
            raise ValueError(f"reuse: {label!r} is not a candidate ({', '.join(self.candidates)})")
        if label in self.todo:
            self.todo.remove(label)
        trial_id = f"{REUSED}{key}"
        self.trial_values[trial_id] = label
        for result in results:
            self.on_trial_result(trial_id, result)
        self.on_trial_complete(trial_id, results[-1] if results else None, error=not results)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # Ray allows FINISHED
        if not self.todo and self.trial_values and all(t in self.finished for t in self.trial_values):
            self.extend()
        if self.todo:
            label = self.todo.pop(0)
            self.trial_values[trial_id] = label
            return self.config_with(**self.candidates[label])
        if all(t in self.finished for t in self.trial_values):
            return Searcher.FINISHED
        return None

    def extend(self) -> None:
        """Once every candidate so far has ended: queue more in ``todo`` (none here; a walk or a bracket adds them)."""

    def unobserve(self, trial_id: str, value: Any) -> None:
        self.scores.pop(value, None)

    def requeue(self, value: Any) -> None:
        self.todo.insert(0, value)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id not in self.trial_values or trial_id in self.finished:
            return
        label = self.trial_values[trial_id]
        self.scores[label] = self.candidate(trial_id, result, error, label)
        self.finished.add(trial_id)

    def upgrade(self, state: dict[str, Any]) -> dict[str, Any]:
        if "curves" not in state:
            return state
        state = super().upgrade(state)
        state.setdefault("what", "candidate")
        state["scores"] = {label: Candidate(label, loss, shape) for label, (loss, shape) in state.get("scores", {}).items()}
        return state

    def choice(self) -> Choice:
        """The judge's choice among the finished candidates (the phase decides the same from the records)."""
        return self.judge.choose(list(self.scores.values()), self.what, tie_tolerance=self.tie_tolerance)

    def ranking(self) -> list[str]:
        """Candidate labels from best to worst (stopped early after finished, diverged last; shape breaks ties)."""
        return self.choice().order

    @property
    def best_label(self) -> str | None:
        """The best candidate so far; None before any result, or when every candidate diverged."""
        return self.choice().best


class MomentumSearcher(CandidateSearcher):
    """Short runs at maximum momentum 0.99, 0.97, 0.95, 0.9, cycling down to ``min_momentum`` (Sec. 5, item 3).

    With ``start`` (the momentum the runs so far used, one of the candidates) the grid is walked
    rather than run whole: ``start`` and its neighbour ``toward`` the side ties go to first
    (:func:`~tunekit.core.decisions.walk_start`), then one candidate further while the best is at
    an edge of those tried (:func:`~tunekit.core.decisions.walk_next`). ``start`` is usually the run
    an earlier phase already trained, so the walk costs one run where that neighbour is best. Without
    ``start``, every candidate runs.
    """

    walk: tuple[float, ...] | None = None  # the candidates walked (None: all run); a class default for older states

    def __init__(
        self,
        candidates: tuple[float, ...] = (0.99, 0.97, 0.95, 0.9),
        min_momentum: float = 0.85,
        epochs: int | None = None,
        base_config: dict[str, Any] | None = None,
        start: float | None = None,
        toward: Literal["lower", "higher"] = "lower",
        **kwargs: Any,
    ) -> None:
        extra = {"epochs": epochs} if epochs is not None else {}
        options = {f"{m:g}": {"momentum": [m, min(min_momentum, m)], **extra} for m in candidates}
        kwargs.setdefault("what", "max momentum")
        super().__init__(options, base_config, **kwargs)
        if start is not None and start in candidates:
            self.walk = tuple(candidates)
            first = {f"{m:g}" for m in walk_start(candidates, start, toward)}
            self.todo = [label for label in self.todo if label in first]

    def extend(self) -> None:
        beyond = walk_next(self.walk, [float(label) for label in self.scores], self.best_momentum) if self.walk else None
        if beyond is not None:
            self.todo.append(f"{beyond:g}")

    @property
    def best_momentum(self) -> float | None:
        label = self.best_label
        return None if label is None else float(label)


class BatchSizeSearcher(CandidateSearcher):
    """Batch sizes compared at constant wall time, by the final validation metric (Sec. 4.2, Remark 4).

    Each candidate trial gets ``train.time_budget_s``: a timing probe inside the trial sizes its
    1cycle schedule to the epochs that fit, so every candidate completes a full cycle on the
    hardware it runs on. LR bounds scale with the batch (``lr_scaling``, linear as in Fig. 6)
    from ``base_max_lr`` at ``base_batch``.
    """

    def __init__(
        self,
        candidates: tuple[int, ...],
        time_budget_s: float,
        base_batch: int,
        base_max_lr: float,
        lr_scaling: Literal["linear", "sqrt", "none"] = "linear",
        base_config: dict[str, Any] | None = None,
        judge: Judge | None = None,
        **kwargs: Any,
    ) -> None:
        if time_budget_s <= 0:
            raise ValueError(f"time_budget_s must be > 0, got {time_budget_s=}")
        options = {
            str(b): {
                "batch_size": b,
                "train.time_budget_s": time_budget_s,
                "max_lr": scaled_lr(base_max_lr, base_batch, b, lr_scaling),
            }
            for b in candidates
        }
        judge = judge or BATCH_SIZE_JUDGE
        kwargs.setdefault("what", "batch size")
        super().__init__(options, base_config, judge, **kwargs)

    @property
    def best_batch_size(self) -> int | None:
        label = self.best_label
        return None if label is None else int(label)


class LearningRateSearcher(CandidateSearcher):
    """Short runs at ``lrs`` (in parallel); then one more at half the smallest LR tried, down to
    ``floor``, while the smallest is still where the lowest validation loss may lie
    (:func:`~tunekit.core.decisions.next_lower_lr`): the LR is bracketed from above, and extra runs
    are spent only where the choice lies below the first candidates. Once it is bracketed,
    :func:`~tunekit.core.decisions.choose_lr` chooses the LR that ties the lowest loss on the side
    :func:`~tunekit.core.decisions.tie_side` reads from the lowest run: the largest where it overfits,
    else the smallest — and then halving goes on while the smallest tried ties the lowest.

    Args:
        lrs: the first candidates (``policy.max_lr``), run together.
        floor: no candidate below this LR.
        tolerance: ``search.learning_rate.tolerance`` (the tie rule's relative band).
        balance: (the weight decay the runs train with, the max_lr it was judged at): once the LR is
            chosen, check the weight decay rebalanced for it (:func:`~tunekit.core.decisions.next_balance_check`)
            with runs at the chosen LR; None: no check.
        base_config, judge: see :class:`~tunekit.searchers.base.TunekitSearcher`.
    """

    balance: tuple[float, float] | None = None  # a class default for states saved before the check existed

    def __init__(
        self,
        lrs: list[float],
        floor: float,
        base_config: dict[str, Any] | None = None,
        judge: Judge | None = None,
        tolerance: float = 0.0,
        balance: tuple[float, float] | None = None,
    ) -> None:
        super().__init__({lr_label(lr): {"policy.max_lr": lr} for lr in lrs}, base_config, judge, what="max_lr")
        self.floor = floor
        self.tolerance = tolerance
        self.balance = balance

    def extend(self) -> None:
        lrs = self.lrs()
        # ties to the larger LR: below the lowest loss, not below the tie rule's choice (it reads a band
        # around a minimum that may lie lower); ties to the smaller: below the choice, the smallest that ties
        anchor = self._lowest() if self.side()[0] == "largest" else lrs.get(self.choice().best or "")
        lower = next_lower_lr(list(lrs.values()), anchor, self.floor)
        label = lr_label(lower) if lower is not None else None
        if label is not None and label not in self.candidates:
            self.candidates[label] = {"policy.max_lr": lower}
            self.todo.append(label)
        elif self.balance is not None:
            self._check_balance(self.balance)

    def _check_balance(self, balance: tuple[float, float]) -> None:
        """Queue the next weight decay to train at the chosen LR, while the rebalanced one is not settled."""
        best = self.choice().best
        if best is None:
            return
        judged, judged_at = balance
        chosen = self.lrs()[best]
        tried = self.weight_decays()
        decided = self.weight_decay_choice().best
        following = next_balance_check(
            judged, balanced_weight_decay(judged, judged_at, chosen)[0], list(tried.values()), tried.get(decided or "")
        )
        label = weight_decay_label(following) if following is not None else None
        if label is not None and label not in self.candidates:
            self.candidates[label] = {"policy.max_lr": chosen, "weight_decay": following}
            self.todo.append(label)

    def lrs(self) -> dict[str, float]:
        """Label → LR of every LR candidate so far (not the weight-decay checks at the chosen one)."""
        return {
            label: float(overrides["policy.max_lr"])
            for label, overrides in self.candidates.items()
            if "weight_decay" not in overrides
        }

    def weight_decays(self) -> dict[str, float]:
        """Label → weight decay of the runs at the chosen LR: its own (at the judged weight decay) and the checks."""
        if self.balance is None:
            return {}
        checks = {label: float(o["weight_decay"]) for label, o in self.candidates.items() if "weight_decay" in o}
        return {weight_decay_label(self.balance[0]): self.balance[0], **checks}

    def weight_decay_choice(self) -> Choice:
        """The tie rule's choice among the weight decays trained at the chosen LR so far: the largest within noise
        of the lowest (the phase decides the same from the records)."""
        values = self.weight_decays()
        if not values:
            return Choice(None, [], "no weight decay checked")
        own = weight_decay_label(self.balance[0]) if self.balance else ""
        done, curves, errors, _ = self._judged({label: self.choice().best or "" if label == own else label for label in values})
        return choose_lr(done, values, curves, 0.0, errors, what="weight decay")[0]

    def side(self) -> tuple[TieSide, str]:
        """Which way a tie goes, read from the run with the lowest validation loss so far, and why."""
        best = self._best_label()
        trial = next((t for t in self.finished if self.trial_values.get(t) == best), None)
        return tie_side_of((self.rows.get(trial) or [{}])[-1] if trial is not None else {})

    def choice(self) -> Choice:
        """What the phase decides from these runs (the LR on the tie side within the band of the lowest loss)."""
        lrs = self.lrs()
        done, curves, errors, train = self._judged({label: label for label in lrs})
        return choose_lr(done, lrs, curves, self.tolerance, errors, side=self.side()[0], train_losses=train)[0]

    def _judged(self, runs: dict[str, str]) -> tuple[list[Candidate], list[list[float]], dict[str, float], dict[str, float]]:
        """For label → the candidate whose run it reads, as the phase reads the records: the finished ones judged
        (under the label), the validation curves of those that did not fail (their noise), and each one's last
        ``val_loss_se`` and ``train_loss``."""
        trials = {self.trial_values[t]: t for t in self.finished}
        scored = list(self.scores)  # in the order they finished, as before the checks
        finished = sorted(
            (run for run in runs.items() if run[1] in trials and run[1] in self.scores), key=lambda run: scored.index(run[1])
        )
        ran = {label: trials[own] for label, own in finished}
        done = [replace(self.scores[runs[label]], label=label) for label in ran]
        kept = [label for label in ran if not self.scores[runs[label]].failed]
        metric = self.judge.metric
        curves = [[float(row[metric]) for row in self.rows.get(ran[label], []) if metric in row] for label in kept]
        last = {label: (self.rows.get(ran[label]) or [{}])[-1] for label in kept}
        errors = {label: number(row.get("val_loss_se")) for label, row in last.items()}
        train = {label: number(row.get("train_loss")) for label, row in last.items()}
        return done, curves, errors, train

    def _best_label(self) -> str | None:
        lrs = self.lrs()
        return choose_candidate([self.scores[label] for label in self.scores if label in lrs], "max_lr").best

    def _lowest(self) -> float | None:
        """The LR with the lowest validation loss so far, as the tie rule ranks losses (None: no loss yet)."""
        best = self._best_label()
        return None if best is None else self.lrs()[best]

"""LR policies as torch schedulers stepped once per iteration.

1cycle is torch's ``OneCycleLR`` (the paper's: ``three_phase=True, anneal_strategy="linear"``); the other
policies are :class:`IterationSchedule`, a scheduler that reads the LR (and momentum) from a
pure function of the iteration in :mod:`tunekit.core.schedules`. Momentum means SGD's
``momentum`` or Adam's β1 — whichever the optimiser has.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR

from tunekit.core import schedules as core
from tunekit.presets import (
    CLRPolicy,
    ConstantPolicy,
    OneCyclePolicy,
    OptimizerConfig,
    Policy,
    RangeTestPolicy,
    StepPolicy,
)


def set_momentum(optimizer: torch.optim.Optimizer, momentum: float) -> None:
    """Set SGD momentum, or Adam's β1, in every parameter group."""
    for group in optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        else:
            group["momentum"] = momentum


def get_momentum(optimizer: torch.optim.Optimizer) -> float:
    """SGD momentum, or Adam's β1, of the first parameter group."""
    group = optimizer.param_groups[0]
    return float(group["betas"][0] if "betas" in group else group.get("momentum", 0.0))


def initial_momentum(policy: Policy) -> float:
    """The momentum at the first iteration."""
    m = policy.momentum
    return float(m[0] if isinstance(m, tuple) else m)


def build_optimizer(
    params: Any, cfg: OptimizerConfig, policy: Policy, weight_decay: float, fused: bool = False
) -> torch.optim.Optimizer:
    """SGD (optionally Nesterov), Adam or AdamW; the LR and momentum are set by the schedule.

    ``fused`` (for parameters on a GPU): one kernel for the whole update instead of a few per
    tensor — 11 % more resnet-56 samples/s on an H100 (bench/gpu_epoch.py).
    """
    lr = 1e-3  # overwritten by the schedule before the first step
    momentum = initial_momentum(policy)
    kernel: dict[str, Any] = {"fused": True} if fused else {}
    if cfg.name == "sgd":
        nesterov = cfg.nesterov and momentum > 0
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, **kernel)
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, betas=(momentum, cfg.beta2), eps=cfg.eps, weight_decay=weight_decay, **kernel)


class IterationSchedule(LRScheduler):
    """A scheduler whose LR (and optionally momentum) at iteration ``t`` is ``lr_fn(t)``.

    Only the iteration count is state: ``state_dict`` holds ``last_epoch`` (torch's name for it),
    so checkpoints load with ``weights_only=True``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr_fn: Callable[[int], float],
        momentum_fn: Callable[[int], float] | None = None,
    ) -> None:
        self.lr_fn = lr_fn
        self.momentum_fn = momentum_fn
        super().__init__(optimizer)

    def get_lr(self) -> list[float | torch.Tensor]:
        return [self.lr_fn(self.last_epoch) for _ in self.optimizer.param_groups]

    def step(self, epoch: int | None = None) -> None:
        super().step()
        if self.momentum_fn is not None:
            set_momentum(self.optimizer, self.momentum_fn(self.last_epoch))

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_epoch = int(state_dict["last_epoch"]) - 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.step()


def total_iterations(policy: Policy, steps_per_epoch: int, epochs: int) -> int:
    """Iterations a run of this policy lasts: ``epochs × steps_per_epoch``, or the range test's own length."""
    if isinstance(policy, RangeTestPolicy):
        return max(1, math.ceil(policy.epochs * steps_per_epoch))
    return epochs * steps_per_epoch


def build_schedule(optimizer: torch.optim.Optimizer, policy: Policy, steps_per_epoch: int, epochs: int) -> LRScheduler:
    """The scheduler for ``policy``; call its ``step()`` after every optimiser step."""
    total = total_iterations(policy, steps_per_epoch, epochs)
    if isinstance(policy, OneCyclePolicy):
        cyclic = isinstance(policy.momentum, tuple)
        hi, lo = policy.momentum if isinstance(policy.momentum, tuple) else (policy.momentum, policy.momentum)
        return OneCycleLR(
            optimizer,
            max_lr=policy.max_lr,
            total_steps=total,
            pct_start=policy.pct_start,
            anneal_strategy=policy.anneal,
            cycle_momentum=cyclic,
            base_momentum=lo,
            max_momentum=hi,
            div_factor=policy.div,
            final_div_factor=policy.annihilation,
            three_phase=policy.three_phase,
        )
    if isinstance(policy, RangeTestPolicy):
        start, end = policy.momentum if isinstance(policy.momentum, tuple) else (policy.momentum, policy.momentum)
        return IterationSchedule(
            optimizer,
            partial(core.range_test_lr, total_steps=total, min_lr=policy.min_lr, max_lr=policy.max_lr),
            partial(core.range_test_momentum, total_steps=total, start=start, end=end),
        )
    if isinstance(policy, CLRPolicy):
        stepsize = max(1, round(policy.stepsize * steps_per_epoch))
        return IterationSchedule(
            optimizer, partial(core.clr_triangular, stepsize=stepsize, min_lr=policy.min_lr, max_lr=policy.max_lr)
        )
    if isinstance(policy, StepPolicy):
        return IterationSchedule(optimizer, _StepLR(policy.lr, steps_per_epoch, policy.milestones, policy.factor))
    if isinstance(policy, ConstantPolicy):
        return IterationSchedule(optimizer, _Constant(policy.lr))
    raise TypeError(f"unknown policy {policy!r}")


class _Constant:
    def __init__(self, lr: float) -> None:
        self.lr = lr

    def __call__(self, step: int) -> float:
        return self.lr


class _StepLR:
    def __init__(self, lr: float, steps_per_epoch: int, milestones: tuple[float, ...], factor: float) -> None:
        self.lr, self.steps_per_epoch, self.milestones, self.factor = lr, steps_per_epoch, milestones, factor

    def __call__(self, step: int) -> float:
        return self.lr * core.step_factor(step / self.steps_per_epoch, self.milestones, self.factor)


def fast_forward(schedule: LRScheduler, steps: int) -> None:
    """Advance a fresh schedule by ``steps`` iterations (a continuation joining mid-run)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
        for _ in range(steps):
            schedule.step()

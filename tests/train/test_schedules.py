"""LR and momentum traces recorded from a real optimiser equal values computed here, independently."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from tunekit.core.schedules import one_cycle_lr, one_cycle_momentum
from tunekit.presets import load_preset
from tunekit.train.schedules import build_optimizer, build_schedule, get_momentum


def _trace(policy: dict[str, Any], steps_per_epoch: int, epochs: int, optimizer: str = "sgd") -> tuple[np.ndarray, np.ndarray]:
    """(lr, momentum) that each optimiser step actually used, for every step of the run."""
    preset = load_preset(
        {
            "name": "t",
            "dataset": {"name": "mnist1d"},
            "model": {"name": "cnn1d"},
            "optimizer": {"name": optimizer},
            "train": {"epochs": epochs},
            "policy": policy,
        }
    )
    param = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer([param], preset.optimizer, preset.policy, 0.0)
    sched = build_schedule(opt, preset.policy, steps_per_epoch, epochs)
    lrs, moms = [], []
    total = steps_per_epoch * epochs if policy["name"] != "range_test" else int(np.ceil(policy["epochs"] * steps_per_epoch))
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(get_momentum(opt))
        param.grad = torch.ones(3)
        opt.step()
        sched.step()
    return np.array(lrs), np.array(moms)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_one_cycle_trace_has_three_linear_phases_and_inverse_momentum(optimizer: str) -> None:
    lrs, moms = _trace(
        {"name": "one_cycle", "max_lr": 2.0, "div": 10, "annihilation": 100, "pct_start": 0.45, "momentum": [0.95, 0.85]},
        steps_per_epoch=20,
        epochs=10,
        optimizer=optimizer,
    )
    total = 200
    corners = [0, 0.45 * total - 1, 2 * 0.45 * total - 2, total - 1]
    steps = np.arange(total)
    # phase 1 up to max_lr, phase 2 back to max_lr/div, phase 3 annihilates to max_lr/div/100
    expected_lr = np.interp(steps, corners, [0.2, 2.0, 0.2, 0.002])
    # momentum runs opposite to the LR in phases 1-2 and stays at its max in phase 3
    expected_m = np.interp(steps, corners, [0.95, 0.85, 0.95, 0.95])
    np.testing.assert_allclose(lrs, expected_lr, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(moms, expected_m, rtol=1e-6)


def test_one_cycle_with_constant_momentum_keeps_it_constant() -> None:
    lrs, moms = _trace({"name": "one_cycle", "max_lr": 1.0, "momentum": 0.9}, 10, 4)
    # a single momentum value means no cycling
    np.testing.assert_allclose(moms, 0.9)
    assert lrs.max() == pytest.approx(1.0)


def test_clr_trace_is_a_triangle_with_stepsize_in_epochs() -> None:
    lrs, moms = _trace({"name": "clr", "min_lr": 0.1, "max_lr": 0.5, "stepsize": 2, "momentum": 0.9}, 10, 8)
    steps = np.arange(80)
    # stepsize 2 epochs = 20 iterations; a cycle is 40
    phase = (steps % 40) / 20.0
    expected = 0.1 + 0.4 * np.where(phase <= 1, phase, 2 - phase)
    np.testing.assert_allclose(lrs, expected, rtol=1e-9)
    np.testing.assert_allclose(moms, 0.9)


def test_constant_trace_is_constant() -> None:
    lrs, moms = _trace({"name": "constant", "lr": 0.05, "momentum": 0.8}, 7, 3)
    np.testing.assert_allclose(lrs, 0.05)
    np.testing.assert_allclose(moms, 0.8)


def test_step_trace_drops_by_factor_at_each_milestone() -> None:
    lrs, _ = _trace({"name": "step", "lr": 1.0, "factor": 0.316, "milestones": [2, 3]}, 10, 4)
    # epochs 0-1 at lr, epoch 2 at lr·f, epoch 3 at lr·f²
    expected = np.repeat([1.0, 1.0, 0.316, 0.316**2], 10)
    np.testing.assert_allclose(lrs, expected, rtol=1e-9)


def test_range_test_trace_is_linear_with_decreasing_momentum() -> None:
    lrs, moms = _trace({"name": "range_test", "min_lr": 0.01, "max_lr": 3.0, "epochs": 2.5, "momentum": [0.95, 0.85]}, 20, 1)
    # 2.5 epochs of 20 iterations: 50 points, LR linear min → max, momentum linear 0.95 → 0.85
    np.testing.assert_allclose(lrs, np.linspace(0.01, 3.0, 50), rtol=1e-9)
    np.testing.assert_allclose(moms, np.linspace(0.95, 0.85, 50), rtol=1e-9)


def test_adamw_over_a_range_test_removes_the_share_of_the_weights_the_range_test_phase_counts() -> None:
    """What :func:`~tunekit.core.decisions.visible_weight_decays` relies on, on tunekit's own AdamW and range
    test schedule: with no gradient at all, the weights lose ``decoupled_shrink(wd, sum of the LRs)``."""
    from tunekit.core.decisions import decoupled_shrink

    steps, lo, hi = 120, 1e-4, 0.3  # the suite's AdamW digits range test
    policy = load_preset(
        {
            "name": "t",
            "dataset": {"name": "digits"},
            "model": {"name": "mlp"},
            "optimizer": {"name": "adamw"},
            "policy": {"name": "range_test", "min_lr": lo, "max_lr": hi, "epochs": steps / 20, "momentum": [0.95, 0.85]},
        }
    ).policy
    for wd in (1e-4, 1e-3, 1e-2):
        param = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
        opt = build_optimizer([param], load_preset("mnist1d", {"optimizer.name": "adamw"}).optimizer, policy, wd)
        sched = build_schedule(opt, policy, 20, 1)
        lr_sum = 0.0
        for _ in range(steps):
            lr_sum += opt.param_groups[0]["lr"]
            param.grad = torch.zeros_like(param)  # Adam's own step is then 0: what is left is the decay
            opt.step()
            sched.step()
        assert lr_sum == pytest.approx(steps * (lo + hi) / 2, rel=1e-6)  # the phase's sum of a linear ramp
        removed = 1.0 - float(param.detach()[0])
        assert removed == pytest.approx(decoupled_shrink(wd, lr_sum), rel=0.01)


def test_iteration_schedule_state_round_trips() -> None:
    preset = load_preset(
        {
            "name": "t",
            "dataset": {"name": "mnist1d"},
            "model": {"name": "cnn1d"},
            "policy": {"name": "clr", "min_lr": 0.1, "max_lr": 0.5, "stepsize": 1},
        }
    )
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], preset.optimizer, preset.policy, 0.0)
    sched = build_schedule(opt, preset.policy, 10, 5)
    for _ in range(7):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = build_optimizer([p], preset.optimizer, preset.policy, 0.0)
    sched2 = build_schedule(opt2, preset.policy, 10, 5)
    sched2.load_state_dict(state)
    # a restored schedule sets the same LR as the original at the same iteration
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


def test_fastai_shaped_one_cycle_trace_equals_the_pure_formula() -> None:
    policy = {
        "name": "one_cycle",
        "max_lr": 0.01,
        "div": 25,
        "annihilation": 4000,
        "pct_start": 0.25,
        "anneal": "cos",
        "three_phase": False,
        "momentum": [0.95, 0.85],
    }
    lrs, moms = _trace(policy, steps_per_epoch=20, epochs=5, optimizer="adamw")
    kw = {"pct_start": 0.25, "anneal": "cos", "three_phase": False}
    np.testing.assert_allclose(lrs, [one_cycle_lr(t, 100, 0.01, 25, 4000, **kw) for t in range(100)], rtol=1e-6)
    np.testing.assert_allclose(moms, [one_cycle_momentum(t, 100, 0.95, 0.85, **kw) for t in range(100)], rtol=1e-6)
    assert lrs[-1] == pytest.approx(0.01 / 1e5)


def test_three_phases_need_pct_start_below_a_half() -> None:
    with pytest.raises(ValueError, match="three_phase: false"):
        load_preset(
            {
                "name": "t",
                "dataset": {"name": "mnist1d"},
                "model": {"name": "cnn1d"},
                "policy": {"name": "one_cycle", "max_lr": 1, "pct_start": 0.6},
            }
        )
    two = {"name": "one_cycle", "max_lr": 1, "pct_start": 0.6, "three_phase": False}
    assert (
        load_preset({"name": "t", "dataset": {"name": "mnist1d"}, "model": {"name": "cnn1d"}, "policy": two}).policy.pct_start
        == 0.6
    )

"""The peers of bench/search_efficiency.py do what fastai and a Ray Tune user do, checked here.

fastai's suggestion rules (``valley``, ``steep``) on curves whose answer is known, the LR
finder on a real (tiny) training run, and the Tune sample → preset mapping.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.peers import (
    FASTAI_ONE_CYCLE,
    LossSmoother,
    finder_lr,
    lr_find,
    peer_overrides,
    steep,
    valley,
)
from tests.conftest import tiny_preset_dict
from tunekit.presets import load_preset


def test_valley_sits_two_thirds_down_the_longest_fall() -> None:
    # flat at 2.0 for 10 points, falls monotonically over 30 points, then climbs
    lrs = list(np.logspace(-5, 1, 60))
    losses = [2.0] * 10 + list(np.linspace(2.0, 0.5, 31)[1:]) + list(np.linspace(0.6, 5.0, 20))
    # the longest decreasing run is 31 points (the last flat one, then the 30 falling), ending at 39;
    # fastai counts its start as end − length, one before its first point
    start, end = 8, 39
    sections = (end - start) / 3
    assert valley(lrs, losses) == lrs[start + int(sections) + int(sections / 2)]
    assert 9 < lrs.index(valley(lrs, losses)) < 39


def test_steep_is_where_the_loss_falls_fastest_per_log_lr() -> None:
    lrs = list(np.logspace(-4, 0, 9))
    losses = [2.0, 1.9, 1.8, 1.0, 0.9, 0.85, 0.8, 1.5, 3.0]  # the biggest drop: index 2 → 3
    assert steep(lrs, losses) == lrs[2]


def test_suggestions_refuse_mismatched_curves() -> None:
    with pytest.raises(ValueError, match="valley"):
        valley([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="steep"):
        steep([1.0], [1.0])


def test_finder_sweeps_exponentially_and_smoothing_is_debiased() -> None:
    assert finder_lr(0, 100, 1e-7, 10.0) == pytest.approx(1e-7)
    assert finder_lr(99, 100, 1e-7, 10.0) == pytest.approx(10.0)
    assert finder_lr(33, 100, 1e-7, 10.0) / finder_lr(32, 100, 1e-7, 10.0) == pytest.approx(1e8 ** (1 / 99))
    smooth = LossSmoother(0.98)
    assert smooth(3.0) == pytest.approx(3.0)  # debiased: the first value is the loss itself
    assert smooth(3.0) == pytest.approx(3.0)


@pytest.mark.slow
def test_lr_find_on_a_real_run_sweeps_past_the_good_lrs_and_stops_on_blow_up() -> None:
    torch.set_num_threads(1)
    preset = load_preset(tiny_preset_dict(**{k: v for k, v in FASTAI_ONE_CYCLE.items() if k != "policy"}))
    curve, epochs = lr_find(preset, num_it=100)
    ratios = np.diff(np.log(curve.lrs))
    np.testing.assert_allclose(ratios, math.log(1e8) / 99, rtol=1e-9)
    assert len(curve.lrs) == 100
    assert epochs == pytest.approx(100 / 22)  # 1 440 training samples (1 600 less the validation carve), batches of 64
    # the sweep runs past the useful LRs: the loss ends well above its minimum
    assert curve.losses[-1] > 1.3 * min(curve.losses)
    lrs, losses = curve.trimmed(100)
    assert 1e-5 < valley(lrs, losses) < 1.0
    # fastai's stop rule: once the smoothed loss exceeds stop_div × its minimum, the sweep ends there
    short, _ = lr_find(preset, num_it=100, stop_div=1.2)
    assert short.stopped_early
    assert len(short.lrs) < 100
    assert short.losses[-1] > 1.2 * min(short.losses)
    assert all(loss <= 1.2 * min(short.losses[: i + 1]) for i, loss in enumerate(short.losses[:-1]))


def test_peer_samples_become_a_one_cycle_with_cyclical_momentum_and_a_weight_decay_floor() -> None:
    assert peer_overrides(0.3, 0.95, 1e-4) == {"policy.max_lr": 0.3, "policy.momentum": [0.95, 0.85], "weight_decay": 1e-4}
    assert peer_overrides(0.3, 0.82, 5e-7)["policy.momentum"] == 0.82  # already below 0.85: constant
    assert peer_overrides(0.3, 0.82, 5e-7)["weight_decay"] == 0.0  # under the floor: no weight decay
    load_preset(tiny_preset_dict(), peer_overrides(0.3, 0.9, 1e-3))  # a valid preset either way
    load_preset(tiny_preset_dict(), peer_overrides(0.3, 0.82, 5e-7))


def test_fastai_defaults_are_a_valid_preset_with_fit_one_cycle_corners() -> None:
    preset = load_preset(tiny_preset_dict(**FASTAI_ONE_CYCLE), {"policy.max_lr": 0.01})
    policy = preset.policy
    assert policy.max_lr / policy.div == pytest.approx(0.01 / 25)
    assert policy.max_lr / policy.div / policy.annihilation == pytest.approx(0.01 / 1e5)
    assert preset.optimizer.name == "adamw"
    assert preset.weight_decay == 1e-2

"""The training loop on real (small) MNIST-1D runs: learning, resume, divergence, continuation."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

from tests.conftest import tiny_preset_dict
from tunekit.core.lr_range import analyse_range_test
from tunekit.presets import load_preset, range_test_preset
from tunekit.train.loop import Trainer, memory_format, train

pytestmark = pytest.mark.slow


def _run(trainer: Trainer) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    results: list[dict[str, Any]] = []
    states: dict[int, dict[str, Any]] = {}

    def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        results.append(metrics)
        if state is not None:  # the state shares tensors with the live model: copy it now
            states[metrics["epoch"]] = copy.deepcopy(state)

    trainer.run(report)
    return results, states


def test_one_cycle_on_mnist1d_learns_far_above_chance() -> None:
    torch.set_num_threads(1)
    results = train(load_preset(tiny_preset_dict(), {"epochs": 6}))
    # ten classes: chance is 10 %; a short 1cycle run on 1 440 samples gets well past it, on the
    # validation split (160 samples, read every epoch) and on the test split (400, read at the end)
    assert results[-1]["val_acc"] > 0.5
    assert results[-1]["test_acc"] > 0.6
    assert [r["epoch"] for r in results] == [1, 2, 3, 4, 5, 6]
    # every evaluation reads the validation split; only the last result, at the run's end, the test split
    assert all({"val_loss", "val_acc"} <= set(r) for r in results)
    assert all("test_loss" not in r and "test_acc" not in r for r in results[:-1])
    assert math.isfinite(results[-1]["val_loss"])
    assert math.isfinite(results[-1]["test_loss"])
    # cross-entropy over ten classes: chance is ln 10
    assert all(r["chance_loss"] == pytest.approx(math.log(10)) for r in results)
    assert not results[-1]["diverged"]
    # the 1cycle run ends annihilated: final LR ≈ max_lr / div / annihilation
    assert results[-1]["lr"] == pytest.approx(0.5 / 10 / 100, rel=0.05)


def test_resume_from_checkpoint_matches_the_unbroken_run() -> None:
    preset = load_preset(tiny_preset_dict(), {"epochs": 4})
    unbroken, states = _run(Trainer(preset, "cpu"))
    resumed = Trainer(preset, "cpu")
    resumed.load_state_dict(states[2])
    later, _ = _run(resumed)
    # the epochs after the resume give the same metrics as the unbroken run (CPU, same seed)
    assert [r["epoch"] for r in later] == [3, 4]
    for a, b in zip(later, unbroken[2:], strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9)
    assert later[-1]["test_loss"] == pytest.approx(unbroken[-1]["test_loss"], rel=1e-6)


def test_without_test_at_end_no_result_reads_the_test_split() -> None:
    # a search's trials other than the final replicates: judged on validation, never shown a test number
    results = train(load_preset(tiny_preset_dict(), {"epochs": 2, "train.test_at_end": False}))
    assert [r["epoch"] for r in results] == [1, 2]
    assert math.isfinite(results[-1]["val_loss"])
    assert not any(k.startswith("test_") for r in results for k in r)


def test_nan_loss_ends_the_run_cleanly_with_diverged_flag() -> None:
    # 90 steps an epoch (1 440 samples, batches of 16); at LR 1e5 the loss is not finite after a step or two
    preset = load_preset(tiny_preset_dict(), {"max_lr": 1e6, "epochs": 3, "train.batch_size": 16})
    results, states = _run(Trainer(preset, "cpu"))
    # no exception; one result, which says diverged: the run ended at the first finiteness check
    # (every 50 steps), mid-way through its first epoch, not at the end of its three
    assert len(results) == 1
    assert results[0]["diverged"] is True
    assert (results[0]["epoch"], results[0]["step"]) == (1, 50)
    assert math.isnan(results[0]["val_loss"])  # NaN weights are not evaluated
    assert states == {}  # nor checkpointed
    # a diverged run never reached its end: nothing is read on the test split
    assert "test_loss" not in results[0]


def test_continuation_with_same_config_reproduces_the_parent() -> None:
    preset = load_preset(tiny_preset_dict(), {"epochs": 4})
    parent, states = _run(Trainer(preset, "cpu"))
    child = Trainer(preset, "cpu")
    child.load_snapshot(states[2], "parent@2")
    results, _ = _run(child)
    # schedule fast-forwarded to the snapshot's iteration, momentum buffers restored: same path
    assert [r["epoch"] for r in results] == [3, 4]
    assert results[-1]["val_loss"] == pytest.approx(parent[-1]["val_loss"], rel=1e-6)
    assert results[-1]["test_loss"] == pytest.approx(parent[-1]["test_loss"], rel=1e-6)


def _weight_norm(trainer: Trainer) -> float:
    return float(sum(p.detach().pow(2).sum() for n, p in trainer.model.named_parameters() if "weight" in n))


def test_continuation_really_trains_with_the_new_weight_decay() -> None:
    base = tiny_preset_dict(weight_decay=1e-4)
    _, states = _run(Trainer(load_preset(base, {"epochs": 4}), "cpu"))
    norms = {}
    for wd in (1e-4, 3e-2):
        child = Trainer(load_preset(base, {"epochs": 4, "weight_decay": wd}), "cpu")
        child.load_snapshot(states[2], "parent@2")
        results, _ = _run(child)
        # the optimiser itself carries the new value, not the snapshot's
        assert all(r["weight_decay"] == pytest.approx(wd) for r in results)
        norms[wd] = _weight_norm(child)
    # and it acts: a 300× larger weight decay shrinks the weights
    assert norms[3e-2] < 0.8 * norms[1e-4]


def test_continuation_past_its_budget_reports_once_and_stops() -> None:
    preset = load_preset(tiny_preset_dict(), {"epochs": 2})
    _, states = _run(Trainer(preset, "cpu"))
    child = Trainer(preset, "cpu")
    child.load_snapshot(states[2], "parent@2")
    results, _ = _run(child)
    # epoch budgets are absolute: nothing left to train, one evaluation reported
    assert len(results) == 1
    assert results[0]["epoch"] == 2
    # the run is at its end: that one result reports the test split too
    assert math.isfinite(results[0]["val_loss"])
    assert math.isfinite(results[0]["test_loss"])
    assert 0 <= results[0]["test_acc"] <= 1


def test_range_test_reports_every_k_iterations_with_rising_lr() -> None:
    preset = range_test_preset(load_preset(tiny_preset_dict()))
    results = train(preset)
    steps = [r["step"] for r in results]
    # 1 epoch of 22 iterations (1 440 training samples, batches of 64), evaluated every 5 and at the end
    assert steps == [5, 10, 15, 20, 22]
    lrs = [r["lr"] for r in results]
    assert lrs == sorted(lrs)
    assert lrs[-1] == pytest.approx(3.0)
    # momentum decreases as the LR increases (0.95 → 0.85)
    moms = [r["momentum"] for r in results]
    assert moms == sorted(moms, reverse=True)
    assert moms[-1] == pytest.approx(0.85)
    assert all(0 <= r["val_acc"] <= 1 for r in results if not r["diverged"])
    # a range test reads the validation split only
    assert not any(k.startswith("test_") for r in results for k in r)


def test_a_range_test_ends_once_its_curve_has_diverged() -> None:
    def ramp(stop: bool) -> list[dict[str, Any]]:
        preset = tiny_preset_dict()
        preset["search"]["range_test"].update(max_lr=10.0, epochs=3, eval_every=2, stop_when_diverged=stop)
        return train(range_test_preset(load_preset(preset)))

    stopped, whole = ramp(True), ramp(False)
    # the whole ramp: 66 steps, 33 evaluations, falling to ≈1.9, then exploding (21 at step 18) and swinging
    assert (len(whole), whole[-1]["step"], whole[-1]["diverged"]) == (33, 66, False)
    # stopped at the explosion (over 10× its minimum and above its start): the same curve up to there
    assert stopped[-1]["diverged"]
    assert stopped[-1]["step"] < 66
    assert [r["val_loss"] for r in stopped] == [r["val_loss"] for r in whole[: len(stopped)]]
    low = min(r["val_loss"] for r in stopped)
    assert stopped[-1]["val_loss"] > 10 * low
    assert all(r["val_loss"] <= 10 * low for r in stopped[:-1])
    assert stopped[-1]["trial_epochs"] < whole[-1]["trial_epochs"]
    curve = ([r["lr"] for r in stopped], [r["val_loss"] for r in stopped])
    full = ([r["lr"] for r in whole], [r["val_loss"] for r in whole])
    chance = math.log(10)
    assert analyse_range_test(*curve, chance_loss=chance).max_lr == analyse_range_test(*full, chance_loss=chance).max_lr


def test_evaluate_reads_the_validation_split_unless_told() -> None:
    trainer = Trainer(load_preset(tiny_preset_dict()), "cpu")
    assert trainer.chance_loss is None  # set at the first evaluation
    val, test = trainer.evaluate(), trainer.evaluate(split="test")
    assert trainer.chance_loss == pytest.approx(math.log(10))
    # two splits, two different means (160 validation samples, 400 test)
    assert (trainer.data.size("val"), trainer.data.size("test")) == (160, 400)
    assert val.loss != test.loss
    assert 0 <= val.metric <= 1
    assert 0 <= test.metric <= 1
    # the first limit samples only
    assert trainer.evaluate(limit=20).loss != val.loss
    assert trainer.val_losses == []  # the run's per-epoch losses, not these ad-hoc evaluations


def test_the_validation_loss_comes_with_its_standard_error_over_the_split() -> None:
    """val_loss_se is what the split's sample alone moves the mean loss: the per-sample losses' standard
    deviation over √n, computed here from every sample's own loss, agrees with the group estimate."""
    torch.set_num_threads(1)
    trainer = Trainer(load_preset(tiny_preset_dict(), {"epochs": 2}), "cpu")
    results, _ = _run(trainer)
    assert all(math.isfinite(r["val_loss_se"]) and r["val_loss_se"] > 0 for r in results)
    trainer.model.eval()
    with torch.no_grad():
        losses = torch.cat(
            [
                torch.nn.functional.cross_entropy(trainer.model(x), y, reduction="none")
                for x, y in trainer.data.batches("val", 256)
            ]
        )
    per_sample = float(losses.std()) / math.sqrt(len(losses))
    evaluation = trainer.evaluate()
    assert evaluation.loss == pytest.approx(float(losses.mean()), rel=1e-4)
    assert evaluation.loss_se == pytest.approx(per_sample, rel=0.35)  # 20 groups of 8: a rough estimate of it


def test_batchnorm_recalibration_makes_eval_statistics_current() -> None:
    trainer = Trainer(load_preset(tiny_preset_dict()), "cpu")
    bn = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm1d))
    trainer.recalibrate_batchnorm(2)
    # fresh statistics from real batches (not the init values 0 / 1), momentum restored
    assert float(bn.running_mean.abs().sum()) > 0
    assert bn.momentum == pytest.approx(0.1)


def _digits_resnet(**train: Any) -> Any:
    return load_preset(
        {
            "name": "digits-resnet",
            "dataset": {"name": "digits"},
            "model": {"name": "resnet20", "width": 8},
            "train": {"epochs": 1, "batch_size": 64, "seed": 0, **train},
            "policy": {"name": "one_cycle", "max_lr": 0.1},
            "weight_decay": 1e-4,
        }
    )


@pytest.mark.parametrize(
    ("channels_last", "device", "shape", "expected"),
    [
        (None, "cuda", (3, 32, 32), torch.channels_last),  # the GPU default for image models
        (None, "cpu", (3, 32, 32), torch.contiguous_format),
        (None, "cuda", (1, 40), torch.contiguous_format),  # 1-D convolutions have no NHWC
        (True, "cpu", (1, 8, 8), torch.channels_last),
        (False, "cuda", (3, 32, 32), torch.contiguous_format),
    ],
)
def test_memory_format_is_nhwc_for_image_models_on_cuda_unless_told(
    channels_last: bool | None, device: str, shape: tuple[int, ...], expected: torch.memory_format
) -> None:
    assert memory_format(channels_last, torch.device(device), shape) == expected


def test_channels_last_trains_the_same_model_as_the_default_layout() -> None:
    torch.set_num_threads(1)
    # three epochs: after one (20 steps since the validation carve) a 1cycle at LR 0.1 is still chaotic
    # (10-40 % accuracy, depending on the exact samples); after three both layouts are past 90 %
    nchw, nhwc = Trainer(_digits_resnet(epochs=3), "cpu"), Trainer(_digits_resnet(epochs=3, channels_last=True), "cpu")
    # (the last convolution: with one input channel NCHW and NHWC are the same strides)
    last = [[m for m in t.model.modules() if isinstance(m, torch.nn.Conv2d)][-1] for t in (nchw, nhwc)]
    assert last[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert not last[0].weight.is_contiguous(memory_format=torch.channels_last)
    # same seed, same weights, only the layout differs: the same step up to float summation order
    x, y = next(nchw.data.train_batches(64, 0, epoch=0))
    assert nhwc.train_step(x, y, advance=False).item() == pytest.approx(nchw.train_step(x, y, advance=False).item(), rel=1e-5)
    # (over whole epochs at LR 0.1 those rounding differences grow chaotically, as between two GPUs)
    a, _ = _run(nchw)
    b, _ = _run(nhwc)
    assert b[-1]["val_acc"] == pytest.approx(a[-1]["val_acc"], abs=0.05)
    assert b[-1]["val_acc"] > 0.8
    assert b[-1]["test_acc"] == pytest.approx(a[-1]["test_acc"], abs=0.05)
    assert b[-1]["test_acc"] > 0.8


def test_a_checkpoint_from_a_fused_gpu_optimizer_resumes_with_this_devices_kernel() -> None:
    torch.set_num_threads(1)
    preset = load_preset(tiny_preset_dict(), {"epochs": 2})
    writer = Trainer(preset, "cpu")
    assert not writer.fused  # fused kernels are for parameters on a GPU
    for group in writer.optimizer.param_groups:  # as a CUDA run saves it
        group.update(fused=True, foreach=False)
    state = copy.deepcopy(writer.state_dict())
    reader = Trainer(preset, "cpu")
    reader.load_state_dict(state)
    assert all(not g["fused"] and g["foreach"] is None for g in reader.optimizer.param_groups)
    assert reader.optimizer.param_groups[0]["momentum"] == state["optimizer"]["param_groups"][0]["momentum"]
    results, _ = _run(reader)
    assert math.isfinite(results[-1]["val_loss"])
    assert math.isfinite(results[-1]["test_loss"])


# --------------------------------------------------------------------------- issue 17: resumes and continuations


def test_a_time_budgeted_run_restored_from_its_checkpoint_continues_the_same_cycle() -> None:
    torch.set_num_threads(1)
    # the batch-size phase's trials: epochs sized by a timing probe to fit the budget
    preset = load_preset(tiny_preset_dict(), {"epochs": 1, "train.time_budget_s": 1.5, "train.test_at_end": False})
    first = Trainer(preset, "cpu")
    unbroken, states = _run(first)
    sized = first.preset.train.epochs
    assert sized >= 2, f"the budget fits {sized} epoch(s) here: too few to restore mid-run"
    restored = Trainer(preset, "cpu")
    restored.load_state_dict(states[1])
    later, _ = _run(restored)
    # no second probe: the restored run keeps the epochs (and the probe's numbers) decided the first time
    assert [r["epoch"] for r in later] == list(range(2, sized + 1))
    assert all(r["epochs_total"] == sized for r in later)
    assert all(r["probe_seconds_per_step"] == unbroken[0]["probe_seconds_per_step"] for r in later)
    # and the same cycle: same LR at every epoch, annihilated at the end, the same losses (CPU, same seed)
    for a, b in zip(later, unbroken[1:], strict=True):
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)
    assert later[-1]["lr"] == pytest.approx(0.5 / 10 / 100, rel=0.05)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_continuation_trains_with_its_own_constant_momentum(optimizer: str) -> None:
    torch.set_num_threads(1)
    policy = {"name": "constant", "lr": 0.01 if optimizer == "adam" else 0.05}
    base = tiny_preset_dict(policy={**policy, "momentum": 0.95}, optimizer={"name": optimizer})
    _, states = _run(Trainer(load_preset(base, {"epochs": 4}), "cpu"))
    finals = {}
    for momentum in (0.95, 0.5):
        child = Trainer(load_preset(base, {"epochs": 4, "momentum": momentum}), "cpu")
        child.load_snapshot(states[2], "parent@2")
        results, _ = _run(child)
        # every step of the continuation used its own momentum (SGD's momentum, Adam's β1), not the parent's
        assert all(r["momentum"] == pytest.approx(momentum) for r in results)
        group = child.optimizer.param_groups[0]
        assert (group["betas"][0] if optimizer == "adam" else group["momentum"]) == pytest.approx(momentum)
        finals[momentum] = results[-1]["val_loss"]
    # and it acts: the two continuations of one snapshot part ways
    assert finals[0.95] != pytest.approx(finals[0.5], rel=1e-6)


def test_a_base_run_restored_from_a_checkpoint_snapshots_at_the_same_epoch() -> None:
    torch.set_num_threads(1)
    # a constant-LR base run whose validation loss runs horizontal at epoch 7 (min_epochs 3)
    preset = load_preset(
        tiny_preset_dict(policy={"name": "constant", "lr": 0.05, "momentum": 0.9}),
        {"epochs": 15, "train.stop_when_horizontal": True, "train.test_at_end": False},
    )
    straight, states = _run(Trainer(preset, "cpu"))
    snapshot = [r["epoch"] for r in straight if r["snapshot"]]
    assert len(snapshot) == 1
    assert straight[-1]["snapshot"]
    assert snapshot[0] >= 5
    # a retry restored two epochs before that: the detector's history comes back with the checkpoint
    restored = Trainer(preset, "cpu")
    restored.load_state_dict(states[snapshot[0] - 2])
    retried, _ = _run(restored)
    assert [r["epoch"] for r in retried if r["snapshot"]] == snapshot
    assert retried[-1]["epoch"] == snapshot[0]
    assert restored.val_losses == pytest.approx([r["val_loss"] for r in straight], rel=1e-6)


def test_an_own_loop_base_run_restored_from_a_checkpoint_snapshots_at_the_same_epoch() -> None:
    from tunekit.own_loop import run_loop

    torch.set_num_threads(1)
    # the same base run through a user's own loop (the one tests/test_own_loop.py drives)
    preset = load_preset(
        tiny_preset_dict(policy={"name": "constant", "lr": 0.05, "momentum": 0.9}, loop={"factory": "tests.test_own_loop:fit"}),
        {"epochs": 15, "train.stop_when_horizontal": True, "train.test_at_end": False},
    )
    states: dict[int, dict[str, Any]] = {}

    def keep(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if state is not None:
            states[metrics["epoch"]] = copy.deepcopy(state)

    straight = run_loop(preset, keep).history
    snapshot = [r["epoch"] for r in straight if r["snapshot"]]
    assert len(snapshot) == 1
    assert snapshot[0] >= 5
    retried = run_loop(preset, state=states[snapshot[0] - 2]).history
    assert [r["epoch"] for r in retried if r["snapshot"]] == snapshot
    assert retried[-1]["epoch"] == snapshot[0]

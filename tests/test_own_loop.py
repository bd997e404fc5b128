"""A user's own training loop under tunekit (:class:`tunekit.Control`): real loops on scikit-learn's digits.

What an LR finder most often gets wrong is what a step is: these loops skip an AMP step and
accumulate gradients, and the schedule must count only the optimizer steps that ran.
"""

from __future__ import annotations

import importlib
import io
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tunekit import Control
from tunekit.components import ComponentError
from tunekit.core.lr_range import range_test_over
from tunekit.own_loop import CHECKPOINT_WRITER, run_loop
from tunekit.presets import Preset, load_preset, preset_to_dict, range_test_preset
from tunekit.train.loop import train
from tunekit.train.schedules import build_schedule, fast_forward, get_momentum

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_loop"


def digits_preset(**overrides: Any) -> Preset:
    """scikit-learn's digits (1 293 training samples after the validation carve), a small MLP, a 1cycle."""
    raw: dict[str, Any] = {
        "name": "own-loop",
        "dataset": {"name": "digits"},
        "model": {"name": "mlp", "width": 32},
        "train": {"epochs": 3, "batch_size": 64, "seed": 0},
        "policy": {"name": "one_cycle", "max_lr": 0.3},
        "weight_decay": 1e-4,
        "loop": {"factory": "tests.test_own_loop:fit"},
        "search": {"range_test": {"min_lr": 0.01, "max_lr": 1.0, "epochs": 1, "eval_every": 4, "eval_samples": 100}},
    }
    return load_preset(raw, overrides)


class Collect:
    """A report callback that keeps every result and every checkpoint, saved the way a trial saves them."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []
        self.states: dict[int, bytes] = {}  # epoch → torch.save bytes

    def __call__(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        self.results.append(metrics)
        if state is not None:
            buffer = io.BytesIO()
            torch.save(state, buffer)  # the state shares tensors with the live model: serialise now
            self.states[metrics["epoch"]] = buffer.getvalue()

    def state(self, epoch: int) -> dict[str, Any]:
        return torch.load(io.BytesIO(self.states[epoch]), weights_only=True)


@torch.no_grad()
def evaluate(control: Control, model: torch.nn.Module, split: str = "validation") -> tuple[float, float]:
    """Mean loss and accuracy over a split."""
    model.eval()
    loss = correct = count = 0.0
    for x, y in control.loader(split):
        out = model(x.to(control.device))
        loss += float(control.loss_fn(out, y)) * len(y)
        correct += float((out.argmax(1) == y).sum())
        count += len(y)
    model.train()
    return loss / count, correct / count


def fit(control: Control, amp: bool = False, accumulate: int = 1, skip_batch: int | None = None) -> list[float]:
    """A hand-written loop: SGD, optionally AMP's GradScaler and gradient accumulation; returns the LR each batch saw."""
    model = control.build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.0)  # tunekit replaces lr, momentum, wd
    scaler = torch.amp.GradScaler(control.device.type) if amp else None
    control.attach(model, optimizer, scaler, accumulate=accumulate)
    seen: list[float] = []
    batch = 0
    for _epoch in control.epochs():
        total = 0.0
        for i, (x, y) in enumerate(control.loader("train")):
            seen.append(optimizer.param_groups[0]["lr"])
            loss = control.loss_fn(model(x.to(control.device)), y.to(control.device)) / accumulate
            if batch == skip_batch:
                loss = loss * math.inf  # inf gradients: the scaler skips this optimizer step
            total += float(loss.detach()) * accumulate
            (scaler.scale(loss) if scaler is not None else loss).backward()
            if (i + 1) % accumulate == 0:
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            batch += 1
        val_loss, acc = evaluate(control, model)
        control.report(
            val_loss,
            acc=acc,
            train_loss=total / (i + 1),
            chance_loss=math.log(10),  # cross-entropy of a uniform guess over 10 digits
            test=lambda: dict(zip(("loss", "acc"), evaluate(control, model, "test"), strict=True)),
        )
        if control.should_stop:
            break
    return seen


def one_cycle_lr(
    step: int, total: int, max_lr: float, div: float = 10.0, annihilation: float = 100.0, pct: float = 0.45
) -> float:
    """The paper's 1cycle (three linear phases) at optimizer step ``step``, written out."""
    low, final = max_lr / div, max_lr / div / annihilation
    up, down, end = pct * total - 1, 2 * pct * total - 2, total - 1
    if step <= up:
        return low + (max_lr - low) * step / up
    if step <= down:
        return max_lr + (low - max_lr) * (step - up) / (down - up)
    return low + (final - low) * (step - down) / (end - down)


@pytest.mark.slow  # trains on digits for a few seconds
def test_a_step_the_grad_scaler_skips_does_not_advance_the_schedule() -> None:
    preset = digits_preset()
    collect = Collect()
    control = Control(preset, report=collect)
    skip = 5
    seen = fit(control, amp=True, skip_batch=skip)
    per_epoch = control.steps_per_epoch
    assert per_epoch == 1293 // 64  # digits' training split after the carve, as the search sizes it
    # every batch but the skipped one was an optimizer step
    assert len(seen) == 3 * per_epoch
    assert control.step == len(seen) - 1
    # the LR sequence is tunekit's schedule stepped once per real step: batch 6 reuses batch 5's LR
    reference = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0, momentum=0.9)
    schedule = build_schedule(reference, preset.policy, per_epoch, preset.train.epochs)
    expected = []
    for batch in range(len(seen)):
        expected.append(reference.param_groups[0]["lr"])
        if batch != skip:
            fast_forward(schedule, 1)
    assert seen == pytest.approx(expected, rel=1e-12)
    assert seen[skip + 1] == seen[skip]
    assert collect.results[-1]["lr"] == seen[-1]  # reported: the LR the last optimizer step used
    # it learned, reported once per epoch, and ended with the test split
    assert [r["epoch"] for r in collect.results] == [1, 2, 3]
    assert collect.results[-1]["val_acc"] > 0.8
    assert collect.results[-1]["test_acc"] > 0.8
    assert control.should_stop
    assert control.stop_reason == "finished"


@pytest.mark.slow  # trains on digits for a few seconds
def test_with_gradient_accumulation_the_schedule_counts_optimizer_steps() -> None:
    preset = digits_preset(**{"train.epochs": 2})
    k = 3
    control = Control(preset)
    seen = fit(control, accumulate=k)
    batches = 1293 // 64
    assert control.steps_per_epoch == batches // k
    total = 2 * (batches // k)
    assert control.total_steps == total == control.step
    # the LR a batch saw is the 1cycle's at the optimizer steps done before it: batch n, n // k steps
    # (an epoch's last batches, fewer than k, carry over into the next epoch's first step)
    for n, lr in enumerate(seen):
        epoch, i = divmod(n, batches)
        steps = epoch * (batches // k) + min(i // k, batches // k)
        assert lr == pytest.approx(one_cycle_lr(steps, total, 0.3), rel=1e-9), n
    assert control.history[-1]["step"] == total


@pytest.mark.slow  # trains on digits for a few seconds
def test_a_checkpoint_from_report_resumes_exactly() -> None:
    preset = digits_preset()
    unbroken = Collect()
    first = Control(preset, report=unbroken)
    seen = fit(first)
    per_epoch = first.steps_per_epoch
    # checkpoints every epoch (checkpoint_every: 1); they load with weights_only
    assert sorted(unbroken.states) == [1, 2, 3]
    state = unbroken.state(1)
    assert state["writer"] == CHECKPOINT_WRITER
    assert state["epoch"] == 1
    assert state["step"] == per_epoch
    # a retry: a fresh process state, a fresh model and optimizer, the checkpoint of epoch 1
    resumed = Collect()
    second = Control(preset, report=resumed, state=state)
    seen_after = fit(second)
    assert second.start_step == 0  # a retry is the same trial: its compute counts from 0
    assert [r["epoch"] for r in resumed.results] == [2, 3]
    assert seen_after == seen[per_epoch:]
    for a, b in zip(unbroken.results[1:], resumed.results, strict=True):
        assert a["val_loss"] == b["val_loss"]
        assert (a["lr"], a["momentum"], a["step"], a["trial_epochs"]) == (b["lr"], b["momentum"], b["step"], b["trial_epochs"])
    end_a, end_b = unbroken.state(3)["model"], resumed.state(3)["model"]
    assert all(torch.equal(end_a[k], end_b[k]) for k in end_a)


@pytest.mark.slow  # trains on digits for a few seconds
def test_a_snapshot_continuation_takes_weights_but_this_presets_schedule_and_weight_decay() -> None:
    parent = Collect()
    fit(Control(digits_preset(**{"train.epochs": 4, "train.stop_at_epoch": 2}), report=parent))
    child_preset = digits_preset(**{"train.epochs": 4, "weight_decay": 3e-2, "policy.momentum": [0.9, 0.8]})
    control = Control(child_preset, report=Collect(), state=parent.state(2), restored_from="/snapshots/epoch-2")
    model = control.build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.5, weight_decay=0.5)
    control.attach(model, optimizer)
    per_epoch = control.steps_per_epoch
    # counters and weights from the snapshot
    assert (control.epoch, control.step, control.start_step) == (2, 2 * per_epoch, 2 * per_epoch)
    snapshot = parent.state(2)["model"]
    assert all(torch.equal(value, snapshot[key]) for key, value in model.state_dict().items())
    # LR, momentum and weight decay from this preset, the schedule fast-forwarded to the snapshot's step
    reference = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0, momentum=0.9)
    schedule = build_schedule(reference, child_preset.policy, per_epoch, 4)
    fast_forward(schedule, 2 * per_epoch)
    group = optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(reference.param_groups[0]["lr"])
    assert get_momentum(optimizer) == pytest.approx(get_momentum(reference))
    assert group["weight_decay"] == 3e-2
    assert list(control.epochs()) == [2, 3]


def range_test_loop(preset: Preset, chance_loss: float | None = None) -> tuple[Control, Collect]:
    """A user's range test loop, the way the docs write it: evaluate when asked, stop when told."""
    collect = Collect()
    control = Control(preset, report=collect)
    model = control.build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    control.attach(model, optimizer)
    for _ in control.epochs():
        for x, y in control.loader("train"):
            optimizer.zero_grad()
            control.loss_fn(model(x), y).backward()
            optimizer.step()
            if control.should_evaluate:
                control.recalibrate_batchnorm()
                val_loss, acc = evaluate(control, model)
                control.report(val_loss, acc=acc, chance_loss=chance_loss)
            if control.should_stop:
                break
    return control, collect


@pytest.mark.slow  # trains on digits for a few seconds
def test_a_range_test_evaluates_every_eval_every_steps_without_checkpoints() -> None:
    control, collect = range_test_loop(range_test_preset(digits_preset()))
    assert control.range_test
    assert control.eval_every == 4
    assert control.total_steps == control.steps_per_epoch
    steps = [r["step"] for r in collect.results]
    assert steps == [*range(4, control.total_steps + 1, 4), *([control.total_steps] if control.total_steps % 4 else [])]
    assert not collect.states  # never a checkpoint during a range test
    # the LR rose from min_lr towards max_lr along the results
    lrs = [r["lr"] for r in collect.results]
    assert lrs == sorted(lrs)
    assert lrs[0] >= 0.01
    assert lrs[-1] <= 1.0
    assert control.done
    assert control.should_stop


@pytest.mark.slow  # trains on digits for a few seconds
def test_a_users_range_test_ends_once_its_curve_has_diverged() -> None:
    # 200 steps to LR 3, evaluated every 4: 2.18, 1.75, 1.39, 3.10, 1.87, 1.65, then 2.40, 3.84, 5.05 — above
    # chance and climbing, over at evaluation 9 — and at chance (2.30–2.44) for the 40 evaluations left. A loop
    # that says the chance level (ln 10) lets the test end there; without it only an explosion would.
    ramp = {"search.range_test.max_lr": 3.0, "search.range_test.epochs": 10}
    chance = math.log(10)
    control, collect = range_test_loop(range_test_preset(digits_preset(**ramp)), chance)
    _, whole = range_test_loop(
        range_test_preset(digits_preset(**ramp, **{"search.range_test.stop_when_diverged": False})), chance
    )
    losses = [r["val_loss"] for r in collect.results]
    assert len(whole.results) == 50
    assert len(losses) < 15
    assert collect.results[-1]["diverged"]
    assert control.should_stop
    assert not control.done  # steps were left: the loop stopped because the curve diverged
    assert len(losses) < len(whole.results)
    assert not whole.results[-1]["diverged"]
    assert losses == [r["val_loss"] for r in whole.results[: len(losses)]]
    assert range_test_over([r["lr"] for r in collect.results], losses, collect.results[-1].get("chance_loss")) is not None


@pytest.mark.slow  # trains on digits for a few seconds
def test_results_carry_the_keys_of_tunekits_own_loop() -> None:
    preset = digits_preset(**{"train.epochs": 1})
    ours = Collect()
    fit(Control(preset, report=ours))
    theirs = train(preset)
    assert set(ours.results[-1]) == set(theirs[-1])
    row = ours.results[-1]
    assert row["epochs_total"] == 1
    assert row["batch_size"] == 64
    assert row["trial_epochs"] == 1.0
    assert row["weight_decay"] == 1e-4
    assert row["samples_per_s"] > 0
    assert row["diverged"] is False
    assert row["snapshot"] is False


def test_metric_names_are_normalised_and_the_presets_metric_is_required() -> None:
    control = Control(digits_preset())
    model = control.build_model()
    control.attach(model, torch.optim.SGD(model.parameters(), lr=1.0))
    row = control.report(0.5, val_acc=0.8, r2=0.1, test_extra=2.0)
    assert (row["val_acc"], row["val_r2"], row["test_extra"]) == (0.8, 0.1, 2.0)
    assert math.isnan(row["val_loss_se"])  # not given: unknown, and the tie rule reads no band from it
    assert control.report(0.5, val_acc=0.8, loss_se=0.02)["val_loss_se"] == 0.02
    with pytest.raises(ComponentError, match="val_acc"):
        control.report(0.5)
    diverged = control.report(math.nan)  # a diverged run need not compute its metric
    assert diverged["diverged"]
    assert math.isnan(diverged["val_acc"])
    assert control.should_stop


def silent(control: Control) -> None:
    model = control.build_model()
    control.attach(model, torch.optim.SGD(model.parameters(), lr=1.0))


def test_a_loop_that_never_reports_is_an_error_naming_it() -> None:
    preset = digits_preset(loop={"factory": "tests.test_own_loop:silent"})
    with pytest.raises(ComponentError, match=r"silent returned without calling control.report"):
        run_loop(preset)


@pytest.mark.slow  # trains on digits for a few seconds
def test_the_example_runs_a_training_and_a_range_test() -> None:
    sys.path.insert(0, str(EXAMPLE))
    try:
        importlib.invalidate_caches()
        preset = load_preset(EXAMPLE / "preset.yaml", {"epochs": 2})
        trained = run_loop(preset).history
        probed = run_loop(range_test_preset(preset)).history
    finally:
        sys.path.remove(str(EXAMPLE))
        sys.modules.pop("train", None)
    assert [r["epoch"] for r in trained] == [1, 2]
    assert trained[-1]["val_acc"] > 0.5
    assert "test_acc" in trained[-1]
    # the same loop as a range test: an evaluation every eval_every steps, the LR rising
    assert [r["step"] for r in probed] == list(range(10, 61, 10))  # 3 epochs of 20 steps
    lrs = [r["lr"] for r in probed]
    assert lrs == sorted(lrs)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_ray_tune_trial_runs_the_users_loop(tmp_path: Path) -> None:
    from ray import tune

    from tunekit.schedulers import LossShapeScheduler
    from tunekit.trainable import load_state, train_fn

    scheduler = LossShapeScheduler(metric="val_loss", mode="min", grace_period=1)
    tuner = tune.Tuner(
        tune.with_resources(train_fn, {"cpu": 1}),
        param_space={"preset": preset_to_dict(digits_preset())},
        tune_config=tune.TuneConfig(scheduler=scheduler, metric="val_loss", mode="min"),
        run_config=tune.RunConfig(name="own-loop", storage_path=str(tmp_path), callbacks=[scheduler.recorder()], verbose=0),
    )
    result = tuner.fit()[0]
    assert result.error is None
    rows = result.metrics_dataframe
    # one val_loss row per epoch, read by the loss-shape scheduler (the recorder stamps its decision)
    assert rows["epoch"].tolist() == [1, 2, 3]
    assert rows["val_loss"].notna().all()
    assert (rows["diagnosis"] != "").all()  # the scheduler diagnosed the val_loss curve at every result
    assert result.metrics["test_acc"] > 0.8
    assert result.metrics["device"] == "cpu"
    assert result.checkpoint is not None
    assert load_state(result.checkpoint.path)["writer"] == CHECKPOINT_WRITER
    # a continuation from that checkpoint (restore_from) goes through the same dispatch
    child = tune.Tuner(
        tune.with_resources(train_fn, {"cpu": 1}),
        param_space={"preset": preset_to_dict(digits_preset()), "epochs": 5, "restore_from": result.checkpoint.path},
        run_config=tune.RunConfig(name="own-loop-child", storage_path=str(tmp_path), verbose=0),
    ).fit()[0]
    assert child.error is None
    assert child.metrics_dataframe["epoch"].tolist() == [4, 5]
    assert child.metrics["restored_from"] == result.checkpoint.path
    assert child.metrics["trial_epochs"] == 2.0

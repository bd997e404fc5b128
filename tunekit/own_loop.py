"""Your own PyTorch training loop, driven by tunekit's schedules and decisions: :class:`Control`.

A search needs three things from every training run: the LR, momentum and weight decay the
recipe chose, applied step by step as the preset's policy says; one result per evaluation,
with the keys the searchers and the loss-shape scheduler read; and checkpoints that a retry or
a snapshot continuation resumes from. tunekit's own loop (:class:`tunekit.train.loop.Trainer`)
does all three. A preset with ``loop: {factory: "mypkg.train:fit"}`` keeps the user's loop
instead: each trial calls ``fit(control, **loop.kwargs)`` with a :class:`Control` that does the
three things around it::

    def fit(control: tunekit.Control) -> None:
        model = Net().to(control.device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # lr, momentum, wd: set by tunekit
        control.attach(model, optimizer)
        for epoch in control.epochs():
            for x, y in control.loader("train"):
                ...  # forward, backward
                optimizer.step()  # the schedule advances here, and only here
            control.report(val_loss, acc=val_acc, train_loss=train_loss)
            if control.should_stop:
                break

**What counts as a step.** The schedule advances in an optimizer step post-hook, once for every
``optimizer.step()`` that really ran. A step that AMP's ``GradScaler`` skips (inf/NaN
gradients: it does not call ``optimizer.step()`` at all) leaves the LR where it was, and with
gradient accumulation (``optimizer.step()`` every k batches) k batches are one step. Both are
what tunekit's own loop does, and what the search sized its phases in; an LR finder that counts
batches instead runs its ramp too fast under accumulation and shifts it after every skipped
AMP step. See ``docs/own_loop.md``.

Nothing here imports Ray: a :class:`Control` can be built with a plain ``report`` callback (a
list appender) and run in a notebook or a test; :func:`run_loop` is what the trial function
(:func:`tunekit.trainable.train_fn`) calls.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset
from torch.utils.hooks import RemovableHandle

from tunekit.components import ComponentError, LossFn, MetricFn, build_loss, build_metric, factory_name, resolve
from tunekit.core import sizing
from tunekit.core.curves import runs_horizontal
from tunekit.core.lr_range import range_test_over
from tunekit.presets import Preset, RangeTestPolicy, preset_to_dict
from tunekit.train.data import epoch_generator, load_splits, stratified_subset
from tunekit.train.loop import CHECKPOINT_FORMAT, Report, pick_device, recalibrate_batchnorm
from tunekit.train.schedules import build_schedule, fast_forward, get_momentum, initial_momentum, set_momentum, total_iterations

__all__ = ["CHECKPOINT_WRITER", "Control", "Stateful", "run_loop"]

#: ``state["writer"]`` of a checkpoint written by :meth:`Control.state_dict` (``state["format"]`` is the version).
CHECKPOINT_WRITER = "own_loop"
#: Split names :meth:`Control.split` accepts, and their aliases.
SPLITS: dict[str, int] = {"train": 0, "validation": 1, "val": 1, "test": 2}
#: Evaluation batches are at least this large (as in tunekit's loop): no gradients, so memory allows it.
EVAL_BATCH_MIN = 256
#: Param-group keys that pick an update kernel for this device; a checkpoint from another device must not change them.
_KERNEL_KEYS = ("fused", "foreach", "capturable", "differentiable")

#: What ``report(test=...)`` returns: the test loss, or ``{"loss": …, "acc": …}`` (reported as ``test_<name>``).
TestResult = float | Mapping[str, float]


class Stateful(Protocol):
    """Anything a checkpoint can hold: an EMA model, a sampler, a data-loader state."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state_dict: Any, /) -> Any: ...


class _Throughput:
    """Samples per second over the optimizer steps since the last report, evaluation time excluded.

    Timed between optimizer steps (n steps give n - 1 intervals), so the time spent evaluating
    before a report never enters the rate.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.first: float | None = None
        self.last = 0.0
        self.intervals = 0

    def tick(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        else:
            self.intervals += 1
        self.last = now

    def rate(self, samples_per_step: int) -> float:
        if self.first is None or self.intervals == 0 or self.last <= self.first:
            return 0.0
        return self.intervals * samples_per_step / (self.last - self.first)


class Control:
    """One trial's hyper-parameters, schedule, evaluation timing, reports and checkpoints, for a user's loop.

    Args:
        preset: the validated preset of this trial (overrides applied).
        report: ``report(metrics, checkpoint_state)``, tunekit's report callback (see
            :data:`tunekit.train.loop.Report`); None keeps the results in :attr:`history` only.
        state: a checkpoint state (:meth:`state_dict`) to resume from; :meth:`attach` loads it.
        device: where the loop trains; default ``cuda:0`` when the preset asks for a GPU and one is visible.
        restored_from: with ``state``, the snapshot it came from: a continuation that takes weights,
            optimizer state and counters from the snapshot but its LR schedule, momentum and weight
            decay from ``preset``. Without it ``state`` is this trial's own checkpoint (a retry): an
            exact resume.
        splits: ``(train, validation, test)`` datasets to use instead of loading ``preset.dataset``.

    Building one seeds torch, ``random`` and numpy with ``train.seed``, so a model built next is
    initialised the same in every trial of that seed.
    """

    def __init__(
        self,
        preset: Preset,
        report: Report | None = None,
        state: Mapping[str, Any] | None = None,
        device: torch.device | str | None = None,
        *,
        restored_from: str | None = None,
        splits: tuple[Dataset[Any], Dataset[Any], Dataset[Any]] | None = None,
    ) -> None:
        if preset.train.time_budget_s is not None and not isinstance(preset.policy, RangeTestPolicy):
            raise ComponentError(
                "train.time_budget_s: sizing a run to a time budget needs tunekit's own loop (it times a few steps "
                "first); with loop: set train.epochs and leave search.batch_size out"
            )
        if restored_from is not None and state is None:
            raise ValueError("restored_from names a snapshot: pass its state too (tunekit.trainable.load_state)")
        self.preset = preset
        self.device = torch.device(device) if device is not None else pick_device(preset.resources.gpu)
        self.history: list[dict[str, Any]] = []  # every result reported, in order
        self.restored_from = restored_from
        self.chance_loss: float | None = None  # as the loop passes it to report()
        #: Why the run ended: "diverged", "snapshot" or "finished"; None while it goes on.
        self.stop_reason: str | None = None
        # counters (global across continuations, as tunekit's loop counts them)
        self.epoch = 0  # completed epochs
        self.step = 0  # optimizer steps that ran
        self.start_step = 0  # where this trial began: a continuation starts at its snapshot's step
        self.steps_per_epoch = 0  # set by attach()
        self.total_steps = 0  # set by attach(): the schedule's length in optimizer steps
        self.accumulate = 1
        self._report_fn = report
        self._state = dict(state) if state is not None else None
        self._splits = splits
        self._model: nn.Module | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._scaler: torch.amp.GradScaler | None = None
        self._extra: dict[str, Stateful] = {}
        self._schedule: LRScheduler | None = None
        self._hook: RemovableHandle | None = None
        self._lr = math.nan  # the LR and momentum the last optimizer step used
        self._momentum = math.nan
        self._current: int | None = None  # the epoch epochs() is in
        self._reported_step = 0  # step of the last report (or of attach)
        self._val_losses: list[float] = []  # per epoch of this trial, for stop_when_horizontal
        self._range_curve: tuple[list[float], list[float]] = ([], [])  # (lr, val_loss) of a range test, for its stop
        self._throughput = _Throughput()
        self._num_classes: int | None = None
        self._input_shape: tuple[int, ...] = ()
        self._loss_fn: LossFn | None = None
        self._metric_fn: MetricFn | None = None
        _seed_everything(preset.train.seed)

    # ------------------------------------------------------------------ hyper-parameters

    @property
    def batch_size(self) -> int:
        """Samples per batch the loop loads (``train.batch_size``); with accumulation, per micro-batch."""
        return self.preset.train.batch_size

    @property
    def weight_decay(self) -> float:
        """The weight decay :meth:`attach` sets on every param group."""
        return self.preset.weight_decay

    @property
    def seed(self) -> int:
        return self.preset.train.seed

    @property
    def num_epochs(self) -> int:
        """``train.epochs``: the length the LR schedule spans (a run may stop earlier, see :meth:`epochs`)."""
        return self.preset.train.epochs

    @property
    def range_test(self) -> bool:
        """This trial is an LR range test: evaluate every :attr:`eval_every` steps, until :attr:`done`."""
        return isinstance(self.preset.policy, RangeTestPolicy)

    @property
    def eval_every(self) -> int | None:
        """Optimizer steps between evaluations in a range test; None otherwise (evaluate once per epoch)."""
        policy = self.preset.policy
        return policy.eval_every if isinstance(policy, RangeTestPolicy) else None

    @property
    def eval_samples(self) -> int | None:
        """A range test evaluates on this many validation samples (:meth:`loader` applies it); None: all."""
        policy = self.preset.policy
        return policy.eval_samples if isinstance(policy, RangeTestPolicy) else None

    @property
    def metric_name(self) -> str | None:
        """The metric the decisions read as ``val_<name>`` (``acc`` for a default classification); report it."""
        return self.preset.metric_name

    @property
    def loss_fn(self) -> LossFn:
        """The preset's loss (cross-entropy unless ``loss:`` says otherwise), batch mean."""
        if self._loss_fn is None:
            self._loss_fn = build_loss(self.preset.loss)
        return self._loss_fn

    @property
    def metric_fn(self) -> MetricFn | None:
        """The preset's metric ``fn(outputs, targets) -> float`` (top-1 accuracy by default), or None."""
        if self._metric_fn is None:
            self._metric_fn = build_metric(self.preset.metric, self.preset.classification)
        return self._metric_fn

    @property
    def lr(self) -> float:
        """The LR the last optimizer step used (before any: the first step's)."""
        return self._lr

    @property
    def momentum(self) -> float:
        """The momentum (SGD) or β1 (Adam) the last optimizer step used."""
        return self._momentum

    # ------------------------------------------------------------------ data and model

    def split(self, name: str) -> Dataset[Any]:
        """The ``train``, ``validation`` (or ``val``) or ``test`` split: a map-style dataset of ``(input, target)``.

        Loaded once, on the CPU, by :func:`tunekit.train.data.load_splits`: a bundled dataset's
        tensors normalised as tunekit's loop sees them, a user factory's splits as it returned them;
        a dataset without a validation split gets the seeded carve every trial shares.
        """
        if name not in SPLITS:
            raise ValueError(f"split {name!r}: give one of train, validation, test")
        if self._splits is None:
            self._splits = load_splits(self.preset.dataset, self.seed)
        return self._splits[SPLITS[name]]

    @property
    def train(self) -> Dataset[Any]:
        return self.split("train")

    @property
    def validation(self) -> Dataset[Any]:
        return self.split("validation")

    @property
    def test(self) -> Dataset[Any]:
        return self.split("test")

    def loader(
        self, split: str = "train", *, epoch: int | None = None, limit: int | None = None, **kwargs: Any
    ) -> DataLoader[Any]:
        """Batches of ``split`` as tunekit's loop makes them; ``kwargs`` go to the ``DataLoader`` (``num_workers``, …).

        ``train``: :attr:`batch_size` samples per batch, shuffled by a generator seeded with
        ``(seed, epoch)`` — the epoch :meth:`epochs` is in unless given — so a resumed run sees the
        same batches as an unbroken one; the last partial batch is dropped, so an epoch has
        exactly the optimizer steps the search sized its phases with. Other splits: in order, in
        batches of at least 256; in a range test the validation split is cut to :attr:`eval_samples`
        of it unless ``limit`` says otherwise — a seeded sample of every class, the fixed subset
        tunekit's range tests read (:func:`tunekit.train.data.stratified_subset`).
        """
        data = self.split(split)
        training = SPLITS[split] == 0
        if limit is None and SPLITS[split] == 1:
            limit = self.eval_samples
        if limit is not None:
            data = stratified_subset(data, limit, self.preset.dataset.split_seed)
        size = len(data)  # type: ignore[arg-type]
        if training:
            generator = epoch_generator(self.seed, self._epoch_in_progress() if epoch is None else epoch)
            sampler: RandomSampler | SequentialSampler = RandomSampler(data, generator=generator)  # type: ignore[arg-type]
            batches = BatchSampler(sampler, self.batch_size, drop_last=size >= self.batch_size)
        else:
            batches = BatchSampler(SequentialSampler(data), max(self.batch_size, EVAL_BATCH_MIN), drop_last=False)  # type: ignore[arg-type]
        if isinstance(data, TensorDataset):  # one indexing per batch instead of one per sample
            return DataLoader(data, batch_size=None, sampler=batches, **kwargs)
        return DataLoader(data, batch_sampler=batches, **kwargs)

    def build_model(self) -> nn.Module:
        """The preset's ``model:`` (bundled or the user's factory), initialised as tunekit's loop does, on :attr:`device`.

        Optional: a loop may build its own model; the preset still names one (it is validated,
        and the pre-flight probe tries it).
        """
        from tunekit.train.models import build_model

        train = self.split("train")
        first = train[0][0]
        self._input_shape = tuple(first.shape) if hasattr(first, "shape") else ()
        self._num_classes = _num_classes(train) if self.preset.model.factory is None else None
        torch.manual_seed(self.seed)
        return build_model(self.preset.model, self._num_classes, self._input_shape).to(self.device)

    # ------------------------------------------------------------------ attach

    def attach(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None = None,
        *,
        steps_per_epoch: int | None = None,
        accumulate: int = 1,
        **extra: Stateful,
    ) -> None:
        """Take over the optimizer's LR, momentum and weight decay, and resume from a checkpoint if there is one.

        Every param group gets the preset's weight decay and the policy's momentum (SGD's
        ``momentum`` or Adam's β1) and LR, and the LR schedule advances once per optimizer step
        that runs (a post-hook on ``optimizer.step``): not on a step ``scaler`` skips, and once per
        ``accumulate`` batches with gradient accumulation.

        Args:
            model: the network; its weights are checkpointed and restored.
            optimizer: any torch optimizer with momentum or betas (SGD, Adam, AdamW, …); the LR,
                momentum and weight decay it was built with are replaced.
            scaler: AMP's ``GradScaler``, if the loop uses one (its scale is checkpointed).
            steps_per_epoch: optimizer steps per epoch; default ``len(train) // batch_size // accumulate``
                (:func:`tunekit.core.sizing.steps_per_epoch`: what the search sized its phases with).
            accumulate: batches per optimizer step, when the loop accumulates gradients.
            extra: more objects to checkpoint by name (anything with ``state_dict``/``load_state_dict``).
        """
        if self._optimizer is not None:
            raise RuntimeError("attach() was already called: one model and optimizer per trial")
        if accumulate < 1:
            raise ValueError(f"accumulate must be ≥ 1 (batches per optimizer step), got {accumulate}")
        for name, obj in extra.items():
            if not callable(getattr(obj, "state_dict", None)) or not callable(getattr(obj, "load_state_dict", None)):
                raise TypeError(f"attach({name}=...): a {type(obj).__name__} has no state_dict/load_state_dict to checkpoint")
        self._model, self._optimizer, self._scaler, self._extra = model, optimizer, scaler, dict(extra)
        self.accumulate = accumulate
        if steps_per_epoch is None:
            steps_per_epoch = max(1, sizing.steps_per_epoch(len(self.train), self.batch_size) // accumulate)  # type: ignore[arg-type]
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be ≥ 1, got {steps_per_epoch}")
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = total_iterations(self.preset.policy, steps_per_epoch, self.num_epochs)
        self._take_over(optimizer)
        self._schedule = build_schedule(optimizer, self.preset.policy, steps_per_epoch, self.num_epochs)
        if self._state is not None:
            self._restore(self._state)
        self._lr, self._momentum = float(optimizer.param_groups[0]["lr"]), get_momentum(optimizer)
        self._reported_step = self.step
        self._hook = optimizer.register_step_post_hook(self._after_step)

    def _take_over(self, optimizer: torch.optim.Optimizer) -> None:
        """The preset's weight decay and first momentum on every group (the schedule sets the LR)."""
        for i, group in enumerate(optimizer.param_groups):
            if "momentum" not in group and "betas" not in group:
                raise ComponentError(
                    f"attach: param group {i} of {type(optimizer).__name__} has neither momentum nor betas; the recipe "
                    "tunes momentum (SGD) or β1 (Adam, AdamW): use one of those optimizers"
                )
            group["weight_decay"] = self.preset.weight_decay
        set_momentum(optimizer, initial_momentum(self.preset.policy))

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """Runs after every optimizer step that ran: count it and move the schedule to the next step's LR."""
        self._lr, self._momentum = float(optimizer.param_groups[0]["lr"]), get_momentum(optimizer)
        self._throughput.tick()
        if self.step < self.total_steps and self._schedule is not None:  # past the end the LR stays at its last value
            self._schedule.step()
        self.step += 1

    def detach(self) -> None:
        """Remove the step hook: later optimizer steps no longer move the schedule (the trial is over)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs: plain tensors, numbers and dicts (``torch.load(weights_only=True)``).

        The state shares tensors with the live model: save (or deep-copy) it before training on.
        """
        model, optimizer, schedule = self._attached("state_dict()")
        return {
            "format": CHECKPOINT_FORMAT,
            "writer": CHECKPOINT_WRITER,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "scaler": self._scaler.state_dict() if self._scaler is not None else None,
            "extra": {name: obj.state_dict() for name, obj in self._extra.items()},
            "epoch": self.epoch,
            "step": self.step,
            "start_step": self.start_step,
            "steps_per_epoch": self.steps_per_epoch,
            "accumulate": self.accumulate,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "preset": preset_to_dict(self.preset),
            "num_classes": self._num_classes,  # set by build_model() for a bundled model; what rebuilding it needs
            "input_shape": list(self._input_shape),
            "val_losses": list(self._val_losses),  # the horizontal detector's history
        }

    def _restore(self, state: Mapping[str, Any]) -> None:
        """Load ``state`` into the attached objects: exactly (a retry), or as a snapshot continuation.

        Mirrors :meth:`tunekit.train.loop.Trainer.load_state_dict` and ``load_snapshot``.
        """
        model, optimizer, _ = self._attached("attach()")
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"checkpoint format {state.get('format')!r} is not {CHECKPOINT_FORMAT}; it was written by another tunekit version"
            )
        model.load_state_dict(state["model"])
        configured = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        if self._scaler is not None and state.get("scaler"):
            self._scaler.load_state_dict(state["scaler"])
        for name, obj in self._extra.items():
            if name in state.get("extra", {}):
                obj.load_state_dict(state["extra"][name])
        if self.restored_from is not None:
            self._continue_snapshot(optimizer, configured)
            return
        # a retry: the update kernel follows this run's device; everything else is the saved run's
        for group, ours in zip(optimizer.param_groups, configured, strict=True):
            group.update({k: ours[k] for k in _KERNEL_KEYS if k in ours})
        assert self._schedule is not None
        self._schedule.load_state_dict(state["schedule"])
        self.start_step = int(state.get("start_step", 0))
        self._val_losses = [float(v) for v in state.get("val_losses", [])]
        torch.set_rng_state(state["rng_cpu"])
        if self.device.type == "cuda" and state.get("rng_cuda"):
            torch.cuda.set_rng_state_all(state["rng_cuda"])

    def _continue_snapshot(self, optimizer: torch.optim.Optimizer, configured: list[dict[str, Any]]) -> None:
        """Momentum buffers from the snapshot; LR schedule, momentum, weight decay (every group setting) from this trial.

        The optimizer state dict carries the parent's hyper-parameters: put this trial's back,
        then rebuild the schedule and advance it to the snapshot's step. Epoch budgets are
        absolute: the run trains until ``train.epochs`` in total.
        """
        for group, ours in zip(optimizer.param_groups, configured, strict=True):
            group.update(ours)
        self._schedule = build_schedule(optimizer, self.preset.policy, self.steps_per_epoch, self.num_epochs)
        fast_forward(self._schedule, min(self.step, self.total_steps))
        self.start_step = self.step

    # ------------------------------------------------------------------ timing

    @property
    def _end_epoch(self) -> int:
        train = self.preset.train
        return min(train.epochs, train.stop_at_epoch or train.epochs)

    def epochs(self) -> Iterator[int]:
        """The epochs still to train: from the restored epoch to ``train.epochs`` (or ``train.stop_at_epoch``).

        Stops early once :attr:`should_stop`. In a range test it goes on until :attr:`done` (the
        range test's length in optimizer steps), whatever the epoch count, or until a report finds its
        curve diverged (:func:`~tunekit.core.lr_range.range_test_over`; the policy's ``stop_when_diverged``).
        """
        self._attached("epochs()")
        if self.range_test:
            epoch = self.step // self.steps_per_epoch
            while not self.should_stop and not self.done:
                self._current = epoch
                yield epoch
                epoch += 1
            return
        for epoch in range(self.epoch, self._end_epoch):
            if self.should_stop:
                return
            self._current = epoch
            yield epoch
            self.epoch = max(self.epoch, epoch + 1)  # an epoch the loop did not report still counts

    def _epoch_in_progress(self) -> int:
        return self._current if self._current is not None else self.epoch

    @property
    def should_evaluate(self) -> bool:
        """Whether to evaluate and :meth:`report` now: every :attr:`eval_every` steps in a range test
        (and at its last step), else once an epoch's worth of optimizer steps ran since the last report.

        A loop that evaluates at the end of each epoch of :meth:`epochs` need not ask.
        """
        if self._optimizer is None or self.step <= self._reported_step:
            return False
        if self.range_test:
            assert self.eval_every is not None
            return self.step % self.eval_every == 0 or self.step >= self.total_steps
        return self.step - self._reported_step >= self.steps_per_epoch

    @property
    def done(self) -> bool:
        """The schedule's work is done: all the range test's steps ran, or the last epoch was reported."""
        if self.range_test:
            return self._optimizer is not None and self.step >= self.total_steps
        return self.epoch >= self._end_epoch

    @property
    def should_stop(self) -> bool:
        """Stop training: diverged, a snapshot base run whose loss runs horizontal, or the end was reported.

        A stop from Ray's scheduler needs no check: Ray ends the trial at its next report.
        """
        return self.stop_reason is not None or (self.done and self.step == self._reported_step)

    # ------------------------------------------------------------------ reporting

    def report(
        self,
        val_loss: float,
        *,
        train_loss: float | None = None,
        chance_loss: float | None = None,
        test: Callable[[], TestResult] | None = None,
        **metrics: float,
    ) -> dict[str, Any]:
        """Send one result, with the keys tunekit's own loop reports; a checkpoint goes with it when one is due.

        Args:
            val_loss: the mean loss on the validation split (what every decision reads).
            train_loss: the mean training loss since the last report (NaN when not given).
            chance_loss: the loss of a uniform guess (``ln(classes)`` for a cross-entropy), if known.
            test: called once, when this report ends the run (never after a divergence, never in a
                range test): the test split's loss, or ``{"loss": …, "acc": …}``; reported as
                ``test_loss``, ``test_acc``. Lazy, so the test split is read only by the run's last result.
            metrics: ``acc=0.9`` or ``val_acc=0.9`` (reported as ``val_acc``); ``test_*`` keys pass as they are.
                ``loss_se=…`` (``val_loss_se``): the validation loss's standard error over the split's
                samples, which the learning_rate phase's tie rule reads (NaN when not given).

        Returns:
            The result as reported (``epoch``, ``step``, ``val_loss``, ``lr``, …, ``diverged``).

        Raises:
            ComponentError: the preset's metric (``val_<metric_name>``) is missing.
        """
        self._attached("report()")
        if chance_loss is not None:
            self.chance_loss = float(chance_loss)
        val_loss = float(val_loss)
        diverged = not math.isfinite(val_loss)
        self.epoch = self.step // self.steps_per_epoch if self.range_test else self._epoch_in_progress() + 1
        result = self._result(val_loss, train_loss, diverged, _metric_keys(metrics))
        state: dict[str, Any] | None = None
        if self.range_test:
            self._range_curve[0].append(self._lr)
            self._range_curve[1].append(val_loss)
            policy = self.preset.policy
            over = isinstance(policy, RangeTestPolicy) and policy.stop_when_diverged
            diverged = diverged or (over and range_test_over(*self._range_curve, self.chance_loss) is not None)
            result["diverged"] = diverged
            finished = diverged or self.step >= self.total_steps
        else:
            self._val_losses.append(val_loss)
            result["snapshot"] = bool(self.preset.train.stop_when_horizontal and self._is_horizontal())
            finished = diverged or result["snapshot"] or self.epoch >= self._end_epoch
            if finished and not diverged and test is not None and self.preset.train.test_at_end:
                result.update(_test_keys(test()))
            due = not diverged and (finished or self.epoch % self.preset.train.checkpoint_every == 0)
            state = self.state_dict() if due else None
        if finished:
            self.stop_reason = "diverged" if diverged else "snapshot" if result.get("snapshot") else "finished"
        self._reported_step = self.step
        self._throughput.reset()
        self.history.append(result)
        if self._report_fn is not None:
            self._report_fn(result, state)
        return result

    def _result(self, val_loss: float, train_loss: float | None, diverged: bool, metrics: dict[str, float]) -> dict[str, Any]:
        """The keys of :meth:`tunekit.train.loop.Trainer._result`: searchers cannot tell the loops apart."""
        _, optimizer, _ = self._attached("report()")
        policy = self.preset.policy
        out: dict[str, Any] = {
            "epoch": self.epoch,
            "step": self.step,
            "val_loss": val_loss,
            "val_loss_se": math.nan,  # unknown unless report(..., loss_se=…) gives it (then in metrics, below)
            "train_loss": math.nan if train_loss is None else float(train_loss),
            "lr": self._lr,
            "momentum": self._momentum,
            "weight_decay": float(optimizer.param_groups[0]["weight_decay"]),
            "samples_per_s": self._throughput.rate(self.batch_size * self.accumulate),
            "diverged": diverged,
            "epochs_total": policy.epochs if isinstance(policy, RangeTestPolicy) else self.preset.train.epochs,
            "batch_size": self.batch_size,
            # compute this trial spent, in epochs (a continuation counts from its snapshot)
            "trial_epochs": (self.step - self.start_step) / self.steps_per_epoch,
            **metrics,
        }
        wanted = f"val_{self.metric_name}" if self.metric_name else None
        if wanted and wanted not in out:
            if not diverged:
                raise ComponentError(
                    f"report: the preset's metric is {self.metric_name!r} and decisions read {wanted}; pass "
                    f"control.report(val_loss, {self.metric_name}=...) or set metric:/loss: in the preset"
                )
            out[wanted] = math.nan
        if self.chance_loss is not None:
            out["chance_loss"] = self.chance_loss
        return out

    def _is_horizontal(self) -> bool:
        """The validation loss of this trial's epochs runs horizontal (the rule tunekit's loop stops by)."""
        return runs_horizontal(self.epoch, self._val_losses, self.preset.train.min_epochs, self.chance_loss)

    # ------------------------------------------------------------------ range tests

    @torch.no_grad()
    def recalibrate_batchnorm(self, batches: int | None = None) -> None:
        """Re-estimate BatchNorm statistics at the current weights from a few training batches (``model(x)``).

        Call it before evaluating in a range test, as tunekit's loop does: the weights move faster
        than BatchNorm's running averages follow, and the eval-mode loss is noise without it.
        ``batches`` defaults to the range test's ``bn_recalibration_batches`` (0 otherwise).
        """
        model, _, _ = self._attached("recalibrate_batchnorm()")
        policy = self.preset.policy
        count = (
            batches if batches is not None else (policy.bn_recalibration_batches if isinstance(policy, RangeTestPolicy) else 0)
        )
        source = zip(range(max(count, 0)), self.loader("train", epoch=-1 - self.step), strict=False)
        recalibrate_batchnorm(model, (x.to(self.device) for _, (x, _y) in source), model)

    # ------------------------------------------------------------------ helpers

    def _attached(self, what: str) -> tuple[nn.Module, torch.optim.Optimizer, LRScheduler]:
        if self._model is None or self._optimizer is None or self._schedule is None:
            raise RuntimeError(f"{what}: call control.attach(model, optimizer) first")
        return self._model, self._optimizer, self._schedule


def _seed_everything(seed: int) -> None:
    """Seed torch, ``random`` and numpy: a user loop may draw from any of them."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _num_classes(train: Dataset[Any]) -> int | None:
    """Classes of a classification split: its ``classes`` (torchvision), else the largest integer target + 1."""
    classes = getattr(train, "classes", None)
    if classes is not None:
        return len(classes)
    if isinstance(train, TensorDataset) and len(train.tensors) == 2 and not train.tensors[1].is_floating_point():
        return int(train.tensors[1].max()) + 1
    return None


def _number(name: str, value: Any) -> float:
    try:
        return float(value.item() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError):
        raise ValueError(f"report({name}=...): {type(value).__name__} is not a number") from None


def _metric_keys(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``acc`` → ``val_acc``; ``val_*`` and ``test_*`` as they are."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        key = name if name.startswith(("val_", "test_")) else f"val_{name}"
        if key == "val_loss":
            raise ValueError(f"report({name}=...): the validation loss is report's first argument")
        out[key] = _number(name, value)
    return out


def _test_keys(result: TestResult) -> dict[str, float]:
    """What ``report(test=...)`` returned, as ``test_<name>`` keys."""
    if not isinstance(result, Mapping):
        return {"test_loss": _number("test", result)}
    return {(k if k.startswith("test_") else f"test_{k}"): _number(f"test {k}", v) for k, v in result.items()}


def run_loop(
    preset: Preset,
    report: Report | None = None,
    *,
    state: Mapping[str, Any] | None = None,
    device: torch.device | str | None = None,
    restored_from: str | None = None,
) -> Control:
    """Call ``preset.loop``'s function with a :class:`Control` and check it reported; returns the control.

    What :func:`tunekit.trainable.train_fn` runs for a preset with ``loop:``; usable bare as well
    (``report=None``: the results stay in ``control.history``).

    Raises:
        ComponentError: the preset has no loop, it does not import, or it returned without a report.
    """
    if preset.loop is None:
        raise ComponentError("loop: the preset has no loop section; add loop: {factory: 'mypkg.train:fit'}")
    fn = resolve(preset.loop.factory, "loop.factory")
    control = Control(preset, report, state, device, restored_from=restored_from)
    try:
        fn(control, **preset.loop.kwargs)
    finally:
        control.detach()
    name = factory_name(fn)
    if control._optimizer is None:
        raise ComponentError(f"loop.factory: {name} returned without calling control.attach(model, optimizer)")
    if not control.history and not control.should_stop:
        raise ComponentError(
            f"loop.factory: {name} returned without calling control.report(val_loss, ...); report once per epoch "
            "(in a range test: whenever control.should_evaluate)"
        )
    if control.stop_reason is None and not control.done:
        warnings.warn(
            f"loop.factory: {name} returned at epoch {control.epoch}, step {control.step}, before the schedule's end "
            f"({control.total_steps} steps); iterate control.epochs() to train the whole run",
            stacklevel=2,
        )
    return control

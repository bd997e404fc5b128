"""The training loop: one run of one preset, reported as it goes.

Read it top to bottom: :class:`Trainer` builds data, model, optimiser and schedule from a
preset; :meth:`Trainer.run` trains epoch by epoch (or, for a range test, iteration by
iteration with evaluations every ``eval_every``) and hands each result to a ``report``
callback, with a checkpoint state when one is due. Nothing here knows about Ray.

Results always carry ``epoch`` (completed epochs, counted across continuations), ``step``
(iterations), ``val_loss`` and ``val_<metric>`` (the validation split: what every decision
reads), ``val_loss_se`` (the validation loss's standard error over the split's samples: what a tie
is measured against), ``train_loss``, ``lr``, ``momentum``, ``weight_decay``, ``samples_per_s`` and
``diverged``. The last result of a run that reached its end also carries ``test_loss`` and
``test_<metric>`` (the test split: what is reported, never what is decided on), unless
``train.test_at_end`` is off (a search's trials other than the final replicates). A NaN or
infinite loss ends the run: its last result has ``diverged=True`` and no exception escapes. So
does a range test's curve once it has diverged (an explosion, or back at chance level:
:func:`~tunekit.core.lr_range.range_test_over`), unless its policy's ``stop_when_diverged`` is off.

Given a :class:`~tunekit.train.distributed.Group` of more than one worker, the same loop trains
data-parallel: each worker steps a ``DistributedDataParallel`` model on its share of every total
batch (``train.batch_size``), evaluations and losses are all-reduced, and every stop is agreed
(see :mod:`tunekit.train.distributed`). Without one — the default — nothing of that runs.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tunekit.components import accuracy, build_loss, build_metric, correct, metric_value
from tunekit.core.budget import epochs_for_budget
from tunekit.core.curves import runs_horizontal, standard_error
from tunekit.core.devices import autocast_precision, use_channels_last
from tunekit.core.lr_range import range_test_over
from tunekit.core.sizing import steps_per_epoch
from tunekit.presets import Preset, RangeTestPolicy, preset_to_dict
from tunekit.train.data import Data, Split, load_data
from tunekit.train.distributed import Group, sync_batchnorm
from tunekit.train.models import build_model
from tunekit.train.schedules import build_optimizer, build_schedule, fast_forward, get_momentum, total_iterations

#: ``report(metrics, checkpoint_state)``: the state is a dict for ``torch.save`` or None. It
#: shares tensors with the live model, so save (or deep-copy) it before returning.
Report = Callable[[dict[str, Any], "dict[str, Any] | None"], None]

CHECKPOINT_FORMAT = 1
#: The optimiser's hyper-parameters a continuation takes from its own preset, never from the snapshot.
_OWN_HYPER_PARAMETERS = ("momentum", "dampening", "nesterov", "betas", "eps", "weight_decay")
_DIVERGENCE_CHECK_EVERY = 50  # iterations between finiteness checks (each one is a device sync)
_SE_GROUP = 8  # samples per group whose mean losses give the validation loss's standard error
_REPORT_LATENCY_S = 0.01  # a tune.report round trip, as measured by bench/overhead.py (report_overhead_s)


def pick_device(gpu: float = 0.0) -> torch.device:
    """CUDA device 0 when a GPU is asked for and visible (Ray sets ``CUDA_VISIBLE_DEVICES``), else CPU."""
    if gpu > 0 and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def memory_format(channels_last: bool | None, device: torch.device, input_shape: tuple[int, ...]) -> torch.memory_format:
    """The torch layout :func:`tunekit.core.devices.use_channels_last` decides for this device."""
    wanted = use_channels_last(channels_last, device.type == "cuda", input_shape)
    return torch.channels_last if wanted else torch.contiguous_format


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype :func:`tunekit.core.devices.autocast_precision` decides for this device."""
    on_gpu = device.type == "cuda"
    precision = autocast_precision(mode, on_gpu, on_gpu and torch.cuda.is_bf16_supported())
    if precision is None:
        return None
    return torch.bfloat16 if precision == "bf16" else torch.float16


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, inputs: Iterable[torch.Tensor], forward: Callable[[torch.Tensor], Any]) -> None:
    """Re-estimate the BatchNorm running statistics of ``model`` at its current weights from ``inputs``.

    During a range test the weights move faster than BN's running averages follow; without this
    the eval-mode validation loss is chaos (see ARCHITECTURE.md, "Range tests on BN networks").
    Statistics become the plain average over ``inputs`` (each passed to ``forward``); nothing
    happens for a model without BatchNorm or with no inputs.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return  # before reading any input: no batch is drawn for a model without BatchNorm
    batches = iter(inputs)
    first = next(batches, None)
    if first is None:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for x in (first, *batches):
        forward(x)
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum


@dataclass
class Evaluation:
    """The mean loss over a split, the metric over it (NaN when the preset has none), and the loss's
    standard error over the split's samples (NaN when too few samples were evaluated)."""

    loss: float
    metric: float = math.nan
    loss_se: float = math.nan


class Trainer:
    """One training run of ``preset`` on ``device`` (CPU unless told otherwise)."""

    def __init__(
        self,
        preset: Preset,
        device: torch.device | str | None = None,
        data: Data | None = None,
        token: str | None = None,
        cpus: float | None = None,
        group: Group | None = None,
    ) -> None:
        """Build everything but do no training; ``cpus``: what the run was given (caps a streamed dataset's workers).

        ``group``: this process is one of several data-parallel workers (None, or a group of one: it trains alone).
        """
        self.preset = preset
        self.group = group if group is not None and group.world_size > 1 else None
        self.shard = self.group.shard if self.group is not None else None
        self.world_size = self.group.world_size if self.group is not None else 1
        self.device = torch.device(device) if device is not None else pick_device(preset.resources.gpu)
        train = preset.train
        self.data = data if data is not None else load_data(preset.dataset, self.device, train.seed, token, cpus)
        torch.manual_seed(train.seed)
        self.memory_format = memory_format(train.channels_last, self.device, self.data.input_shape)
        model = build_model(preset.model, self.data.num_classes, self.data.input_shape)
        if self.group is not None and train.sync_bn:
            model = sync_batchnorm(model)
        self.model = model.to(self.device).to(memory_format=self.memory_format)
        # what a training step runs: the model itself, or its DistributedDataParallel wrapper
        self.net: nn.Module = self.group.wrap(self.model) if self.group is not None else self.model
        self.fused = self.device.type == "cuda"
        self.optimizer = build_optimizer(
            self.model.parameters(), preset.optimizer, preset.policy, preset.weight_decay, fused=self.fused
        )
        self.steps_per_epoch = steps_per_epoch(self.data.num_train, train.batch_size)  # as the search sized its phases
        self.range_test = isinstance(preset.policy, RangeTestPolicy)
        self.epoch = 0  # completed epochs, global across continuations
        self.step = 0  # completed iterations, global
        self.start_step = 0  # where this trial began (a continuation starts at its snapshot's step)
        self.restored_from: str | None = None
        self.loss_fn = build_loss(preset.loss)
        self.metric_fn = build_metric(preset.metric, preset.classification)
        self.metric_name = preset.metric_name
        self.chance_loss: float | None = None  # ln(classes) for a cross-entropy, set at the first evaluation
        self.amp = amp_dtype(train.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        self.probe: dict[str, float] = {}
        # a time budget sizes `train.epochs` once, with a timing probe at the start of `run` (or from a checkpoint)
        self.sized = train.time_budget_s is None or self.range_test
        self._set_epochs(train.epochs)
        self.val_losses: list[float] = []  # per epoch, for stop_when_horizontal

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs; loadable with ``torch.load(weights_only=True)``."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch,
            "step": self.step,
            "start_step": self.start_step,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "preset": preset_to_dict(self.preset),
            "num_classes": self.data.num_classes,  # None for a user dataset: the factory rebuilds the model
            "input_shape": list(self.data.input_shape),
            # the epochs a time budget's probe decided (None: no budget), and the probe's numbers
            "budget_epochs": self.preset.train.epochs if self.probe else None,
            "probe": dict(self.probe),
            "val_losses": list(self.val_losses),  # the horizontal detector's history
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume exactly where ``state`` was saved (a retry of the same run).

        A time-budgeted run keeps the epochs its first probe decided (no second probe: the same
        cycle goes on); a base run keeps the validation losses its horizontal detector has seen.
        """
        if not self.sized and state.get("budget_epochs") is not None:
            self._set_epochs(int(state["budget_epochs"]))  # before the optimizer state: rebuilding sets the LR
            self.probe = {k: float(v) for k, v in state.get("probe", {}).items()}
            self.sized = True
        self._load_weights(state)
        self.start_step = int(state.get("start_step", 0))
        self.schedule.load_state_dict(state["schedule"])
        self.val_losses = [float(v) for v in state.get("val_losses", [])]
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"])
        if self.device.type == "cuda" and state.get("rng_cuda"):
            torch.cuda.set_rng_state_all(state["rng_cuda"])

    def load_snapshot(self, state: dict[str, Any], source: str) -> None:
        """Continue from another run's snapshot with *this* preset's hyper-parameters.

        Weights, BatchNorm statistics, momentum buffers and the epoch/iteration counters come
        from the snapshot; LR schedule, momentum (SGD's, or Adam's β1 and β2), weight decay,
        Nesterov and ε come from this preset (the schedule is rebuilt and advanced to the
        snapshot's iteration). Epoch budgets are absolute: the run trains until ``train.epochs``
        in total.
        """
        self._load_weights(state)
        # The optimizer state dict carries the parent's hyper-parameters: put ours back.
        fresh = build_optimizer(self.model.parameters(), self.preset.optimizer, self.preset.policy, self.preset.weight_decay)
        for group, ref in zip(self.optimizer.param_groups, fresh.param_groups, strict=True):
            group.update({key: ref[key] for key in _OWN_HYPER_PARAMETERS if key in ref})
        self._set_epochs(self.preset.train.epochs)
        fast_forward(self.schedule, min(self.step, self.total_steps))
        self.start_step = self.step
        self.restored_from = source

    def _load_weights(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"checkpoint format {state.get('format')!r} is not {CHECKPOINT_FORMAT}; it was written by another tunekit version"
            )
        self.model.load_state_dict(state["model"])
        # the update kernel follows this run's device, not the one the checkpoint was written on
        kernels: list[dict[str, Any]] = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, kernel in zip(self.optimizer.param_groups, kernels, strict=True):
            group.update(kernel)
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])

    def _set_epochs(self, epochs: int) -> None:
        """Train for ``epochs`` in total: the schedule is built afresh to span them (at iteration 0)."""
        if epochs != self.preset.train.epochs:
            train = self.preset.train.model_copy(update={"epochs": epochs})
            self.preset = self.preset.model_copy(update={"train": train})
        self.total_steps = total_iterations(self.preset.policy, self.steps_per_epoch, epochs)
        self.schedule = build_schedule(self.optimizer, self.preset.policy, self.steps_per_epoch, epochs)

    def _size_once(self) -> None:
        """Size ``train.epochs`` to the time budget, unless that was done (or restored from a checkpoint)."""
        if self.sized:
            return
        budget_s = self.preset.train.time_budget_s
        assert budget_s is not None
        self._set_epochs(self._size_to_budget(budget_s))
        fast_forward(self.schedule, min(self.step, self.total_steps))  # a continuation joins its new cycle mid-way
        self.sized = True

    def _size_to_budget(self, budget_s: float, probe_steps: int = 8) -> int:
        """Time a few steps and one evaluation on throwaway copies; returns the epochs that fit.

        The probe's own time is taken out of the budget; its numbers go to :attr:`probe` (and
        into every result). Sec. 4.2: compare batch sizes at constant wall time, every candidate
        completing a full cycle.
        """
        started = time.perf_counter()
        model, optimizer, scaler, net = self.model, self.optimizer, self.scaler, self.net
        # one deepcopy of all three, so the copied optimizer steps the copied model's parameters
        self.model, self.optimizer, self.scaler = copy.deepcopy((model, optimizer, scaler))
        self.net = self.group.wrap(self.model) if self.group is not None else self.model
        try:
            batches = self.data.train_batches(self.preset.train.batch_size, self.preset.train.seed, epoch=-1, shard=self.shard)
            timed = 0.0
            for i, (x, y) in zip(range(probe_steps + 2), batches, strict=False):
                tick = time.perf_counter()
                self.train_step(x, y, advance=False)
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                if i >= 2:  # the first steps warm up kernels and allocators
                    timed += time.perf_counter() - tick
            per_step = timed / max(1, probe_steps)
            tick = time.perf_counter()
            self.evaluate()
            eval_s = time.perf_counter() - tick
            # every epoch also reports and may checkpoint: serialise once to see what that costs
            tick = time.perf_counter()
            torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}, io.BytesIO())
            checkpoint_s = (time.perf_counter() - tick) / self.preset.train.checkpoint_every
        finally:
            self.model, self.optimizer, self.scaler, self.net = model, optimizer, scaler, net
        remaining = budget_s - (time.perf_counter() - started)
        per_epoch_extra = eval_s + checkpoint_s + _REPORT_LATENCY_S
        epochs = epochs_for_budget(max(remaining, 1e-3), per_step, self.steps_per_epoch, per_epoch_extra)
        self.probe = {"probe_seconds_per_step": per_step, "probe_epoch_extra_s": per_epoch_extra, "budget_epochs": float(epochs)}
        if self.group is not None:  # one schedule for every worker: rank 0's measurement decides
            epochs, self.probe = self.group.broadcast_object((epochs, self.probe))
        return epochs

    # ------------------------------------------------------------------ pieces

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp)

    def _forward(self, x: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        if self.memory_format is torch.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return (net or self.model)(x)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, advance: bool = True) -> torch.Tensor:
        """One optimiser step and (with ``advance``) one schedule step; returns the (detached) batch loss.

        ``advance=False`` leaves the schedule and the iteration count alone: the timing probe's steps.
        """
        with self._autocast():
            loss = self.loss_fn(self._forward(x, self.net), y)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            self._clip()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self._clip()
            self.optimizer.step()
        if advance:
            self.schedule.step()
            self.step += 1
        return loss.detach()

    def _clip(self) -> None:
        if self.preset.train.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.preset.train.grad_clip)

    @torch.no_grad()
    def evaluate(self, limit: int | None = None, split: Split = "val") -> Evaluation:
        """Mean loss and the metric over the validation split (or ``split``), or a fixed sample of ``limit`` of it.

        The sample (a range test's ``eval_samples``) is the same at every evaluation and in every
        trial: a seeded sample of every class (see :mod:`tunekit.train.data`).

        The loss is averaged over samples (the loss function gives batch means); the metric is the
        user's function over the whole split's outputs, or a running top-1 accuracy for the bundled one.
        The loss's standard error comes from the loss of every group of ``_SE_GROUP`` samples (the
        same loss function on slices of the outputs: no extra forward pass, any loss that averages).

        Data-parallel, every worker evaluates rank 0's model (its BatchNorm statistics) on its share
        of the split and the sums are all-reduced; a user metric, which needs every output at once,
        is computed by every worker on the whole split (the same number everywhere).
        """
        running = self.metric_fn is accuracy
        shard = self._eval_shard(split, limit, running or self.metric_fn is None)
        if self.group is not None:
            self.group.broadcast_buffers(self.model)
        self.model.eval()
        total_loss = torch.zeros((), device=self.device)
        total_sq = torch.zeros((), device=self.device)  # Σ nᵢmᵢ² over groups of _SE_GROUP samples
        groups = 0
        hits = torch.zeros((), device=self.device)
        outputs: list[torch.Tensor] = []
        targets: list[torch.Tensor] = []
        count = 0
        for x, y in self.data.batches(split, max(self.preset.train.batch_size, 256), limit, **_sharded(shard)):
            with self._autocast():
                out = self._forward(x)
            out = out.float()
            n = len(y)
            total_loss += self.loss_fn(out, y).float() * n
            for out_g, y_g in zip(out.split(_SE_GROUP), y.split(_SE_GROUP), strict=True):
                total_sq += self.loss_fn(out_g, y_g).float().square() * len(y_g)
                groups += 1
            if running:
                hits += correct(out, y)
            elif self.metric_fn is not None:
                outputs.append(out)
                targets.append(y)
            if self.chance_loss is None and self.preset.classification and out.dim() >= 2:
                self.chance_loss = math.log(out.shape[1])
            count += n
        self.model.train()
        if shard is not None and self.group is not None:
            shares = torch.tensor([float(count), float(groups)], device=self.device)
            sums = self.group.all_sum(torch.cat([torch.stack([total_loss, hits, total_sq]), shares]))
            total_loss, hits, total_sq, count, groups = sums[0], sums[1], sums[2], int(sums[3].item()), int(sums[4].item())
        if count == 0:
            return Evaluation(math.nan, math.nan)
        if running:
            metric = float(hits) / count
        elif self.metric_fn is not None:
            metric = metric_value(self.metric_fn, torch.cat(outputs), torch.cat(targets))
        else:
            metric = math.nan
        return Evaluation(float(total_loss) / count, metric, standard_error(float(total_loss), float(total_sq), count, groups))

    def recalibrate_batchnorm(self, batches: int) -> None:
        """Re-estimate BatchNorm running statistics at the current weights from ``batches`` training batches.

        Data-parallel, each worker reads its share of the same batches and the statistics are averaged.
        """
        source = self.data.train_batches(
            self.preset.train.batch_size, self.preset.train.seed, epoch=-1 - self.step, **_sharded(self.shard)
        )

        def forward(x: torch.Tensor) -> None:
            with self._autocast():
                self._forward(x)

        recalibrate_batchnorm(self.model, (x for _, (x, _y) in zip(range(batches), source, strict=False)), forward)
        if self.group is not None:
            self.group.average_batchnorm(self.model)

    def _eval_shard(self, split: Split, limit: int | None, shardable: bool) -> tuple[int, int] | None:
        """This worker's share of an evaluation, or None (alone, a user metric, or fewer samples than workers)."""
        if self.group is None or not shardable:
            return None
        n = self.data.size(split) if limit is None else min(limit, self.data.size(split))
        return self.shard if n >= self.world_size else None

    def _mean_over_workers(self, total: torch.Tensor, steps: int) -> float:
        """``total / steps`` (a loss summed over steps), averaged over the workers: the total batch's mean loss."""
        if self.group is None:
            return float(total) / max(1, steps)
        return float(self.group.all_sum(total)) / self.world_size / max(1, steps)

    def _finite_everywhere(self, total: torch.Tensor) -> bool:
        """``total`` is finite on every worker (all of them stop together when one diverged)."""
        finite = bool(torch.isfinite(total))
        return finite if self.group is None else not self.group.any(not finite)

    def _result(
        self, train_loss: float, lr: float, momentum: float, samples_per_s: float, evaluation: Evaluation, diverged: bool
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "epoch": self.epoch,
            "step": self.step,
            "val_loss": evaluation.loss,
            "val_loss_se": evaluation.loss_se,  # how far val_loss moves with the split's sample (a tie band)
            "train_loss": train_loss,
            "lr": lr,
            "momentum": momentum,
            "weight_decay": float(self.optimizer.param_groups[0]["weight_decay"]),
            "samples_per_s": samples_per_s,
            "diverged": diverged,
            "epochs_total": self.preset.policy.epochs if self.range_test else self.preset.train.epochs,  # type: ignore[union-attr]
            "batch_size": self.preset.train.batch_size,
            # compute this trial spent, in epochs (a continuation counts from its snapshot)
            "trial_epochs": (self.step - self.start_step) / self.steps_per_epoch,
            **self.probe,
        }
        if self.metric_name:
            out[f"val_{self.metric_name}"] = evaluation.metric
        if self.chance_loss is not None:
            out["chance_loss"] = self.chance_loss  # cross-entropy of a uniform guess
        return out

    def _with_test(self, result: dict[str, Any]) -> dict[str, Any]:
        """``result`` with the test split's loss and metric: the run is over, nothing will decide on them."""
        test = self.evaluate(split="test")
        result["test_loss"] = test.loss
        if self.metric_name:
            result[f"test_{self.metric_name}"] = test.metric
        return result

    # ------------------------------------------------------------------ the loop

    def run(self, report: Report) -> dict[str, Any]:
        """Train to the end (or to divergence), reporting as it goes; returns the last result."""
        self.model.train()
        if self.range_test:
            return self._run_range_test(report)
        self._size_once()
        train = self.preset.train
        last: dict[str, Any] | None = None
        end = min(train.epochs, train.stop_at_epoch or train.epochs)
        while self.epoch < end:
            # -- train one epoch; the loss sum stays on the device (no per-step sync)
            started = time.perf_counter()
            loss_sum = torch.zeros((), device=self.device)
            seen = batches = 0
            lr, momentum = self.optimizer.param_groups[0]["lr"], get_momentum(self.optimizer)
            diverged = False
            for x, y in self.data.train_batches(train.batch_size, train.seed, self.epoch, **_sharded(self.shard)):
                # the LR and momentum this step uses (the schedule moves them after the step)
                lr, momentum = self.optimizer.param_groups[0]["lr"], get_momentum(self.optimizer)
                loss_sum += self.train_step(x, y)
                seen += len(y)
                batches += 1
                # finiteness check is a CPU-GPU sync point: only every few dozen steps
                if batches % _DIVERGENCE_CHECK_EVERY == 0 and not self._finite_everywhere(loss_sum):
                    diverged = True
                    break
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - started
            train_loss = self._mean_over_workers(loss_sum, batches)
            seen *= self.world_size  # every worker saw an equal share
            diverged = diverged or not math.isfinite(train_loss)
            self.epoch += 1
            # -- evaluate (skipped once diverged: the weights are NaN)
            evaluation = Evaluation(math.nan, math.nan) if diverged else self.evaluate()
            diverged = diverged or not math.isfinite(evaluation.loss)
            last = self._result(train_loss, lr, momentum, seen / max(elapsed, 1e-9), evaluation, diverged)
            # -- a snapshot-restart base run ends once its validation loss runs horizontal
            self.val_losses.append(evaluation.loss)
            snapshot = train.stop_when_horizontal and self._is_horizontal()
            last["snapshot"] = snapshot
            # -- report, with a checkpoint every checkpoint_every epochs and at the end
            done = diverged or snapshot or self.epoch >= end
            if done and not diverged and train.test_at_end:
                last = self._with_test(last)
            due = not diverged and (done or self.epoch % train.checkpoint_every == 0)
            report(last, self.state_dict() if due else None)
            if diverged or snapshot:
                break
        if last is None:  # a continuation whose snapshot already reached the budget
            lr, momentum = self.optimizer.param_groups[0]["lr"], get_momentum(self.optimizer)
            last = self._result(math.nan, lr, momentum, 0.0, self.evaluate(), False)
            last = self._with_test(last) if train.test_at_end else last
            report(last, self.state_dict())
        return last

    def _is_horizontal(self) -> bool:
        return runs_horizontal(self.epoch, self.val_losses, self.preset.train.min_epochs, self.chance_loss)

    def _run_range_test(self, report: Report) -> dict[str, Any]:
        policy = self.preset.policy
        assert isinstance(policy, RangeTestPolicy)
        train = self.preset.train
        batches = self._range_test_batches()
        last: dict[str, Any] = {}
        window_loss = torch.zeros((), device=self.device)
        window_steps = 0
        curve: tuple[list[float], list[float]] = ([], [])  # (lr, val_loss) so far: when the test is over
        started = time.perf_counter()
        while self.step < self.total_steps:
            x, y = next(batches)
            lr, momentum = self.optimizer.param_groups[0]["lr"], get_momentum(self.optimizer)
            window_loss += self.train_step(x, y)
            window_steps += 1
            if self.step % policy.eval_every and self.step < self.total_steps:
                continue
            # -- evaluate on the fixed subset, BN statistics re-estimated at these weights
            elapsed = time.perf_counter() - started
            train_loss = self._mean_over_workers(window_loss, window_steps)
            diverged = not math.isfinite(train_loss)
            if not diverged:
                self.recalibrate_batchnorm(policy.bn_recalibration_batches)
            evaluation = Evaluation(math.nan, math.nan) if diverged else self.evaluate(policy.eval_samples)
            diverged = diverged or not math.isfinite(evaluation.loss)
            curve[0].append(lr)
            curve[1].append(evaluation.loss)
            # every worker reads the same all-reduced curve, so all of them stop at the same evaluation
            diverged = diverged or (policy.stop_when_diverged and range_test_over(*curve, self.chance_loss) is not None)
            self.epoch = self.step // self.steps_per_epoch
            speed = window_steps * train.batch_size / max(elapsed, 1e-9)
            last = self._result(train_loss, lr, momentum, speed, evaluation, diverged)
            report(last, None)
            if diverged:
                break
            window_loss.zero_()
            window_steps = 0
            started = time.perf_counter()
        return last

    def _range_test_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = 0
        while True:
            yield from self.data.train_batches(
                self.preset.train.batch_size, self.preset.train.seed, epoch, **_sharded(self.shard)
            )
            epoch += 1


def _sharded(shard: tuple[int, int] | None) -> dict[str, Any]:
    """The ``shard`` keyword for a data call, or none at all: a one-worker run calls the data exactly as before."""
    return {} if shard is None else {"shard": shard}


def train(preset: Preset, report: Report | None = None, device: torch.device | str | None = None) -> list[dict[str, Any]]:
    """Run ``preset`` bare (no Ray) and return every result; handy in notebooks and benchmarks."""
    results: list[dict[str, Any]] = []

    def collect(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        results.append(metrics)
        if report is not None:
            report(metrics, state)

    Trainer(preset, device).run(collect)
    return results

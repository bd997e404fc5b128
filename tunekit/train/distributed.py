"""One worker of a data-parallel trial: its rank, and what the workers agree on through ``torch.distributed``.

Whoever starts the workers sets up the process group (Ray Train's ``TorchTrainer``, see
:mod:`tunekit.data_parallel`; gloo on CPUs, NCCL on GPUs); nothing here knows about Ray. The
training loop (:class:`tunekit.train.loop.Trainer`) takes a :class:`Group` and then:

* trains a ``DistributedDataParallel`` copy of its model on its share of every total batch (the
  gradients are averaged across workers, so a step is the one-worker step on the total batch);
* evaluates on its share of the split with rank 0's BatchNorm statistics, the sums all-reduced;
* all-reduces the training loss, and agrees on every stop: divergence (any worker's NaN stops
  all), the horizontal detector and the time budget's epochs (rank 0's), so no worker waits in
  a collective that the others have left.

Checkpoints are rank 0's (every worker holds the same weights).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn


class Group:
    """This process's place among ``world_size`` data-parallel workers; collectives over them."""

    def __init__(self, rank: int, world_size: int, device: torch.device | str = "cpu") -> None:
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)

    @classmethod
    def current(cls, device: torch.device | str = "cpu") -> Group:
        """The group of the initialised default process group (one worker when there is none)."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls(0, 1, device)
        return cls(dist.get_rank(), dist.get_world_size(), device)

    @property
    def shard(self) -> tuple[int, int]:
        """``(rank, world_size)``: which share of every batch and split this worker takes."""
        return self.rank, self.world_size

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` under ``DistributedDataParallel`` (rank 0's weights broadcast to every worker)."""
        ids = (
            [self.device.index if self.device.index is not None else torch.cuda.current_device()]
            if self.device.type == "cuda"
            else None
        )
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over the workers (a new tensor; ``tensor`` is left alone)."""
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def any(self, flag: bool) -> bool:
        """True on every worker when ``flag`` is true on any of them."""
        return bool(self.all_sum(torch.tensor(float(flag), device=self.device)) > 0)

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every worker (a picklable value)."""
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    @torch.no_grad()
    def broadcast_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) into every worker's ``model``."""
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)

    @torch.no_grad()
    def average_batchnorm(self, model: nn.Module) -> None:
        """Every BatchNorm's running mean and variance averaged over the workers (after each re-estimated its own)."""
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                for buffer in (module.running_mean, module.running_var):
                    assert buffer is not None
                    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                    buffer.div_(self.world_size)


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm a ``SyncBatchNorm`` (statistics over the total batch; same state-dict keys)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)

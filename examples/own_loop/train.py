"""Your own PyTorch training loop, searched by tunekit: the loop is yours, the schedule and the decisions are tunekit's.

Run the whole disciplined search (range test, momentum, weight decay, final training) over it::

    tunekit search examples/own_loop/preset.yaml --working-dir examples/own_loop

``--working-dir`` ships this folder to every Ray worker, so ``train:fit`` (this module) imports
there. The loop below is an ordinary one — AMP on a GPU, optional gradient accumulation — with
four tunekit calls: ``control.attach`` (tunekit sets the LR, momentum and weight decay),
``control.epochs()``, ``control.should_evaluate`` and ``control.report``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tunekit import Control


def build_model(hidden: int = 64) -> nn.Module:
    """A small MLP for scikit-learn's 8×8 digits (the preset's ``model.factory``)."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10)
    )


@torch.no_grad()
def evaluate(control: Control, model: nn.Module, split: str = "validation") -> dict[str, float]:
    """Mean cross-entropy and accuracy over a split (in a range test, the ``eval_samples`` tunekit hands it: a sample of every class)."""
    model.eval()
    loss = correct = count = 0.0
    for x, y in control.loader(split):
        x, y = x.to(control.device), y.to(control.device)
        out = model(x)
        loss += float(nn.functional.cross_entropy(out, y)) * len(y)
        correct += float((out.argmax(1) == y).sum())
        count += len(y)
    model.train()
    return {"loss": loss / count, "acc": correct / count}


def fit(control: Control, accumulate: int = 1) -> None:
    """Train ``control``'s trial: every hyper-parameter comes from ``control``, every result goes to it."""
    device = control.device
    model = control.build_model()  # the preset's model.factory (build_model above), seeded; or build your own
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # lr, momentum, weight decay: set by tunekit
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    control.attach(model, optimizer, scaler, accumulate=accumulate)

    for _epoch in control.epochs():
        running, batches = 0.0, 0
        for i, (x, y) in enumerate(control.loader("train")):
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, enabled=amp):
                loss = nn.functional.cross_entropy(model(x), y)
            scaler.scale(loss / accumulate).backward()
            running += float(loss.detach())
            batches += 1
            if (i + 1) % accumulate == 0:
                scaler.step(optimizer)  # a step AMP skips (inf/NaN gradients) does not move the LR schedule
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
            # every eval_every steps in a range test, once an epoch otherwise
            if control.should_evaluate:
                if control.range_test:
                    control.recalibrate_batchnorm()  # (no BatchNorm here: a no-op; kept for models that have it)
                val = evaluate(control, model)
                control.report(
                    val["loss"],
                    acc=val["acc"],
                    train_loss=running / max(1, batches),
                    chance_loss=math.log(10),  # a uniform guess over 10 classes
                    test=lambda: evaluate(control, model, "test"),  # called once, when this report ends the run
                )
                running, batches = 0.0, 0
            if control.should_stop:  # diverged, a snapshot base run gone horizontal, or the end
                return

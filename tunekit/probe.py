"""The pre-flight probe: every user component built and tried once, before any trial starts.

The driver imports the factories and checks their ``kwargs`` (:func:`tunekit.components.check_components`)
but builds nothing — the head of a cluster may have no GPU and no copy of the data. What can only
be checked by calling the factories runs as one small Ray task on a worker (with the preset's
``runtime_env``, so a shipped package is importable there exactly as in the trials):

* the dataset factory returns three splits, none empty, of ``(input, target)`` pairs;
* the model factory returns an ``nn.Module``, and it takes a training batch;
* the loss is a finite scalar on that first batch;
* the metric returns a number on a validation batch.

The probe also counts the training samples (after the validation carve): what sizes a search's
phases. A bundled model on a bundled dataset needs no probe: the count is taken in-process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tunekit.components import ComponentError, check_components
from tunekit.presets import Preset, load_preset, preset_to_dict


@dataclass(frozen=True)
class ProbeReport:
    """What the probe found: split sizes, shapes, the loss at initialisation, the metric on one batch."""

    train_samples: int
    val_samples: int
    test_samples: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    first_loss: float
    metric: float | None


def needs_probe(preset: Preset) -> bool:
    """Whether any component is the user's (a bundled model on a bundled dataset is known to work)."""
    return any(
        getattr(preset, s) is not None and getattr(getattr(preset, s), "factory", None) is not None
        for s in ("dataset", "model", "loss", "metric", "loop")
    )


def probe_components(preset_dict: dict[str, Any]) -> ProbeReport:
    """Build the data, the model, the loss and the metric as a trial would, and try them on one batch (CPU).

    Raises:
        ComponentError: the first component that fails, in one line naming its field.
    """
    import math

    import torch

    from tunekit.components import build_loss, build_metric, loss_value, metric_value
    from tunekit.train.data import load_data
    from tunekit.train.models import build_model

    preset = load_preset(preset_dict)
    data = load_data(preset.dataset, "cpu", preset.train.seed)
    batch = min(preset.train.batch_size, data.num_train)
    x, y = next(iter(data.train_batches(batch, preset.train.seed, 0)))
    if preset.loop is not None and preset.model.factory is None and preset.model.name is None:
        return ProbeReport(data.num_train, data.size("val"), data.size("test"), tuple(x.shape[1:]), (), math.nan, None)
    torch.manual_seed(preset.train.seed)
    model = build_model(preset.model, data.num_classes, data.input_shape)
    try:
        with torch.no_grad():
            outputs = model(x)
    except Exception as exc:
        raise ComponentError(
            f"model.factory: the model raised {type(exc).__name__} on a training batch of shape {tuple(x.shape)} ({exc}); "
            "make the model take the dataset's inputs"
        ) from None
    if not isinstance(outputs, torch.Tensor):
        raise ComponentError(f"model.factory: the model returned a {type(outputs).__name__}, not a tensor; return the outputs")
    loss = float(loss_value(build_loss(preset.loss), outputs.float(), y))
    metric_fn = build_metric(preset.metric, preset.classification)
    metric = None
    if metric_fn is not None:
        vx, vy = next(iter(data.batches("val", min(256, data.size("val")))))
        with torch.no_grad():
            metric = metric_value(metric_fn, model(vx).float(), vy)
        if not math.isfinite(metric) and preset.metric is not None:
            raise ComponentError(f"metric.factory: the metric is {metric} on a validation batch; return a finite number")
    return ProbeReport(
        data.num_train, data.size("val"), data.size("test"), tuple(x.shape[1:]), tuple(outputs.shape[1:]), loss, metric
    )


def probe(preset: Preset) -> ProbeReport | None:
    """Check ``preset``'s user components before anything starts: imports here, calls on a Ray worker.

    Returns None for a preset of bundled components only. Ray must be up (``ensure_ray``) when one is the user's.

    Raises:
        ComponentError: an import, a signature, or a call failed; the message names the field and the fix.
    """
    check_components(preset)
    if not needs_probe(preset):
        return None
    import ray

    task = ray.remote(num_cpus=min(1.0, preset.resources.cpu), max_retries=0)(_probe_task)
    outcome = ray.get(task.remote(preset_to_dict(preset)))
    if isinstance(outcome, str):
        raise ComponentError(outcome)
    return ProbeReport(**outcome)


def _probe_task(preset_dict: dict[str, Any]) -> dict[str, Any] | str:
    # a ComponentError comes back as its one line, not a Ray traceback
    try:
        return asdict(probe_components(preset_dict))
    except ComponentError as exc:
        return str(exc)
    except Exception as exc:
        from tunekit.train.paths import DatasetError

        if isinstance(exc, DatasetError):
            return str(exc)
        return f"dataset.factory: loading the data raised {type(exc).__name__}: {exc}"

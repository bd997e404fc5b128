"""The user's components: model, dataset, loss, metric and loop factories, resolved and checked.

A preset names each component by a bundled name or a factory::

    model:   {factory: "mypkg.models:build", kwargs: {width: 64}}   # build(**kwargs) -> nn.Module
    dataset: {factory: "mypkg.data:load", kwargs: {root: /data/x}}   # -> (train, validation | None, test)
    loss:    {factory: "torch.nn:MSELoss"}                           # a class built with kwargs, or fn(outputs, targets)
    metric:  {factory: "mypkg.metrics:r2", mode: max}                # fn(outputs, targets) -> float over a whole split

Factories are *called* only inside a trial (or the pre-flight probe, itself a Ray task), on the
worker's device; the driver only imports them and checks that ``kwargs`` fit their signatures
(:func:`check_components`). In Python a factory may be the callable itself: :func:`portable`
turns an importable one into its import string and anything else (a lambda, a function defined
in a notebook) into a ``cloudpickle:`` string, so trial configs stay plain data that
``tunekit resume`` and MLflow can hold.

Every problem is one :class:`ComponentError` line that names the field and the fix.
"""

from __future__ import annotations

import base64
import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from tunekit.presets import Factory, LossConfig, MetricConfig, Preset, PresetError

#: Sections of a preset that hold a factory, in the order they are checked.
SECTIONS = ("dataset", "model", "loss", "metric", "loop")
PICKLED = "cloudpickle:"

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MetricFn = Callable[[torch.Tensor, torch.Tensor], float]


class ComponentError(PresetError):
    """A user component cannot be imported, built or used; the message names the field and the fix."""


# --------------------------------------------------------------------------- import strings


def resolve(factory: Factory, field: str) -> Callable[..., Any]:
    """The callable ``factory`` names: ``"package.module:attribute"`` (dots after the colon walk attributes).

    Raises:
        ComponentError: no colon, the module does not import, or it lacks the attribute.
    """
    if callable(factory):
        return factory
    if factory.startswith(PICKLED):
        import cloudpickle

        try:
            return cloudpickle.loads(base64.b64decode(factory[len(PICKLED) :]))
        except Exception as exc:
            raise ComponentError(f"{field}: the pickled Python object does not load here ({exc}); use an import string") from None
    module_name, colon, attribute = factory.partition(":")
    if not colon or not module_name or not attribute:
        raise ComponentError(
            f"{field}: {factory!r} is not 'package.module:attribute'; put a colon between the module and the attribute"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ComponentError(
            f"{field}: cannot import module {module_name!r} ({exc}); install the package, run tunekit from the folder "
            "that holds it, or ship it to the workers with --working-dir"
        ) from None
    except Exception as exc:
        raise ComponentError(f"{field}: importing module {module_name!r} raised {type(exc).__name__}: {exc}") from None
    for i, part in enumerate(attribute.split(".")):
        if not hasattr(obj, part):
            owner = module_name if i == 0 else f"{module_name}:{'.'.join(attribute.split('.')[:i])}"
            raise ComponentError(f"{field}: {owner!r} has no attribute {part!r}; check the name after the colon")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ComponentError(f"{field}: {factory!r} is a {type(obj).__name__}, not a function or class; name a callable")
    return obj


def import_string(obj: Callable[..., Any]) -> str | None:
    """``module:qualname`` when importing it gives back ``obj`` itself (not ``__main__``, not a lambda), else None."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    text = f"{module}:{qualname}"
    try:
        found = resolve(text, "factory")
    except ComponentError:
        return None
    return text if found is obj else None


def portable(factory: Factory) -> str:
    """A factory as plain text a worker can resolve: its import string, else ``cloudpickle:<base64>``."""
    if isinstance(factory, str):
        return factory
    text = import_string(factory)
    if text is not None:
        return text
    import cloudpickle

    return PICKLED + base64.b64encode(cloudpickle.dumps(factory)).decode("ascii")


def portable_preset(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A preset mapping whose factories are all plain text (see :func:`portable`)."""
    out = dict(raw)
    for section in SECTIONS:
        value = out.get(section)
        if isinstance(value, Mapping) and value.get("factory") is not None and not isinstance(value["factory"], str):
            out[section] = {**value, "factory": portable(value["factory"])}
        elif value is not None and not isinstance(value, str | Mapping) and callable(value):
            out[section] = {"factory": portable(value)}
    return out


# --------------------------------------------------------------------------- checks in the driver


def check_kwargs(fn: Callable[..., Any], kwargs: Mapping[str, Any], field: str, leading: int = 0) -> None:
    """Raise when ``fn`` cannot take ``kwargs`` (after ``leading`` positional arguments)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin without a signature: it will tell us when called
    try:
        signature.bind_partial(*([None] * leading), **kwargs)
    except TypeError as exc:
        accepted = [p for p in signature.parameters if p not in ("self", "args", "kwargs")][leading:]
        raise ComponentError(
            f"{field}.kwargs: {exc} — {factory_name(fn)} accepts {', '.join(accepted) or 'no keyword arguments'}; "
            f"fix or remove the key"
        ) from None


def factory_name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', getattr(fn, '__name__', repr(fn)))}"


def check_components(preset: Preset) -> None:
    """Import every user factory of ``preset`` and check its ``kwargs`` against its signature; calls nothing.

    Raises:
        ComponentError: the first problem, naming the field (``model.factory``, ``loss.kwargs``, …).
    """
    for section in SECTIONS:
        cfg = getattr(preset, section)
        if cfg is None or getattr(cfg, "factory", None) is None:
            continue
        if section == "metric" and cfg.factory == "accuracy":
            continue
        fn = resolve(cfg.factory, f"{section}.factory")
        leading = 1 if section == "loop" else 0  # loop(control, **kwargs)
        if section == "loss" and not isinstance(fn, type):
            leading = 2  # fn(outputs, targets, **kwargs)
        if section == "metric":
            leading = 2
        check_kwargs(fn, cfg.kwargs, section, leading)


# --------------------------------------------------------------------------- building, inside a trial


def build_user_model(factory: Factory, kwargs: Mapping[str, Any]) -> nn.Module:
    """Call the model factory; it must return an ``nn.Module``."""
    fn = resolve(factory, "model.factory")
    try:
        model = fn(**kwargs)
    except Exception as exc:
        raise ComponentError(f"model.factory: {factory_name(fn)}(**kwargs) raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ComponentError(
            f"model.factory: {factory_name(fn)} returned a {type(model).__name__}, not a torch.nn.Module; return the network"
        )
    return model


def build_loss(cfg: LossConfig | None) -> LossFn:
    """The training loss: cross-entropy by default, a ``nn.Module`` class built with kwargs, or a function."""
    if cfg is None:
        return nn.CrossEntropyLoss()
    fn = resolve(cfg.factory, "loss.factory")
    if isinstance(fn, type):
        try:
            return fn(**cfg.kwargs)
        except Exception as exc:
            raise ComponentError(f"loss.factory: {factory_name(fn)}(**kwargs) raised {type(exc).__name__}: {exc}") from None
    if cfg.kwargs:
        kwargs = dict(cfg.kwargs)
        return lambda outputs, targets: fn(outputs, targets, **kwargs)
    return fn


def correct(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """How many top-1 predictions are right, as a tensor on the outputs' device, averaged over any pixel axes.

    Class scores are on axis 1; targets are class indices, or one-hot/probabilities (then their argmax).
    """
    if targets.dim() == outputs.dim() and targets.is_floating_point():
        targets = targets.argmax(1)
    hits = (outputs.argmax(1) == targets).float()
    return hits.flatten(1).mean(1).sum() if hits.dim() > 1 else hits.sum()


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy (per pixel for segmentation outputs); see :func:`correct`."""
    return float(correct(outputs, targets)) / max(1, len(outputs))


def build_metric(cfg: MetricConfig | None, classification: bool) -> MetricFn | None:
    """The metric function (``accuracy`` for a default classification), or None when there is none."""
    if cfg is None:
        return accuracy if classification else None
    if cfg.factory == "accuracy":
        return accuracy
    fn = resolve(cfg.factory, "metric.factory")
    if cfg.kwargs:
        kwargs = dict(cfg.kwargs)
        return lambda outputs, targets: fn(outputs, targets, **kwargs)
    return fn


def metric_value(fn: MetricFn, outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """``fn(outputs, targets)`` as a float; a metric that raises or returns no number is a :class:`ComponentError`."""
    try:
        value = fn(outputs, targets)
        return float(value.item() if isinstance(value, torch.Tensor) else value)
    except ComponentError:
        raise
    except Exception as exc:
        raise ComponentError(f"metric.factory: {factory_name(fn)}(outputs, targets) raised {type(exc).__name__}: {exc}") from None


def loss_value(fn: LossFn, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``fn(outputs, targets)``, checked to be a finite scalar tensor (the first batch of a trial is checked)."""
    try:
        loss = fn(outputs, targets)
    except Exception as exc:
        raise ComponentError(
            f"loss.factory: the loss raised {type(exc).__name__} on the first batch ({exc}); outputs {tuple(outputs.shape)} "
            f"{outputs.dtype}, targets {tuple(targets.shape)} {targets.dtype}: make the loss fit the model's outputs"
        ) from None
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ComponentError(f"loss.factory: the loss returned {shape}, not a scalar tensor; reduce it to the batch mean")
    if not math.isfinite(float(loss.detach())):
        raise ComponentError(
            "loss.factory: the loss is not finite on the first batch at initialisation; check the targets' range and the loss"
        )
    return loss

"""Ray Tune schedulers: thin adapters over :mod:`tunekit.core`."""

from tunekit.schedulers.loss_shape import DecisionRecorder, LossShapeScheduler

__all__ = ["DecisionRecorder", "LossShapeScheduler"]

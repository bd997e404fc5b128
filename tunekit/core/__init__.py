"""Pure decisions of the disciplined approach: stdlib and numpy only.

Nothing in this package imports torch, ray or mlflow; a subprocess test keeps it so.
"""

from __future__ import annotations

from tunekit.core.schedules import (
    clr_triangular,
    linear,
    one_cycle_lr,
    one_cycle_momentum,
    range_test_lr,
    range_test_momentum,
    step_factor,
)

__all__ = [
    "clr_triangular",
    "linear",
    "one_cycle_lr",
    "one_cycle_momentum",
    "range_test_lr",
    "range_test_momentum",
    "step_factor",
]

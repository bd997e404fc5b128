"""The validation split a dataset without one gets: which training samples are held out.

Every decision of a search reads the validation split, so every trial must see the same one,
whatever its own seed: the carve depends only on the number of samples, the fraction and the
split's own seed.
"""

from __future__ import annotations

import numpy as np


def carve_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices: a seeded ``fraction`` of ``range(n)`` held out, both in ascending order.

    At least one sample is held out when ``fraction > 0``, and at least one kept.
    """
    if fraction <= 0 or n < 2:
        return np.arange(n), np.arange(0)
    held = min(n - 1, max(1, round(n * fraction)))
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[held:]), np.sort(order[:held])

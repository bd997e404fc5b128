"""Which samples a subset keeps: a seeded sample of every class, the same for every trial of a search.

A folder-per-class dataset (ImageFolder, hence ImageNet) lists its samples sorted by class, so its
first N samples are its first few classes; a validation split carved in ascending order is sorted
the same way, so its first ``eval_samples`` are one or two classes. Subsets are therefore drawn
here: each class in proportion to its size (and every class while there are at least as many
samples as classes), the samples of a class at random — seeded, so every trial keeps the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


def stratified_sample(
    labels: Sequence[int] | npt.NDArray[np.integer] | None, k: int, seed: int, n: int | None = None
) -> IntArray:
    """``k`` indices of ``range(n)`` in ascending order: a seeded, class-stratified sample.

    Each sample gets its rank among its own class's samples in a seeded shuffle, divided by the
    class's size; the ``k`` lowest win. So every class is represented in proportion to its size,
    the first of each class comes before any second (all classes are kept when ``k`` reaches their
    number) and ties are broken by the shuffle. Without ``labels`` (``n`` then says how many
    samples there are) the sample is a seeded uniform one. ``k ≥ n`` keeps everything.
    """
    size = len(labels) if labels is not None else n
    if size is None:
        raise ValueError("stratified_sample: give labels or n")
    if k >= size:
        return np.arange(size, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(size)
    if labels is None:
        return np.sort(order[:k]).astype(np.int64)
    _, classes, counts = np.unique(np.asarray(labels)[order], return_inverse=True, return_counts=True)
    by_class = np.argsort(classes, kind="stable")  # shuffled positions, grouped by class
    starts = np.cumsum(counts) - counts
    rank = np.empty(size, dtype=np.int64)
    rank[by_class] = np.arange(size) - starts[classes[by_class]]
    quantile = rank / counts[classes]
    chosen = np.argsort(quantile, kind="stable")[:k]
    return np.sort(order[chosen]).astype(np.int64)

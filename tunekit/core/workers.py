"""How many DataLoader workers a trial may start: what it asks for, within the CPUs it was given."""

from __future__ import annotations

import math


def loader_workers(requested: int, cpus: float) -> int:
    """``requested`` workers, at most one fewer than the whole CPUs ``cpus`` (the trial's own process keeps one).

    A trial Ray gave one CPU loads its data in its own process (0 workers); give it N + 1 CPUs
    for N workers. Workers beyond the CPUs only compete with the training process for them.
    """
    return max(0, min(requested, math.floor(cpus) - 1))

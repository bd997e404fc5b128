"""Ray Tune searchers of the disciplined approach: thin adapters over :mod:`tunekit.core`.

Wrap each in :func:`limited` (``ConcurrencyLimiter(batch=False)``) so its parallel proposals
run in parallel, and use ``num_samples=-1``: the searcher ends the experiment itself.
"""

from tunekit.searchers.base import TunekitSearcher, limited
from tunekit.searchers.bisection import ExponentBisectionSearcher
from tunekit.searchers.grid import BatchSizeSearcher, CandidateSearcher, LearningRateSearcher, MomentumSearcher
from tunekit.searchers.snapshot import SnapshotContinuationSearcher

__all__ = [
    "BatchSizeSearcher",
    "CandidateSearcher",
    "ExponentBisectionSearcher",
    "LearningRateSearcher",
    "MomentumSearcher",
    "SnapshotContinuationSearcher",
    "TunekitSearcher",
    "limited",
]

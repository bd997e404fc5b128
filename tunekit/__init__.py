"""tunekit: Leslie Smith's disciplined approach to hyper-parameters, run as Ray Tune searches.

``tunekit.search(preset)`` runs the whole recipe and returns a :class:`tunekit.recipe.SearchResult`;
``tunekit.resume(directory)`` continues an interrupted one. Both import Ray on first use only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

if TYPE_CHECKING:
    from tunekit.recipe import SearchResult


def search(preset: Any, **options: Any) -> SearchResult:
    """Run the disciplined search on ``preset``; see :func:`tunekit.recipe.search`."""
    from tunekit.recipe import search as run

    return run(preset, **options)


def resume(directory: str, **options: Any) -> SearchResult:
    """Continue an interrupted search; see :func:`tunekit.recipe.resume`."""
    from tunekit.recipe import resume as run

    return run(directory, **options)


__all__ = ["__version__", "resume", "search"]

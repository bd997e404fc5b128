"""tunekit: Leslie Smith's disciplined approach to hyper-parameters, run as Ray Tune searches.

``tunekit.search(preset)`` runs the whole recipe and returns a :class:`tunekit.recipe.SearchResult`;
``tunekit.resume(directory)`` continues an interrupted one. Both import Ray on first use only.
``tunekit.Control`` hands tunekit's schedules and decisions to your own training loop (:mod:`tunekit.own_loop`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

if TYPE_CHECKING:
    from tunekit.own_loop import Control
    from tunekit.recipe import SearchResult


def search(preset: Any, **options: Any) -> SearchResult:
    """Run the disciplined search on ``preset``; see :func:`tunekit.recipe.search`."""
    from tunekit.recipe import search as run

    return run(preset, **options)


def resume(directory: str, **options: Any) -> SearchResult:
    """Continue an interrupted search; see :func:`tunekit.recipe.resume`."""
    from tunekit.recipe import resume as run

    return run(directory, **options)


def __getattr__(name: str) -> Any:
    # tunekit.Control (the user's own loop, tunekit.own_loop) is imported on first use: it pulls in torch, which
    # `import tunekit` and the CLI's startup do without
    if name == "Control":
        from tunekit.own_loop import Control

        return Control
    raise AttributeError(f"module 'tunekit' has no attribute {name!r}")


__all__ = ["Control", "__version__", "resume", "search"]

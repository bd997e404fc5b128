"""The figures render real, non-empty PNGs from plain numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tunekit.plots import bars_figure, bisection_figure, close, curves_figure, range_test_figure


@pytest.mark.parametrize(
    "make",
    [
        lambda: range_test_figure({"wd 1e-4": ([0.1, 0.5, 1.0, 1.5], [2.0, 0.8, 0.6, math.nan])}, max_lr=1.0, min_lr=0.1),
        lambda: curves_figure(
            {"a": ([1, 2, 3], [2.0, 1.0, 0.9], "horizontal"), "b": ([1, 2, 3], [2.0, 1.5, 1.8], "overfitting")}
        ),
        lambda: bisection_figure([1e-3, 1e-4, 1e-5, 0.0, 3.2e-4], [0.3, 0.2, 0.25, 0.4, math.inf], best=1e-4),
        lambda: bars_figure(
            {"128": 0.981, "256": 0.984, "512": 0.979}, "batch size at constant time", "test accuracy", {"256": 0.002}
        ),
    ],
    ids=["range_test", "curves", "bisection", "bars"],
)
def test_figure_renders_to_png(make: object, tmp_path: Path) -> None:
    fig = make()  # type: ignore[operator]
    path = tmp_path / "figure.png"
    fig.savefig(path)
    close(fig)
    # a real picture: PNG signature and more than a blank canvas
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 8000

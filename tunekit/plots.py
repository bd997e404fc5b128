"""Figures that explain each decision, returned (never shown) as matplotlib ``Figure`` objects.

Each takes plain numbers, so it works on results from Ray, from MLflow, or from a CSV.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

if "ipykernel" not in sys.modules and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")  # headless: figures are files, never windows (a notebook keeps its inline backend)
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

SHAPE_COLOURS = {
    "horizontal": "tab:green",
    "underfitting": "tab:blue",
    "overfitting": "tab:orange",
    "diverging": "tab:red",
    "unknown": "tab:gray",
    "": "tab:gray",
}


def range_test_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], max_lr: float, min_lr: float) -> Figure:
    """Test loss against LR for each range test (label → (lrs, losses)), with the chosen bounds marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (lrs, losses) in curves.items():
        ax.plot(lrs, losses, ".-", label=label)
    ax.axvline(max_lr, color="tab:red", linestyle="--", label=f"max_lr = {max_lr:.3g}")
    ax.axvline(min_lr, color="tab:green", linestyle="--", label=f"min_lr = {min_lr:.3g}")
    finite = [v for _, losses in curves.values() for v in losses if math.isfinite(v)]
    if finite:
        low, high = min(finite), sorted(finite)[int(0.95 * (len(finite) - 1))]
        ax.set_ylim(low - 0.05 * (high - low + 1e-9), high + 0.1 * (high - low + 1e-9))
    ax.set_xlabel("learning rate")
    ax.set_ylabel("test loss")
    ax.set_title("LR range test")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def curves_figure(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], str]], title: str = "test loss by trial"
) -> Figure:
    """Test-loss curves (label → (steps, losses, shape)), coloured by their diagnosis."""
    fig, ax = plt.subplots(figsize=(7, 4))
    seen: set[str] = set()
    for label, (steps, losses, shape) in curves.items():
        colour = SHAPE_COLOURS.get(shape, "tab:gray")
        ax.plot(steps, losses, ".-", color=colour, alpha=0.8, label=shape if shape not in seen else None)
        seen.add(shape)
        if len(steps):
            ax.annotate(label, (steps[-1], losses[-1]), fontsize=7)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test loss")
    ax.set_title(title)
    ax.legend(fontsize=8, title="diagnosis")
    fig.tight_layout()
    return fig


def bisection_figure(values: Sequence[float], losses: Sequence[float], best: float, param: str = "weight decay") -> Figure:
    """Loss against log10 of the value, numbered in proposal order (0 drawn a decade below the rest)."""
    positive = [v for v in values if v > 0]
    floor = math.log10(min(positive)) - 1 if positive else -6.0

    def x(v: float) -> float:
        return math.log10(v) if v > 0 else floor

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [x(v) for v in values]
    ys = [loss if math.isfinite(loss) else float("nan") for loss in losses]
    ax.plot(sorted(xs), [y for _, y in sorted(zip(xs, ys, strict=True))], color="lightgray", zorder=0)
    ax.scatter(xs, ys, zorder=1)
    for i, (xi, yi) in enumerate(zip(xs, ys, strict=True), start=1):
        ax.annotate(str(i), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axvline(x(best), color="tab:green", linestyle="--", label=f"chosen {best:.2g}")
    ax.set_xlabel(f"log10 {param} (0 plotted at {floor:g})")
    ax.set_ylabel("test loss")
    ax.set_title(f"{param}: bisection in proposal order")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def bars_figure(scores: Mapping[str, float], title: str, ylabel: str, errors: Mapping[str, float] | None = None) -> Figure:
    """One bar per candidate (batch sizes, momentum values, final replicates), with optional error bars."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = list(scores)
    ax.bar(labels, [scores[k] for k in labels], yerr=[(errors or {}).get(k, 0.0) for k in labels], capsize=4)
    finite = [v for v in scores.values() if math.isfinite(v)]
    if finite:
        low, high = min(finite), max(finite)
        pad = max(1e-3, 0.2 * (high - low))
        ax.set_ylim(low - pad, high + pad)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def close(fig: Any) -> None:
    plt.close(fig)

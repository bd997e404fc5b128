"""Figures that explain each decision, returned (never shown) as matplotlib ``Figure`` objects.

Each takes plain numbers, so it works on results from Ray, from MLflow, or from a CSV. Every
figure says what it answers (its title), marks the chosen value in one colour (:data:`CHOSEN_COLOUR`)
with a legend entry that names it, ranks the candidates best first where there are scores, and
colours curves by their diagnosis (:data:`SHAPE_COLOURS`) with a legend saying what each colour means.
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
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

SHAPE_COLOURS = {
    "horizontal": "tab:green",
    "underfitting": "tab:blue",
    "overfitting": "tab:orange",
    "diverging": "tab:red",
    "unknown": "tab:gray",
    "": "tab:gray",
}

#: What each diagnosis colour means, in the words of :mod:`tunekit.core.curves` (Sec. 3 of the paper).
SHAPE_MEANINGS = {
    "horizontal": "horizontal: fell, then flat (good)",
    "underfitting": "underfitting: still falling",
    "overfitting": "overfitting: rose after its minimum",
    "diverging": "diverging: exploded or stuck at chance",
    "unknown": "unknown: too few points to judge",
}

#: The colour of the chosen value, on every figure (distinct from every diagnosis colour).
CHOSEN_COLOUR = "tab:purple"

#: Colours of curves that carry no diagnosis (the range tests, one per weight decay).
_CURVE_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"]
#: Markers that tell candidates of one diagnosis colour apart.
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "h", "<", ">"]

_SIZE = (7.0, 4.0)
_TITLE_SIZE = 10
_LEGEND_SIZE = 8


def format_value(value: float, digits: int = 2, sci_below: float = 0.01) -> str:
    """A value as a person writes it: ``0``, ``0.25``, ``1e-4``, ``3.2e-5`` (no padded exponent, no ``1.0e-04``);
    e-notation below ``sci_below`` (and from 10⁴)."""
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    if sci_below <= abs(value) < 1e4:
        return f"{value:.{digits}g}"
    exponent = math.floor(math.log10(abs(value)))
    mantissa = round(value / 10**exponent, digits - 1)
    if abs(mantissa) >= 10:  # 9.96e-5 rounds up to 1e-4
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:.{digits}g}e{exponent}"


def metric_words(metric: str) -> str:
    """A reported key as an axis label: ``val_loss`` → "validation loss", ``test_acc`` → "test accuracy"."""
    split, _, name = metric.partition("_")
    if not name:
        return metric.replace("_", " ")
    where = {"val": "validation", "test": "test", "train": "training"}.get(split, split)
    what = {"acc": "accuracy", "r2": "R²"}.get(name, name.replace("_", " "))
    return f"{where} {what}"


def range_test_figure(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    max_lr: float,
    min_lr: float,
    *,
    chosen: str | None = None,
    ranking: Mapping[str, float] | None = None,
    turn_up: float | None = None,
    smooth_fraction: float | None = 0.1,
    ylabel: str = "validation loss",
    title: str = "LR range test: max_lr is the last LR before the validation loss turns up",
) -> Figure:
    """The loss against the LR of each range test (label → (lrs, losses)), with the bounds read from it.

    Args:
        chosen: the label of the curve the bounds come from (drawn thick, in :data:`CHOSEN_COLOUR`).
        ranking: label → the score it was ranked by (its lowest smoothed loss), best first.
        turn_up: the LR where the chosen curve turned up (named in the ``max_lr`` legend entry).
        smooth_fraction: the running-median window the rule reads, as a fraction of the points
            (:func:`tunekit.core.lr_range.analyse_range_test`): each evaluation is drawn faintly, the
            smoothed curve as the line; None draws the raw curve only.
    """
    fig, ax = plt.subplots(figsize=_SIZE, layout="constrained")
    ranked = _ranks(ranking, curves)
    labels = sorted(curves, key=lambda k: (ranked.get(k, len(curves) + 1), list(curves).index(k)))
    others = iter(_CURVE_COLOURS * (1 + len(labels) // len(_CURVE_COLOURS)))
    handles: list[Any] = []
    for label in labels:
        lrs, losses = (np.asarray(v, dtype=float) for v in curves[label])
        is_chosen = label == chosen
        colour = CHOSEN_COLOUR if is_chosen else next(others)
        text = _ranked_text(ranked.get(label), label, (ranking or {}).get(label), chosen=is_chosen, prefix="lowest ")
        style: dict[str, Any] = {"color": colour, "lw": 3.0 if is_chosen else 1.3, "zorder": 3 if is_chosen else 2}
        if smooth_fraction is None:
            (line,) = ax.plot(lrs, losses, ".-", label=text, **style)
        else:
            ax.plot(lrs, losses, ".", color=colour, alpha=0.4, ms=5, zorder=1)
            (line,) = ax.plot(lrs, _smoothed(losses, smooth_fraction), "-", label=text, **style)
        handles.append(line)
    turned = f" (turn-up {format_value(turn_up, 3)})" if turn_up is not None else ""
    label = f"chosen: max_lr = {format_value(max_lr, 3)}{turned}"
    handles.append(ax.axvline(max_lr, color=CHOSEN_COLOUR, linestyle="--", lw=1.8, label=label))
    div = max_lr / min_lr if min_lr > 0 else math.nan
    label = f"min_lr = max_lr/{div:g} = {format_value(min_lr, 3)}"
    handles.append(ax.axvline(min_lr, color=CHOSEN_COLOUR, linestyle=":", lw=1.8, label=label))
    if smooth_fraction is not None:
        handles += [
            Line2D([], [], color="gray", marker=".", linestyle="none", alpha=0.6, label="dots: each evaluation"),
            Line2D([], [], color="gray", lw=1.3, label="lines: running median\n(what the rule reads)"),
        ]
    finite = [v for _, losses in curves.values() for v in losses if math.isfinite(v)]
    if finite:
        low, high = min(finite), float(np.quantile(finite, 0.95))
        ax.set_ylim(low - 0.05 * (high - low + 1e-9), high + 0.1 * (high - low + 1e-9))
    all_lrs = [v for lrs, _ in curves.values() for v in lrs if math.isfinite(v) and v > 0] + [max_lr, min_lr]
    if _geometric(all_lrs, [np.asarray(lrs, dtype=float) for lrs, _ in curves.values()]):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v)))
        ax.set_xlabel("learning rate (log scale)")
    else:
        ax.set_xlabel("learning rate (ramped linearly)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    _finish(fig, ax, title, handles, "weight decays, ranked" if ranking else None)
    return fig


def curves_figure(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], str]],
    title: str = "validation loss by trial",
    *,
    chosen: str | None = None,
    ranking: Mapping[str, float] | None = None,
    name: str = "",
    notes: Mapping[str, str] | None = None,
    ylabel: str = "validation loss",
    xlabel: str = "epoch",
) -> Figure:
    """Loss curves (label → (steps, losses, diagnosis)), coloured by their diagnosis, the candidates ranked.

    Args:
        chosen: the label of the chosen candidate (a thick line ending in a star in :data:`CHOSEN_COLOUR`).
        ranking: label → the score it was judged by, best first (the phase's order: trials the scheduler
            stopped, or that diverged, rank after those that finished, whatever their score).
        name: what the labels are values of (``max_lr``, ``m``): legend entries read ``1. max_lr=0.4 (0.0972)``.
        notes: label → a few words appended to its legend entry (``stopped: peers``).
    """
    fig, ax = plt.subplots(figsize=_SIZE, layout="constrained")
    ranked = _ranks(ranking, curves)
    labels = sorted(curves, key=lambda k: (ranked.get(k, len(curves) + 1), list(curves).index(k)))
    shapes: list[str] = []
    finite: list[float] = []
    handles: list[Any] = []
    for i, label in enumerate(labels):
        steps, losses, shape = curves[label]
        shape = shape if shape in SHAPE_MEANINGS else "unknown"
        shapes.append(shape)
        finite += [v for v in losses if math.isfinite(v) and v > 0]
        what = f"{name}={label}" if name else label
        text = _ranked_text(ranked.get(label), what, (ranking or {}).get(label), chosen=label == chosen)
        if notes and notes.get(label):
            text += f" [{notes[label]}]"
        style: dict[str, Any] = {"marker": _MARKERS[i % len(_MARKERS)], "ms": 5, "lw": 1.4, "alpha": 0.85}
        if label == chosen:
            style = {"marker": "*", "ms": 16, "markevery": [len(steps) - 1], "lw": 3.2, "zorder": 4}
            style |= {"markerfacecolor": CHOSEN_COLOUR, "markeredgecolor": "black"}
        handles += ax.plot(steps, losses, color=SHAPE_COLOURS[shape], label=text, **style)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel + (" (log scale)" if _log_y(ax, finite) else ""))
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    _finish(fig, ax, title, handles + _diagnosis_handles(shapes), "ranked, best first" if ranking else None)
    return fig


def bisection_figure(
    values: Sequence[float],
    losses: Sequence[float],
    best: float,
    param: str = "weight decay",
    *,
    ranks: Sequence[int] | None = None,
    shapes: Sequence[str] | None = None,
    scale: str = "log",
    ylabel: str = "validation loss",
    title: str | None = None,
) -> Figure:
    """The loss at each value the bisection tried: on a log axis (0 drawn a decade left of the smallest
    value, past a break) or a linear one; each point numbered by its rank, non-finite losses on a line above.

    Args:
        best: the chosen value (a star and a line in :data:`CHOSEN_COLOUR`).
        ranks: each value's rank (1 = best) as the phase ranked them; by loss when not given.
        shapes: each value's diagnosis (colours the points; grey without).
        scale: ``log`` (weight decay: bisection on the exponent) or ``linear`` (dropout).
    """
    fig, ax = plt.subplots(figsize=_SIZE, layout="constrained")
    vals = [float(v) for v in values]
    ys = [float(v) for v in losses]
    order = list(ranks) if ranks is not None else _rank_by_loss(ys)
    kinds = [s if s in SHAPE_MEANINGS else "unknown" for s in shapes] if shapes is not None else [""] * len(vals)
    positive = [v for v in [*vals, best] if v > 0]
    log = scale == "log" and bool(positive)  # nothing above 0 to put on a log axis: linear
    has_zero = log and any(v <= 0 for v in vals)
    zero_at = 10 ** (math.floor(math.log10(min(positive))) - 1) if positive else 1e-6
    sci_below = 0.1 if log and positive and min(positive) < 0.01 else 0.01  # one notation along a log axis

    def x(v: float) -> float:
        return zero_at if log and v <= 0 else v

    def shown(v: float) -> str:  # as the phases label their candidates: 2 digits of an exponent, 3 of a rate
        return format_value(v, 2 if log else 3, sci_below=sci_below)

    xs = [x(v) for v in vals]
    diverged = [not math.isfinite(y) for y in ys]
    finite = [y for y in ys if math.isfinite(y)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    pad = max(0.08 * (high - low), 0.02 * abs(high), 1e-3)
    top = high + 2.5 * pad  # non-finite losses sit on this line, above every finite one
    line = sorted((xi, yi) for xi, yi in zip(xs, ys, strict=True) if math.isfinite(yi))
    across = [p for p in line if has_zero and p[0] == zero_at]
    rest = [p for p in line if p not in across]
    ax.plot([p[0] for p in rest], [p[1] for p in rest], color="lightgray", zorder=0)
    if across and rest:  # 0 and the smallest value, joined across the break
        ax.plot([across[0][0], rest[0][0]], [across[0][1], rest[0][1]], color="lightgray", linestyle=":", zorder=0)
    for xi, yi, rank, kind, gone in zip(xs, ys, order, kinds, diverged, strict=True):
        y = top if gone else yi
        ax.scatter([xi], [y], s=55, marker="x" if gone else "o", color=SHAPE_COLOURS["diverging" if gone else kind], zorder=2)
        ax.annotate(f"{rank}", (xi, y), textcoords="offset points", xytext=(5, 5), fontsize=9, fontweight="bold")
    star = ax.scatter(
        [x(best)], [_loss_at(best, vals, ys, top)], s=280, marker="*", color=CHOSEN_COLOUR, edgecolors="black", zorder=3
    )
    star.set_label(f"chosen: {param} = {shown(best)}")
    ax.axvline(x(best), color=CHOSEN_COLOUR, linestyle="--", lw=1.2, zorder=0)
    handles: list[Any] = [star]
    for rank, v, y, kind in sorted(zip(order, vals, ys, kinds, strict=True)):
        colour = SHAPE_COLOURS["diverging" if not math.isfinite(y) else kind]
        text = _ranked_text(rank, shown(v), y, chosen=False)
        handles.append(Line2D([], [], marker="o" if math.isfinite(y) else "x", color=colour, linestyle="none", label=text))
    if log:
        ax.set_xscale("log")  # before the ticks: a new scale resets them
    by_rank = [xs[i] for i in sorted(range(len(xs)), key=lambda i: order[i])]
    priority = list(dict.fromkeys([x(best), *([zero_at] if has_zero else []), *by_rank]))
    _value_ticks(ax, priority, zero=zero_at if has_zero else None, log=log, label=shown)
    if log:
        ax.set_xlim((zero_at if has_zero else min(positive)) / 10**0.3, max(positive) * 10**0.3)
        if has_zero:
            _axis_break(ax, math.sqrt(zero_at * min(positive)))
        ax.set_xlabel(f"{param} (log scale" + (", 0 left of the break)" if has_zero else ")"))
    else:
        span = (max(xs) - min(xs)) or 1.0
        ax.set_xlim(min(xs) - 0.08 * span, max(xs) + 0.08 * span)
        ax.set_xlabel(param)
    if any(diverged):
        ax.axhline(top, color=SHAPE_COLOURS["diverging"], lw=0.6, linestyle=":")
    ax.set_ylim(low - pad, (top if any(diverged) else high) + 1.5 * pad)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    present = [k for k, gone in zip(kinds, diverged, strict=True) if k and not gone] + (["diverging"] if any(diverged) else [])
    title = title or f"{param}: bisection, the lowest {ylabel} wins"
    _finish(fig, ax, title, handles + _diagnosis_handles(present), "ranked, best first")
    return fig


def bars_figure(
    scores: Mapping[str, float],
    title: str,
    ylabel: str,
    errors: Mapping[str, float] | None = None,
    *,
    chosen: str | None = None,
    chosen_label: str | None = None,
    ranking: Sequence[str] | None = None,
    reference: tuple[float, float] | None = None,
    percent: bool = False,
    xlabel: str = "",
) -> Figure:
    """One bar per candidate (batch sizes, final replicates), the chosen one highlighted, each topped by
    its value (and its rank).

    Args:
        chosen: the label of the chosen bar (in :data:`CHOSEN_COLOUR`); ``chosen_label`` its legend entry.
        ranking: the labels, best first (each bar is topped by ``#rank · value``).
        reference: (mean, std) drawn as a line and a band (the final replicates' result).
        percent: the values are fractions, shown as percentages (accuracies).
    """
    fig, ax = plt.subplots(figsize=_SIZE, layout="constrained")
    labels = list(scores)
    rank_of = {k: i for i, k in enumerate(ranking or [], start=1)}
    colours = [CHOSEN_COLOUR if k == chosen else "lightsteelblue" for k in labels]
    edges = ["black" if k == chosen else "none" for k in labels]
    err = [(errors or {}).get(k, 0.0) for k in labels] if errors else None
    bars = ax.bar(labels, [scores[k] for k in labels], yerr=err, capsize=4, color=colours, edgecolor=edges)

    def shown(v: float) -> str:
        return f"{v * 100:.2f} %" if percent else f"{v:.4g}"

    for bar, k in zip(bars, labels, strict=True):
        text = shown(scores[k]) if math.isfinite(scores[k]) else "failed"
        text = f"#{rank_of[k]} · {text}" if k in rank_of else text
        where = (bar.get_x() + bar.get_width() / 2, bar.get_height() if math.isfinite(scores[k]) else 0.0)
        weight = "bold" if k == chosen else "normal"
        box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}
        ax.annotate(
            text,
            where,
            ha="center",
            va="bottom",
            fontsize=9,
            fontweight=weight,
            textcoords="offset points",
            xytext=(0, 3),
            bbox=box,
        )
    handles: list[Any] = []
    if chosen is not None and chosen in scores:
        handles.append(Patch(facecolor=CHOSEN_COLOUR, edgecolor="black", label=chosen_label or f"chosen: {chosen}"))
    if reference is not None and math.isfinite(reference[0]):
        mean, std = reference
        spread = f"{std * 100:.2f} %" if percent else f"{std:.2g}"
        ax.axhspan(mean - std, mean + std, color="gray", alpha=0.15, zorder=0)
        handles.append(ax.axhline(mean, color="black", lw=1.2, linestyle="--", label=f"mean {shown(mean)} ± {spread} (std)"))
    finite = [v for v in scores.values() if math.isfinite(v)]
    if finite:
        low, high = min(finite), max(finite)
        pad = max(1e-3 * max(abs(high), 1e-9), 0.25 * (high - low))
        ax.set_ylim(low - pad, high + 1.2 * pad)  # zoomed on the differences: the axis does not start at 0
    if percent:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v * 100:.4g} %"))
    ax.tick_params(axis="x", labelsize=9)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=_TITLE_SIZE)
    if handles:
        fig.legend(handles=handles, fontsize=_LEGEND_SIZE, loc="outside lower center", ncols=min(len(handles), 3))
    return fig


def close(fig: Any) -> None:
    plt.close(fig)


# --------------------------------------------------------------------------- helpers


def _ranks(ranking: Mapping[str, float] | None, labels: Any) -> dict[str, int]:
    """label → rank (1 = best) from a best-first mapping; labels it does not name have none."""
    return {k: i for i, k in enumerate((k for k in (ranking or {}) if k in labels), start=1)}


def _rank_by_loss(losses: Sequence[float]) -> list[int]:
    """Each loss's rank, lowest first, non-finite last."""
    order = sorted(
        range(len(losses)), key=lambda i: (not math.isfinite(losses[i]), losses[i] if math.isfinite(losses[i]) else 0.0)
    )
    ranks = [0] * len(losses)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks


def _ranked_text(rank: int | None, what: str, score: float | None, *, chosen: bool, prefix: str = "") -> str:
    """``2. max_lr=0.7992 (0.09779) ← chosen``; a non-finite score reads "diverged"."""
    head = f"{rank}. " if rank is not None else ""
    tail = ""
    if score is not None:
        tail = f" ({prefix}{score:.4g})" if math.isfinite(score) else " (diverged)"
    return head + what + tail + (" ← chosen" if chosen else "")


def _smoothed(losses: Any, fraction: float) -> Any:
    """The running median :func:`~tunekit.core.lr_range.analyse_range_test` reads: of the points before the
    first non-finite one, with its window; NaN after."""
    from tunekit.core.curves import running_median, smoothing_window

    y = np.asarray(losses, dtype=float)
    finite = np.isfinite(y)
    cut = len(y) if finite.all() else int(np.argmin(finite))
    out = np.full(len(y), np.nan)
    if cut:
        out[:cut] = running_median(y[:cut], smoothing_window(cut, fraction))
    return out


def _geometric(lrs: Sequence[float], curves: Sequence[Any]) -> bool:
    """Whether the LRs span more than a decade and step geometrically (an exponential ramp): then a log axis."""
    if not lrs or max(lrs) < 10 * min(lrs):
        return False
    linear: list[float] = []
    geometric: list[float] = []
    for x in curves:
        x = x[np.isfinite(x) & (x > 0)]
        if len(x) < 3:
            continue
        for steps, out in ((np.diff(x), linear), (np.diff(np.log(x)), geometric)):
            out.append(float(np.std(steps) / (abs(np.mean(steps)) or 1.0)))
    return bool(linear) and float(np.median(geometric)) < float(np.median(linear))


def _log_y(ax: Axes, values: Sequence[float]) -> bool:
    """A log y axis with ticks at 1, 2, 5 × 10^k written plainly, when the values span more than 4×."""
    if not values or min(values) <= 0 or max(values) < 4 * min(values):
        return False
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    return True


def _diagnosis_handles(shapes: Sequence[str]) -> list[Any]:
    """Legend entries for the diagnosis colours present, under a heading: what each colour means."""
    present = [s for s in SHAPE_MEANINGS if s in shapes]
    if not present:
        return []
    heading = Line2D([], [], linestyle="none", label="colour = diagnosis:")
    return [heading, *(Patch(color=SHAPE_COLOURS[s], label=SHAPE_MEANINGS[s]) for s in present)]


def _finish(fig: Figure, ax: Axes, title: str, handles: list[Any], legend_title: str | None) -> None:
    """The title over the figure and one legend right of the axes (constrained layout makes room for both)."""
    fig.suptitle(title, fontsize=_TITLE_SIZE)
    legend = ax.legend(
        handles=handles, fontsize=_LEGEND_SIZE, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=legend_title, title_fontsize=9
    )
    for text in legend.get_texts():
        if text.get_text().endswith(":"):  # a heading
            text.set_fontweight("bold")


def _value_ticks(ax: Axes, priority: Sequence[float], zero: float | None, log: bool, label: Any = format_value) -> None:
    """Ticks at the values tried, labelled with the value (``0`` at ``zero``); a label that would touch one of
    higher priority (earlier in ``priority``) is left off, its tick kept."""
    where = [math.log10(p) if log else p for p in priority]
    span = (max(where) - min(where) + 0.6) if log else 1.16 * ((max(where) - min(where)) or 1.0)  # the x limits
    labelled: list[int] = []
    for i, w in enumerate(where):
        if all(abs(w - where[j]) >= 0.11 * span for j in labelled):  # a label is about a tenth of the axis wide
            labelled.append(i)
    major = sorted(priority[i] for i in labelled)
    ax.xaxis.set_major_locator(FixedLocator(major))
    ax.xaxis.set_minor_locator(FixedLocator(sorted(set(priority) - set(major))))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: "0" if zero is not None and math.isclose(v, zero) else label(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _axis_break(ax: Axes, at: float) -> None:
    """Two slashes across the x axis at ``at``: the log axis is broken between 0 and the smallest value."""
    from matplotlib.path import Path as MarkerPath

    slashes = MarkerPath(
        [(-3, -3), (-1, 3), (1, -3), (3, 3)], [MarkerPath.MOVETO, MarkerPath.LINETO, MarkerPath.MOVETO, MarkerPath.LINETO]
    )
    for y in (0.0, 1.0):
        ax.plot(
            [at], [y], marker="s", ms=9, color="white", mec="white", transform=ax.get_xaxis_transform(), clip_on=False, zorder=5
        )
        ax.plot(
            [at], [y], marker=slashes, ms=11, color="black", mew=1.0, transform=ax.get_xaxis_transform(), clip_on=False, zorder=6
        )


def _loss_at(value: float, values: Sequence[float], losses: Sequence[float], diverged_at: float) -> float:
    """The loss of ``value`` (``diverged_at`` where it is not finite; NaN where it was not tried)."""
    for v, y in zip(values, losses, strict=True):
        if math.isclose(v, value, rel_tol=1e-9, abs_tol=1e-15):
            return y if math.isfinite(y) else diverged_at
    return math.nan

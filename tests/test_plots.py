"""The figures a person reads beside each decision: real values on the axes, the chosen value marked,
the candidates ranked, the diagnosis colours explained — and each phase draws what it decided on."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from tunekit.core.curves import running_median, smoothing_window
from tunekit.plots import (
    CHOSEN_COLOUR,
    SHAPE_COLOURS,
    SHAPE_MEANINGS,
    bars_figure,
    bisection_figure,
    close,
    curves_figure,
    format_value,
    metric_words,
    range_test_figure,
)


def legend_texts(fig: Figure) -> list[str]:
    legend = fig.axes[0].get_legend()
    assert legend is not None, "the figure has no legend"
    return [t.get_text() for t in legend.get_texts()]


def legend_handles(fig: Figure) -> dict[str, Any]:
    legend = fig.axes[0].get_legend()
    assert legend is not None
    return {t.get_text(): h for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)}


def tick_labels(fig: Figure) -> list[str]:
    fig.canvas.draw()  # tick labels are formatted at draw time
    return [t.get_text() for t in fig.axes[0].get_xticklabels()]


def ranked_entries(texts: list[str]) -> list[tuple[int, float]]:
    """(rank, score) of each ``N. … (score)`` legend entry, in legend order."""
    out = []
    for text in texts:
        m = re.match(r"^(\d+)\. .*\((?:lowest )?([-\d.e]+|diverged)\)", text)
        if m:
            out.append((int(m[1]), math.inf if m[2] == "diverged" else float(m[2])))
    return out


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
def test_figure_renders_to_png(make: Any, tmp_path: Path) -> None:
    fig = make()
    path = tmp_path / "figure.png"
    fig.savefig(path)
    # modest: about 7 × 4 inches
    assert tuple(fig.get_size_inches()) == pytest.approx((7.0, 4.0))
    close(fig)
    # a real picture: PNG signature and more than a blank canvas
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 8000


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (1e-4, "1e-4"), (3.1622776e-5, "3.2e-5"), (1e-3, "1e-3"), (9.96e-5, "1e-4"), (0.25, "0.25"), (0.8, "0.8")],
)
def test_values_are_written_as_a_person_writes_them(value: float, text: str) -> None:
    assert format_value(value) == text


def test_metric_keys_read_as_words() -> None:
    assert metric_words("val_loss") == "validation loss"
    assert metric_words("test_acc") == "test accuracy"
    assert metric_words("val_r2") == "validation R²"


def test_weight_decay_0_sits_left_of_a_log_axis_labelled_with_real_values() -> None:
    values = [1e-3, 1e-4, 1e-5, 0.0, 3.2e-4, 1e-2]
    fig = bisection_figure(values, [0.3, 0.2, 0.25, 0.4, 0.22, math.inf], best=1e-4)
    ax = fig.axes[0]
    labels = tick_labels(fig)
    assert ax.get_xscale() == "log"
    # real values, not exponents: 0 first (leftmost), then the values tried
    assert labels[0] == "0"
    assert {"1e-5", "1e-4", "1e-3"} <= set(labels)
    assert not any(re.fullmatch(r"-?\d+(\.\d+)?", t) and float(t) < 0 for t in labels), labels  # no log10 exponents
    assert "log10" not in ax.get_xlabel()
    ticks = dict(zip(labels, ax.get_xticks(), strict=True))
    assert ticks["0"] < ticks["1e-5"] / 3  # left of every positive value, past the break
    assert ax.get_ylabel() == "validation loss"
    texts = legend_texts(fig)
    assert "chosen: weight decay = 1e-4" in texts
    # ranked by loss, best first; the diverged value last, and said so
    assert [r for r, _ in ranked_entries(texts)] == [1, 2, 3, 4, 5, 6]
    assert [s for _, s in ranked_entries(texts)] == [0.2, 0.22, 0.25, 0.3, 0.4, math.inf]
    assert "6. 1e-2 (diverged)" in texts
    close(fig)


def test_weight_decay_0_chosen_is_marked_at_the_0_tick() -> None:
    fig = bisection_figure([0.0, 1e-5, 1e-4], [0.18, 0.2, 0.25], best=0.0)
    assert "chosen: weight decay = 0" in legend_texts(fig)
    labels = tick_labels(fig)
    zero = dict(zip(labels, fig.axes[0].get_xticks(), strict=True))["0"]
    star = next(c for c in fig.axes[0].collections if c.get_label().startswith("chosen"))
    assert star.get_offsets()[0][0] == pytest.approx(zero)
    close(fig)


def test_close_values_keep_the_chosen_ones_label_and_drop_the_ones_that_would_touch_it() -> None:
    values = [1e-5, 1e-4, 3.2e-5, 4.2e-5, 5.6e-5, 2.4e-5]
    fig = bisection_figure(values, [0.3, 0.3, 0.2, 0.19, 0.21, 0.25], best=4.2e-5)
    labels = [t for t in tick_labels(fig) if t]
    assert "4.2e-5" in labels
    positions = sorted(math.log10(float(t)) for t in labels)
    assert min(np.diff(positions)) > 0.2  # decades apart: no two labels overlap
    close(fig)


def test_dropout_is_bisected_on_a_linear_axis_with_its_values() -> None:
    fig = bisection_figure([0.0, 0.25, 0.5, 0.125], [0.42, 0.33, 0.5, 0.37], best=0.25, param="dropout", scale="linear")
    assert fig.axes[0].get_xscale() == "linear"
    assert {"0", "0.125", "0.25", "0.5"} <= set(tick_labels(fig))
    assert "chosen: dropout = 0.25" in legend_texts(fig)
    close(fig)


def test_each_bisection_point_takes_its_diagnosis_colour_and_the_legend_says_what_it_means() -> None:
    fig = bisection_figure([1e-5, 1e-4, 1e-3], [0.2, 0.18, 0.3], best=1e-4, shapes=["underfitting", "horizontal", "overfitting"])
    handles = legend_handles(fig)
    for shape in ("underfitting", "horizontal", "overfitting"):
        assert to_rgba(handles[SHAPE_MEANINGS[shape]].get_facecolor()) == to_rgba(SHAPE_COLOURS[shape])
    assert SHAPE_MEANINGS["diverging"] not in handles  # only the diagnoses present
    close(fig)


EVERY_SHAPE = {
    "0.1": ([1, 2, 3, 4, 5, 6], [2, 1.2, 0.8, 0.7, 0.69, 0.7], "horizontal"),
    "0.3": ([1, 2, 3, 4, 5, 6], [2, 1.4, 1.0, 0.9, 0.8, 0.72], "underfitting"),
    "1": ([1, 2, 3, 4, 5, 6], [2, 1.0, 0.75, 0.8, 0.9, 1.0], "overfitting"),
    "3": ([1, 2, 3], [2, 5, 30], "diverging"),
    "10": ([1, 2], [2, 2.1], "unknown"),
}


def test_every_diagnosis_present_has_a_legend_entry_in_its_colour() -> None:
    fig = curves_figure(EVERY_SHAPE, "every shape", name="max_lr")
    handles = legend_handles(fig)
    for shape in ("horizontal", "underfitting", "overfitting", "diverging", "unknown"):
        assert to_rgba(handles[SHAPE_MEANINGS[shape]].get_facecolor()) == to_rgba(SHAPE_COLOURS[shape]), shape
    # and each curve is drawn in the colour of its diagnosis
    for line in fig.axes[0].get_lines():
        label = line.get_label().split("=", 1)[1]
        assert to_rgba(line.get_color()) == to_rgba(SHAPE_COLOURS[EVERY_SHAPE[label][2]])
    close(fig)


def test_candidates_are_ranked_best_first_and_the_chosen_one_need_not_be_the_first() -> None:
    curves = {k: EVERY_SHAPE[k] for k in ("0.1", "0.3", "1")}
    # a larger value chosen within a tie band: rank 2, and the legend says both truthfully
    fig = curves_figure(curves, "tie", chosen="0.3", ranking={"0.1": 0.69, "0.3": 0.7, "1": 1.0}, name="max_lr")
    texts = legend_texts(fig)
    assert texts[:3] == ["1. max_lr=0.1 (0.69)", "2. max_lr=0.3 (0.7) ← chosen", "3. max_lr=1 (1)"]
    chosen = next(line for line in fig.axes[0].get_lines() if "chosen" in line.get_label())
    others = [line for line in fig.axes[0].get_lines() if "chosen" not in line.get_label()]
    assert all(chosen.get_linewidth() > line.get_linewidth() for line in others)
    assert to_rgba(chosen.get_markerfacecolor()) == to_rgba(CHOSEN_COLOUR)
    assert fig.axes[0].get_ylabel().startswith("validation loss")
    close(fig)


def test_the_range_test_draws_each_evaluation_faintly_and_the_running_median_the_rule_reads() -> None:
    lrs = list(np.linspace(0.01, 3.0, 30))
    losses = [2.3 - 1.4 * min(lr, 0.8) + (2.0 * (lr - 1.0) if lr > 1.0 else 0.0) + 0.1 * (-1) ** i for i, lr in enumerate(lrs)]
    fig = range_test_figure(
        {"wd 1e-5": (lrs, losses), "wd 0": (lrs, [v + 0.05 for v in losses])},
        0.8,
        0.08,
        chosen="wd 1e-5",
        ranking={"wd 1e-5": 1.2, "wd 0": 1.25},
        turn_up=0.9,
    )
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear"  # a linear ramp, drawn linearly
    assert ax.get_xlabel().startswith("learning rate")
    assert ax.get_ylabel() == "validation loss"
    texts = legend_texts(fig)
    assert texts[0] == "1. wd 1e-5 (lowest 1.2) ← chosen"
    assert "chosen: max_lr = 0.8 (turn-up 0.9)" in texts
    assert "min_lr = max_lr/10 = 0.08" in texts
    smoothed = running_median(losses, smoothing_window(len(losses), 0.1))
    lines = [line for line in ax.get_lines() if line.get_label() == texts[0]]
    assert len(lines) == 1
    assert lines[0].get_ydata() == pytest.approx(smoothed)
    assert to_rgba(lines[0].get_color()) == to_rgba(CHOSEN_COLOUR)
    dots = [line for line in ax.get_lines() if line.get_linestyle() == "None" and list(line.get_ydata()) == losses]
    assert dots
    assert dots[0].get_alpha() < 1
    close(fig)


def test_a_range_test_ramped_exponentially_is_drawn_on_a_log_axis() -> None:
    lrs = list(np.geomspace(1e-4, 10, 40))
    fig = range_test_figure({"validation loss": (lrs, [2.0 - 0.01 * i for i in range(40)])}, 1.0, 0.1)
    assert fig.axes[0].get_xscale() == "log"
    close(fig)


def test_bars_highlight_the_chosen_one_and_top_each_with_its_rank() -> None:
    scores = {"64": 0.958, "128": 0.965, "256": 0.962}
    fig = bars_figure(scores, "batch", "final validation accuracy", chosen="128", ranking=["128", "256", "64"], percent=True)
    ax = fig.axes[0]
    colours = {t.get_text(): to_rgba(p.get_facecolor()) for t, p in zip(ax.get_xticklabels(), ax.patches, strict=False)}
    assert colours["128"] == to_rgba(CHOSEN_COLOUR)
    assert colours["64"] != to_rgba(CHOSEN_COLOUR)
    assert [t.get_text() for t in ax.texts] == ["#3 · 95.80 %", "#1 · 96.50 %", "#2 · 96.20 %"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["chosen: 128"]
    close(fig)


# --------------------------------------------------------------------------- the phases' own figures, on a real search


@pytest.fixture(scope="module")
def demo_figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Figure]]:
    from tests.test_phases import load_demo, records, replay
    from tunekit.recipe.phases import phase_named

    demo = load_demo()
    tmp = tmp_path_factory.mktemp("demo")
    out = {}
    for name in ["range_test", "learning_rate", "momentum", "weight_decay", "final"]:
        preset, context, _ = replay(demo, name, tmp)
        out[name] = phase_named(name).decide(preset, records(demo, name), context)
    yield out
    for _, fig in out.values():
        close(fig)


@pytest.mark.parametrize("name", ["range_test", "learning_rate", "momentum", "weight_decay"])
def test_a_decision_figure_reads_the_validation_split_and_marks_its_choice(
    name: str, demo_figures: dict[str, tuple[Any, Figure]]
) -> None:
    result, fig = demo_figures[name]
    ax = fig.axes[0]
    assert ax.get_ylabel().startswith("validation loss")
    assert not re.search(r"test (loss|acc)", ax.get_ylabel() + fig.get_suptitle() + " ".join(legend_texts(fig)))
    texts = legend_texts(fig)
    assert any("chosen" in t for t in texts), texts
    # the candidates the phase scored, ranked best first by those scores
    ranked = ranked_entries(texts)
    assert [r for r, _ in ranked] == list(range(1, len(result.evidence) + 1))
    scores = [s for _, s in ranked]
    assert scores == sorted(scores)
    assert scores == pytest.approx(sorted(result.evidence.values()), rel=1e-3)


def test_the_learning_rate_figure_shows_the_chosen_lr_second_by_its_loss(demo_figures: dict[str, tuple[Any, Figure]]) -> None:
    result, fig = demo_figures["learning_rate"]
    texts = legend_texts(fig)
    # 0.7992 ties the lowest (0.3996) within the band, and the larger wins: chosen, ranked 2nd by its loss
    assert "1. max_lr=0.3996 (0.09715)" in texts
    assert "2. max_lr=0.7992 (0.09779) ← chosen" in texts
    assert "the largest max_lr within noise of the lowest validation loss wins (chosen: ±0.00194); halved" in fig.get_suptitle()
    assert "overfit" not in fig.get_suptitle()  # the recorded runs carry no training loss: no sign either way is claimed
    assert result.values["refined_max_lr"] == pytest.approx(0.7992, abs=1e-4)


def test_the_weight_decay_figure_says_what_it_measured(demo_figures: dict[str, tuple[Any, Figure]]) -> None:
    _, fig = demo_figures["weight_decay"]
    assert "chosen: weight decay = 3.2e-5" in legend_texts(fig)
    assert "snapshot" in fig.get_suptitle()
    assert {"3.2e-6", "1e-5", "3.2e-5", "1e-4"} <= set(tick_labels(fig))


def test_the_final_figure_shows_the_test_metric_and_the_mean(demo_figures: dict[str, tuple[Any, Figure]]) -> None:
    result, fig = demo_figures["final"]
    ax = fig.axes[0]
    assert ax.get_ylabel() == "test accuracy"  # the one number of a search read on test
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert f"mean {100 * result.values['mean']:.2f} % ± {100 * result.values['std']:.2f} % (std)" in texts
    assert any(t.startswith("kept as the final model") for t in texts)

"""The benchmark suite's pure parts: statistics, floors, the table (text and Markdown), the figure.

Everything here works on plain summaries (what ``suite.json`` holds), so it is tested without Ray:

* a contender's summary — ``{"mean", "std", "se", "n", "failed", "scores", "trial_epochs",
  "wall_s", "trials", "config", "cost_in_final_trainings", "wall_in_final_trainings"}``;
* a task's summary — ``{"task", "metric", "mode", "final_epochs", "seeds", "wall_s",
  "contenders": {name: contender summary}}``.

Across tasks the metrics differ (accuracy, R²), so averages use each task's metric as a fraction
(accuracy 0–1, R² as is) and the difference to the best peer in those units, sign-corrected so
that positive always means tunekit is better (:data:`AVERAGING`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunekit.recipe.results import text_table

OURS = "tunekit"
OPTUNA = "optuna_asha"
COST_FLOOR = 0.25  # tunekit's trial-epochs, at most this share of Optuna + ASHA's
AVERAGING = (
    "averages over tasks take each task's test metric as a fraction (accuracy 0–1, R² as is) "
    "and tunekit's difference to that task's best peer in those units (positive: tunekit better)"
)

Summary = Mapping[str, Any]


@dataclass(frozen=True)
class Floor:
    """One floor: what it demands, whether it is met (None: cannot be judged here) and the figures."""

    what: str
    met: bool | None
    figures: str

    def line(self) -> str:
        verdict = {True: "met", False: "NOT met", None: "not judged"}[self.met]
        return f"floor: {self.what}: {verdict} ({self.figures})"


# ----------------------------------------------------------------------------- statistics


def standard_error(values: Sequence[float]) -> float:
    """The standard error of the mean, ``std / √n`` (sample std); 0 for fewer than two values."""
    if len(values) < 2:
        return 0.0
    return statistics.stdev(values) / math.sqrt(len(values))


def score_summary(scores: Sequence[float]) -> dict[str, Any]:
    """Mean, std, standard error and count of one contender's retrained test scores."""
    if not scores:
        return {"mean": math.nan, "std": math.nan, "se": math.nan, "n": 0, "scores": []}
    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
    return {"mean": statistics.mean(scores), "std": std, "se": standard_error(scores), "n": len(scores), "scores": list(scores)}


def signed(difference: float, mode: str) -> float:
    """``difference`` (a − b) turned so that positive means a is better under ``mode`` (max or min)."""
    return difference if mode == "max" else -difference


def best_peer(task: Summary) -> str | None:
    """The peer (any contender but tunekit) with the best mean test metric, or None without peers."""
    peers = {k: v for k, v in task["contenders"].items() if k != OURS and math.isfinite(v["mean"])}
    if not peers:
        return None
    return max(peers, key=lambda k: signed(peers[k]["mean"], task["mode"]))


def margin(task: Summary) -> float:
    """tunekit's mean minus the best peer's, positive when tunekit is better (NaN when either is missing)."""
    peer = best_peer(task)
    contenders = task["contenders"]
    if peer is None or OURS not in contenders:
        return math.nan
    return signed(contenders[OURS]["mean"] - contenders[peer]["mean"], task["mode"])


def cost_ratio(task: Summary) -> float:
    """tunekit's trial-epochs over Optuna + ASHA's (NaN when either is missing)."""
    contenders = task["contenders"]
    if OURS not in contenders or OPTUNA not in contenders or not contenders[OPTUNA]["trial_epochs"]:
        return math.nan
    return contenders[OURS]["trial_epochs"] / contenders[OPTUNA]["trial_epochs"]


# ----------------------------------------------------------------------------- formatting


def fmt_metric(metric: str, value: float) -> str:
    """An accuracy as a percentage (``98.78 %``), anything else with three decimals (``0.439``)."""
    if not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.2f} %" if metric == "acc" else f"{value:.3f}"


def fmt_spread(metric: str, value: float) -> str:
    """A spread (standard error, difference) in the metric's units: points for accuracy."""
    if not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.2f}" if metric == "acc" else f"{value:.3f}"


def fmt_score(metric: str, contender: Summary) -> str:
    """``98.78 % ± 0.08`` (mean ± standard error), with the diverged final trainings counted."""
    text = f"{fmt_metric(metric, contender['mean'])} ± {fmt_spread(metric, contender['se'])}"
    if contender.get("failed"):
        text += f" ({contender['failed']}/{contender['n']} diverged)"
    return text


# ----------------------------------------------------------------------------- floors


def task_floors(task: Summary) -> list[Floor]:
    """The two per-task floors: the test metric within one standard error of the best peer, the cost ≤ 25 %."""
    metric, contenders = task["metric"], task["contenders"]
    peer = best_peer(task)
    if peer is None or OURS not in contenders:
        quality = Floor("test metric ≥ best peer's − 1 SE", None, "needs tunekit and a peer")
    else:
        ours, theirs = contenders[OURS], contenders[peer]
        gap = margin(task)
        quality = Floor(
            f"test {metric} ≥ best peer's − 1 SE",
            gap >= -theirs["se"],
            f"{fmt_metric(metric, ours['mean'])} vs {peer} {fmt_metric(metric, theirs['mean'])} "
            f"± {fmt_spread(metric, theirs['se'])}; difference {fmt_spread(metric, gap)}",
        )
    ratio = cost_ratio(task)
    if math.isnan(ratio):
        cost = Floor(f"trial-epochs ≤ {100 * COST_FLOOR:.0f} % of Optuna+ASHA's", None, "needs tunekit and optuna_asha")
    else:
        cost = Floor(
            f"trial-epochs ≤ {100 * COST_FLOOR:.0f} % of Optuna+ASHA's",
            ratio <= COST_FLOOR,
            f"{100 * ratio:.0f} % ({contenders[OURS]['trial_epochs']:.0f} of {contenders[OPTUNA]['trial_epochs']:.0f})",
        )
    return [quality, cost]


def average_floors(tasks: Sequence[Summary]) -> list[Floor]:
    """The floors over every judged task: mean margin ≥ −mean SE, mean cost ratio ≤ 25 %, mean margin ≥ 0."""
    judged = [t for t in tasks if math.isfinite(margin(t))]
    costed = [t for t in tasks if math.isfinite(cost_ratio(t))]
    floors: list[Floor] = []
    if judged:
        gaps = [margin(t) for t in judged]
        ses = [t["contenders"][best_peer(t)]["se"] for t in judged]
        met = sum(bool(f.met) for t in judged for f in task_floors(t)[:1])
        mean_gap, mean_se = statistics.mean(gaps), statistics.mean(ses)
        floors.append(
            Floor(
                f"averaged over {len(judged)} tasks, test metric ≥ best peer's − 1 SE",
                mean_gap >= -mean_se,
                f"mean difference {mean_gap:+.4f} vs mean SE {mean_se:.4f}; met on {met}/{len(judged)} tasks",
            )
        )
    else:
        floors.append(Floor("averaged, test metric ≥ best peer's − 1 SE", None, "no task has tunekit and a peer"))
    if costed:
        ratios = [cost_ratio(t) for t in costed]
        met = sum(r <= COST_FLOOR for r in ratios)
        floors.append(
            Floor(
                f"averaged over {len(costed)} tasks, trial-epochs ≤ {100 * COST_FLOOR:.0f} % of Optuna+ASHA's",
                statistics.mean(ratios) <= COST_FLOOR,
                f"mean ratio {100 * statistics.mean(ratios):.0f} %; met on {met}/{len(costed)} tasks",
            )
        )
    else:
        floors.append(Floor(f"averaged, trial-epochs ≤ {100 * COST_FLOOR:.0f} % of Optuna+ASHA's", None, "no task has both"))
    if judged:
        gaps = [margin(t) for t in judged]
        ahead = sum(g >= 0 for g in gaps)
        floors.append(
            Floor(
                f"averaged over {len(judged)} tasks, tunekit ≥ best peer",
                statistics.mean(gaps) >= 0,
                f"mean difference {statistics.mean(gaps):+.4f}; ahead or level on {ahead}/{len(judged)} tasks",
            )
        )
    return floors


# ----------------------------------------------------------------------------- the table


HEADER = ("task", "contender", "test metric (mean ± SE)", "trial-epochs", "search wall", "cost ÷ final training", "chosen")


def rows(tasks: Sequence[Summary]) -> list[tuple[str, ...]]:
    """One row per task and contender, the table's cells as text."""
    out: list[tuple[str, ...]] = []
    for task in tasks:
        metric = task["metric"]
        for name, c in task["contenders"].items():
            out.append(
                (
                    task["task"],
                    name,
                    f"{metric} {fmt_score(metric, c)}",
                    f"{c['trial_epochs']:.0f}",
                    f"{c['wall_s']:.0f} s",
                    f"{c['cost_in_final_trainings']:.2f} (wall {c['wall_in_final_trainings']:.2f})",
                    c["config"],
                )
            )
    return out


def table(tasks: Sequence[Summary]) -> str:
    """The suite's table as aligned text."""
    return "\n".join(text_table([HEADER, *rows(tasks)]))


def markdown_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """A header and rows of text cells as a Markdown table (a ``|`` inside a cell escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in cells]
    return "\n".join(lines)


def markdown(tasks: Sequence[Summary]) -> str:
    """The suite's table in Markdown."""
    return markdown_table(HEADER, rows(tasks))


def floor_lines(tasks: Sequence[Summary]) -> list[str]:
    """Every task's floors, then the averaged ones and how the average is taken."""
    lines = [f"{t['task']}: {f.line()}" for t in tasks for f in task_floors(t)]
    lines += [f"all tasks: {f.line()}" for f in average_floors(tasks)]
    lines.append(f"({AVERAGING})")
    return lines


# ----------------------------------------------------------------------------- the figure


def plot(tasks: Sequence[Summary], path: Path) -> None:
    """Test metric (mean ± SE) against search compute (trial-epochs, log x), one subplot per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(tasks))
    lines = math.ceil(len(tasks) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(5 * columns, 3.8 * lines), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        _task_axes(ax, task)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.set_visible(False)
    fig.suptitle("each choice retrained: test metric (mean ± SE) vs search compute", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _task_axes(ax: Any, task: Summary) -> None:
    scale = 100.0 if task["metric"] == "acc" else 1.0
    for name, c in task["contenders"].items():
        x = max(c["trial_epochs"], 0.5)
        ax.errorbar(x, scale * c["mean"], yerr=scale * c["se"], fmt="o", capsize=4, label=name)
    ax.axvline(task["final_epochs"], color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    epochs = [max(c["trial_epochs"], 0.5) for c in task["contenders"].values()] or [1.0]
    ax.set_xlim(min(epochs) / 2, max(epochs) * 2)
    ax.set_xlabel("trial-epochs (log; dashed: one final training)")
    ax.set_ylabel(f"test {task['metric']}" + (" (%)" if scale == 100.0 else ""))
    ax.set_title(task["task"], fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)

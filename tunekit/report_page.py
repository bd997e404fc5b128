"""A search's report as one page: the chosen configuration, each decision beside its evidence and
plot, the final result and what the search cost.

:class:`ReportPage` is plain data; :func:`render_html` makes the page a person reads top to
bottom (``report.html``: self-contained, its plots embedded, so MLflow's artifact viewer shows it
without a server) and :func:`render_markdown` the same content for terminals and diffs
(``report.md``, its plots linked). The recipe builds the page from a search folder
(:func:`tunekit.recipe.report.search_page`), the single-trial commands from their MLflow log.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The chosen configuration's file on the parent run (a preset: ``tunekit train best_config.yaml``).
BEST_CONFIG = "best_config.yaml"


@dataclass
class DecisionView:
    """One phase's decision as the page shows it.

    ``evidence`` maps each candidate to its score (a validation loss, or the final replicates' test
    metric); ``lower_is_better`` orders it; ``chosen`` names the candidate the phase kept, when it
    is one of them. ``image`` is the plot as PNG bytes (embedded in HTML), ``plot`` its artifact
    path (linked from Markdown).
    """

    phase: str
    values: Mapping[str, Any]
    reason: str
    evidence: Mapping[str, float] = field(default_factory=dict)
    lower_is_better: bool = True
    chosen: str | None = None
    image: bytes | None = field(default=None, repr=False)
    plot: str | None = None
    note: str = ""  # e.g. why there is no plot
    failed: Mapping[str, str] = field(default_factory=dict)  # candidate → the error that ended it

    def ranking(self) -> list[tuple[str, float]]:
        """The candidates best first; the ones without a finite score (diverged) next, the failed ones last."""
        sign = 1.0 if self.lower_is_better else -1.0
        ranked = sorted(
            self.evidence.items(),
            key=lambda kv: (kv[0] in self.failed, not math.isfinite(kv[1]), sign * kv[1] if math.isfinite(kv[1]) else 0),
        )
        return ranked + [(label, math.nan) for label in self.failed if label not in self.evidence]

    def score_text(self, label: str, score: float) -> str:
        """A candidate's score as the table shows it: the number, ``diverged``, or ``failed: <error>``."""
        if label in self.failed:
            return f"failed: {self.failed[label]}"
        return f"{score:.4g}" if math.isfinite(score) else "diverged"


@dataclass
class Setting:
    """One line of the chosen configuration: a preset path, its value and the phase that set it."""

    path: str
    value: Any
    decided_by: str = ""  # empty: the request's own value


@dataclass
class ReportPage:
    """Everything the report says, as plain data."""

    name: str
    preset: str
    phases: Sequence[str]
    settings: Sequence[Setting] = ()
    decisions: Sequence[DecisionView] = ()
    result: str = ""  # "test accuracy 98.67 % ± 0.08 over 3 replicates", empty when no final phase ran
    metrics: Mapping[str, float] = field(default_factory=dict)
    compute_summary: str = ""
    compute: Mapping[str, float] = field(default_factory=dict)
    decided_on: str = "validation"
    config_file: str = BEST_CONFIG


def value_text(value: Any) -> str:
    """A decided value as the summary table and the page write it: a float to 4 significant digits,
    below 0.01 or from 10⁴ in exponent form (2 digits); ints, strings and flags as they are."""
    if isinstance(value, list | tuple):
        return "(" + ", ".join(value_text(v) for v in value) + ")"
    if not isinstance(value, float):
        return str(value)
    if value and (abs(value) < 1e-2 or abs(value) >= 1e4):
        return f"{value:.2g}"
    return f"{value:.4g}"


def chosen_label(values: Mapping[str, Any], evidence: Mapping[str, float]) -> str | None:
    """The candidate whose label is one of the decided values (``"3.2e-05"`` for weight decay 3.2e-05,
    ``"0.7992"`` for max_lr 0.79918…), when exactly one is; else None (e.g. the final replicates' seeds)."""
    numbers = [float(v) for v in values.values() if isinstance(v, int | float) and not isinstance(v, bool)]

    def close_to(label: str) -> bool:
        try:
            x = float(label)
        except ValueError:
            return False
        return any(math.isclose(x, v, rel_tol=1e-3, abs_tol=1e-12) for v in numbers)

    matches = [label for label in evidence if close_to(label)]
    return matches[0] if len(matches) == 1 else None


def sentence(text: str) -> str:
    """``test accuracy 98.67 % …`` as a sentence: ``Test accuracy 98.67 % ….``"""
    return text[:1].upper() + text[1:] + "."


def headline(d: DecisionView) -> str:
    """``range_test: max_lr = 0.799, min_lr = 0.0799``."""
    values = ", ".join(f"{k} = {value_text(v)}" for k, v in d.values.items())
    return f"{d.phase}: {values}" if values else d.phase


# ---------------------------------------------------------------------------------------- Markdown


def render_markdown(page: ReportPage) -> str:
    """``report.md``: the page's content, each plot a link to its artifact."""
    lines = [f"# tunekit search: {page.name}", "", f"Preset `{page.preset}`, phases: {', '.join(page.phases)}.", ""]
    if page.settings:
        lines += ["## Chosen configuration", "", "| setting | value | decided by |", "|---|---|---|"]
        lines += [f"| `{s.path}` | {value_text(s.value)} | {s.decided_by or 'the request'} |" for s in page.settings]
        lines.append("")
    for d in page.decisions:
        lines += [f"## {headline(d)}", "", d.reason, ""]
        if d.plot:
            lines += [f"![{d.phase}]({d.plot})", ""]
    lines += ["## Result", ""]
    if page.result:
        lines += [sentence(page.result), ""]
    lines += [f"- {k}: {v:.4g}" for k, v in page.metrics.items()]
    if page.compute or page.compute_summary:
        lines += ["", "## Compute", ""]
        if page.compute_summary:
            lines += [sentence(page.compute_summary), ""]
        lines += [_COMPUTE_NOTE, ""]
        lines += [f"- {k}: {v:.4g}" for k, v in page.compute.items()]
    lines += ["", _split_note(page)]
    lines += ["", f"The chosen configuration is `{page.config_file}` (a preset: `tunekit train {page.config_file}`)."]
    return "\n".join(lines) + "\n"


_COMPUTE_NOTE = "The search is every phase but `final`; one final training is one replicate: its epochs, and the median replicate's wall time."


def _split_note(page: ReportPage) -> str:
    return f"Every decision read the {page.decided_on} split; `test_*` values are the final replicates' on the test split."


# -------------------------------------------------------------------------------------------- HTML

_STYLE = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1f2328;
       max-width: 900px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; }
.meta { color: #59636e; margin-top: 0; }
.result { font-size: 1.15em; background: #f6f8fa; border-left: 4px solid #1f883d; padding: 0.6em 1em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.95em; }
th, td { border: 1px solid #d0d7de; padding: 0.25em 0.7em; text-align: left; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.chosen td { font-weight: 600; background: #dafbe1; }
tr.failed td { color: #cf222e; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; border: 1px solid #eaeef2; }
code { background: #f6f8fa; padding: 0.1em 0.3em; border-radius: 4px; }
.note { color: #59636e; font-size: 0.9em; }
"""


def render_html(page: ReportPage) -> str:
    """``report.html``: one self-contained page, read top to bottom; plots embedded as PNG data URIs."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>tunekit search: {e(page.name)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>tunekit search: {e(page.name)}</h1>",
        f'<p class="meta">Preset <code>{e(page.preset)}</code> · phases: {e(" → ".join(page.phases))} · '
        f"every decision read the {e(page.decided_on)} split</p>",
    ]
    if page.result:
        out.append(f'<p class="result" id="result">{e(sentence(page.result)[:-1])}</p>')
    if page.settings:
        out += ['<section id="configuration">', "<h2>Chosen configuration</h2>", "<table>"]
        out.append("<tr><th>setting</th><th>value</th><th>decided by</th></tr>")
        for s in page.settings:
            by = f"<a href='#phase-{e(s.decided_by)}'>{e(s.decided_by)}</a>" if s.decided_by else "the request"
            out.append(f"<tr><td><code>{e(s.path)}</code></td><td class='num'>{e(value_text(s.value))}</td><td>{by}</td></tr>")
        out += [
            "</table>",
            f'<p class="note">The whole preset is <code>{e(page.config_file)}</code> on this run: '
            f"<code>tunekit train {e(page.config_file)}</code> trains it.</p>",
            "</section>",
        ]
    for index, d in enumerate(page.decisions, start=1):
        out += _decision_html(index, d)
    out += ['<section id="result-details">', "<h2>Result</h2>"]
    if page.result:
        out.append(f"<p>{e(sentence(page.result))}</p>")
    out += _numbers_html(page.metrics)
    out.append(f'<p class="note">{e(_split_note(page))}</p></section>')
    if page.compute or page.compute_summary:
        out += ['<section id="compute">', "<h2>Compute</h2>"]
        if page.compute_summary:
            out.append(f"<p>{e(sentence(page.compute_summary))}</p>")
        out += _numbers_html(page.compute)
        out.append(f'<p class="note">{e(_COMPUTE_NOTE)}</p></section>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _numbers_html(values: Mapping[str, float]) -> list[str]:
    """A two-column table of named numbers (none when there are none)."""
    if not values:
        return []
    return [
        "<table>",
        *(f"<tr><td>{html.escape(k)}</td><td class='num'>{v:.4g}</td></tr>" for k, v in values.items()),
        "</table>",
    ]


def _decision_html(index: int, d: DecisionView) -> list[str]:
    e = html.escape
    out = [
        f'<section class="decision" id="phase-{e(d.phase)}">',
        f"<h2>{index}. {e(headline(d))}</h2>",
        f'<p class="reason">{e(d.reason)}</p>',
    ]
    ranking = d.ranking()
    if ranking:
        better = "lower is better" if d.lower_is_better else "higher is better"
        out += ["<table class='candidates'>", f"<tr><th>rank</th><th>candidate</th><th>score ({better})</th></tr>"]
        for rank, (label, score) in enumerate(ranking, start=1):
            chosen = label == d.chosen
            mark = " (chosen)" if chosen else ""
            shown = d.score_text(label, score)
            row_class = " class='chosen'" if chosen else " class='failed'" if label in d.failed else ""
            out.append(f"<tr{row_class}><td class='num'>{rank}</td><td>{e(label)}{mark}</td><td class='num'>{e(shown)}</td></tr>")
        out.append("</table>")
    if d.image:
        data = base64.b64encode(d.image).decode("ascii")
        out.append(f'<img alt="{e(d.phase)} plot" src="data:image/png;base64,{data}">')
    if d.note:
        out.append(f'<p class="note">{e(d.note)}</p>')
    out.append("</section>")
    return out

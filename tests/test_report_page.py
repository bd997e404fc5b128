"""The report page's pure parts: ranking, the chosen candidate, what HTML and Markdown say, escaping."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

from typer.testing import CliRunner

from tunekit.cli import app
from tunekit.report_page import DecisionView, ReportPage, Setting, chosen_label, render_html, render_markdown, value_text

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32  # stands for a plot: the page embeds bytes as they are


def page() -> ReportPage:
    momentum = DecisionView(
        "momentum",
        {"momentum_max": 0.9, "momentum_min": 0.85},
        "max momentum 0.9 has the lowest validation loss",
        {"0.95": 0.0978, "0.9": 0.0903, "0.99": 0.2465, "0.97": math.nan, "0.85": math.inf},
        chosen="0.9",
        image=PNG,
        plot="plots/momentum.png",
        failed={"0.85": "RuntimeError: injected <fault>"},
    )
    final = DecisionView(
        "final",
        {"metric": "test_acc", "mean": 0.9867, "std": 0.0008},
        "test accuracy 98.67 % ± 0.08 over 3 replicates",
        {"seed 0": 0.9866, "seed 1": 0.9875, "seed 2": 0.9859},
        lower_is_better=False,
        failed={"seed 3": "torch.OutOfMemoryError: CUDA out of memory"},
    )
    return ReportPage(
        "demo <1>",
        "mnist1d-cnn",
        ["momentum", "final"],
        settings=[Setting("policy.momentum", [0.9, 0.85], "momentum"), Setting("optimizer.name", "sgd")],
        decisions=[momentum, final],
        result="test accuracy 98.67 % ± 0.08 over 3 replicates on the test split",
        metrics={"test_acc": 0.9867},
        compute_summary="search 57 trial-epochs (1.9 final trainings)",
        compute={"search_trial_epochs": 57.0},
    )


def test_ranking_is_best_first_in_the_scores_direction_unscored_next_and_failed_last() -> None:
    momentum, final = page().decisions
    assert [label for label, _ in momentum.ranking()] == ["0.9", "0.95", "0.99", "0.97", "0.85"]
    # accuracy: higher first; a failed replicate has no score in the evidence and is listed after the others
    assert [label for label, _ in final.ranking()] == ["seed 1", "seed 0", "seed 2", "seed 3"]


def test_the_chosen_candidate_is_the_one_labelled_by_a_decided_value() -> None:
    assert chosen_label({"weight_decay": 3.2e-05}, {"3.2e-05": 0.16, "1e-05": 0.22}) == "3.2e-05"
    # labels round the value (the learning_rate phase's "0.7992" for 0.79918…)
    assert chosen_label({"refined_max_lr": 0.7991821, "lr_factor": 1.0}, {"0.3996": 0.097, "0.7992": 0.098}) == "0.7992"
    assert chosen_label({"range_test_weight_decay": 0.0, "max_lr": 0.8}, {"0": 0.9, "1e-05": 0.86}) == "0"
    assert chosen_label({"mean": 0.98}, {"seed 0": 0.98}) is None  # not a value: nothing to mark
    assert chosen_label({"momentum_max": 0.9, "momentum_min": 0.85}, {"0.9": 1.0, "0.85": 2.0}) is None  # ambiguous


def test_values_are_written_for_people() -> None:
    assert [value_text(v) for v in (0.7991821, 3.2e-05, 128, 0.0, "sgd", [0.9, 0.85], True)] == [
        "0.7992",
        "3.2e-05",
        "128",
        "0",
        "sgd",
        "(0.9, 0.85)",
        "True",
    ]


def test_the_html_page_reads_top_to_bottom_with_its_plots_embedded() -> None:
    text = render_html(page())
    order = ["<h1>", 'id="result"', 'id="configuration"', 'id="phase-momentum"', 'id="phase-final"', 'id="compute"']
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert "demo &lt;1&gt;" in text  # names are escaped
    assert "<h1>tunekit search: demo <1>" not in text
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert [base64.b64decode(i) for i in images] == [PNG]  # momentum's; the final phase had no plot
    momentum = text[text.index('id="phase-momentum"') : text.index('id="phase-final"')]
    assert "<h2>1. momentum: momentum_max = 0.9, momentum_min = 0.85</h2>" in momentum
    assert "<tr class='chosen'><td class='num'>1</td><td>0.9 (chosen)</td><td class='num'>0.0903</td></tr>" in momentum
    assert "<td>0.97</td><td class='num'>diverged</td>" in momentum
    # a candidate that raised is failed, with its error (escaped), never "diverged"
    assert (
        "<tr class='failed'><td class='num'>5</td><td>0.85</td><td class='num'>failed: RuntimeError: injected &lt;fault&gt;</td>"
        in momentum
    )
    assert "failed: torch.OutOfMemoryError: CUDA out of memory" in text[text.index('id="phase-final"') :]
    assert "score (higher is better)" in text[text.index('id="phase-final"') :]
    assert "<a href='#phase-momentum'>momentum</a>" in text  # the setting links to the decision that set it
    assert "<td><code>optimizer.name</code></td><td class='num'>sgd</td><td>the request</td>" in text
    assert "every decision read the validation split" in text


def test_markdown_says_the_same_and_links_the_plots() -> None:
    text = render_markdown(page())
    assert "## momentum: momentum_max = 0.9, momentum_min = 0.85" in text
    assert "![momentum](plots/momentum.png)" in text
    assert "| `policy.momentum` | (0.9, 0.85) | momentum |" in text
    assert "Test accuracy 98.67 % ± 0.08 over 3 replicates on the test split." in text
    assert "base64" not in text


def test_report_html_refuses_a_folder_that_is_not_a_search(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["report", str(tmp_path), "--html", str(tmp_path / "page.html")])
    assert out.exit_code == 2
    assert "search.json" in out.output
    assert not (tmp_path / "page.html").exists()
    out = CliRunner().invoke(app, ["report", str(tmp_path), "--html", str(tmp_path / "no" / "page.html")])
    assert out.exit_code == 2
    assert "--html" in out.output
    out = CliRunner().invoke(app, ["report", str(tmp_path), "--html", "a.html", "--csv", "b.csv"])
    assert out.exit_code == 2

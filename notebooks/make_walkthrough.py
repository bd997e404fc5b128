"""Writes walkthrough.ipynb (unexecuted). Edit the cells here, run this, commit both."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        """# The disciplined approach on MNIST-1D, step by step

This notebook runs `tunekit.search` on the embedded MNIST-1D preset and then reads back *why* each
value was chosen — the way Leslie Smith's paper (arXiv:1803.09820, Sec. 5) tells you to read it:

1. **LR range test** (Sec. 4.1): one per candidate weight decay; `max_lr` is the largest LR before the validation loss turns up.
2. **Weight decay** (Sec. 4.4): exponent bisection at that `max_lr`, here from one snapshot (snapshot-restart, Fig. 12).
3. **Learning rate**: short 1cycle runs at fractions of the range test's `max_lr`; where a smaller one is
   chosen, the weight decay is scaled up to keep max_lr × weight decay (Remark 6: regularisation balanced),
   and one more run at the chosen LR checks that scaled weight decay against the judged one.
4. **Momentum** (Sec. 4.3): short 1cycle runs, cyclical momentum from 0.99 / 0.97 / 0.95 / 0.9 down to 0.85.
5. **Final**: 1cycle with the chosen values, replicated over seeds and inits (App. A.1).

It needs no GPU and no download. With `TUNEKIT_WALKTHROUGH_QUICK=1` (the test suite sets it) it runs a
tiny version in about a minute; without it, the real preset (about 3 minutes on 2 CPU cores)."""
    ),
    new_code_cell(
        """import os
import tempfile

from IPython.display import Markdown, display

import tunekit
from tunekit.core.curves import diagnose
from tunekit.plots import bisection_figure, curves_figure, range_test_figure
from tunekit.recipe import phase_records

QUICK = os.environ.get("TUNEKIT_WALKTHROUGH_QUICK") == "1"
STORAGE = os.environ.get("TUNEKIT_WALKTHROUGH_STORAGE") or tempfile.mkdtemp(prefix="tunekit-walkthrough-")
overrides = {}
if QUICK:  # a tiny dataset and short runs: the same code path, in a minute
    overrides = {
        "dataset.num_samples": 2000, "model.width": 16, "train.batch_size": 64, "train.epochs": 6,
        "search.range_test.epochs": 4, "search.range_test.eval_every": 4, "search.range_test.eval_samples": 400,
        "search.range_test.weight_decays": [1e-3, 1e-4],
        "search.momentum.candidates": [0.95, 0.9], "search.momentum.epochs": 2,
        "search.weight_decay.epochs": 2, "search.weight_decay.max_trials": 3,
        # floors low enough for these short phases (on 1 600 samples the defaults would lengthen them)
        "search.range_test.min_steps": 10, "search.range_test.points": 10,
        "search.momentum.min_steps": 10, "search.momentum.min_points": 1,
        "search.weight_decay.min_steps": 10, "search.weight_decay.min_points": 1,
        "search.final.epochs": 4, "search.final.replicates": 2,
    }
print("storage:", STORAGE)"""
    ),
    new_markdown_cell(
        "## Run the whole recipe\n\nOne call; each phase is a Ray Tune experiment under one search folder, logged to MLflow."
    ),
    new_code_cell(
        """result = tunekit.search("mnist1d", overrides=overrides, storage=STORAGE, name="walkthrough", progress=False)
print(result.table())"""
    ),
    new_markdown_cell(
        """## 1. The range test picks the LR bounds

Each curve is the validation loss on a fixed subset of the validation split while the LR rises linearly (BatchNorm
statistics re-estimated before each evaluation). The chosen `max_lr` is where the best curve stops
improving; `min_lr = max_lr / 10` for 1cycle."""
    ),
    new_code_cell(
        """tests = phase_records(result.directory, "range_test")
curves = {f"wd {t.config['weight_decay']:g}": t.curve("lr", "val_loss") for t in tests}
bounds = result.phases["range_test"].values
range_test_figure(curves, bounds["max_lr"], bounds["min_lr"])  # shown inline at the end of the cell
display(Markdown(result.phases["range_test"].reason))"""
    ),
    new_markdown_cell(
        """## 2. Weight decay by exponent bisection from one snapshot

One run trains until its validation loss is horizontal; continuations from that snapshot try each weight
decay (numbered in the order the bisection proposed them). It runs at the range test's max_lr, before the
learning rate is refined: where the learning_rate phase then chooses a smaller LR, it scales this weight
decay up by their ratio, so that the final training keeps the max_lr × weight decay judged here."""
    ),
    new_code_cell(
        """wd = result.phases["weight_decay"]
values = [float(k) for k in wd.evidence]
bisection_figure(values, list(wd.evidence.values()), wd.values["weight_decay"])
display(Markdown(wd.reason))"""
    ),
    new_markdown_cell(
        """## 3. Early validation loss ranks the momentum candidates

Short runs, read by the shape of their validation loss (horizontal, still falling = underfitting,
rising = overfitting, diverging). They run at the learning rate the learning_rate phase refined
(short 1cycle runs at fractions of the range test's max_lr) and the weight decay it kept or scaled.
Where a learning_rate run trained the same configuration for as long (the candidate at the preset's
momentum: the chosen LR's own run, or the check of the weight decay it chose), it is read from there,
not trained again, and the reason below names it."""
    ),
    new_code_cell(
        """runs = phase_records(result.directory, "momentum")
shown = {}
for t in runs:
    epochs, losses = t.curve("epoch", "val_loss")
    verdict = diagnose(epochs, losses, chance_loss=t.last.get("chance_loss"))
    label = f"momentum {t.config['momentum'][0]:g}"
    shown[label] = (epochs, losses, verdict.shape.value)
    print(f"{label}: {verdict.shape.value} — {verdict.reason}")
curves_figure(shown, "momentum: short runs")
display(Markdown(result.phases["momentum"].reason))"""
    ),
    new_markdown_cell("## 4. The result\n\nThe final 1cycle trainings with every chosen value, mean ± std over the replicates."),
    new_code_cell(
        """print(f"test accuracy {100 * result.accuracy_mean:.2f} % ± {100 * result.accuracy_std:.2f} "
      f"({len(result.accuracies)} replicates), search compute {result.trial_epochs:.0f} trial-epochs")
print(f"MLflow parent run {result.run_id} in {result.tracking_uri}")
assert 0 < result.accuracy_mean <= 1"""
    ),
]

for number, cell in enumerate(cells):
    cell.id = f"cell-{number}"  # stable ids: regenerating gives the same file
notebook = new_notebook(
    cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
)
Path(__file__).with_name("walkthrough.ipynb").write_text(nbformat.writes(notebook))

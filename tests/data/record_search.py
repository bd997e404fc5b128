"""Export a finished search folder's trials and decisions to tests/data/records/<name>.json (run once; committed).

The phases' ``decide`` tests (tests/test_phases.py) replay these records without Ray and check
that each phase decides what the search decided when it ran. ``mnist1d_demo.json`` is the
``make demo`` search (the embedded MNIST-1D preset) as tunekit ran it on this project's
2-core machine on 2026-11-24, with the learning_rate phase, deciding on the validation split:

    python tests/data/record_search.py runs/<search folder> tests/data/records/mnist1d_demo.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: The result fields the phases and their searchers read; the rest (timings, node ids) is left out.
FIELDS = (
    "training_iteration",
    "epoch",
    "epochs_total",
    "trial_epochs",
    "lr",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "chance_loss",
    "diverged",
    "snapshot",
    "diagnosis",
    "stopped_by",
    "trial_dir",
    "checkpoint_dir_name",
)


def main(folder: str, out: str) -> None:
    from tunekit.recipe import phase_records, read_state

    state = read_state(folder)
    phases = {}
    for phase in state.phases:
        phases[phase] = [
            {
                "trial_id": r.trial_id,
                "config": r.config,
                "error": r.error,
                "rows": [{k: row[k] for k in FIELDS if k in row} for row in r.rows],
            }
            for r in phase_records(folder, phase)
        ]
    record = {
        "preset": state.preset,
        "decided": {name: {"values": done.values, "reason": done.reason} for name, done in state.done.items()},
        "trials": phases,
    }
    Path(out).write_text(json.dumps(record, indent=1, default=float, allow_nan=True))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Weight decay on MNIST-1D: snapshot-restart continuations versus full short runs, side by side.

Both searches bisect the weight-decay exponent from the same grid (1e-3, 1e-4, 1e-5, 0) and
judge every candidate at the same epoch of the same 1cycle schedule:

* full: every candidate trains from scratch to epoch ``judge_epoch`` (the snapshot's epoch plus
  ``continuation_epochs``);
* snapshot: one base run at 1e-4 trains until its test loss runs horizontal; every candidate
  then continues from that snapshot for ``continuation_epochs`` epochs.

Each candidate is judged by the median test loss of its last three epochs.

Cost is counted in trial-epochs (epochs trained, summed over trials).

    python bench/snapshot_vs_grid.py [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from typing import Any

from tunekit.presets import Preset, load_preset, preset_to_dict
from tunekit.runner import ensure_ray

#: The data these figures were measured on (BENCHMARKS.md): MNIST-1D with 8 000 training samples.
DATA = {"dataset.num_samples": 10000}


def _run(searcher: Any, preset: Preset, storage: str, name: str, concurrency: int) -> tuple[Any, float]:
    from ray import tune

    from tunekit.searchers import limited
    from tunekit.trainable import trainable

    started = time.perf_counter()
    tuner = tune.Tuner(
        trainable(preset),
        tune_config=tune.TuneConfig(search_alg=limited(searcher, concurrency), num_samples=-1, metric="val_loss", mode="min"),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
    )
    return tuner.fit(), time.perf_counter() - started


def compare(preset: Preset, storage: str, continuation_epochs: int = 3, concurrency: int = 2) -> dict[str, Any]:
    """Run both searches; return their chosen weight decay, trial count, trial-epochs and wall time."""
    from tunekit.searchers import ExponentBisectionSearcher, SnapshotContinuationSearcher

    base_config = {"preset": preset_to_dict(preset)}
    snapshot = SnapshotContinuationSearcher("weight_decay", base_config=base_config, continuation_epochs=continuation_epochs)
    snap_grid, snap_wall = _run(snapshot, preset, storage, "wd-snapshot", concurrency)
    assert snapshot.snapshot_epoch is not None, snapshot.failed
    judge_epoch = snapshot.snapshot_epoch + continuation_epochs
    full = ExponentBisectionSearcher("weight_decay", base_config={**base_config, "train.stop_at_epoch": judge_epoch})
    full_grid, full_wall = _run(full, preset, storage, "wd-full", concurrency)

    def epochs(grid: Any) -> int:
        return sum(len(r.metrics_dataframe) for r in grid)

    return {
        "snapshot": {
            "weight_decay": snapshot.best_value,
            "trials": len(snap_grid),
            "trial_epochs": epochs(snap_grid),
            "snapshot_epoch": snapshot.snapshot_epoch,
            "wall_s": round(snap_wall, 1),
            "tried": sorted(o.value for o in snapshot.bisection.observations),
        },
        "full": {
            "weight_decay": full.best_value,
            "trials": len(full_grid),
            "trial_epochs": epochs(full_grid),
            "judge_epoch": judge_epoch,
            "wall_s": round(full_wall, 1),
            "tried": sorted(o.value for o in full.bisection.observations),
        },
    }


def decades_apart(a: float, b: float, floor: float = 1e-6) -> float:
    """Distance in decades, with 0 placed at ``floor`` (a decade below the grid's smallest value)."""
    return abs(math.log10(max(a, floor)) - math.log10(max(b, floor)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ensure_ray(num_cpus=2)
    with tempfile.TemporaryDirectory() as storage:
        out = compare(load_preset("mnist1d", DATA), storage)
    if args.json:
        print(json.dumps(out))
        return
    for name, r in out.items():
        print(
            f"{name:9s} weight_decay={r['weight_decay']:g}  trials={r['trials']}  trial-epochs={r['trial_epochs']}  wall={r['wall_s']} s  tried={r['tried']}"
        )
    s, f = out["snapshot"], out["full"]
    print(
        f"cost ratio snapshot/full: {s['trial_epochs'] / f['trial_epochs']:.2f}; choices {decades_apart(s['weight_decay'], f['weight_decay']):.2f} decades apart"
    )


if __name__ == "__main__":
    main()

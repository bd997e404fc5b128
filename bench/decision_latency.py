"""Time per decision of every tunekit scheduler and searcher with 1 000 live simulated trials.

No Ray cluster: the hooks are called directly with hand-made results, as Tune's driver would
call them (the driver is where these run, one call per result). Prints mean and p99 per call.

    python bench/decision_latency.py [--trials 1000] [--epochs 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunekit.schedulers import LossShapeScheduler
from tunekit.searchers import CandidateSearcher, ExponentBisectionSearcher, SnapshotContinuationSearcher


@dataclass
class Trial:
    trial_id: str


def curve(rng: random.Random, epochs: int) -> list[float]:
    level, drop, tau = rng.uniform(0.05, 0.5), rng.uniform(1, 2), rng.uniform(1, 8)
    return [level + drop * math.exp(-e / tau) + rng.gauss(0, 0.01) for e in range(1, epochs + 1)]


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def scheduler_calls(trials: int, epochs: int, rng: random.Random) -> list[float]:
    s = LossShapeScheduler(grace_period=3)
    curves = {f"t{i}": curve(rng, epochs) for i in range(trials)}
    out = []
    for epoch in range(1, epochs + 1):  # all trials live, reporting epoch by epoch
        for tid, losses in curves.items():
            result = {"val_loss": losses[epoch - 1], "training_iteration": epoch, "epochs_total": epochs}
            out.append(timed(lambda tid=tid, result=result: s.on_trial_result(None, Trial(tid), result)))  # type: ignore[arg-type]
    return out


def searcher_calls(searcher: Any, trials: int, epochs: int, rng: random.Random) -> list[float]:
    out = []
    live: dict[str, list[float]] = {}
    for i in range(trials):
        tid = f"t{i}"
        out.append(timed(lambda tid=tid: searcher.suggest(tid)))
        live[tid] = curve(rng, epochs)
    for epoch in range(1, epochs + 1):
        for tid, losses in live.items():
            result = {"val_loss": losses[epoch - 1], "training_iteration": epoch, "epoch": epoch, "trial_dir": f"/tmp/{tid}"}
            out.append(timed(lambda tid=tid, result=result: searcher.on_trial_result(tid, result)))
    for tid, losses in live.items():
        result = {"val_loss": losses[-1], "training_iteration": epochs, "epoch": epochs}
        out.append(timed(lambda tid=tid, result=result: searcher.on_trial_complete(tid, result)))
        out.append(timed(lambda tid=tid: searcher.suggest(f"{tid}-next")))
    return out


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "calls": len(samples),
        "mean_us": round(statistics.mean(samples) * 1e6, 1),
        "p99_us": round(ordered[int(0.99 * (len(ordered) - 1))] * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(0)
    n, e = args.trials, args.epochs
    results = {
        "LossShapeScheduler.on_trial_result": summary(scheduler_calls(n, e, rng)),
        "ExponentBisectionSearcher": summary(searcher_calls(ExponentBisectionSearcher(base_config={}), n, e, rng)),
        "CandidateSearcher (1000 candidates)": summary(
            searcher_calls(CandidateSearcher({str(i): {"seed": i} for i in range(n)}, base_config={}), n, e, rng)
        ),
        "SnapshotContinuationSearcher": summary(searcher_calls(SnapshotContinuationSearcher(base_config={}), n, e, rng)),
    }
    if args.json:
        print(json.dumps(results))
        return
    print(f"{n} live trials × {e} results each; per call (floor: < 1 000 µs)")
    for name, r in results.items():
        verdict = "met" if r["p99_us"] < 1000 else "NOT met"
        print(f"  {name:40s} {r['calls']:>7} calls  mean {r['mean_us']:>8.1f} µs  p99 {r['p99_us']:>8.1f} µs  {verdict}")


if __name__ == "__main__":
    main()

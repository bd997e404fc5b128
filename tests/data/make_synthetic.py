"""Write the synthetic labelled curves under tests/data/curves/synthetic/ (deterministic; committed).

Each shape is built from a formula, so its label is known by construction; noise is Gaussian,
relative to the curve's drop. Epoch-length (15 points) and range-test-length (60 points) curves.

    python tests/data/make_synthetic.py
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "curves" / "synthetic"


def curves(seed: int = 0) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
    for n in (15, 60):
        t = np.arange(1, n + 1, dtype=float)
        u = (t - 1) / (n - 1)  # progress in [0, 1]: the first point shows the whole drop
        for i in range(5):
            level, drop = rng.uniform(0.05, 1.0), rng.uniform(0.5, 3.0)
            sigma = rng.choice([0.005, 0.02, 0.04]) * drop
            fast = level + drop * np.exp(-u / rng.uniform(0.06, 0.12))
            slow = level + drop * np.exp(-u / rng.uniform(0.4, 1.0))
            linear = level + drop * (1 - 0.8 * u)
            over = fast + rng.uniform(0.3, 0.6) * drop * np.maximum(0, u - rng.uniform(0.3, 0.5))
            blow = fast + drop * 90 * np.maximum(0, u - rng.uniform(0.5, 0.7)) ** 2
            shapes = {
                "h": ("horizontal", fast),
                "u": ("underfitting", slow),
                "ul": ("underfitting", linear),
                "o": ("overfitting", over),
                "d": ("diverging", blow),
            }
            for key, (label, clean) in shapes.items():
                # the signal that makes the label (tail fall, rise after the minimum) is ≥ 3σ of the noise,
                # so a person looking at the curve agrees with the label
                tail = clean[-max(3, n // 3) :]
                signal = max(tail[0] - tail[-1], clean[-1] - clean.min())
                noise = min(sigma, signal / 3) if label != "horizontal" else sigma
                out[f"{key}{n}_{i}"] = (label, t, clean + rng.normal(0, noise, n))
            nan = fast + rng.normal(0, sigma, n)
            nan[int(n * rng.uniform(0.4, 0.9)) :] = np.nan
            out[f"dn{n}_{i}"] = ("diverging", t, nan)
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "labels.csv").open("w", newline="") as fh:
        labels = csv.writer(fh)
        labels.writerow(["curve", "label", "chance_loss", "note"])
        for name, (label, t, y) in curves().items():
            labels.writerow([name, label, "", "synthetic"])
            with (OUT / f"{name}.csv").open("w", newline="") as cf:
                w = csv.writer(cf)
                w.writerow(["step", "test_loss"])
                for a, b in zip(t, y, strict=True):
                    w.writerow([f"{a:g}", f"{b:.6g}"])


if __name__ == "__main__":
    main()

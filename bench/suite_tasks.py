"""The benchmark suite's tasks: five tunekit presets of different kinds, and how long each one trains.

Each task is a whole preset (a bundled name, a YAML file or a mapping, plus overrides) and two
budgets, the full run's and ``--quick``'s: how long every contender's choice is retrained, and
how long a peer trial (Optuna or random search with ASHA) runs.

* ``mnist1d-cnn`` — the embedded preset (MNIST-1D, 1-D CNN with BatchNorm, SGD), its search section
  as is: the task tunekit was tuned on, and the one ``bench/search_efficiency.py`` reports alone.
* ``mnist1d-mlp`` — the bundled MLP (no BatchNorm) on 4 000 MNIST-1D samples: an overfitting regime
  (train accuracy reaches 100 %, test stays far below), where weight decay and the LR's
  regularising effect matter and BatchNorm does not smooth the LR range test.
* ``digits-cnn`` — scikit-learn's 8×8 digits as 1×8×8 images with a small 2-D CNN, the user
  component of ``examples/image_cnn`` (``examples.image_cnn.models:build``): a bundled dataset with
  a user model, tiny epochs (20 optimizer steps), where sizing floors dominate the search's cost.
* ``diabetes-regression`` — ``examples/regression``'s preset (user data, MLP, ``MSELoss``, R²,
  ``mode: max``) with its import strings made unambiguous (``examples.regression.data:load``…):
  no accuracy, no chance level, 300 training samples, decisions on a noisy validation loss.
* ``digits-mlp-adamw`` — the bundled MLP on digits with AdamW: ``momentum`` is then Adam's β1 and
  weight decay is decoupled, so the range test's LR span and the weight-decay candidates live
  elsewhere than SGD's.

The import strings name modules under the repository root (``examples.regression.data`` and
``examples.image_cnn.models`` cannot clash, unlike the examples' own ``data``/``models``):
``bench/suite.py`` puts the root on ``sys.path`` and on the Ray workers' ``PYTHONPATH``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunekit.presets import load_preset, preset_to_dict

ROOT = Path(__file__).resolve().parents[1]

#: What a final training that diverged (no test metric) scores: a constant prediction.
CHANCE_ACCURACY = 0.1  # ten classes
MEAN_PREDICTION_R2 = 0.0


@dataclass(frozen=True)
class Budget:
    """How long one task trains, for every contender alike."""

    final_epochs: int  # every contender's choice is retrained this long (seeds × contenders)
    peer_epochs: int  # one peer trial's 1cycle length (ASHA's max_t)
    peer_grace: int  # ASHA's grace period, in epochs


@dataclass(frozen=True)
class Task:
    """One benchmark task: a preset, why it is in the suite, and its full and quick budgets."""

    name: str
    why: str
    preset: str | Path | Mapping[str, Any]  # what load_preset takes: a bundled name, a YAML path, a mapping
    full: Budget
    quick: Budget
    failed_score: float  # a diverged final training's score (see CHANCE_ACCURACY)
    overrides: Mapping[str, Any] = field(default_factory=dict)  # dotted paths, always applied
    quick_overrides: Mapping[str, Any] = field(default_factory=dict)  # dotted paths, with --quick (smaller data)

    def budget(self, quick: bool) -> Budget:
        return self.quick if quick else self.full

    def build(self, quick: bool = False) -> dict[str, Any]:
        """The task's preset as a validated plain mapping; ``train.epochs`` and ``search.final.epochs`` are the budget's."""
        epochs = self.budget(quick).final_epochs
        overrides = {
            "name": self.name,
            **self.overrides,
            **(self.quick_overrides if quick else {}),
            "train.epochs": epochs,
            "search.final.epochs": epochs,
        }
        return preset_to_dict(load_preset(self.preset, overrides))


MNIST1D_MLP: dict[str, Any] = {
    "name": "mnist1d-mlp",
    "description": "MNIST-1D (4 000 samples), the bundled MLP (no BatchNorm), SGD + 1cycle: an overfitting regime",
    "dataset": {"name": "mnist1d", "num_samples": 4000},  # 3 200 train (2 880 after the validation carve), 800 test
    "model": {"name": "mlp", "width": 256},
    "optimizer": {"name": "sgd"},
    "train": {"epochs": 40, "batch_size": 64, "seed": 0},
    "policy": {"name": "one_cycle", "max_lr": 0.1, "div": 10, "momentum": [0.95, 0.85]},
    "weight_decay": 1e-4,
    "resources": {"cpu": 1, "gpu": 0},
    "search": {
        "range_test": {
            "min_lr": 0.001,
            "max_lr": 2.0,
            "epochs": 5,
            "eval_every": 10,
            "eval_samples": 1000,
            "weight_decays": [1e-3, 1e-4, 1e-5, 0],
        },
        "momentum": {"candidates": [0.99, 0.97, 0.95, 0.9], "min": 0.85, "epochs": 4},
        "weight_decay": {"strategy": "snapshot", "epochs": 4},
        "final": {"epochs": 40, "replicates": 3},
    },
}

DIGITS_CNN: dict[str, Any] = {
    "name": "digits-cnn",
    "description": "scikit-learn digits (1x8x8), the image_cnn example's CNN (BatchNorm), SGD + 1cycle",
    "dataset": {"name": "digits"},  # 1 437 train (1 293 after the validation carve), 360 test
    "model": {"factory": "examples.image_cnn.models:build", "kwargs": {"channels": 16, "classes": 10}},
    "optimizer": {"name": "sgd"},
    "train": {"epochs": 20, "batch_size": 64, "seed": 0},
    "policy": {"name": "one_cycle", "max_lr": 0.5, "div": 10, "momentum": [0.95, 0.85]},
    "weight_decay": 1e-4,
    "resources": {"cpu": 1, "gpu": 0},
    "search": {
        "range_test": {
            "min_lr": 0.01,
            "max_lr": 3.0,
            "epochs": 10,
            "eval_every": 5,
            "eval_samples": 500,
            "weight_decays": [1e-3, 1e-4, 0],
        },
        # 20 steps an epoch: the default 200-step floor would make each short run half a final training
        "learning_rate": {"epochs": 3, "min_steps": 60},
        "momentum": {"candidates": [0.99, 0.97, 0.95, 0.9], "min": 0.85, "epochs": 3, "min_steps": 60},
        "weight_decay": {"epochs": 3, "min_steps": 60, "max_trials": 4},
        "final": {"epochs": 20, "replicates": 3},
    },
}

DIGITS_MLP_ADAMW: dict[str, Any] = {
    "name": "digits-mlp-adamw",
    "description": "scikit-learn digits, the bundled MLP, AdamW (momentum is β1, decoupled weight decay) + 1cycle",
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "width": 128},
    "optimizer": {"name": "adamw"},
    "train": {"epochs": 30, "batch_size": 64, "seed": 0},
    "policy": {"name": "one_cycle", "max_lr": 3e-3, "div": 10, "momentum": [0.95, 0.85]},
    "weight_decay": 1e-3,
    "resources": {"cpu": 1, "gpu": 0},
    "search": {
        "range_test": {
            "min_lr": 1e-4,
            "max_lr": 0.3,
            "epochs": 10,
            "eval_every": 5,
            "eval_samples": 500,
            "weight_decays": [1e-2, 1e-3, 1e-4, 0],
        },
        # the LR's short runs keep the 200-step floor (6 epochs here): at 3 epochs they chose max_lr 0.069,
        # which retrained to 97.50 %, where 6 epochs choose 0.017 (98.06 %); BENCHMARKS.md
        "momentum": {"candidates": [0.99, 0.95, 0.9], "min": 0.85, "epochs": 3, "min_steps": 60},
        "weight_decay": {"epochs": 3, "min_steps": 60, "max_trials": 4},
        "final": {"epochs": 30, "replicates": 3},
    },
}

#: examples/regression/preset.yaml names its modules relative to its folder ("data:load"): here they
#: are named from the repository root, so they cannot clash with examples/image_cnn's data/models.
REGRESSION_IMPORTS: dict[str, Any] = {
    "dataset.factory": "examples.regression.data:load",
    "model.factory": "examples.regression.models:build",
    "metric.factory": "examples.regression.metrics:r2",
    "metric.name": "r2",
}

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            name="mnist1d-cnn",
            why="the embedded preset, as is: the task tunekit's defaults were set on",
            preset="mnist1d",
            full=Budget(final_epochs=30, peer_epochs=15, peer_grace=2),
            quick=Budget(final_epochs=10, peer_epochs=5, peer_grace=1),
            failed_score=CHANCE_ACCURACY,
            quick_overrides={"dataset.num_samples": 8000},
        ),
        Task(
            name="mnist1d-mlp",
            why="no BatchNorm, 4 000 samples: overfits, so regularisation (WD, large LR) decides",
            preset=MNIST1D_MLP,
            full=Budget(final_epochs=40, peer_epochs=20, peer_grace=2),
            quick=Budget(final_epochs=16, peer_epochs=8, peer_grace=2),
            failed_score=CHANCE_ACCURACY,
        ),
        Task(
            name="digits-cnn",
            why="2-D images, a user model by import string, 20-step epochs",
            preset=DIGITS_CNN,
            full=Budget(final_epochs=20, peer_epochs=10, peer_grace=2),
            quick=Budget(final_epochs=12, peer_epochs=6, peer_grace=1),
            failed_score=CHANCE_ACCURACY,
        ),
        Task(
            name="diabetes-regression",
            why="user data, loss and metric: MSE, R² (mode max), 300 training samples",
            preset=ROOT / "examples" / "regression" / "preset.yaml",
            full=Budget(final_epochs=30, peer_epochs=15, peer_grace=3),
            quick=Budget(final_epochs=20, peer_epochs=10, peer_grace=2),
            failed_score=MEAN_PREDICTION_R2,
            overrides=REGRESSION_IMPORTS,
        ),
        Task(
            name="digits-mlp-adamw",
            why="AdamW: momentum is β1, weight decay decoupled, LRs two decades lower",
            preset=DIGITS_MLP_ADAMW,
            full=Budget(final_epochs=30, peer_epochs=15, peer_grace=2),
            quick=Budget(final_epochs=15, peer_epochs=8, peer_grace=1),
            failed_score=CHANCE_ACCURACY,
        ),
    )
}

"""Presets: YAML files under ``search_spaces/`` validated into typed objects.

A preset says everything one training needs (dataset, model, optimiser, LR policy, epochs,
batch size, seed, resources) and the candidate values a search will try. Loading is strict:
an unknown key or an impossible value raises one :class:`PresetError` naming the field and
the fix, before anything starts.

Overrides (``--set key=value`` on the CLI, searched values in a Tune config) use dotted paths
(``policy.max_lr=0.8``) or the short aliases in :data:`ALIASES` (``max_lr=0.8``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DATASETS = ("mnist1d", "digits", "mnist", "cifar10", "cifar100", "imagenet")
MODELS = ("cnn1d", "mlp", "shallow3", "lenet", "resnet20", "resnet56", "wrn32x4", "densenet40", "resnet50")

#: Short names accepted by overrides, mapped to their dotted path in a preset.
ALIASES: dict[str, str] = {
    "max_lr": "policy.max_lr",
    "min_lr": "policy.min_lr",
    "lr": "policy.lr",
    "div": "policy.div",
    "momentum": "policy.momentum",
    "annihilation": "policy.annihilation",
    "pct_start": "policy.pct_start",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
    "init": "model.init",
}


class PresetError(ValueError):
    """A preset or an override is invalid; the message names the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
#: Momentum: one number (constant) or ``[max, min]`` (cyclical, inverse to the LR).
Momentum = float | tuple[float, float]


def _check_momentum(value: Momentum) -> Momentum:
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if not 0.0 <= v < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {v}")
    if isinstance(value, tuple) and value[0] < value[1]:
        raise ValueError(f"cyclical momentum is [max, min] with max ≥ min, got {list(value)}")
    return value


#: A factory: ``"package.module:attribute"`` (YAML), or the callable itself (Python; turned into
#: that string when it is importable, see :mod:`tunekit.components`).
Factory = str | Callable[..., Any]


def _shorthand(value: Any, bundled: tuple[str, ...] = ()) -> Any:
    """``"pkg.mod:attr"`` → ``{factory: …}``; a bundled name → ``{name: …}``; a callable → ``{factory: callable}``."""
    if isinstance(value, str):
        return {"factory": value} if ":" in value or value not in bundled else {"name": value}
    if callable(value):
        return {"factory": value}
    return value


class _Bundled(_Strict):
    """A component given by a bundled ``name`` or by a user ``factory``, exactly one of them."""

    BUNDLED: ClassVar[tuple[str, ...]] = ()
    FACTORY: ClassVar[str] = ""  # how the factory is written, for the error

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        return _shorthand(value, cls.BUNDLED)

    @model_validator(mode="after")
    def _one_source(self) -> Any:
        if (getattr(self, "name", None) is None) == (getattr(self, "factory", None) is None):
            raise ValueError(
                f"give a bundled name ({', '.join(self.BUNDLED)}) or a factory ({self.FACTORY}), exactly one of them"
            )
        return self

    @property
    def label(self) -> str:
        """The bundled name, or the factory's import path."""
        return getattr(self, "name", None) or factory_label(getattr(self, "factory", None))


class DatasetConfig(_Bundled):
    """Which data, where it lives and how it is split.

    Either a bundled ``name`` or a user ``factory`` (``"mypkg.data:load"``) called with ``kwargs``
    inside each trial; it returns ``(train, validation, test)`` map-style datasets of
    ``(input, target)`` pairs, ``validation`` may be None. Without a validation split, a seeded
    ``validation_fraction`` of the training data becomes one (the same for every trial).
    """

    BUNDLED: ClassVar[tuple[str, ...]] = DATASETS
    FACTORY: ClassVar[str] = "'mypkg.data:load' returning (train, validation, test)"

    name: Literal["mnist1d", "digits", "mnist", "cifar10", "cifar100", "imagenet"] | None = None
    factory: Factory | None = None  # "package.module:function" -> (train, validation | None, test)
    kwargs: dict[str, Any] = Field(default_factory=dict)  # passed to the factory; each one is an override path
    validation_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)  # carved from train when there is no validation split
    split_seed: int = 0  # the carve's seed: one split for every trial of a search, whatever its seed
    in_memory: bool | None = None  # user datasets: stack into tensors on the device (None: when under 2 GiB)
    root: str | None = None  # folder holding the torchvision files (mnist, cifar*, imagenet)
    download: bool = False  # only for machines with internet; never in tests
    verify_checksums: bool = True  # torchvision's md5 check of CIFAR batches
    num_samples: int | None = Field(default=None, gt=0)  # mnist1d: samples generated (train + test)
    # keep N training / test samples: a seeded sample of every class for folder datasets (ImageNet), the first N otherwise
    train_subset: int | None = Field(default=None, gt=0)
    test_subset: int | None = Field(default=None, gt=0)
    augment: bool | None = None  # None: the dataset's default (crop+flip for CIFAR/ImageNet)
    image_size: int = Field(default=224, gt=0)  # imagenet crop size
    num_workers: int = Field(default=2, ge=0)  # DataLoader workers for streamed datasets, at most the trial's CPUs - 1

    @model_validator(mode="after")
    def _has_validation(self) -> DatasetConfig:
        if self.name is not None and self.validation_fraction == 0:
            raise ValueError(
                f"validation_fraction: {self.name} has no validation split of its own and every decision reads one; "
                "give a fraction above 0 (default 0.1)"
            )
        return self


class ModelConfig(_Bundled):
    """Which architecture and how its weights start.

    Either a bundled ``name`` (built for the dataset's classes and input shape) or a user
    ``factory`` (``"mypkg.models:build"``) called with ``kwargs`` inside each trial, returning an
    ``nn.Module``. ``init`` re-initialises conv and linear weights (msra or xavier); a bundled
    model defaults to msra, a user model keeps its own initialisation unless told.
    """

    BUNDLED: ClassVar[tuple[str, ...]] = MODELS
    FACTORY: ClassVar[str] = "'mypkg.models:build' returning an nn.Module"

    name: Literal["cnn1d", "mlp", "shallow3", "lenet", "resnet20", "resnet56", "wrn32x4", "densenet40", "resnet50"] | None = None
    factory: Factory | None = None  # "package.module:function" -> nn.Module
    kwargs: dict[str, Any] = Field(default_factory=dict)  # passed to the factory; each one is an override path
    width: int | None = Field(default=None, gt=0)  # bundled: channels of the first layer (model's default if None)
    init: Literal["msra", "xavier"] | None = None  # None: msra for bundled models, the factory's own for user models

    @property
    def effective_init(self) -> str | None:
        """The initialisation the trials apply: ``init``, else msra for a bundled model, else none."""
        return self.init or ("msra" if self.name else None)


class _Called(_Strict):
    """A user factory and its keyword arguments; a plain string is the factory alone."""

    factory: Factory
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        return _shorthand(value)


class LossConfig(_Called):
    """The training loss: a class built with ``kwargs`` (``torch.nn:MSELoss``) or ``fn(outputs, targets)``.

    It must return the batch *mean* (a scalar tensor): split losses are averaged over samples.
    """


class MetricConfig(_Strict):
    """A metric over a whole split: ``fn(outputs, targets) -> float``, better when higher (max) or lower (min).

    Reported as ``val_<name>`` and ``test_<name>``; ``name`` defaults to the function's name.
    ``factory: accuracy`` is the bundled top-1 accuracy (``acc``).
    """

    factory: Factory
    kwargs: dict[str, Any] = Field(default_factory=dict)
    mode: Literal["max", "min"]
    name: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")

    @property
    def label(self) -> str:
        """The name the metric is reported under (after ``val_``/``test_``)."""
        if self.name:
            return self.name
        if self.factory == "accuracy":
            return "acc"
        return factory_label(self.factory).rpartition(":")[2].rpartition(".")[2] or "metric"


class LoopConfig(_Called):
    """The user's own training loop: ``fn(control, **kwargs)`` (see :mod:`tunekit.own_loop`)."""


class RuntimeEnv(_Strict):
    """What Ray ships to every worker so the trials can import the user's code."""

    working_dir: str | None = None  # a local folder (relative to where tunekit runs) uploaded to every worker
    py_modules: tuple[str, ...] = ()  # local package folders uploaded to every worker
    pip: tuple[str, ...] = ()  # packages the workers install
    env_vars: dict[str, str] = Field(default_factory=dict)


def factory_label(factory: Factory | None) -> str:
    """A factory as text: its import string, or ``module:qualname`` of a callable."""
    if factory is None:
        return ""
    if isinstance(factory, str):
        return factory if not factory.startswith("cloudpickle:") else "<python object>"
    return f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', repr(factory))}"


class OptimizerConfig(_Strict):
    """The optimiser; momentum and LR come from the policy."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    nesterov: bool = False
    beta2: float = Field(default=0.999, gt=0.0, lt=1.0)  # Adam's second-moment decay
    eps: float = Field(default=1e-8, gt=0.0)


class TrainConfig(_Strict):
    """The length and granularity of a training run."""

    epochs: int = Field(default=10, gt=0)
    batch_size: int = Field(default=128, gt=0)
    seed: int = 0
    checkpoint_every: int = Field(default=1, gt=0)  # epochs between checkpoints (and always at the end)
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # mixed precision on CUDA only
    channels_last: bool | None = None  # NHWC convolutions on CUDA (None: on for image models; bench/gpu_epoch.py)
    grad_clip: float | None = Field(default=None, gt=0.0)
    stop_at_epoch: int | None = Field(default=None, gt=0)  # end early at this (global) epoch; the schedule still spans `epochs`
    stop_when_horizontal: bool = False  # end (with a snapshot) once the test loss runs horizontal (snapshot-restart base runs)
    min_epochs: int = Field(default=3, gt=0)  # with stop_when_horizontal: never before this epoch
    time_budget_s: float | None = Field(default=None, gt=0.0)  # size `epochs` to this wall time with a timing probe (Sec. 4.2)
    sync_bn: bool = False  # with resources.workers > 1: BatchNorm statistics over the total batch (SyncBatchNorm, CUDA only)
    test_at_end: bool = (
        True  # evaluate the test split once the run ends (a search's short runs do not: they decide on validation)
    )


class OneCyclePolicy(_Strict):
    """1cycle (Sec. 4.1): ``max_lr/div → max_lr → max_lr/div → max_lr/div/annihilation``.

    ``three_phase: false`` with ``anneal: cos`` is fastai's ``fit_one_cycle`` shape instead: a
    cosine climb over ``pct_start`` of the run, then one cosine descent straight to the final LR
    (momentum ``max → min → max`` along it). The paper's is the default: linear, three phases.
    """

    name: Literal["one_cycle"]
    max_lr: float = Field(gt=0.0)
    div: float = Field(default=10.0, gt=1.0)  # max_lr / min_lr
    annihilation: float = Field(default=100.0, ge=1.0)  # min_lr / final lr
    pct_start: float = Field(default=0.45, gt=0.0, lt=1.0)  # fraction of iterations spent climbing
    momentum: Momentum = (0.95, 0.85)
    anneal: Literal["linear", "cos"] = "linear"
    three_phase: bool = True

    @field_validator("momentum")
    @classmethod
    def _momentum_range(cls, value: Momentum) -> Momentum:
        return _check_momentum(value)

    @model_validator(mode="after")
    def _phases_fit(self) -> OneCyclePolicy:
        if self.three_phase and self.pct_start >= 0.5:
            raise ValueError(
                f"pct_start must be < 0.5 with three phases (climb and descent take 2 × pct_start), got {self.pct_start}; "
                "lower it or set three_phase: false"
            )
        return self

    @property
    def min_lr(self) -> float:
        return self.max_lr / self.div


class CLRPolicy(_Strict):
    """Triangular cyclical LR between ``min_lr`` and ``max_lr``, ``stepsize`` epochs per half-cycle."""

    name: Literal["clr"]
    min_lr: float = Field(gt=0.0)
    max_lr: float = Field(gt=0.0)
    stepsize: float = Field(gt=0.0)  # epochs
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _bounds(self) -> CLRPolicy:
        if self.min_lr >= self.max_lr:
            raise ValueError(f"min_lr must be < max_lr, got min_lr={self.min_lr}, max_lr={self.max_lr}")
        return self


class ConstantPolicy(_Strict):
    """One LR and one momentum for the whole run."""

    name: Literal["constant"]
    lr: float = Field(gt=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)


class StepPolicy(_Strict):
    """``lr`` multiplied by ``factor`` at each milestone epoch."""

    name: Literal["step"]
    lr: float = Field(gt=0.0)
    factor: float = Field(default=0.1, gt=0.0, lt=1.0)
    milestones: tuple[float, ...] = ()
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)


class RangeTestPolicy(_Strict):
    """LR range test (Sec. 4.1): LR linear from ``min_lr`` to ``max_lr`` over ``epochs``.

    The validation loss is measured every ``eval_every`` iterations on ``eval_samples`` validation
    samples (a fixed, seeded sample of every class), after re-estimating BatchNorm statistics on
    ``bn_recalibration_batches`` training batches at the current weights.
    """

    name: Literal["range_test"]
    min_lr: float = Field(gt=0.0)
    max_lr: float = Field(gt=0.0)
    epochs: float = Field(default=3.0, gt=0.0)
    momentum: Momentum = (0.95, 0.85)  # start, end (decreasing as the LR increases, Fig. 10)
    eval_every: int = Field(default=20, gt=0)  # iterations between test-loss evaluations
    eval_samples: int = Field(default=1000, gt=0)
    bn_recalibration_batches: int = Field(default=4, ge=0)
    # end once the curve has diverged (tunekit.core.lr_range.range_test_over): no rule reads what follows
    stop_when_diverged: bool = True

    @field_validator("momentum")
    @classmethod
    def _momentum_range(cls, value: Momentum) -> Momentum:
        return _check_momentum(value)

    @model_validator(mode="after")
    def _bounds(self) -> RangeTestPolicy:
        if self.min_lr >= self.max_lr:
            raise ValueError(f"min_lr must be < max_lr, got min_lr={self.min_lr}, max_lr={self.max_lr}")
        return self


_POLICIES: dict[str, type[BaseModel]] = {
    "one_cycle": OneCyclePolicy,
    "clr": CLRPolicy,
    "constant": ConstantPolicy,
    "step": StepPolicy,
    "range_test": RangeTestPolicy,
}

Policy = Annotated[
    OneCyclePolicy | CLRPolicy | ConstantPolicy | StepPolicy | RangeTestPolicy,
    Field(discriminator="name"),
]


class Resources(_Strict):
    """What one trial asks Ray for; ``gpu`` may be fractional (several small trials per GPU).

    ``workers > 1`` trains the trial data-parallel on that many Ray Train workers (DDP), each
    given ``cpu`` and ``gpu``; ``train.batch_size`` stays the total batch (see
    :mod:`tunekit.core.data_parallel`).
    """

    cpu: float = Field(default=1.0, gt=0.0)  # per worker
    gpu: float = Field(default=0.0, ge=0.0)  # per worker
    workers: int = Field(default=1, ge=1)  # data-parallel workers of one trial (1: a plain Tune trial)


class RangeTestSearch(_Strict):
    """The range tests, sized in optimizer steps and evaluation points (tunekit.core.sizing)."""

    min_lr: float = Field(gt=0.0)
    max_lr: float = Field(gt=0.0)
    epochs: float = Field(default=3.0, gt=0.0)  # length, unless `steps` is given; kept within [min_steps, max_steps]
    steps: int | None = Field(default=None, gt=0)  # length in optimizer steps (wins over epochs; not capped)
    min_steps: int = Field(default=200, gt=0)  # a shorter ramp cannot show where the loss turns up
    max_steps: int | None = Field(default=3000, gt=0)  # epochs of a large dataset stop here (null: no cap)
    max_fraction: float | None = Field(
        default=0.2, gt=0.0, le=1.0
    )  # at most this share of the final training (steps excepted; null: no cap)
    momentum: tuple[float, float] = (0.95, 0.85)
    weight_decays: tuple[float, ...] = (1e-3, 1e-4, 1e-5, 0.0)
    # AdamW (decoupled decay) only: a weight decay that removes less than this share of the weights over the
    # whole test is not run, its curve being weight decay 0's (tunekit.core.decisions.visible_weight_decays);
    # 0: run every one
    min_shrink: float = Field(default=0.01, ge=0.0, lt=1.0)
    # "grid": one range test per weight decay above (Fig. 10); "preset": one, at the preset's weight_decay;
    # "auto": "preset" when the weight_decay phase runs later in the same search (it ranks weight decays on
    # short 1cycle runs), else "grid" — cheaper, but the suite measured it less accurate (BENCHMARKS.md)
    sweep: Literal["grid", "preset", "auto"] = "grid"
    eval_every: int = Field(default=20, gt=0)  # steps between evaluations, at most (lowered to reach `points`)
    points: int = Field(default=30, gt=1)  # evaluations along each curve, at least
    eval_samples: int = Field(default=1000, gt=0)
    bn_recalibration_batches: int = Field(default=4, ge=0)
    # end each test once its curve has diverged (an explosion, or back at chance level after learning): the
    # turn-up comes before, and no rule reads what follows; false runs every test to its max_lr (a whole plot)
    stop_when_diverged: bool = True
    # "refine": the turn-up LR is a candidate the learning_rate phase checks against smaller ones;
    # "paper": max_lr is the turn-up LR itself (Sec. 4.1), and the learning_rate phase does not run
    rule: Literal["refine", "paper"] = "refine"
    # where tests at several weight decays reach lowest losses within noise of each other (they cannot rank those
    # weight decays), "median": the bounds come from the median of their max_lrs, and the weight_decay phase starts
    # its bisection from those weight decays; "lowest": the test with the lowest loss alone gives the bounds and
    # the weight_decay phase starts around its weight decay (Fig. 10, read literally)
    ties: Literal["median", "lowest"] = "median"

    @model_validator(mode="after")
    def _check(self) -> RangeTestSearch:
        if self.min_lr >= self.max_lr:
            raise ValueError(f"min_lr must be < max_lr, got min_lr={self.min_lr}, max_lr={self.max_lr}")
        if not self.weight_decays:
            raise ValueError("weight_decays is empty: give at least one candidate, e.g. [1.0e-3, 1.0e-4, 1.0e-5, 0]")
        if any(w < 0 for w in self.weight_decays):
            raise ValueError(f"weight_decays must be ≥ 0, got {list(self.weight_decays)}")
        _check_momentum(self.momentum)
        return self


class ShortRuns(_Strict):
    """How long a phase's short 1cycle runs last: epochs (or a fraction of the final training), with floors."""

    epochs: int = Field(default=3, gt=0)  # raised to meet min_steps and min_points, cut to max_fraction
    fraction: float | None = Field(default=None, gt=0.0, le=1.0)  # instead of epochs: this share of the final training
    min_steps: int = Field(default=200, gt=0)  # optimizer steps, at least
    min_points: int = Field(default=3, gt=0)  # evaluations (one per epoch), at least: the scheduler's grace period
    max_fraction: float | None = Field(
        default=0.2, gt=0.0, le=1.0
    )  # at most this share of the final training (min_points wins; null: no cap)


class MomentumSearch(ShortRuns):
    candidates: tuple[float, ...] = (0.99, 0.97, 0.95, 0.9)
    min: float = Field(default=0.85, ge=0.0, lt=1.0)  # the cyclical momentum's low point
    # walk from the current momentum (it and its neighbour on prefer's side, the other only if it wins, then further
    # while an edge wins); false: every candidate
    walk: bool = True
    # lowest: the lowest validation loss wins; largest: the largest momentum whose loss ties the lowest
    # (within the sampling band, as the learning_rate phase's tie rule), "as large as possible" (Sec. 4.3)
    prefer: Literal["lowest", "largest"] = "lowest"

    @model_validator(mode="after")
    def _check(self) -> MomentumSearch:
        if not self.candidates:
            raise ValueError("candidates is empty: give at least one maximum momentum, e.g. [0.99, 0.97, 0.95, 0.9]")
        for c in self.candidates:
            _check_momentum((c, self.min))
        return self


class LearningRateSearch(ShortRuns):
    """Short 1cycle runs at fractions of the range test's max_lr (and its valley), halved further while the
    smallest has the lowest validation loss (or, where the lowest run does not overfit, still ties it); the
    largest LR within noise of the lowest is chosen where the lowest run overfits, else the smallest — and
    where it is below the range test's, the weight decay is scaled to keep max_lr × weight decay as the
    weight_decay phase judged it."""

    factors: tuple[float, ...] = (1.0, 0.5, 0.25)  # multiples of the range test's max_lr, run together
    lowest_factor: float = Field(default=1 / 32, gt=0.0, le=1.0)  # halve below the factors to this, while the smallest is lowest
    valley: bool = False  # also try the range test's "valley" LR (fastai's rule on the same curve)
    tolerance: float = Field(default=0.0, ge=0.0)  # losses within this fraction of the best count as a tie (and the runs' noise)
    # where the LR chosen is below the one the weight_decay phase judged at, scale the weight decay up
    # to keep max_lr × weight decay (the regularisation the smaller LR gives up); false: keep the phase's value
    balance_weight_decay: bool = True
    # check the rebalanced weight decay on runs at the chosen LR, against that LR's own run at the judged one (and,
    # where it is clearly worse, their geometric mean): auto where the momentum phase's runs are as long as these —
    # it reads the run at the chosen weight decay back, so a balance that holds costs no run; always; never
    balance_check: Literal["auto", "always", "never"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> LearningRateSearch:
        if not self.factors or any(f <= 0 for f in self.factors):
            raise ValueError(f"factors must be positive multiples of max_lr, e.g. [1.0, 0.5, 0.25]; got {list(self.factors)}")
        if self.lowest_factor > min(self.factors):
            raise ValueError(
                f"lowest_factor ({self.lowest_factor:g}) is above the smallest factor ({min(self.factors):g}); "
                f"set it ≤ {min(self.factors):g} (equal: never go below the factors)"
            )
        return self

    def extensions(self) -> int:
        """How many halvings below the smallest factor the runs may add (down to ``lowest_factor``)."""
        return max(0, math.floor(math.log2(min(self.factors) / self.lowest_factor) + 1e-9))


class WeightDecaySearch(ShortRuns):
    strategy: Literal["full", "snapshot"] = "full"
    candidates: tuple[float, ...] | None = None  # None: the range test's weight_decays
    max_trials: int = Field(default=8, gt=0)
    # stop bisecting once the best value's neighbours are this close, in decades: 0.5 stops at the
    # half-decade grid (1e-4, 3.2e-4, 1e-3); 0.25 goes on to quarter decades (1.8e-4, 5.7e-4)
    resolution: float = Field(default=0.5, gt=0.0)
    # lowest: the lowest validation loss wins; largest: the largest weight decay whose loss ties the lowest (within
    # the sampling band and the runs' noise, the learning_rate phase's tie rule), as the learning_rate phase's
    # balance check chooses; a snapshot continuation's noise is how far its judged epochs jump from one to the next,
    # and its shape over them (as noisy) keeps no continuation out of a tie
    prefer: Literal["lowest", "largest"] = "largest"


class DropoutSearch(ShortRuns):
    """Dropout (Sec. 4.4: found like weight decay): short runs at ``candidates``, then linear bisection."""

    path: str = Field(default="model.kwargs.dropout", pattern=r"^[A-Za-z_][\w.]*$")  # the override path searched
    candidates: tuple[float, ...] = (0.0, 0.25, 0.5)
    resolution: float = Field(default=0.05, gt=0.0)  # stop bisecting once the best two are this close
    max_trials: int = Field(default=6, gt=0)

    @model_validator(mode="after")
    def _check(self) -> DropoutSearch:
        if len(self.candidates) < 2:
            raise ValueError("candidates: give at least two values to bisect between, e.g. [0.0, 0.25, 0.5]")
        return self


class BatchSizeSearch(_Strict):
    candidates: tuple[int, ...] = Field(min_length=1)
    time_budget_s: float = Field(gt=0.0)


class FinalTraining(_Strict):
    epochs: int | None = Field(default=None, gt=0)  # None: train.epochs
    replicates: int = Field(default=1, gt=0)
    batch_jitter: int = Field(default=12, ge=0)  # App. A.1: batch sizes within [b, b + 12]


class SearchConfig(_Strict):
    """The candidate values a disciplined search tries, phase by phase."""

    range_test: RangeTestSearch
    learning_rate: LearningRateSearch = LearningRateSearch()
    momentum: MomentumSearch = MomentumSearch()
    weight_decay: WeightDecaySearch = WeightDecaySearch()
    dropout: DropoutSearch | None = None  # searched only when given
    batch_size: BatchSizeSearch | None = None
    final: FinalTraining = FinalTraining()


class Preset(_Strict):
    """One training configuration and the search space around it."""

    name: str = Field(min_length=1)
    description: str = ""
    dataset: DatasetConfig
    model: ModelConfig
    optimizer: OptimizerConfig = OptimizerConfig()
    train: TrainConfig = TrainConfig()
    policy: Policy
    weight_decay: float = Field(default=0.0, ge=0.0)
    loss: LossConfig | None = None  # None: cross-entropy
    metric: MetricConfig | None = None  # None: accuracy with cross-entropy, else none (decisions read the loss)
    loop: LoopConfig | None = None  # the user's own training loop (tunekit.own_loop); None: tunekit's
    resources: Resources = Resources()
    runtime_env: RuntimeEnv | None = None
    search: SearchConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _unjittered(cls, raw: Any) -> Any:
        """Data-parallel, the final replicates' batches are not jittered unless asked (each must divide by the workers)."""
        if not isinstance(raw, Mapping):
            return raw
        resources, search = raw.get("resources"), raw.get("search")
        workers = resources.get("workers", 1) if isinstance(resources, Mapping) else getattr(resources, "workers", 1)
        if not isinstance(workers, int) or workers <= 1 or not isinstance(search, Mapping):
            return raw
        final = search.get("final") or {}
        if not isinstance(final, Mapping) or "batch_jitter" in final:
            return raw
        return {**raw, "search": {**search, "final": {**final, "batch_jitter": 0}}}

    @model_validator(mode="after")
    def _data_parallel(self) -> Preset:
        from tunekit.core.data_parallel import data_parallel_problem

        search = self.search
        problem = data_parallel_problem(
            self.resources.workers,
            self.resources.gpu,
            self.train.batch_size,
            own_loop=self.loop is not None,
            sync_bn=self.train.sync_bn,
            batch_candidates=search.batch_size.candidates if search and search.batch_size else (),
            batch_jitter=search.final.batch_jitter if search else 0,
        )
        if problem:
            raise ValueError(problem)
        return self

    @property
    def metric_name(self) -> str | None:
        """The metric's name (``acc``, ``r2``, …) without its split prefix, or None when there is none."""
        if self.metric is not None:
            return self.metric.label
        return "acc" if self.loss is None else None

    @property
    def metric_mode(self) -> str:
        return self.metric.mode if self.metric is not None else "max"

    @property
    def classification(self) -> bool:
        """Trained with (the default) cross-entropy: where chance level and accuracy mean something."""
        return self.loss is None


# --------------------------------------------------------------------------- loading


def bundled_presets() -> dict[str, Path]:
    """The presets shipped with tunekit (package data), by name."""
    folder = resources.files("tunekit") / "search_spaces"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def resolve_preset_path(preset: str | Path) -> Path:
    """A path to an existing YAML file, or the name of a bundled preset (``mnist1d``)."""
    path = Path(preset)
    if path.is_file():
        return path
    bundled = bundled_presets()
    if str(preset) in bundled:
        return bundled[str(preset)]
    raise PresetError(
        f"preset {str(preset)!r}: no such file and no bundled preset of that name; "
        f"give a path to a YAML file or one of: {', '.join(sorted(bundled))}"
    )


def load_preset(preset: str | Path | Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> Preset:
    """Load, override and validate a preset from a path, a bundled name or a mapping.

    Raises:
        PresetError: the file is missing or not YAML, a key is unknown, or a value is invalid.
    """
    if isinstance(preset, Mapping):
        raw: dict[str, Any] = copy.deepcopy(dict(preset))
        source = "preset"
    else:
        path = resolve_preset_path(preset)
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise PresetError(f"{source}: not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise PresetError(f"{source}: a preset is a YAML mapping (name:, dataset:, model:, …), got {type(loaded).__name__}")
        raw = loaded
    if overrides:
        raw = apply_overrides(raw, overrides)
    return validate_preset(raw, source)


def validate_preset(raw: Mapping[str, Any], source: str = "preset") -> Preset:
    """Validate a raw mapping; the first problem becomes one readable :class:`PresetError`."""
    try:
        return Preset.model_validate(raw)
    except ValidationError as exc:
        raise PresetError(f"{source}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in _field_path(err["loc"]))
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(list(err["loc"][:-1]))
            hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
            lines.append(f"{loc}: unknown key; remove it or fix its spelling{hint}")
        elif err["type"] == "missing" and loc == "metric.mode":
            lines.append(f"{loc}: required; add mode: max (higher is better) or mode: min (lower is better)")
        elif err["type"] == "missing":
            lines.append(f"{loc}: required; add it to the preset")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            value = err.get("input")
            shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
            # a whole-preset rule (Preset's own validators) names its fields itself
            lines.append(f"{loc}: {msg}{shown}" if loc or shown else msg)
    return "; ".join(lines)


def _allowed_keys(path: list[Any]) -> list[str]:
    """The field names of the section at ``path`` (a pydantic error location)."""
    model: Any = Preset
    for i, part in enumerate(path):
        if i and path[i - 1] == "policy" and part in _POLICIES:
            model = _POLICIES[part]
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = _section_type(field.annotation)
    return sorted(getattr(model, "model_fields", {}))


def _section_type(annotation: Any) -> Any:
    # Unwrap Optional[...] / unions to the BaseModel inside, if any.
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _field_path(loc: tuple[Any, ...]) -> list[Any]:
    """The error location without the union tags pydantic inserts (``policy.one_cycle.max_lr``)."""
    out: list[Any] = []
    for part in loc:
        tag = isinstance(part, str) and ((out and out[-1] == "policy" and part in _POLICIES) or "[" in part)
        if not tag:
            out.append(part)
    return out


# --------------------------------------------------------------------------- overrides


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML (``0.1``, ``[0.95, 0.85]``, ``true``)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PresetError(f"--set {pair!r}: expected key=value, e.g. --set max_lr=0.8 or --set train.epochs=5")
        try:
            out[key] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            out[key] = text
    return out


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each dotted path (or alias) set to its value."""
    result: dict[str, Any] = copy.deepcopy(dict(raw))
    for key, value in overrides.items():
        path = ALIASES.get(key, key).split(".")
        node = result
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise PresetError(f"--set {key}: {where} is a value, not a section; set {where} itself")
            node = child
        node[path[-1]] = copy.deepcopy(_plain(value))  # a later dotted override must not reach into the caller's value
    return result


def _plain(value: Any) -> Any:
    # Floats from Tune search spaces may be numpy scalars; YAML/pydantic want plain Python.
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        raise PresetError("override value is NaN; give a number")
    return value


def preset_to_dict(preset: Preset) -> dict[str, Any]:
    """A plain mapping (lists, not tuples) that :func:`load_preset` turns back into ``preset``.

    Factories given as Python callables become text (:func:`tunekit.components.portable`), so the
    mapping can be a trial config, a line of ``search.json`` or an MLflow artifact.
    """
    from tunekit.components import portable_preset

    plain = portable_preset(preset.model_dump(mode="python", exclude_none=True))
    return _listify(_merge(plain, _explicit_nones(preset)))


def _explicit_nones(model: BaseModel) -> dict[str, Any]:
    """The fields set to None whose default is not None (``max_steps: null``: no cap), nested as in the model.

    ``exclude_none`` drops every None, and loading the mapping again would bring such a field's default back.
    """
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None and not info.is_required() and info.default_factory is None and info.default is not None:
            out[name] = None
        elif isinstance(value, BaseModel) and (inner := _explicit_nones(value)):
            out[name] = inner
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _listify(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _listify(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_listify(v) for v in obj]
    return obj


def preset_to_yaml(preset: Preset) -> str:
    """The preset as YAML, ready to save as a new preset file."""
    return yaml.safe_dump(preset_to_dict(preset), sort_keys=False)


def range_test_preset(preset: Preset, weight_decay: float | None = None) -> Preset:
    """The preset turned into one LR range test (its ``search.range_test`` section).

    The test runs for the section's ``epochs`` with LR linear from ``min_lr`` to ``max_lr``
    and momentum linear over ``momentum`` (start, end); weight decay is ``weight_decay`` or
    the preset's own.
    """
    if preset.search is None:
        raise PresetError(
            f"preset {preset.name!r} has no search.range_test section; add one "
            "(search: {range_test: {min_lr: 0.01, max_lr: 3.0}}) or pass --set search.range_test.min_lr=… "
            "--set search.range_test.max_lr=…"
        )
    rt = preset.search.range_test
    policy = RangeTestPolicy(
        name="range_test",
        min_lr=rt.min_lr,
        max_lr=rt.max_lr,
        epochs=rt.epochs,
        momentum=rt.momentum,
        eval_every=rt.eval_every,
        eval_samples=rt.eval_samples,
        bn_recalibration_batches=rt.bn_recalibration_batches,
        stop_when_diverged=rt.stop_when_diverged,
    )
    wd = preset.weight_decay if weight_decay is None else weight_decay
    return preset.model_copy(update={"policy": policy, "weight_decay": wd})

"""The paper's architectures by name, with msra or xavier initialisation.

``build_model(cfg, num_classes, input_shape)`` returns an ``nn.Module``. CIFAR-style models
expect ``(n, 3, 32, 32)``, LeNet ``(n, 1, 28, 28)``, the 1-D CNN ``(n, 1, length)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tunekit.presets import ModelConfig


class CNN1D(nn.Module):
    """A small 1-D CNN with BatchNorm for MNIST-1D (three convolutions, then a linear read-out)."""

    def __init__(self, num_classes: int, input_shape: tuple[int, ...], width: int = 32) -> None:
        super().__init__()
        channels, length = input_shape
        self.features = nn.Sequential(
            nn.Conv1d(channels, width, 5, padding=2, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
            nn.Conv1d(width, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
            nn.Conv1d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm1d(2 * width),
            nn.ReLU(inplace=True),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(2, channels, length)).flatten(1).shape[1]
        self.head = nn.Linear(flat, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class MLP(nn.Module):
    """Two hidden ReLU layers over the flattened input (for ``digits`` and quick checks)."""

    def __init__(self, num_classes: int, input_shape: tuple[int, ...], width: int = 128) -> None:
        super().__init__()
        size = 1
        for d in input_shape:
            size *= d
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(size, width),
            nn.ReLU(inplace=True),
            nn.Linear(width, width),
            nn.ReLU(inplace=True),
            nn.Linear(width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Shallow3(nn.Module):
    """The paper's 3-layer CIFAR network (Caffe's ``cifar10_quick``: 32-32-64 convolutions, 64 hidden)."""

    def __init__(self, num_classes: int, input_shape: tuple[int, ...], width: int = 32) -> None:
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 5, padding=2),
            nn.MaxPool2d(3, 2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(3, 2, padding=1),
            nn.Conv2d(width, 2 * width, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(3, 2, padding=1),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, c, h, w)).flatten(1).shape[1]
        self.head = nn.Sequential(nn.Linear(flat, 64), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class LeNet(nn.Module):
    """Caffe's LeNet for MNIST: conv 20 → pool → conv 50 → pool → 500 ReLU → classes."""

    def __init__(self, num_classes: int, input_shape: tuple[int, ...], width: int = 20) -> None:
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 5), nn.MaxPool2d(2), nn.Conv2d(width, int(2.5 * width), 5), nn.MaxPool2d(2)
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, c, h, w)).flatten(1).shape[1]
        self.head = nn.Sequential(nn.Linear(flat, 500), nn.ReLU(inplace=True), nn.Linear(500, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm and an identity (or 1×1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32×32 inputs (He et al. 2016): depth = 6n + 2, stages of 16·k, 32·k, 64·k channels.

    resnet-20 (n=3), resnet-56 (n=9) and the paper's wide resnet-32 (n=5, k=4).
    """

    def __init__(self, num_classes: int, input_shape: tuple[int, ...], depth: int = 56, widen: int = 1, width: int = 16) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2, got {depth=}")
        n = (depth - 2) // 6
        widths = [width * widen, 2 * width * widen, 4 * width * widen]
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        layers: list[nn.Module] = []
        cin = width
        for stage, cout in enumerate(widths):
            for i in range(n):
                layers.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class DenseNet(nn.Module):
    """DenseNet-40 (Huang et al. 2017): three dense blocks of 12 layers, growth rate 12, no bottleneck."""

    def __init__(self, num_classes: int, input_shape: tuple[int, ...], depth: int = 40, width: int = 12) -> None:
        super().__init__()
        growth = width  # a DenseNet's width is its growth rate
        per_block = (depth - 4) // 3
        channels = 16  # as in the original DenseNet-40 (Caffe)
        modules: list[nn.Module] = [nn.Conv2d(input_shape[0], channels, 3, 1, 1, bias=False)]
        for block in range(3):
            for _ in range(per_block):
                modules.append(_DenseLayer(channels, growth))
                channels += growth
            if block < 2:
                modules += [
                    nn.BatchNorm2d(channels),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(channels, channels, 1, bias=False),
                    nn.AvgPool2d(2),
                ]
        modules += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*modules)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, growth, 3, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


def _resnet50(num_classes: int, input_shape: tuple[int, ...], **_: Any) -> nn.Module:
    from torchvision.models import resnet50

    return resnet50(weights=None, num_classes=num_classes)


Builder = Callable[..., nn.Module]

MODELS: dict[str, tuple[Builder, dict[str, Any]]] = {
    "cnn1d": (CNN1D, {}),
    "mlp": (MLP, {}),
    "shallow3": (Shallow3, {}),
    "lenet": (LeNet, {}),
    "resnet20": (CifarResNet, {"depth": 20}),
    "resnet56": (CifarResNet, {"depth": 56}),
    "wrn32x4": (CifarResNet, {"depth": 32, "widen": 4}),
    "densenet40": (DenseNet, {"depth": 40}),
    "resnet50": (_resnet50, {}),
}


def init_weights(model: nn.Module, scheme: str) -> None:
    """Initialise conv and linear weights: ``msra`` (He, fan-in, ReLU gain) or ``xavier`` (Glorot uniform).

    Biases start at zero, BatchNorm at scale 1 and shift 0 — the same for both schemes.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear):
            if scheme == "msra":
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            elif scheme == "xavier":
                nn.init.xavier_uniform_(module.weight)
            else:
                raise ValueError(f"model.init must be 'msra' or 'xavier', got {scheme!r}")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def build_model(cfg: ModelConfig, num_classes: int | None, input_shape: tuple[int, ...]) -> nn.Module:
    """Build and initialise the model ``cfg`` names for inputs of ``input_shape`` (no batch axis).

    A user model comes from its factory (``num_classes`` and ``input_shape`` are not used) and is
    re-initialised only when ``cfg.init`` says so.
    """
    init = cfg.effective_init
    if cfg.factory is not None:
        from tunekit.components import build_user_model

        model = build_user_model(cfg.factory, cfg.kwargs)
    else:
        assert cfg.name is not None
        if num_classes is None:
            raise ValueError(f"model.name: the bundled {cfg.name} is a classifier; give a classification dataset")
        builder, kwargs = MODELS[cfg.name]
        if cfg.width is not None:
            kwargs = {**kwargs, "width": cfg.width}
        kwargs = {**kwargs, **cfg.kwargs}
        model = builder(num_classes, input_shape, **kwargs)
    if init is not None:
        init_weights(model, init)
    return model

"""The network: a small CNN for grayscale images of any size (global pooling before the classifier)."""

from __future__ import annotations

from torch import nn


def build(channels: int = 16, classes: int = 10, dropout: float = 0.0) -> nn.Module:
    """Two conv blocks (conv 3x3, BatchNorm, ReLU, max-pool), a third conv, global average pooling, a linear classifier.

    Outputs class scores ``(batch, classes)``: tunekit's default cross-entropy loss and accuracy apply.
    BatchNorm's running statistics follow the batches closely (``momentum=0.5``, PyTorch's default is
    0.1): with ~20 optimizer steps per epoch, the default leaves them behind the weights at the top of
    the 1cycle, and the validation loss read there spikes far above the training loss.
    """

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, momentum=0.5), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(1, channels),
        nn.MaxPool2d(2),
        *block(channels, 2 * channels),
        nn.MaxPool2d(2),
        *block(2 * channels, 4 * channels),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(4 * channels, classes),
    )

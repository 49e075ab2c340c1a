"""A LeNet-5 with batch norm: a small reference classifier for 28x28 data.

Used as the independent judge of legitimacy on MNIST and Fashion-MNIST: it shares no layer
shape with :class:`~advaug.models.madry.MadryCNN` (the attacked model) and is cheap to train on
two CPU cores. The layout is LeNet-5's (LeCun et al. 1998) with the modern changes: C3 fully
connected (the original wired it sparsely), max-pooling instead of trainable subsampling, ReLU,
a linear output instead of RBF units, and batch norm after every hidden layer.

conv 6·w 5x5 (pad 2) → BN → ReLU → max-pool 2 → conv 16·w 5x5 → BN → ReLU → max-pool 2 →
FC 120·w → BN → ReLU → FC 84·w → BN → ReLU → FC K. At w = 1 with one input channel and K = 10:
61,706 parameters without batch norm, as the usual fully connected LeNet-5 (LeCun et al. report
about 60,000 for the original), and 61,932 with it (batch norm's 2 per unit replace the 226
biases).
"""

from __future__ import annotations

from torch import Tensor, nn

from advaug.errors import ConfigError
from advaug.models.normalize import NormalizeSpec, make_normalize
from advaug.models.registry import register_model


def _block(layer: nn.Module, width: int, bn: type[nn.Module]) -> list[nn.Module]:
    return [layer, bn(width), nn.ReLU(inplace=True)]


@register_model("lenet5-bn")
class LeNet5BN(nn.Module):
    """LeNet-5 with batch norm; input NCHW in [0, 1] of ``in_channels`` x ``image_size``².

    ``width`` multiplies every hidden width (6, 16, 120, 84). ``features`` are the 84·w units
    before the output layer. Conv and FC layers that feed a batch norm carry no bias.

    Examples::

        >>> import torch
        >>> net = LeNet5BN()
        >>> net(torch.rand(2, 1, 28, 28)).shape, net.num_features
        (torch.Size([2, 10]), 84)
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        width: int = 1,
        normalize: NormalizeSpec = "mnist",
    ) -> None:
        super().__init__()
        if num_classes < 1 or in_channels < 1 or width < 1 or image_size < 12:
            raise ConfigError(
                f"lenet5-bn needs num_classes, in_channels and width >= 1 and image_size >= 12, "
                f"got {num_classes}, {in_channels}, {width}, {image_size}"
            )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.normalize = make_normalize(normalize)
        c1, c2, f1, f2 = 6 * width, 16 * width, 120 * width, 84 * width
        side = ((image_size // 2) - 4) // 2  # 28 → 14 → 10 → 5
        self.body = nn.Sequential(
            *_block(nn.Conv2d(in_channels, c1, 5, padding=2, bias=False), c1, nn.BatchNorm2d),
            nn.MaxPool2d(2),
            *_block(nn.Conv2d(c1, c2, 5, bias=False), c2, nn.BatchNorm2d),
            nn.MaxPool2d(2),
            nn.Flatten(),
            *_block(nn.Linear(c2 * side * side, f1, bias=False), f1, nn.BatchNorm1d),
            *_block(nn.Linear(f1, f2, bias=False), f2, nn.BatchNorm1d),
        )
        self.num_features = f2
        self.fc = nn.Linear(f2, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """The 84·w units before the output layer (N, num_features)."""
        expected = (self.in_channels, self.image_size, self.image_size)
        if tuple(x.shape[1:]) != expected:
            raise ConfigError(
                f"lenet5-bn was built for images {expected}, got {tuple(x.shape[1:])}; build "
                "it with the data's in_channels and image_size"
            )
        return self.body(self.normalize(x))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) for images (N, in_channels, image_size, image_size)."""
        return self.fc(self.features(x))

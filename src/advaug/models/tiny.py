"""A ~2k-parameter CNN for fast tests, with the classifier interface of the big models."""

from __future__ import annotations

from torch import Tensor, nn

from advaug.errors import ConfigError
from advaug.models.normalize import NormalizeSpec, make_normalize
from advaug.models.registry import register_model


@register_model("tiny-cnn")
class TinyCNN(nn.Module):
    """A ~2k-parameter CNN for fast tests: three 3x3 conv-BN-ReLU layers, pool, Linear.

    Same interface as the big classifiers: a Normalize first layer, ``features``,
    ``num_features`` and ``num_classes``. Widths ``width, width, 2 * width``; the last two
    convs have stride 2.
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: int = 8,
        normalize: NormalizeSpec = "cifar",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if width < 1 or num_classes < 1 or in_channels < 1:
            raise ConfigError(
                f"tiny-cnn needs width, num_classes and in_channels >= 1, got {width}, "
                f"{num_classes}, {in_channels}"
            )
        self.num_classes = num_classes
        self.normalize = make_normalize(normalize, in_channels)
        layers: list[nn.Module] = []
        cin = in_channels
        for cout, stride in ((width, 1), (width, 2), (2 * width, 2)):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
            cin = cout
        self.body = nn.Sequential(*layers)
        self.num_features = cin
        self.fc = nn.Linear(cin, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (N, num_features): after the global pool, before ``fc``."""
        return self.body(self.normalize(x)).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) for images (N, in_channels, H, W) in [0, 1]."""
        return self.fc(self.features(x))

"""Pre-activation residual networks for 32x32 inputs: Wide ResNet and PreAct ResNet-18.

A second model family, used for transfer attacks and as independent "legitimacy" judges of
generated images. Both start with a :class:`~advaug.models.normalize.Normalize` layer (input NCHW
in [0, 1]) and expose ``features`` / ``num_features`` like the DenseNet.
"""

from __future__ import annotations

from torch import Tensor, nn

from advaug.errors import ConfigError
from advaug.models.normalize import NormalizeSpec, make_normalize
from advaug.models.registry import register_model


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3(stride)-BN-ReLU-[Dropout]-conv3x3 plus a shortcut (He et al. 2016).

    When the shape changes, the shortcut is a 1x1 conv applied to the pre-activated input.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.norm1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.drop(self.relu2(self.norm2(out))))
        return out + skip


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


class _PreActNet(nn.Module):
    """Shared trunk: Normalize, 3x3 stem, stages of PreActBlocks, BN-ReLU, pool, Linear."""

    def __init__(
        self,
        stem_width: int,
        stages: list[tuple[int, int, int]],
        dropout: float,
        num_classes: int,
        normalize: NormalizeSpec,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ConfigError(f"in_channels must be >= 1, got {in_channels}")
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.num_classes = num_classes
        self.normalize = make_normalize(normalize, in_channels)
        self.stem = nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False)
        cin = stem_width
        for i, (width, blocks, stride) in enumerate(stages, start=1):
            layers = []
            for j in range(blocks):
                layers.append(PreActBlock(cin, width, stride if j == 0 else 1, dropout))
                cin = width
            self.add_module(f"stage{i}", nn.Sequential(*layers))
        self._num_stages = len(stages)
        self.norm_final = nn.BatchNorm2d(cin)
        self.relu_final = nn.ReLU(inplace=True)
        self.num_features = cin
        self.fc = nn.Linear(cin, num_classes)
        _init_weights(self)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (N, num_features): after the global pool, before ``fc``."""
        x = self.stem(self.normalize(x))
        for i in range(1, self._num_stages + 1):
            x = getattr(self, f"stage{i}")(x)
        x = self.relu_final(self.norm_final(x))
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) for images (N, in_channels, H, W) in [0, 1]."""
        return self.fc(self.features(x))


@register_model("wrn-28-10", depth=28, widen_factor=10)
@register_model("wrn-16-4", depth=16, widen_factor=4)
class WideResNet(_PreActNet):
    """WRN-depth-widen_factor (Zagoruyko & Komodakis 2016), CIFAR layout.

    Widths 16 -> 16w, 32w, 64w at 32, 16, 8 pixels, (depth - 4) / 6 blocks per stage, optional
    dropout between the two convs of each block.
    """

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        dropout: float = 0.0,
        num_classes: int = 100,
        normalize: NormalizeSpec = "cifar",
        in_channels: int = 3,
    ) -> None:
        if not (isinstance(depth, int) and depth > 4 and (depth - 4) % 6 == 0):
            raise ConfigError(
                f"WideResNet depth {depth} is invalid: (depth - 4) must be a positive multiple "
                "of 6 (e.g. 16, 28, 40)"
            )
        if widen_factor < 1:
            raise ConfigError(f"widen_factor must be >= 1, got {widen_factor}")
        n = (depth - 4) // 6
        w = widen_factor
        stages = [(16 * w, n, 1), (32 * w, n, 2), (64 * w, n, 2)]
        super().__init__(16, stages, dropout, num_classes, normalize, in_channels)
        self.depth = depth
        self.widen_factor = widen_factor


@register_model("preact-resnet18")
class PreActResNet18(_PreActNet):
    """Pre-activation ResNet-18 with a CIFAR stem (3x3 conv, no max-pool) and a final BN-ReLU."""

    def __init__(
        self, num_classes: int = 100, normalize: NormalizeSpec = "cifar", in_channels: int = 3
    ) -> None:
        stages = [(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)]
        super().__init__(64, stages, 0.0, num_classes, normalize, in_channels)

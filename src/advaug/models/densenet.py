"""DenseNet-BC for 32x32 inputs (Huang et al. 2017), in a modern and a seed-faithful flavour.

Three dense blocks at 32, 16 and 8 pixels, joined by compressing transitions, then
BN-ReLU-global-pool-Linear. The seed-faithful options reproduce the original TF1 model
(SEED-SPEC section 2): BN without gamma, an extra ReLU after each transition conv, dropout 0.5,
TF batch-norm momentum/epsilon, Glorot-uniform init and [-1, 1] inputs.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn

from advaug.errors import ConfigError
from advaug.models.normalize import NormalizeSpec, make_normalize
from advaug.models.registry import register_model

INITS = ("kaiming", "glorot")


class BatchNorm2dNoScale(nn.BatchNorm2d):
    """Batch norm with a learned shift (beta) but no scale (gamma), like TF's ``scale=False``.

    Its state_dict holds ``bias``, ``running_mean``, ``running_var`` and ``num_batches_tracked``;
    there is no ``weight`` entry and no frozen parameter, so parameter counts stay honest.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False)
        self.bias = nn.Parameter(torch.zeros(num_features))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, scale=False"


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


class DenseBlock(nn.ModuleList):
    """A dense block: each layer's new channels are concatenated onto the running stack."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = torch.cat((x, layer(x)), dim=1)
        return x


class DenseNet(nn.Module):
    """DenseNet(-BC) classifier; input NCHW in [0, 1], output logits.

    Args:
        depth: total depth L; per block N = (L - 4) // 6 bottleneck layers, or (L - 4) // 3 plain.
        growth_rate: k, channels each dense layer adds.
        compression: theta, a transition keeps floor(theta * C) channels.
        bottleneck: use BN-ReLU-1x1 conv (4k) before each 3x3 conv ("B").
        dropout: drop probability after every conv in dense layers and transitions.
        num_classes: size of the output layer.
        bn_scale: learn BN gamma; False gives beta-only BN as in the seed.
        transition_relu: extra ReLU after the transition conv (seed quirk).
        bn_momentum: PyTorch BN momentum (TF's decay 0.99 is 0.01 here).
        bn_eps: BN epsilon (TF default 1e-3).
        init: "kaiming" (He normal, fan-out) or "glorot" (TF1 default, Glorot uniform).
        normalize: input normalisation preset ("cifar", "seed", ...) or a (mean, std) pair.
        in_channels: image channels (3 for CIFAR, 1 for MNIST and Fashion-MNIST).
    """

    def __init__(
        self,
        depth: int = 100,
        growth_rate: int = 12,
        compression: float = 0.5,
        bottleneck: bool = True,
        dropout: float = 0.0,
        num_classes: int = 100,
        bn_scale: bool = True,
        transition_relu: bool = False,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        init: str = "kaiming",
        normalize: NormalizeSpec = "cifar",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        per = 6 if bottleneck else 3
        _check(
            isinstance(depth, int) and depth > 4 and (depth - 4) % per == 0,
            f"DenseNet depth {depth} does not give 3 equal dense blocks: (depth - 4) must be a "
            f"positive multiple of {per} {'with' if bottleneck else 'without'} bottleneck "
            f"(e.g. {'22, 40, 100, 190' if bottleneck else '10, 40, 100'})",
        )
        _check(growth_rate >= 1, f"growth_rate must be >= 1, got {growth_rate}")
        _check(0.0 < compression <= 1.0, f"compression must be in (0, 1], got {compression}")
        _check(0.0 <= dropout < 1.0, f"dropout must be in [0, 1), got {dropout}")
        _check(num_classes >= 1, f"num_classes must be >= 1, got {num_classes}")
        _check(0.0 < bn_momentum <= 1.0, f"bn_momentum must be in (0, 1], got {bn_momentum}")
        _check(bn_eps > 0.0, f"bn_eps must be > 0, got {bn_eps}")
        _check(init in INITS, f"unknown init {init!r}; use one of {list(INITS)}")

        self.num_classes = num_classes
        self.depth = depth
        self.growth_rate = growth_rate
        self.layers_per_block = (depth - 4) // per
        self._bn_scale = bn_scale
        self._bn_momentum = bn_momentum
        self._bn_eps = bn_eps
        self._dropout = dropout

        k = growth_rate
        channels = 2 * k if bottleneck and compression < 1.0 else 16
        _check(in_channels >= 1, f"in_channels must be >= 1, got {in_channels}")
        self.normalize = make_normalize(normalize, in_channels)
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        for b in (1, 2, 3):
            block = DenseBlock()
            for _ in range(self.layers_per_block):
                block.append(self._dense_layer(channels, k, bottleneck))
                channels += k
            self.add_module(f"block{b}", block)
            if b < 3:
                out = int(compression * channels)
                _check(
                    out >= 1,
                    f"compression {compression} leaves transition {b} with no channels "
                    f"(from {channels}); raise compression or growth_rate",
                )
                self.add_module(f"trans{b}", self._transition(channels, out, transition_relu))
                channels = out
        self.norm_final = self._bn(channels)
        self.relu_final = nn.ReLU(inplace=True)
        self.num_features = channels
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights(init)

    def _bn(self, channels: int) -> nn.BatchNorm2d:
        if self._bn_scale:
            return nn.BatchNorm2d(channels, eps=self._bn_eps, momentum=self._bn_momentum)
        return BatchNorm2dNoScale(channels, eps=self._bn_eps, momentum=self._bn_momentum)

    def _dense_layer(self, cin: int, k: int, bottleneck: bool) -> nn.Sequential:
        parts: list[tuple[str, nn.Module]] = []
        if bottleneck:
            parts += [
                ("norm1", self._bn(cin)),
                ("relu1", nn.ReLU(inplace=True)),
                ("conv1", nn.Conv2d(cin, 4 * k, 1, bias=False)),
            ]
            if self._dropout > 0:
                parts.append(("drop1", nn.Dropout(self._dropout)))
            cin = 4 * k
        parts += [
            ("norm2", self._bn(cin)),
            ("relu2", nn.ReLU(inplace=True)),
            ("conv2", nn.Conv2d(cin, k, 3, padding=1, bias=False)),
        ]
        if self._dropout > 0:
            parts.append(("drop2", nn.Dropout(self._dropout)))
        return nn.Sequential(OrderedDict(parts))

    def _transition(self, cin: int, cout: int, relu_after: bool) -> nn.Sequential:
        parts: list[tuple[str, nn.Module]] = [
            ("norm", self._bn(cin)),
            ("relu", nn.ReLU(inplace=True)),
            ("conv", nn.Conv2d(cin, cout, 1, bias=False)),
        ]
        if relu_after:
            parts.append(("relu_after", nn.ReLU(inplace=True)))
        if self._dropout > 0:
            parts.append(("drop", nn.Dropout(self._dropout)))
        parts.append(("pool", nn.AvgPool2d(2)))
        return nn.Sequential(OrderedDict(parts))

    def _init_weights(self, init: str) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if init == "glorot":
                    nn.init.xavier_uniform_(m.weight)
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                if m.weight is not None:
                    nn.init.ones_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                if init == "glorot":
                    nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (N, num_features): after the global pool, before ``fc``."""
        x = self.stem(self.normalize(x))
        x = self.trans1(self.block1(x))
        x = self.trans2(self.block2(x))
        x = self.relu_final(self.norm_final(self.block3(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) for images (N, 3, H, W) in [0, 1]."""
        return self.fc(self.features(x))


# The seed's DenseNet settings (SEED-SPEC section 2): TF1 batch-norm defaults without gamma, the
# extra transition ReLU, dropout 0.5, Glorot-uniform init and inputs mapped to [-1, 1].
DENSENET_SEED_SETTINGS: dict[str, Any] = {
    "bn_scale": False,
    "transition_relu": True,
    "dropout": 0.5,
    "bn_momentum": 0.01,
    "bn_eps": 1e-3,
    "init": "glorot",
    "normalize": "seed",
}

register_model("densenet-bc-22", depth=22, growth_rate=12)(DenseNet)
register_model("densenet-bc-40", depth=40, growth_rate=12)(DenseNet)
register_model("densenet-bc-100", depth=100, growth_rate=12)(DenseNet)
register_model("densenet-bc-190", depth=190, growth_rate=40)(DenseNet)
register_model("densenet-bc-250", depth=250, growth_rate=24)(DenseNet)
register_model("densenet-bc-40-seed", depth=40, growth_rate=12, **DENSENET_SEED_SETTINGS)(DenseNet)
register_model("densenet-bc-100-seed", depth=100, growth_rate=12, **DENSENET_SEED_SETTINGS)(
    DenseNet
)

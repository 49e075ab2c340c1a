"""Input normalisation: the first layer of every classifier.

The public pixel convention is NCHW floats in [0, 1]. A classifier maps them to the range its
weights expect with a :class:`Normalize` layer, so callers (training, evaluation, attacks) never
normalise by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from advaug.errors import ConfigError

# Per-channel statistics of the 50,000 training images, pixels in [0, 1] (population std).
CIFAR100_MEAN: tuple[float, float, float] = (0.5071, 0.4865, 0.4409)
CIFAR100_STD: tuple[float, float, float] = (0.2673, 0.2564, 0.2762)
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
# The 60,000 training images of MNIST and of Fashion-MNIST, one grey channel, computed from the
# official files (pixels in [0, 1], population std).
MNIST_MEAN: tuple[float] = (0.1307,)
MNIST_STD: tuple[float] = (0.3081,)
FASHION_MNIST_MEAN: tuple[float] = (0.2860,)
FASHION_MNIST_STD: tuple[float] = (0.3530,)
# The seed's x -> 2x - 1 map to [-1, 1]; also a sensible choice for the 8x8 digits demo set.
SEED_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
SEED_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)
# One-channel statistics of the 60,000 training images (population std; tests check them on
# the real files where present).
MNIST_MEAN: tuple[float] = (0.1307,)
MNIST_STD: tuple[float] = (0.3081,)
FASHION_MNIST_MEAN: tuple[float] = (0.2860,)
FASHION_MNIST_STD: tuple[float] = (0.3530,)

NormalizeSpec = str | Sequence[Sequence[float]]
"""A preset name (see :data:`NORMALIZE_PRESETS`) or a ``(mean, std)`` pair of per-channel lists."""

NORMALIZE_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar": (CIFAR100_MEAN, CIFAR100_STD),
    "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "seed": (SEED_MEAN, SEED_STD),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "mnist": (MNIST_MEAN, MNIST_STD),
    "fashion-mnist": (FASHION_MNIST_MEAN, FASHION_MNIST_STD),
    # x unchanged for any number of channels (one value broadcasts); "none" holds three
    "identity": ((0.0,), (1.0,)),
}


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean and std stored as (persistent) buffers."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32)
        std_t = torch.as_tensor(list(std), dtype=torch.float32)
        if mean_t.ndim != 1 or mean_t.shape != std_t.shape or mean_t.numel() == 0:
            raise ConfigError(
                f"normalize mean {list(mean)} and std {list(std)} must be equal-length, "
                "non-empty lists of per-channel values; fix the normalize setting"
            )
        if not bool((std_t > 0).all()):
            raise ConfigError(f"normalize std {list(std)} has a value <= 0; use positive stds")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Map [0, 1] images (N, C, H, W) to normalised ones of the same shape."""
        return (x - self.mean) / self.std

    def inverse(self, z: Tensor) -> Tensor:
        """Map normalised images back to pixel units ([0, 1] for real images)."""
        return z * self.std + self.mean

    def extra_repr(self) -> str:
        mean = [round(v, 4) for v in self.mean.flatten().tolist()]
        std = [round(v, 4) for v in self.std.flatten().tolist()]
        return f"mean={mean}, std={std}"


def make_normalize(spec: NormalizeSpec, channels: int | None = None) -> Normalize:
    """Build a :class:`Normalize` from a preset name or a ``(mean, std)`` pair.

    With ``channels``, the normalisation must have that many per-channel values, except the
    channel-free presets ``"seed"`` and ``"none"``, which are cut to size.
    """
    norm = _make_normalize(spec)
    if channels is None or norm.mean.shape[1] == channels:
        return norm
    if isinstance(spec, str) and spec in ("seed", "none"):
        mean, std = NORMALIZE_PRESETS[spec]
        return Normalize(mean[:1] * channels, std[:1] * channels)
    free = ["seed", "none"]
    fits = sorted(k for k, (m, _) in NORMALIZE_PRESETS.items() if len(m) == channels)
    one = [k for k in fits if k not in free]
    raise ConfigError(
        f"normalize {spec!r} has {norm.mean.shape[1]} channels but the images have {channels}; "
        f"set normalize to one of {one + free} or a [mean, std] pair of "
        f"{channels} values each"
    )


def _make_normalize(spec: NormalizeSpec) -> Normalize:
    if isinstance(spec, str):
        if spec not in NORMALIZE_PRESETS:
            raise ConfigError(
                f"unknown normalize preset {spec!r}; use one of {sorted(NORMALIZE_PRESETS)} "
                "or a [mean, std] pair"
            )
        mean, std = NORMALIZE_PRESETS[spec]
        return Normalize(mean, std)
    try:
        mean, std = spec
        return Normalize(mean, std)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"normalize must be one of {sorted(NORMALIZE_PRESETS)} or a [mean, std] pair of "
            f"per-channel lists, got {spec!r}; fix the normalize setting"
        ) from exc

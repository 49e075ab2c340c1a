"""AC-GAN models: a ResNet generator with conditional batch norm and a critic with an AC head.

This is the Gulrajani et al. CIFAR ResNet WGAN-GP family as used by the seed (SEED-SPEC §3.2-3.4),
with the project's pixel convention: the generator returns images in [0, 1] (its tanh output is
mapped by (t + 1) / 2 inside the model) and the critic takes images in [0, 1] (mapped to [-1, 1] by
2x - 1 inside the model). Class labels enter G through conditional batch norm (per-class γ, β
tables), and, for Song et al.'s variant, also as a one-hot vector concatenated to z.

Batch-norm statistics of the generator (``bn_stats``):

- In train mode G always normalises with batch statistics and updates its running statistics.
- In eval mode, ``bn_stats="batch"`` keeps using batch statistics. This is the seed's (and O's)
  behaviour: a sample then depends on the other samples in its batch, and on the batch size.
- ``bn_stats="running"`` (the default) uses the stored running statistics in eval mode, so a
  sample is a deterministic function of (z, y) alone: it can be made one at a time, in any batch
  size, and gradients in a latent search do not leak between the samples of a batch.

Running statistics only match the weights they were collected with. After training, and always
after swapping in EMA weights (which never ran forward in train mode), refresh them with
:func:`recompute_standing_stats`, which re-estimates them as a cumulative average over many random
(z, y) batches (BigGAN's "standing statistics"). The variants that reproduce the seed and Song
et al. (``"acgan-seed"``, ``"acgan-song"``) use ``"batch"``.

Initialisation follows tflib (SEED-SPEC §3.4): weights uniform in [-√3·σ, √3·σ] with
σ = √(4 / (fan_in + fan_out)) for residual-path convolutions (and the critic's first-block convs)
and σ = √(2 / (fan_in + fan_out)) for shortcuts, G's output conv and linear layers; fan counts
include the kernel area; all biases 0.

Build a (generator, critic) pair by name with :func:`advaug.models.build_gan`. The variants,
registered at the bottom of this module:

- ``"acgan"``: the project default (what ``GANConfig()`` builds): z 128, width 128, labels
  through CBN only, running BN statistics, no AC dropout, no spectral norm;
- ``"acgan-seed"``: the seed (S, SEED-SPEC §3.1-3.3): z 256, width 256, labels through CBN
  only, batch statistics, dropout 0.5 before the AC head;
- ``"acgan-song"``: Song et al. (O, SEED-SPEC §3.8): z 128 concatenated with one-hot(y) plus
  CBN, width 128, batch statistics, no AC dropout;
- ``"acgan-mnist"``: for 1x28x28 images (MNIST, Fashion-MNIST), after Song et al.'s MNIST AC-GAN
  (``models/acwgan_gp.py`` and ``train_acgan.py`` of ermongroup/generative_adversary, read, not
  copied): z 128 concatenated with one-hot(y) plus CBN, width 32 in G and D, G from 7x7 through
  two ResBlock-up to 28x28 and one output channel; D the same four blocks with one input channel.
  Running BN statistics (the project's choice: a sample depends only on its (z, y));
- ``"acgan-song-mnist"``: the same with batch statistics, as Song et al. ran it.

Two deliberate differences from Song et al.'s MNIST code, both reparametrisations: G ends in
(tanh(h) + 1) / 2 = sigmoid(2h) where theirs ends in sigmoid(h), and D reads 2x − 1 where theirs
reads x in [0, 1]; the project's pixel convention stays one for every variant.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advaug.errors import ConfigError
from advaug.models.registry import register_gan

BnStats = Literal["running", "batch"]

__all__ = [
    "ConditionalBatchNorm2d",
    "Critic",
    "Generator",
    "recompute_standing_stats",
    "sample",
]


# ----------------------------------------------------------------------------------------------
# initialisation


def _tflib_init_(module: nn.Conv2d | nn.Linear, he: bool) -> None:
    """tflib init: uniform ±√3·σ, σ = √(c / (fan_in + fan_out)), c = 4 (he) or 2; bias 0."""
    weight = module.weight
    if isinstance(module, nn.Conv2d):
        area = module.kernel_size[0] * module.kernel_size[1]
        fan_in, fan_out = module.in_channels * area, module.out_channels * area
    else:
        fan_in, fan_out = module.in_features, module.out_features
    sigma = math.sqrt((4.0 if he else 2.0) / (fan_in + fan_out))
    bound = math.sqrt(3.0) * sigma
    with torch.no_grad():
        weight.uniform_(-bound, bound)
        if module.bias is not None:
            module.bias.zero_()


def _conv(c_in: int, c_out: int, k: int, he: bool) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=True)
    _tflib_init_(conv, he)
    return conv


def _linear(d_in: int, d_out: int) -> nn.Linear:
    lin = nn.Linear(d_in, d_out)
    _tflib_init_(lin, he=False)
    return lin


# ----------------------------------------------------------------------------------------------
# generator


class _BatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, when ``eval_batch_stats`` is set, uses batch statistics in eval mode too.

    In eval mode with batch statistics the running statistics are neither used nor updated.
    """

    def __init__(self, num_features: int, affine: bool, eval_batch_stats: bool) -> None:
        super().__init__(num_features, eps=1e-5, affine=affine)
        self.eval_batch_stats = eval_batch_stats

    def forward(self, x: Tensor) -> Tensor:
        if not self.training and self.eval_batch_stats:
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        return super().forward(x)


class ConditionalBatchNorm2d(nn.Module):
    """BN without affine parameters, then per-class γ (init 1) and β (init 0) looked up by y."""

    def __init__(self, num_features: int, num_classes: int, eval_batch_stats: bool) -> None:
        super().__init__()
        self.bn = _BatchNorm2d(num_features, affine=False, eval_batch_stats=eval_batch_stats)
        self.gamma = nn.Embedding(num_classes, num_features)
        self.beta = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = self.bn(x)
        return h * self.gamma(y)[:, :, None, None] + self.beta(y)[:, :, None, None]


class _ResBlockUp(nn.Module):
    """CBN → ReLU → up×2 → conv3 → CBN → ReLU → conv3, plus shortcut up×2 → conv1 (bias)."""

    def __init__(self, c_in: int, c_out: int, num_classes: int, eval_batch_stats: bool) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(c_in, num_classes, eval_batch_stats)
        self.conv1 = _conv(c_in, c_out, 3, he=True)
        self.bn2 = ConditionalBatchNorm2d(c_out, num_classes, eval_batch_stats)
        self.conv2 = _conv(c_out, c_out, 3, he=True)
        self.shortcut = _conv(c_in, c_out, 1, he=False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


def up_plan(image_size: int) -> tuple[int, int]:
    """(start side, number of ×2 up-blocks) of a generator for ``image_size``: halve while the
    side stays even and above 7, at most 3 times; 32 → (4, 3), 28 → (7, 2), 64 → (8, 3)."""
    side, blocks = image_size, 0
    while side % 2 == 0 and side > 7 and blocks < 3:
        side, blocks = side // 2, blocks + 1
    if image_size < 1 or blocks < 2:
        raise ConfigError(
            f"image_size {image_size} cannot be reached from a small start by 2-3 doublings; "
            "use a side divisible by 4 and at least 16, such as 28 or 32"
        )
    return side, blocks


class Generator(nn.Module):
    """G(z, y) → images in [0, 1], shape [B, channels, image_size, image_size].

    Linear(z_dim [+ K] → s·s·width) → ResBlock-ups → BN → ReLU → conv3 → tanh, mapped to [0, 1]:
    3 blocks from 4×4 for 32×32 (CIFAR), 2 blocks from 7×7 for 28×28 (MNIST; see
    :func:`up_plan`). ``bn_stats`` chooses the eval-mode normalisation (see the module docstring).

    Examples::

        >>> g = Generator(z_dim=16, width=8, num_classes=10)
        >>> g(torch.randn(2, 16), torch.tensor([3, 7])).shape
        torch.Size([2, 3, 32, 32])
    """

    arch_name = "acgan-generator"

    def __init__(
        self,
        z_dim: int = 128,
        width: int = 128,
        num_classes: int = 100,
        concat_onehot: bool = False,
        bn_stats: BnStats = "running",
        out_range: Literal["01"] = "01",
        channels: int = 3,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        if bn_stats not in ("running", "batch"):
            raise ConfigError(f"bn_stats must be 'running' or 'batch', got {bn_stats!r}")
        if out_range != "01":
            raise ConfigError(f"out_range must be '01' (images in [0, 1]), got {out_range!r}")
        if z_dim < 1 or width < 1 or num_classes < 1 or channels < 1:
            raise ConfigError(
                f"z_dim, width, num_classes and channels must be positive, got {z_dim}, {width}, "
                f"{num_classes}, {channels}"
            )
        self.start, n_blocks = up_plan(image_size)
        self.channels = channels
        self.image_size = image_size
        self.z_dim = z_dim
        self.width = width
        self.num_classes = num_classes
        self.concat_onehot = concat_onehot
        self.arch_kwargs: dict[str, Any] = {
            "z_dim": z_dim,
            "width": width,
            "num_classes": num_classes,
            "concat_onehot": concat_onehot,
            "bn_stats": bn_stats,
            "out_range": out_range,
            "channels": channels,
            "image_size": image_size,
        }
        eval_batch = bn_stats == "batch"
        side = self.start
        self.linear = _linear(z_dim + (num_classes if concat_onehot else 0), side * side * width)
        self.blocks = nn.ModuleList(
            [_ResBlockUp(width, width, num_classes, eval_batch) for _ in range(n_blocks)]
        )
        self.bn_out = _BatchNorm2d(width, affine=True, eval_batch_stats=eval_batch)
        self.conv_out = _conv(width, channels, 3, he=False)
        self._bn_stats: BnStats = bn_stats

    @property
    def bn_stats(self) -> BnStats:
        """Eval-mode BN statistics: "running" (stored) or "batch" (the seed's)."""
        return self._bn_stats

    @bn_stats.setter
    def bn_stats(self, value: BnStats) -> None:
        if value not in ("running", "batch"):
            raise ConfigError(f"bn_stats must be 'running' or 'batch', got {value!r}")
        self._bn_stats = value
        self.arch_kwargs["bn_stats"] = value
        for m in self.modules():
            if isinstance(m, _BatchNorm2d):
                m.eval_batch_stats = value == "batch"

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        """Map latents z [B, z_dim] and labels y [B] (int64) to images
        [B, channels, image_size, image_size] in [0, 1]."""
        h = z
        if self.concat_onehot:
            h = torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=1)
        h = self.linear(h).view(z.shape[0], self.width, self.start, self.start)
        for block in self.blocks:
            h = block(h, y)
        h = self.conv_out(F.relu(self.bn_out(h)))
        return (torch.tanh(h) + 1.0) * 0.5


def _generator_bns(generator: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def _randn(n: int, d: int, rng: torch.Generator | None, device: torch.device) -> Tensor:
    """Normal latents drawn on the rng's device (so a CPU rng gives the same z on any device)."""
    draw_device = rng.device if rng is not None else device
    return torch.randn(n, d, generator=rng, device=draw_device).to(device)


@torch.no_grad()
def recompute_standing_stats(
    generator: Generator,
    num_batches: int = 100,
    batch_size: int = 256,
    generator_rng: torch.Generator | None = None,
) -> None:
    """Reset G's BN running statistics and re-estimate them over random (z, y) batches.

    Each BN layer ends with the cumulative (equal-weight) average over ``num_batches`` batches of
    the per-batch mean and unbiased variance (BigGAN's standing statistics). z ~ N(0, I) and
    y ~ Uniform{0..K-1} are drawn from ``generator_rng`` (on its device) when given. The model's
    train/eval mode and the BN momentum are restored afterwards.

    Examples::

        >>> from advaug.models import build_gan
        >>> g, _ = build_gan("acgan", num_classes=10, width=8)
        >>> recompute_standing_stats(g, num_batches=3, batch_size=4)
        >>> int(g.bn_out.num_batches_tracked)
        3
    """
    if num_batches < 1 or batch_size < 2:
        raise ConfigError(
            f"standing stats need num_batches >= 1 and batch_size >= 2, got {num_batches}, "
            f"{batch_size}"
        )
    bns = _generator_bns(generator)
    momenta = [bn.momentum for bn in bns]
    was_training = generator.training
    device = _device_of(generator)
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative moving average over the batches below
        generator.train()
        for _ in range(num_batches):
            z = _randn(batch_size, generator.z_dim, generator_rng, device)
            draw_device = generator_rng.device if generator_rng is not None else device
            y = torch.randint(
                generator.num_classes, (batch_size,), generator=generator_rng, device=draw_device
            ).to(device)
            generator(z, y)
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        generator.train(was_training)


@torch.no_grad()
def sample(
    generator: Generator,
    labels: Tensor,
    z: Tensor | None = None,
    batch_size: int = 1024,
    rng: torch.Generator | None = None,
) -> Tensor:
    """Generate one image per label in eval mode, in batches, without gradients.

    z defaults to N(0, I) drawn from ``rng`` (on the rng's device, then moved). Returns images in
    [0, 1] on the generator's device. With ``bn_stats="batch"`` the result depends on
    ``batch_size`` (batch statistics); with ``"running"`` it does not. G's mode is restored.

    Examples::

        >>> from advaug.models import build_gan
        >>> g, _ = build_gan("acgan", num_classes=10, width=8)
        >>> x = sample(g, torch.arange(10), rng=torch.Generator().manual_seed(0))
        >>> x.shape, bool(x.min() >= 0 and x.max() <= 1)
        (torch.Size([10, 3, 32, 32]), True)
    """
    device = _device_of(generator)
    labels = labels.to(device=device, dtype=torch.long)
    n = labels.shape[0]
    if z is None:
        z = _randn(n, generator.z_dim, rng, device)
    elif z.shape != (n, generator.z_dim):
        raise ConfigError(
            f"z must have shape ({n}, {generator.z_dim}) to match the labels, got {tuple(z.shape)}"
        )
    z = z.to(device)
    was_training = generator.training
    generator.eval()
    try:
        out = [
            generator(z[i : i + batch_size], labels[i : i + batch_size]).float()
            for i in range(0, n, batch_size)
        ]
    finally:
        generator.train(was_training)
    if not out:
        c, s = generator.channels, generator.image_size
        return torch.empty(0, c, s, s, device=device)
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------
# critic


class _OptimizedBlock(nn.Module):
    """First critic block: conv3 → ReLU → conv3 → avgpool2; shortcut avgpool2 → conv1."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, c_out, 3, he=True)
        self.conv2 = _conv(c_out, c_out, 3, he=True)
        self.shortcut = _conv(c_in, c_out, 1, he=False)

    def forward(self, x: Tensor) -> Tensor:
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(x))), 2)
        return h + self.shortcut(F.avg_pool2d(x, 2))


class _ResBlockDown(nn.Module):
    """ReLU → conv3 → ReLU → conv3 → avgpool2; shortcut conv1 → avgpool2."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, c_out, 3, he=True)
        self.conv2 = _conv(c_out, c_out, 3, he=True)
        self.shortcut = _conv(c_in, c_out, 1, he=False)

    def forward(self, x: Tensor) -> Tensor:
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(F.relu(x)))), 2)
        return h + F.avg_pool2d(self.shortcut(x), 2)


class _ResBlock(nn.Module):
    """ReLU → conv3 → ReLU → conv3, identity shortcut."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = _conv(c, c, 3, he=True)
        self.conv2 = _conv(c, c, 3, he=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class Critic(nn.Module):
    """D(x) → (critic score [B], AC logits [B, K]) for images x in [0, 1].

    No normalisation layers, the label never enters D (it is only the AC head's target).
    Any image size works (the last features are averaged over space); ``channels`` is the
    images' channel count.
    ``spectral_norm`` wraps every conv and linear layer with
    ``torch.nn.utils.parametrizations.spectral_norm``.

    Examples::

        >>> d = Critic(width=8, num_classes=10)
        >>> score, logits = d(torch.rand(2, 3, 32, 32))
        >>> score.shape, logits.shape
        (torch.Size([2]), torch.Size([2, 10]))
    """

    arch_name = "acgan-critic"

    def __init__(
        self,
        width: int = 128,
        num_classes: int = 100,
        ac_dropout: float = 0.0,
        spectral_norm: bool = False,
        channels: int = 3,
    ) -> None:
        super().__init__()
        if not 0.0 <= ac_dropout < 1.0:
            raise ConfigError(f"ac_dropout must be in [0, 1), got {ac_dropout}")
        if width < 1 or num_classes < 1 or channels < 1:
            raise ConfigError(
                f"width, num_classes and channels must be positive, got {width}, {num_classes}, "
                f"{channels}"
            )
        self.width = width
        self.num_classes = num_classes
        self.channels = channels
        self.arch_kwargs: dict[str, Any] = {
            "width": width,
            "num_classes": num_classes,
            "ac_dropout": ac_dropout,
            "spectral_norm": spectral_norm,
            "channels": channels,
        }
        self.blocks = nn.Sequential(
            _OptimizedBlock(channels, width),
            _ResBlockDown(width, width),
            _ResBlock(width),
            _ResBlock(width),
        )
        self.critic_head = _linear(width, 1)
        self.ac_dropout = nn.Dropout(ac_dropout)
        self.ac_head = _linear(width, num_classes)
        if spectral_norm:
            sn = torch.nn.utils.parametrizations.spectral_norm
            for name, m in list(self.named_modules()):
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    parent_name, _, child = name.rpartition(".")
                    parent = self.get_submodule(parent_name) if parent_name else self
                    setattr(parent, child, sn(m))

    def features(self, x: Tensor) -> Tensor:
        """The pooled representation h [B, width] shared by both heads (x in [0, 1])."""
        h = self.blocks(x * 2.0 - 1.0)
        return F.relu(h).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(x)
        return self.critic_head(h).squeeze(1), self.ac_head(self.ac_dropout(h))


# ----------------------------------------------------------------------------------------------
# registered variants (see the module docstring); every setting of the seed's and Song et al.'s
# architecture is spelled out, so a change of a constructor default cannot change them

register_gan("acgan")(Generator, Critic)
register_gan(
    "acgan-seed",
    z_dim=256,
    width=256,
    concat_onehot=False,
    bn_stats="batch",
    ac_dropout=0.5,
    spectral_norm=False,
)(Generator, Critic)
register_gan(
    "acgan-song",
    z_dim=128,
    width=128,
    concat_onehot=True,
    bn_stats="batch",
    ac_dropout=0.0,
    spectral_norm=False,
)(Generator, Critic)
register_gan(
    "acgan-mnist",
    z_dim=128,
    width=32,
    concat_onehot=True,
    bn_stats="running",
    ac_dropout=0.0,
    spectral_norm=False,
    channels=1,
    image_size=28,
)(Generator, Critic)
register_gan(
    "acgan-song-mnist",
    z_dim=128,
    width=32,
    concat_onehot=True,
    bn_stats="batch",
    ac_dropout=0.0,
    spectral_norm=False,
    channels=1,
    image_size=28,
)(Generator, Critic)

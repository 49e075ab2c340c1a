"""The training steps, written once: one classifier step, one critic step, one generator step.

Each takes the models, their optimiser, a batch and the config, updates the weights once, and
returns its statistics as detached device tensors (no host sync). The training loops, the
benchmarks and the study's cost estimate all call these functions; none keeps a copy.

Classifier step (the seed's mixed loss, see :mod:`advaug.augment.base`)::

    x, y  ─ split ─▶ (x_src, y_src) ─ technique T ─▶ (x_a, y_a)
                   └▶ (x_c, y_c)
    L = (n_c·CE(f(x_c), y_c) + λ·n_a·CE(f(x_a), y_a)) / (n_c + λ·n_a);  backward; SGD; EMA

AC-GAN iteration = ``n_critic`` × :func:`critic_step` on consecutive real batches, then one
:func:`generator_step` (WGAN-GP + AC terms, see :mod:`advaug.train.gan_losses`).

Examples::

    >>> import torch
    >>> from advaug.augment import build_technique
    >>> from advaug.config import ClassifierConfig, RuntimeConfig
    >>> from advaug.models import build_model
    >>> from advaug.runtime import make_runtime
    >>> cfg, rt = ClassifierConfig(), make_runtime(RuntimeConfig(device="cpu"))
    >>> model = build_model("tiny-cnn", num_classes=10)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> none = build_technique(cfg.augment, seed=0, device=rt.device)
    >>> x, y = torch.rand(8, 3, 32, 32), torch.randint(10, (8,))
    >>> stats = classifier_step(model, opt, none, x, y, 0, cfg=cfg, rt=rt)
    >>> int(stats["clean_n"]), int(stats["aug_n"])
    (8, 0)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from advaug.augment.base import Technique, forward_mixed, split_batch
from advaug.config import ClassifierConfig, GANConfig
from advaug.runtime import Runtime, ddp, update_ema
from advaug.train.gan_losses import critic_loss, dequantize, generator_loss

Stats = dict[str, Tensor]
MixedForward = Callable[[Tensor, Tensor, Any], tuple[Tensor, Stats]]


def mixed_forward(net: nn.Module, cfg: ClassifierConfig) -> MixedForward:
    """``(x_clean, y_clean, aug) -> (loss, stats)`` for ``net``: the part a loop may compile."""
    a = cfg.augment
    return partial(
        forward_mixed,
        net,
        weight=a.adv_weight,
        bn=a.bn,
        label_smoothing=cfg.optim.label_smoothing,
    )


def classifier_step(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    technique: Technique,
    x: Tensor,
    y: Tensor,
    step: int,
    *,
    cfg: ClassifierConfig,
    rt: Runtime,
    ema: AveragedModel | None = None,
    forward: MixedForward | None = None,
) -> Stats:
    """One optimiser step of classifier ``net`` on batch (x, y) with technique T.

    ``net`` may be a DDP wrapper; T attacks, and the EMA tracks, the plain module inside it.
    ``forward`` defaults to :func:`mixed_forward` (pass a compiled one to reuse it).
    Returns sums and counts (``loss_sum``, ``clean_correct``, ``clean_n``, ``aug_correct``,
    ``aug_n``) as device tensors.
    """
    model = ddp.unwrap(net)
    forward = forward or mixed_forward(net, cfg)
    # split the batch: the first ⌊share·B⌋ go to T, the rest stay clean (`none`: share 0)
    part = split_batch(x, y, cfg.augment.batch_share, cfg.augment.mode)
    # augment: T's examples, made against the current model (attacks restore its mode), in
    # the training precision (bf16 activations on a GPU: attacks need half the memory)
    with rt.autocast():
        aug = technique(model, part.x_src, part.y_src, step)
    # forward: the mixed loss over the clean and the augmented examples
    with rt.autocast():
        loss, stats = forward(part.x_clean, part.y_clean, aug)
    # backward and update
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if ema is not None:
        update_ema(ema, model, cfg.optim.ema_decay)
    return stats


def critic_step(
    g: nn.Module,
    d_net: nn.Module,
    opt_d: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    *,
    cfg: GANConfig,
    rt: Runtime,
    rng: torch.Generator,
) -> Stats:
    """One critic update on the real batch (x, y) against fresh fakes G(z, y).

    Returns the critic's loss terms (``wasserstein``, ``gp``, ``ac``, …) as device tensors.
    """
    # the generator step froze the critic: let its weights learn again
    for p in d_net.parameters():
        p.requires_grad_(True)
    # real images, dequantised; fakes for the same labels, with no graph through G
    if cfg.dequantize:
        x = dequantize(x, rng)
    z = torch.randn(x.shape[0], ddp.unwrap(g).z_dim, device=rt.device, generator=rng)
    with rt.autocast():
        with torch.no_grad():
            fake = g(z, y)
        # WGAN-GP + the AC terms
        loss, parts = critic_loss(
            d_net,
            x,
            y,
            fake,
            gp_weight=cfg.gp_weight,
            ac_scale=cfg.ac_scale_d,
            ac_on_fake=cfg.ac_on_fake,
            per_pixel_alpha=cfg.per_pixel_alpha,
            rng=rng,
        )
    # backward and update
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return parts


def generator_step(
    g_net: nn.Module,
    d: nn.Module,
    opt_g: torch.optim.Optimizer,
    num_classes: int,
    *,
    cfg: GANConfig,
    rt: Runtime,
    rng: torch.Generator,
    ema: AveragedModel | None = None,
) -> Stats:
    """One generator update on ``g_batch_mult × batch_size`` fresh (z, y), then the EMA of G.

    ``d`` is the plain critic (frozen here, so under DDP only G's gradients are all-reduced).
    Returns the generator's loss terms as device tensors.
    """
    g = ddp.unwrap(g_net)
    # freeze the critic: this step trains G alone
    for p in d.parameters():
        p.requires_grad_(False)
    # fresh labels and latents
    n = cfg.g_batch_mult * cfg.batch_size
    y = torch.randint(num_classes, (n,), device=rt.device, generator=rng)
    z = torch.randn(n, g.z_dim, device=rt.device, generator=rng)
    # the critic's verdict and the AC term on G's samples
    with rt.autocast():
        loss, parts = generator_loss(d, g_net(z, y), y, ac_scale=cfg.ac_scale_g)
    # backward and update, then the EMA of G
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    if ema is not None:
        update_ema(ema, g, cfg.ema_decay)
    return parts

"""Learning-rate schedules as pure functions of the step, so a resume re-derives the rate."""

from __future__ import annotations

import math

import torch

from advaug.config import GANConfig, OptimConfig


def lr_at(cfg: OptimConfig, step: int, steps_per_epoch: int, epochs: int) -> float:
    """The learning rate for optimiser step ``step`` (0-based).

    - warm-up: linear from lr/warmup_steps to lr over ``warmup_epochs``;
    - ``step``: the seed's DenseNet-BC schedule, ×gamma at epochs ⌊m·E⌋ for each milestone m;
    - ``cosine``: half cosine from lr to 0 over the remaining steps;
    - ``constant``.
    """
    total = steps_per_epoch * epochs
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":
        epoch = step // steps_per_epoch
        drops = sum(epoch >= int(m * epochs) for m in cfg.milestones)
        return cfg.lr * cfg.gamma**drops
    progress = (step - warm) / max(1, total - warm)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def gan_lr_scale(cfg: GANConfig, it: int) -> float:
    """The factor on the GAN's learning rates at iteration ``it`` (0-based): a linear decay to 0
    over ``cfg.iters`` under ``lr_decay="linear"``, else 1."""
    return 1.0 - it / cfg.iters if cfg.lr_decay == "linear" else 1.0


def set_lr(opt: torch.optim.Optimizer, lr: float) -> float:
    """Give every parameter group of ``opt`` the learning rate ``lr``; returns ``lr``."""
    for group in opt.param_groups:
        group["lr"] = lr
    return lr

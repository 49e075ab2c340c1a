"""Augmentation techniques behind one interface (see :mod:`advaug.augment.base`)."""

from __future__ import annotations

from typing import Any

import torch

from advaug.augment.base import Technique, forward_mixed, mixed_loss, split_batch
from advaug.config import TECHNIQUES, AugmentConfig
from advaug.errors import ConfigError

__all__ = ["Technique", "build_technique", "forward_mixed", "mixed_loss", "split_batch"]


def build_technique(
    cfg: AugmentConfig,
    *,
    seed: int,
    device: torch.device,
    gan: Any = None,
    rank: int = 0,
    world_size: int = 1,
) -> Technique:
    """The technique named by ``cfg.technique``; ``gan`` is a loaded (generator, critic) pair."""
    t = cfg.technique
    if cfg.batch_share == 0:
        return Technique()
    if t == "fgsm":
        from advaug.augment.fgsm import FGSMTechnique

        return FGSMTechnique(cfg.fgsm, seed, device)
    if t == "pgd":
        from advaug.augment.pgd import PGDTechnique

        return PGDTechnique(cfg.pgd, seed, device)
    if t in ("gan", "unrestricted"):
        if gan is None:
            raise ConfigError(f"technique '{t}' needs a trained GAN; pass --gan RUN_DIR")
        if t == "gan":
            from advaug.augment.gan import GANTechnique

            return GANTechnique(cfg.gan, gan, seed, device)
        from advaug.augment.unrestricted import UnrestrictedTechnique

        return UnrestrictedTechnique(cfg.unrestricted, gan, seed, device, rank, world_size)
    raise ConfigError(f"unknown technique '{t}'; choose one of {', '.join(TECHNIQUES)}")

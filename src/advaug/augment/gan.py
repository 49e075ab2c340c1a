"""GAN augmentation: class-conditional AC-GAN samples G(z, y) for the labels of the replaced
examples (as in the seed), optionally kept only where the AC head agrees with confidence."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advaug.augment.base import Technique
from advaug.config import GANAugConfig
from advaug.runtime import restore_generator


class GANTechnique(Technique):
    name = "gan"
    needs_gan = True

    def __init__(self, cfg: GANAugConfig, gan: Any, seed: int, device: torch.device):
        self.cfg = cfg
        self.g, self.d = gan.generator, gan.critic
        self.rng = torch.Generator(device=device)
        self.rng.manual_seed(seed + 202)
        self.asked = 0
        self.kept = torch.zeros((), dtype=torch.long, device=device)  # on the device: no sync

    @torch.no_grad()
    def generate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int):
        z = torch.randn(y.shape[0], self.g.z_dim, device=y.device, generator=self.rng)
        imgs = self.g(z, y).to(x.dtype).contiguous(memory_format=_fmt(x))
        self.asked += z.shape[0]
        if not (self.cfg.filter_ac or self.cfg.min_confidence > 0):
            self.kept += z.shape[0]
            return imgs, y
        # filter by the AC head: rejected rows stay (fixed shape) with no loss
        probs = self.d(imgs)[1].float().softmax(1)
        keep = torch.ones_like(y, dtype=torch.bool)
        if self.cfg.filter_ac:
            keep &= probs.argmax(1) == y
        if self.cfg.min_confidence > 0:
            keep &= probs.gather(1, y[:, None])[:, 0] >= self.cfg.min_confidence
        self.kept += keep.sum()
        return imgs, y, keep

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.get_state(), "kept": int(self.kept), "asked": self.asked}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore_generator(self.rng, state["rng"], int(self.rng.initial_seed()))
        self.kept.fill_(state["kept"])
        self.asked = state["asked"]

    def metrics(self) -> dict[str, float]:
        return {"gan_kept": int(self.kept) / self.asked} if self.asked else {}


def _fmt(x: torch.Tensor) -> torch.memory_format:
    cl = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if cl and not x.is_contiguous() else torch.contiguous_format

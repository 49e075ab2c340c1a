"""PGD augmentation: Madry et al.'s adversarial training. The technique's share of each batch is
replaced by L∞ PGD examples made against the current model (in eval mode, as every attack does;
the attack restores train mode), with ε, step size, steps and the random start from
:class:`~advaug.config.PGDAugConfig`. With ``prop`` 1 and ``adv_weight`` 1 this is Madry et
al.'s objective (every example adversarial); the default ``prop`` 0.5 mixes clean and
adversarial halves, as the seed does for FGSM.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advaug.attacks.pgd import PGD
from advaug.augment.base import Technique
from advaug.config import PGDAugConfig
from advaug.runtime import restore_generator


class PGDTechnique(Technique):
    name = "pgd"

    def __init__(self, cfg: PGDAugConfig, seed: int, device: torch.device):
        self.cfg = cfg
        self.rng = torch.Generator(device=device)  # random starts, on the data's device
        self.rng.manual_seed(seed + 111)

    def generate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int):
        c = self.cfg
        atk = PGD(model, eps=c.eps, alpha=c.alpha, steps=c.steps, random_start=c.random_start,
                  rng=self.rng)  # fmt: skip
        atk.validate = False  # the loader's pixels are in range; keep the step free of syncs
        return atk(x, y).detach(), y

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore_generator(self.rng, state["rng"], int(self.rng.initial_seed()))

    def metrics(self) -> dict[str, float]:
        return {"eps": self.cfg.eps}

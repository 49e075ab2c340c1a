"""FGSM augmentation: norm-bounded adversarial examples of the real batch, made against the
current model (in eval mode, as every attack does; the attack restores train mode).

The seed draws one ε ~ U(ε_min, ε_max) per batch and uses least-likely-class FGSM ("step-ll");
``kind`` also offers standard FGSM and FGSM with a random start (Wong et al., 2020).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advaug.attacks.fgsm import FFGSM, FGSM, StepLL
from advaug.augment.base import Technique
from advaug.config import FGSMAugConfig
from advaug.runtime import restore_generator


class FGSMTechnique(Technique):
    name = "fgsm"

    def __init__(self, cfg: FGSMAugConfig, seed: int, device: torch.device):
        self.cfg = cfg
        self.rng = torch.Generator(device=device)  # random starts (ffgsm), on the data's device
        self.rng.manual_seed(seed + 101)
        self.eps_rng = torch.Generator().manual_seed(seed + 102)  # CPU: no device sync per step
        self.last_eps = cfg.eps_min

    def draw_eps(self) -> float:
        lo, hi = self.cfg.eps_min, self.cfg.eps_max
        if hi == lo:
            return lo
        u = torch.rand((), generator=self.eps_rng).item()
        return lo + (hi - lo) * u

    def generate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int):
        eps = self.last_eps = self.draw_eps()
        if self.cfg.kind == "step-ll":
            atk = StepLL(model, eps=eps)
        elif self.cfg.kind == "ffgsm":
            atk = FFGSM(model, eps=eps, rng=self.rng)
        else:
            atk = FGSM(model, eps=eps)
        atk.validate = False  # the loader's pixels are in range; keep the step free of syncs
        return atk(x, y).detach(), y

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.get_state(), "eps_rng": self.eps_rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore_generator(self.rng, state["rng"], int(self.rng.initial_seed()))
        self.eps_rng.set_state(state["eps_rng"].cpu())  # always a CPU stream

    def metrics(self) -> dict[str, float]:
        return {"eps": self.last_eps}

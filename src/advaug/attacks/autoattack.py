"""Adapter to ``torchattacks.AutoAttack`` (APGD-CE, APGD-T, FAB-T, Square) behind our Attack API.

torchattacks is optional. Install it without its dependencies, which would pull another torch:
``pip install --no-deps torchattacks==3.5.1 scipy``. The adapter adds what torchattacks lacks:
exact restoration of every submodule's mode and ``requires_grad`` flag, input checks, the class
count taken from the model, and no change to the global RNG (APGD reseeds it).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import Tensor, nn

from advaug.attacks.base import Attack, AttackInputError, check_nonneg
from advaug.errors import AdvaugError

INSTALL_HINT = "pip install --no-deps torchattacks==3.5.1 scipy"
NORMS = ("Linf", "L2")
VERSIONS = ("standard", "plus", "rand")


class MissingDependencyError(AdvaugError, ImportError):
    """An optional package that a feature needs is not installed."""


def _torchattacks() -> Any:
    try:
        return importlib.import_module("torchattacks")
    except ImportError as exc:
        raise MissingDependencyError(
            f"AutoAttack needs torchattacks, which is not installed; run `{INSTALL_HINT}`"
        ) from exc


def torchattacks_available() -> bool:
    """Whether ``torchattacks`` can be imported."""
    try:
        _torchattacks()
    except MissingDependencyError:
        return False
    return True


class AutoAttack(Attack):
    """AutoAttack (Croce & Hein 2020) via torchattacks, untargeted.

    ``num_classes`` defaults to the width of the model's logits (torchattacks' own default of
    10 would silently weaken APGD-T and FAB-T on CIFAR-100).
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        norm: str = "Linf",
        version: str = "standard",
        seed: int = 0,
        *,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(model)
        if isinstance(eps, Tensor):
            raise AttackInputError("AutoAttack takes one float eps, not a tensor; pass float(eps)")
        check_nonneg(eps, "eps")
        if norm not in NORMS:
            raise AttackInputError(f"norm must be one of {NORMS}, got {norm!r}")
        if version not in VERSIONS:
            raise AttackInputError(f"version must be one of {VERSIONS}, got {version!r}")
        self._ta = _torchattacks()
        self.eps = float(eps)
        self.norm = norm
        self.version = version
        self.seed = int(seed)
        self.num_classes = num_classes
        self._impl: Any = None

    def _build(self, num_classes: int) -> Any:
        if self._impl is None or self._impl.n_classes != num_classes:
            self._impl = self._ta.AutoAttack(
                self.model,
                norm=self.norm,
                eps=self.eps,
                version=self.version,
                n_classes=num_classes,
                seed=self.seed,
                verbose=False,
            )
        return self._impl

    def perturb(self, images: Tensor, labels: Tensor | None) -> Tensor:
        """Run torchattacks' AutoAttack with the global RNG state saved and restored."""
        assert labels is not None
        if images.shape[0] == 0:
            return images.clone()
        k = self.num_classes
        if k is None:
            with torch.no_grad():
                k = int(self.model(images[:1]).shape[1])
        impl = self._build(k)
        devices: list[int] = []
        if images.device.type == "cuda":
            index = images.device.index
            devices = [torch.cuda.current_device() if index is None else index]
        with torch.random.fork_rng(devices=devices):
            adv = impl(images, labels)
        return adv.to(images.device)

"""Single-step L∞ attacks: FGSM, the seed's least-likely-class FGSM (step-ll), and fast FGSM.

All three clip to the ε-ball around the input and to [0, 1] (the seed clipped [-1, 1] data to
[0, 1], zeroing every negative pixel; SEED-SPEC §7.6). ``eps`` is a float or a per-sample [B]
tensor; the seed drew one ε per batch, which the float form covers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advaug.attacks.base import (
    Attack,
    EpsLike,
    check_finite,
    check_nonneg,
    input_grad,
    per_sample,
    project,
    uniform_like,
)


class FGSM(Attack):
    """Goodfellow et al. (2015): x + ε·sign(∇ CE(f(x), y)); targeted: x − ε·sign(∇ CE(f(x), t))."""

    def __init__(self, model: nn.Module, eps: EpsLike = 8 / 255, *, targeted: bool = False) -> None:
        super().__init__(model, targeted=targeted)
        check_nonneg(eps, "eps")
        self.eps = eps

    def perturb(self, images: Tensor, labels: Tensor | None) -> Tensor:
        """One signed-gradient step of size ε."""
        assert labels is not None
        eps = per_sample(self.eps, images)
        grad, _ = input_grad(self.model, images, labels, self.validate)
        direction = -grad.sign() if self.targeted else grad.sign()
        return project(images + eps * direction, images, eps)


class StepLL(Attack):
    """The seed's FGSM (SEED-SPEC §4.2): x − ε·sign(∇ CE(f(x), y_LL)), y_LL = argmin_k f(x)_k.

    Labels are not needed (``atk(images)``); any labels passed are ignored.
    """

    needs_labels = False

    def __init__(self, model: nn.Module, eps: EpsLike = 8 / 255) -> None:
        super().__init__(model, targeted=True)
        check_nonneg(eps, "eps")
        self.eps = eps

    def perturb(self, images: Tensor, labels: Tensor | None) -> Tensor:
        """One step toward the least-likely class, computed from a single forward pass."""
        eps = per_sample(self.eps, images)
        x = images.detach().requires_grad_(True)
        logits = self.model(x).float()
        least_likely = logits.detach().argmin(dim=1)
        loss = F.cross_entropy(logits, least_likely, reduction="sum")
        if self.validate:
            check_finite(loss, "attack loss (the model's logits)")
        (grad,) = torch.autograd.grad(loss, x)
        return project(images - eps * grad.sign(), images, eps)


class FFGSM(Attack):
    """Wong, Rice & Kolter (2020) fast FGSM: uniform random start in the ε-ball, then one step
    of size ``alpha`` (default 1.25·ε), projected back to the ε-ball and [0, 1]."""

    def __init__(
        self,
        model: nn.Module,
        eps: EpsLike = 8 / 255,
        alpha: EpsLike | None = None,
        *,
        targeted: bool = False,
        rng: torch.Generator | None = None,
    ) -> None:
        super().__init__(model, targeted=targeted, rng=rng)
        check_nonneg(eps, "eps")
        if alpha is not None:
            check_nonneg(alpha, "alpha")
        self.eps = eps
        self.alpha = alpha

    def perturb(self, images: Tensor, labels: Tensor | None) -> Tensor:
        """Random start, one signed-gradient step, projection."""
        assert labels is not None
        eps = per_sample(self.eps, images)
        alpha = 1.25 * eps if self.alpha is None else per_sample(self.alpha, images, "alpha")
        start = torch.clamp(images + eps * uniform_like(images, self.rng), 0.0, 1.0)
        grad, _ = input_grad(self.model, start, labels, self.validate)
        direction = -grad.sign() if self.targeted else grad.sign()
        return project(start + alpha * direction, images, eps)

"""Projected gradient descent in L∞ (Madry et al. 2018), with random restarts."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advaug.attacks.base import (
    Attack,
    EpsLike,
    check_nonneg,
    check_steps,
    fixed_cudnn_algorithms,
    input_grad,
    per_sample,
    project,
    uniform_like,
)


class PGD(Attack):
    """L∞ PGD: ``steps`` signed-gradient steps of size ``alpha``, each projected to the ε-ball.

    With ``restarts`` > 1, each restart attacks only the samples not yet fooled, and every sample
    keeps the first adversarial example that succeeds (misclassified, or classified as the target
    when ``targeted``), else the one with the highest loss (lowest target loss when targeted).
    """

    def __init__(
        self,
        model: nn.Module,
        eps: EpsLike = 8 / 255,
        alpha: EpsLike = 2 / 255,
        steps: int = 10,
        random_start: bool = True,
        restarts: int = 1,
        *,
        targeted: bool = False,
        rng: torch.Generator | None = None,
    ) -> None:
        super().__init__(model, targeted=targeted, rng=rng)
        check_nonneg(eps, "eps")
        check_nonneg(alpha, "alpha")
        check_steps(steps)
        check_steps(restarts, "restarts")
        self.eps = eps
        self.alpha = alpha
        self.steps = steps
        self.random_start = bool(random_start)
        self.restarts = restarts

    def _objective(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample (value to maximise, success flag) for final logits."""
        ce = F.cross_entropy(logits.float(), labels, reduction="none")
        pred = logits.argmax(dim=1)
        if self.targeted:
            return -ce, pred == labels
        return ce, pred != labels

    def _run(self, images: Tensor, labels: Tensor, eps: Tensor, alpha: Tensor) -> Tensor:
        """One PGD run from a (random) start."""
        adv = images
        if self.random_start:
            adv = torch.clamp(images + eps * uniform_like(images, self.rng), 0.0, 1.0)
        sign = -1.0 if self.targeted else 1.0
        for _ in range(self.steps):
            grad, _ = input_grad(self.model, adv, labels, self.validate)
            adv = project(adv + sign * alpha * grad.sign(), images, eps)
        return adv

    def perturb(self, images: Tensor, labels: Tensor | None) -> Tensor:
        """Restarts on the not-yet-fooled samples; per sample the best example found."""
        assert labels is not None
        eps = per_sample(self.eps, images)
        alpha = per_sample(self.alpha, images, "alpha")
        n = images.shape[0]
        best = images.clone()
        best_value = torch.full((n,), -float("inf"), device=images.device)
        fooled = torch.zeros(n, dtype=torch.bool, device=images.device)
        with fixed_cudnn_algorithms() if self.restarts > 1 else contextlib.nullcontext():
            return self._restarts(images, labels, eps, alpha, best, best_value, fooled)

    def _restarts(self, images, labels, eps, alpha, best, best_value, fooled) -> Tensor:
        """Each restart attacks the samples not fooled yet (a smaller batch each time)."""
        for _ in range(self.restarts):
            idx = (~fooled).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            adv = self._run(images[idx], labels[idx], eps[idx], alpha[idx])
            with torch.no_grad():
                value, success = self._objective(self.model(adv), labels[idx])
            better = success | (value > best_value[idx])
            keep = idx[better]
            best[keep] = adv[better]
            best_value[keep] = value[better]
            fooled[keep] = success[better]
        return best

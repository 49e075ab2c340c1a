"""The augmentation interface and the seed's mixed loss.

A technique T turns (part of) a real batch into extra training examples::

    aug = technique(model, x_src, y_src, step)   # -> (x_aug, y_aug), images in [0, 1]

and the training step combines them with the clean part as in the seed:

    L = (n_c · mean CE(f(x_c), y_c) + λ · n_a · mean CE(f(x_a), y_a)) / (n_c + λ · n_a)

with n_a = ⌊prop · B⌋. In ``replace`` mode (the seed's) the first n_a examples of the batch are
handed to T and the other n_c = B − n_a stay clean; in ``append`` mode all B stay clean and T
adds n_a more. A technique may return fewer than it was asked for (a filter, a pool that is
still warming up); the formula then uses the actual n_a.

A filtering technique may return ``(x_aug, y_aug, keep)`` instead: every row stays (fixed
shapes, no host sync on a GPU) and the rows where ``keep`` is false carry no loss.

Why one interface: the training loop stays one screen long, every technique is tested the same
way, and the study can swap techniques by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Split:
    """How a batch of B is divided: the examples T transforms and the clean ones."""

    x_src: torch.Tensor
    y_src: torch.Tensor
    x_clean: torch.Tensor
    y_clean: torch.Tensor


def split_batch(x: torch.Tensor, y: torch.Tensor, prop: float, mode: str) -> Split:
    n_a = int(prop * x.shape[0])
    if mode == "replace":
        return Split(x[:n_a], y[:n_a], x[n_a:], y[n_a:])
    return Split(x[:n_a], y[:n_a], x, y)


def mixed_loss(
    loss_clean: torch.Tensor, loss_aug: torch.Tensor | None, n_c: int, n_a: int, weight: float
) -> torch.Tensor:
    """(n_c·L_c + λ·n_a·L_a) / (n_c + λ·n_a); the clean loss alone when n_a = 0."""
    if loss_aug is None or n_a == 0:
        return loss_clean
    if n_c == 0:
        return loss_aug
    return (n_c * loss_clean + weight * n_a * loss_aug) / (n_c + weight * n_a)


class Technique:
    """Base class: subclasses implement ``generate``; ``none`` returns nothing."""

    name = "none"
    needs_gan = False

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        if x.shape[0] == 0:
            return None
        return self.generate(model, x, y, step)

    def generate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def metrics(self) -> dict[str, float]:
        """Technique-specific numbers for the log (pool size, success rate, ...)."""
        return {}


def forward_mixed(
    model: nn.Module,
    x_clean: torch.Tensor,
    y_clean: torch.Tensor,
    aug: tuple[torch.Tensor, ...] | None,
    *,
    weight: float,
    bn: str,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward the clean and augmented parts (jointly, or in separate BN passes) → loss, stats.

    ``aug`` is ``(x_a, y_a)``, or ``(x_a, y_a, keep)`` from a technique that filters its
    examples: rows where the bool mask ``keep`` is false stay in the batch (a fixed shape, no
    host sync) but carry no loss, and n_a counts the kept rows.
    The stats are detached device tensors (sums and counts), so the step never waits on the GPU.
    """
    n_c = x_clean.shape[0]
    if aug is None or aug[0].shape[0] == 0:
        logits_c = model(x_clean)
        logits_a, y_a = None, None
    else:
        x_a, y_a = aug[0], aug[1]
        if bn == "joint":
            logits = model(torch.cat([x_clean, x_a.to(x_clean.dtype)]))
            logits_c, logits_a = logits[:n_c], logits[n_c:]
        else:
            logits_c = model(x_clean) if n_c else None
            logits_a = model(x_a)
    zero = x_clean.new_zeros(())
    loss_c = (
        F.cross_entropy(logits_c.float(), y_clean, label_smoothing=label_smoothing) if n_c else zero
    )
    if logits_a is not None and len(aug) == 3:
        return _masked_mixed(
            logits_c, y_clean, loss_c, logits_a, y_a, aug[2], weight, label_smoothing
        )
    n_a = 0 if logits_a is None else logits_a.shape[0]
    loss_a = (
        F.cross_entropy(logits_a.float(), y_a, label_smoothing=label_smoothing) if n_a else None
    )
    loss = mixed_loss(loss_c, loss_a, n_c, n_a, weight)
    stats = {
        "loss_sum": loss.detach() * (n_c + n_a),
        "clean_correct": (logits_c.argmax(1) == y_clean).sum() if n_c else zero,
        "clean_n": x_clean.new_full((), n_c, dtype=torch.long),
        "aug_correct": (logits_a.argmax(1) == y_a).sum() if n_a else zero,
        "aug_n": x_clean.new_full((), n_a, dtype=torch.long),
    }
    return loss, stats


def _masked_mixed(
    logits_c: torch.Tensor | None,
    y_c: torch.Tensor,
    loss_c: torch.Tensor,
    logits_a: torch.Tensor,
    y_a: torch.Tensor,
    keep: torch.Tensor,
    weight: float,
    label_smoothing: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The mixed loss with n_a = keep.sum() as a device tensor: the same formula, no sync."""
    n_c = y_c.shape[0]
    n_a = keep.sum()
    ce = F.cross_entropy(logits_a.float(), y_a, label_smoothing=label_smoothing, reduction="none")
    loss_a = (ce * keep).sum() / n_a.clamp(min=1)
    total = (n_c + weight * n_a).clamp(min=torch.finfo(ce.dtype).tiny)
    loss = (n_c * loss_c + weight * n_a * loss_a) / total
    zero = loss_c.new_zeros(())
    stats = {
        "loss_sum": loss.detach() * (n_c + n_a),
        "clean_correct": (logits_c.argmax(1) == y_c).sum() if n_c else zero,
        "clean_n": keep.new_full((), n_c, dtype=torch.long),
        "aug_correct": ((logits_a.argmax(1) == y_a) & keep).sum(),
        "aug_n": n_a.long(),
    }
    return loss, stats

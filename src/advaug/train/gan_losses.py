"""WGAN-GP + auxiliary-classifier losses of the AC-GAN (SEED-SPEC §3.5), as pure functions.

Pixel convention and the gradient penalty. Images here are in [0, 1]; the seed's were in
[-1, 1]. The critic maps its input u = 2x - 1 inside, so for any image x in [0, 1]

    ∇_x D = 2 · ∇_u D.

The seed penalised (‖∇_u D‖₂ - 1)² with λ = 10 in [-1, 1] space. To keep exactly that penalty
(the same λ and the same unit target norm, hence the same trained critic), ``gradient_penalty``
computes the [0, 1]-space gradient with autograd and divides it by 2 before taking the norm:

    GP = mean_b (‖∇_x D(x̂_b)‖₂ / 2 - 1)²,   the norm over all C·H·W values of sample b.

The interpolates x̂ = x + α (x̃ - x) are the same points in either space, because the map between
the two spaces is affine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "GRAD_SCALE_01_TO_PM1",
    "critic_loss",
    "dequantize",
    "generator_loss",
    "gradient_penalty",
]

GRAD_SCALE_01_TO_PM1 = 0.5
"""∇_u D = 0.5 · ∇_x D for u = 2x - 1: converts a [0, 1]-space gradient to [-1, 1] space."""


def _rand_like(x: Tensor, shape: tuple[int, ...], rng: torch.Generator | None) -> Tensor:
    """U(0, 1) of ``shape`` drawn on the rng's device (or x's), returned on x's device/dtype."""
    device = rng.device if rng is not None else x.device
    return torch.rand(shape, generator=rng, device=device).to(device=x.device, dtype=x.dtype)


def _interpolates(
    real: Tensor, fake: Tensor, per_pixel_alpha: bool, rng: torch.Generator | None
) -> Tensor:
    """x̂ = x + α (x̃ - x) as a leaf that requires grad; α per sample or per pixel."""
    real = real.detach()
    fake = fake.detach().to(real.dtype)
    shape = tuple(real.shape) if per_pixel_alpha else (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = _rand_like(real, shape, rng)
    return (real + alpha * (fake - real)).requires_grad_(True)


def _penalty(score: Tensor, interpolates: Tensor) -> Tensor:
    """mean_b (‖∇_x D‖₂ / 2 - 1)²: the seed's penalty on the [-1, 1]-space gradient."""
    (grad,) = torch.autograd.grad(score.sum(), interpolates, create_graph=True)
    grad = grad.to(torch.promote_types(grad.dtype, torch.float32)).flatten(1)
    grad = grad * GRAD_SCALE_01_TO_PM1
    norm = grad.square().sum(dim=1).add(1e-12).sqrt()  # eps keeps the double-backward finite at 0
    return (norm - 1.0).square().mean()


def gradient_penalty(
    critic: nn.Module,
    real: Tensor,
    fake: Tensor,
    *,
    per_pixel_alpha: bool = False,
    rng: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """WGAN-GP penalty on random interpolates, in [-1, 1]-space units (see the module docstring).

    α ~ U(0, 1) per sample ([B, 1, 1, 1], the seed) or per pixel (same shape as the images,
    Song et al.), drawn from ``rng`` on its device. The graph is kept (``create_graph=True``)
    so the penalty trains the critic. The penalty is computed in float32 even under autocast.
    Returns (GP scalar, interpolates x̂).
    """
    interpolates = _interpolates(real, fake, per_pixel_alpha, rng)
    # The penalty is a difference of a gradient norm from 1, and its double backward multiplies
    # small second derivatives: bf16 (8 bits of mantissa) rounds them away. So the critic's
    # forward on the interpolates, the gradient and its double backward run in float32 (float64
    # stays) even when the caller is inside a bf16 autocast region. A critic whose weights are
    # themselves bf16 runs in bf16 (its weights cannot take float32 inputs); the norm is still
    # taken in float32 (``_penalty``).
    weight = next(critic.parameters(), None)
    dtype = torch.promote_types(
        interpolates.dtype, torch.float32 if weight is None else weight.dtype
    )
    with torch.autocast(interpolates.device.type, enabled=False):
        x_hat = interpolates.to(dtype).detach().requires_grad_(True)
        score, _ = critic(x_hat)
        return _penalty(score, x_hat), x_hat


def critic_loss(
    critic: nn.Module,
    real: Tensor,
    y: Tensor,
    fake: Tensor,
    *,
    gp_weight: float = 10.0,
    ac_scale: float = 1.0,
    ac_on_fake: bool = False,
    fake_y: Tensor | None = None,
    per_pixel_alpha: bool = False,
    rng: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """L_D = mean D(x̃) - mean D(x) + λ·GP + s·CE(C(x), y) [+ s·CE(C(x̃), ỹ) if ``ac_on_fake``].

    Real and fake go through D in one concatenated call (D has no batch norm, so batching does
    not change any output); the GP makes a second call on the interpolates only. Putting the
    interpolates into the first call too would run the GP's backward and double backward over
    all 3B rows (about 3x the GP's cost), so that is not done.

    ``fake`` is detached; ``fake_y`` defaults to ``y`` (the seed makes its fakes with the real
    batch's labels). Parts, all detached tensors: ``wasserstein`` = mean D(x) - mean D(x̃) (the
    estimate, which grows as D separates the two), ``gp``, ``ac_real``, ``ac_fake`` (always
    computed, added to the loss only with ``ac_on_fake``), ``ac_acc_real``, ``ac_acc_fake`` and
    ``total``.
    """
    fake = fake.detach().to(real.dtype)
    if fake_y is None:
        fake_y = y
    b = real.shape[0]
    scores, logits = critic(torch.cat([real, fake]))
    acc_dtype = torch.promote_types(scores.dtype, torch.float32)  # bf16 -> fp32, fp64 stays
    scores, logits = scores.to(acc_dtype), logits.to(acc_dtype)
    s_real, s_fake = scores[:b], scores[b:]
    l_real, l_fake = logits[:b], logits[b:]
    wasserstein = s_real.mean() - s_fake.mean()
    ac_real = F.cross_entropy(l_real, y)
    ac_fake = F.cross_entropy(l_fake, fake_y)
    loss = -wasserstein + ac_scale * ac_real
    if ac_on_fake:
        loss = loss + ac_scale * ac_fake
    if gp_weight != 0.0:
        gp, _ = gradient_penalty(critic, real, fake, per_pixel_alpha=per_pixel_alpha, rng=rng)
        loss = loss + gp_weight * gp
    else:
        gp = torch.zeros((), device=real.device)
    with torch.no_grad():
        parts = {
            "wasserstein": wasserstein.detach(),
            "gp": gp.detach(),
            "ac_real": ac_real.detach(),
            "ac_fake": ac_fake.detach(),
            "ac_acc_real": (l_real.argmax(1) == y).float().mean(),
            "ac_acc_fake": (l_fake.argmax(1) == fake_y).float().mean(),
            "total": loss.detach(),
        }
    return loss, parts


def generator_loss(
    critic: nn.Module,
    fake: Tensor,
    fake_y: Tensor,
    *,
    ac_scale: float = 0.1,
    critic_eval: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """L_G = -mean D(G(z, y')) + s·CE(C(G(z, y')), y'); s = 0.1 in the seed, 1.0 in Song et al.

    With ``critic_eval`` (the seed's behaviour) D runs in eval mode for this call, so the AC
    dropout is off; D's mode is restored before returning. Gradients flow into D's parameters
    too unless the caller has turned their ``requires_grad`` off. Parts: ``adv`` (-mean D),
    ``ac``, ``ac_acc`` and ``total``, detached.
    """
    was_training = critic.training
    if critic_eval:
        critic.eval()
    try:
        scores, logits = critic(fake)
    finally:
        critic.train(was_training)
    adv = -scores.float().mean()
    ac = F.cross_entropy(logits.float(), fake_y)
    loss = adv + ac_scale * ac
    with torch.no_grad():
        parts = {
            "adv": adv.detach(),
            "ac": ac.detach(),
            "ac_acc": (logits.argmax(1) == fake_y).float().mean(),
            "total": loss.detach(),
        }
    return loss, parts


def dequantize(x: Tensor, rng: torch.Generator | None = None, width: float = 1.0 / 256) -> Tensor:
    """x + U(0, width) noise, clamped to [0, 1] (the seed's U(0, 1/128) in [-1, 1] units)."""
    return (x + _rand_like(x, tuple(x.shape), rng) * width).clamp_(0.0, 1.0)

"""WGAN-GP and AC losses against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advaug.models.gan import Critic
from advaug.train.gan_losses import critic_loss, dequantize, generator_loss, gradient_penalty

SHAPE = (3, 4, 4)


class LinearCritic(nn.Module):
    """D(x) = w · (2x - 1) + b: linear in [-1, 1] space, so ∇_u D = w exactly."""

    def __init__(self, w: torch.Tensor, num_classes: int = 3) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.head = nn.Linear(w.numel(), num_classes)
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        u = 2 * x - 1
        return (u * self.w).flatten(1).sum(1) + 0.3, self.head(u.flatten(1))


class QuadraticCritic(nn.Module):
    """D(x) = Σ c·u², u = 2x - 1, so ∇_u D = 2·c·u."""

    def __init__(self, c: torch.Tensor) -> None:
        super().__init__()
        self.c = nn.Parameter(c.clone())

    def forward(self, x):
        u = 2 * x - 1
        return (self.c * u.square()).flatten(1).sum(1), torch.zeros(x.shape[0], 2)


@settings(max_examples=20, deadline=None)
@given(norm=st.floats(0.05, 5.0), seed=st.integers(0, 1000), per_pixel=st.booleans())
def test_gp_of_linear_critic_is_norm_of_pm1_weights(norm, seed, per_pixel):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    w = w / w.norm() * norm
    critic = LinearCritic(w).double()
    real = torch.rand(4, *SHAPE, generator=g, dtype=torch.float64)
    fake = torch.rand(4, *SHAPE, generator=g, dtype=torch.float64)
    gp, _ = gradient_penalty(critic, real, fake, per_pixel_alpha=per_pixel, rng=g)
    # the [-1, 1]-space gradient is w (norm `norm`); the [0, 1]-space gradient would be 2w
    assert float(gp.detach()) == pytest.approx((norm - 1) ** 2, abs=1e-9)


def test_gp_trains_the_critic_with_the_analytic_gradient():
    w = torch.randn(SHAPE, dtype=torch.float64) * 0.7
    critic = LinearCritic(w).double()
    real, fake = torch.rand(2, *SHAPE, dtype=torch.float64), torch.rand(2, *SHAPE).double()
    gp, _ = gradient_penalty(critic, real, fake)
    gp.backward()
    n = w.norm()
    torch.testing.assert_close(critic.w.grad, 2 * (n - 1) * w / n)


def test_gp_of_quadratic_critic_and_interpolates_on_segments():
    g = torch.Generator().manual_seed(0)
    c = torch.rand(SHAPE, generator=g, dtype=torch.float64)
    critic = QuadraticCritic(c)
    real = torch.rand(5, *SHAPE, generator=g, dtype=torch.float64)
    fake = torch.rand(5, *SHAPE, generator=g, dtype=torch.float64)
    gp, xh = gradient_penalty(critic, real, fake, rng=torch.Generator().manual_seed(1))
    alpha = (xh.detach() - real) / (fake - real)
    # one α per sample, in [0, 1], and exactly the draw of the rng
    expect_alpha = torch.rand(5, 1, 1, 1, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(alpha, expect_alpha.double().expand_as(alpha))
    grad_u = 2 * c * (2 * xh.detach() - 1)
    expect = (grad_u.flatten(1).norm(dim=1) - 1).square().mean()
    torch.testing.assert_close(gp.detach(), expect)


def test_per_pixel_alpha_varies_within_a_sample():
    real, fake = torch.zeros(3, *SHAPE), torch.ones(3, *SHAPE)
    _, xh = gradient_penalty(QuadraticCritic(torch.ones(SHAPE)), real, fake, per_pixel_alpha=True)
    alpha = xh.detach()  # fake - real = 1, so x̂ = α
    assert float(alpha.min()) >= 0 and float(alpha.max()) <= 1
    assert all(float(a.std()) > 0.1 for a in alpha)


def _critic_in_pm1_space(d: Critic, u: torch.Tensor) -> torch.Tensor:
    """The critic's score as a function of u = 2x - 1 (its layers without the input mapping)."""
    return d.critic_head(F.relu(d.blocks(u)).mean(dim=(2, 3))).squeeze(1)


def test_gp_of_real_critic_matches_gradient_in_pm1_space():
    torch.manual_seed(0)
    d = Critic(width=4, num_classes=3).double()
    real, fake = torch.rand(3, 3, 32, 32).double(), torch.rand(3, 3, 32, 32).double()
    gp, xh = gradient_penalty(d, real, fake)
    u = (2 * xh.detach() - 1).requires_grad_(True)
    (g,) = torch.autograd.grad(_critic_in_pm1_space(d, u).sum(), u)
    expect = (g.flatten(1).norm(dim=1) - 1).square().mean()
    torch.testing.assert_close(gp.detach(), expect)


def _ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy by hand: mean of log Σ exp(l) - l_y."""
    return (logits.exp().sum(1).log() - logits[torch.arange(len(y)), y]).mean()


@pytest.mark.parametrize("ac_on_fake", [False, True])
def test_critic_loss_terms_by_hand(ac_on_fake):
    torch.manual_seed(0)
    critic = LinearCritic(torch.randn(SHAPE)).double()
    real, fake = torch.rand(4, *SHAPE).double(), torch.rand(4, *SHAPE).double()
    y, fy = torch.tensor([0, 1, 2, 1]), torch.tensor([0, 2, 0, 1])
    loss, parts = critic_loss(
        critic, real, y, fake, gp_weight=0.0, ac_scale=0.7, ac_on_fake=ac_on_fake, fake_y=fy
    )
    assert critic.calls == [8]  # real and fake in one concatenated call, no GP call
    with torch.no_grad():
        s_r, l_r = critic(real)
        s_f, l_f = critic(fake)
    ce_r, ce_f = _ce(l_r, y), _ce(l_f, fy)
    expect = s_f.mean() - s_r.mean() + 0.7 * ce_r + (0.7 * ce_f if ac_on_fake else 0.0)
    torch.testing.assert_close(loss.detach(), expect)
    torch.testing.assert_close(parts["wasserstein"], s_r.mean() - s_f.mean())
    torch.testing.assert_close(parts["ac_real"], ce_r)
    torch.testing.assert_close(parts["ac_fake"], ce_f)
    acc = (l_r.argmax(1) == y).float().mean()
    torch.testing.assert_close(parts["ac_acc_real"], acc)
    acc_fake = (l_f.argmax(1) == fy).float().mean()
    assert float(acc_fake) == 0.75  # three of four: a wrong argmax or comparison shows
    torch.testing.assert_close(parts["ac_acc_fake"], acc_fake)
    assert set(parts) >= {"wasserstein", "gp", "ac_real", "ac_fake", "total", "ac_acc_real"}
    assert all(not p.requires_grad for p in parts.values())


def test_critic_loss_adds_weighted_gp_and_detaches_fake():
    torch.manual_seed(0)
    w = torch.randn(SHAPE)
    w = w / w.norm() * 3.0  # GP = (3 - 1)² = 4 for any interpolates
    critic = LinearCritic(w)
    real = torch.rand(4, *SHAPE)
    fake = torch.rand(4, *SHAPE, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0])
    loss0, _ = critic_loss(critic, real, y, fake, gp_weight=0.0)
    loss, parts = critic_loss(critic, real, y, fake, gp_weight=10.0)
    assert float(parts["gp"]) == pytest.approx(4.0, rel=1e-5)
    assert float((loss - loss0).detach()) == pytest.approx(40.0, rel=1e-5)
    loss.backward()
    assert fake.grad is None  # the critic step never reaches the generator


def test_critic_loss_calls_real_and_fake_together_then_gp():
    torch.manual_seed(0)
    d = Critic(width=4, num_classes=3).double()
    calls: list[int] = []
    d.register_forward_pre_hook(lambda m, inp: calls.append(inp[0].shape[0]))
    real, fake = torch.rand(3, 3, 32, 32).double(), torch.rand(3, 3, 32, 32).double()
    y = torch.tensor([0, 1, 2])
    loss, parts = critic_loss(d, real, y, fake, rng=torch.Generator().manual_seed(7))
    assert calls == [6, 3]  # real + fake concatenated, then the interpolates
    gp, _ = gradient_penalty(d, real, fake, rng=torch.Generator().manual_seed(7))
    torch.testing.assert_close(parts["gp"], gp.detach())
    with torch.no_grad():
        s_r, l_r = d(real)
        s_f, _ = d(fake)
    expect = s_f.mean() - s_r.mean() + 10 * gp.detach() + F.cross_entropy(l_r, y)
    torch.testing.assert_close(loss.detach(), expect)


def test_critic_separates_real_from_fake_over_adam_steps():
    torch.manual_seed(0)
    d = Critic(width=8, num_classes=2)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.0, 0.9))
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 1] * 4)
    history = []
    for _ in range(30):
        real = (0.7 + 0.1 * torch.randn(8, 3, 32, 32, generator=g)).clamp(0, 1)
        fake = (0.3 + 0.1 * torch.randn(8, 3, 32, 32, generator=g)).clamp(0, 1)
        loss, parts = critic_loss(d, real, y, fake, rng=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(parts["wasserstein"]))
    # the Wasserstein estimate mean D(x) - mean D(x̃) grows as D separates the two sets
    assert sum(history[-5:]) / 5 > history[0] + 10.0


def test_generator_loss_sign_and_ac_term():
    torch.manual_seed(0)
    critic = LinearCritic(torch.ones(SHAPE) / math.sqrt(48))
    fake = torch.rand(4, *SHAPE, requires_grad=True)
    fy = torch.tensor([0, 1, 2, 2])
    loss, parts = generator_loss(critic, fake, fy, ac_scale=0.0)
    with torch.no_grad():
        s, lg = critic(fake)
    torch.testing.assert_close(loss.detach(), -s.mean())
    loss.backward()
    # -mean D: raising any fake pixel raises D (w > 0), so the loss gradient must be negative
    assert float(fake.grad.max()) < 0
    loss2, parts2 = generator_loss(critic, fake, fy, ac_scale=0.1)
    torch.testing.assert_close(loss2.detach(), -s.mean() + 0.1 * _ce(lg, fy))
    torch.testing.assert_close(parts2["ac"], _ce(lg, fy))


def test_generator_loss_runs_critic_in_eval_and_restores_mode():
    torch.manual_seed(0)
    d = Critic(width=4, num_classes=3, ac_dropout=0.9).train()
    fake, fy = torch.rand(6, 3, 32, 32), torch.tensor([0, 1, 2] * 2)
    a = generator_loss(d, fake, fy, ac_scale=1.0)[1]["ac"]
    b = generator_loss(d, fake, fy, ac_scale=1.0)[1]["ac"]
    torch.testing.assert_close(a, b)  # no dropout
    assert d.training
    torch.manual_seed(1)
    c = generator_loss(d, fake, fy, ac_scale=1.0, critic_eval=False)[1]["ac"]
    assert abs(float(c - a)) > 1e-6


def test_dequantize_range_and_noise_width():
    x = torch.tensor([0.0, 0.5, 1.0]).repeat(20000)
    out = dequantize(x, rng=torch.Generator().manual_seed(0))
    noise = out - x
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    mid = noise[1::3]
    assert float(mid.min()) >= 0.0 and float(mid.max()) < 1 / 256
    assert float(mid.mean()) == pytest.approx(1 / 512, rel=0.05)
    assert torch.all(out[2::3] == 1.0)  # clamped at the top
    again = dequantize(x, rng=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, again)


class DtypeCritic(nn.Module):
    """A linear critic that records the dtype of its score (bf16 under a bf16 autocast)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(math.prod(SHAPE), 4)
        self.dtypes: list[torch.dtype] = []

    def forward(self, x):
        out = self.lin(x.flatten(1))
        self.dtypes.append(out.dtype)
        return (out[:, 0] * out[:, 1]), out[:, 1:]


def test_gradient_penalty_runs_in_float32_inside_bf16_autocast():
    torch.manual_seed(0)
    critic = DtypeCritic()
    real, fake = torch.rand(4, *SHAPE), torch.rand(4, *SHAPE)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert critic(real)[0].dtype == torch.bfloat16  # the context does cast this critic
        critic.dtypes.clear()
        gp, x_hat = gradient_penalty(critic, real, fake, rng=torch.Generator().manual_seed(1))
    assert critic.dtypes == [torch.float32] and x_hat.dtype == torch.float32
    assert gp.dtype == torch.float32
    gp.backward()  # the double backward, also in float32
    assert critic.lin.weight.grad is not None and critic.lin.weight.grad.dtype == torch.float32
    # the same penalty as outside any autocast context
    ref, _ = gradient_penalty(critic, real, fake, rng=torch.Generator().manual_seed(1))
    assert gp.item() == pytest.approx(ref.item(), rel=1e-6)


def test_generator_loss_parts_and_the_seeds_default_scale():
    """The default AC weight is the seed's 0.1; the parts are exactly adv, ac, ac_acc, total."""
    torch.manual_seed(0)
    critic = LinearCritic(torch.randn(SHAPE))
    fake = torch.rand(6, *SHAPE)
    with torch.no_grad():
        s, lg = critic(fake)
    fy = lg.argmax(1)
    fy[:2] = (fy[:2] + 1) % 3  # 4 hits and 2 misses, so a wrong comparison shows
    acc = (lg.argmax(1) == fy).float().mean()
    loss, parts = generator_loss(critic, fake, fy)
    torch.testing.assert_close(loss.detach(), -s.mean() + 0.1 * _ce(lg, fy))
    assert set(parts) == {"adv", "ac", "ac_acc", "total"}
    torch.testing.assert_close(parts["adv"], -s.mean())
    torch.testing.assert_close(parts["ac_acc"], acc)
    torch.testing.assert_close(parts["total"], loss.detach())


def test_critic_loss_accumulates_a_bf16_critic_in_float32():
    """bf16 scores and logits are promoted before the means and the CE (bf16 -> fp32)."""
    torch.manual_seed(0)
    critic = LinearCritic(torch.randn(SHAPE)).to(torch.bfloat16)
    real, fake = torch.rand(4, *SHAPE).bfloat16(), torch.rand(4, *SHAPE).bfloat16()
    loss, parts = critic_loss(critic, real, torch.tensor([0, 1, 2, 1]), fake, gp_weight=0.0)
    assert loss.dtype == torch.float32
    for name in ("wasserstein", "ac_real", "ac_fake", "total"):
        assert parts[name].dtype == torch.float32, name


def test_critic_loss_passes_per_pixel_alpha_to_the_gp_and_reports_every_part():
    torch.manual_seed(0)
    critic = QuadraticCritic(torch.randn(SHAPE))
    real, fake = torch.rand(4, *SHAPE), torch.rand(4, *SHAPE)
    y, fy = torch.tensor([0, 1, 0, 1]), torch.tensor([1, 1, 0, 0])
    gps = {}
    for per_pixel in (False, True):
        _, parts = critic_loss(critic, real, y, fake, fake_y=fy, per_pixel_alpha=per_pixel,
                               rng=torch.Generator().manual_seed(7))  # fmt: skip
        gp, _ = gradient_penalty(critic, real, fake, per_pixel_alpha=per_pixel,
                                 rng=torch.Generator().manual_seed(7))  # fmt: skip
        torch.testing.assert_close(parts["gp"], gp.detach())
        gps[per_pixel] = parts["gp"]
    assert not torch.allclose(gps[False], gps[True])
    assert set(parts) == {"wasserstein", "gp", "ac_real", "ac_fake", "ac_acc_real",
                          "ac_acc_fake", "total"}  # fmt: skip
    # QuadraticCritic's logits are all zero: argmax is class 0 everywhere
    torch.testing.assert_close(parts["ac_acc_fake"], (fy == 0).float().mean())


def test_bf16_gp_and_dequantize_keep_their_dtypes():
    """The GP's norm is taken in float32 for a bf16 critic; dequantized bf16 images stay bf16
    (the noise is drawn in float32 and cast to the images' dtype)."""
    torch.manual_seed(0)
    critic = LinearCritic(torch.randn(SHAPE)).to(torch.bfloat16)
    real, fake = torch.rand(4, *SHAPE).bfloat16(), torch.rand(4, *SHAPE).bfloat16()
    gp, x_hat = gradient_penalty(critic, real, fake, rng=torch.Generator().manual_seed(0))
    assert gp.dtype == torch.float32 and x_hat.dtype == torch.bfloat16
    out = dequantize(real, rng=torch.Generator().manual_seed(0))
    assert out.dtype == torch.bfloat16


def test_losses_allocate_on_the_inputs_device():
    """With another default device (meta, standing in for a GPU run's mismatch), the noise, the
    GP and the zero GP are still made on the inputs' device, with the same values."""
    torch.manual_seed(0)
    critic = LinearCritic(torch.randn(SHAPE))
    real, fake, y = torch.rand(4, *SHAPE), torch.rand(4, *SHAPE), torch.tensor([0, 1, 2, 1])

    def run(rng):
        gp, _ = gradient_penalty(critic, real, fake, rng=torch.Generator().manual_seed(rng))
        _, parts = critic_loss(critic, real, y, fake, gp_weight=0.0)
        return gp, parts["gp"], dequantize(real, rng=torch.Generator().manual_seed(rng))

    expect = run(3)
    with torch.device("meta"):
        got = run(3)
    for a, b in zip(got, expect, strict=True):
        assert a.device.type == "cpu"
        torch.testing.assert_close(a, b)


def test_fakes_of_another_dtype_are_cast_to_the_reals():
    """A generator in float64 next to a float32 critic: the fakes join in the reals' dtype."""
    torch.manual_seed(0)
    critic = LinearCritic(torch.randn(SHAPE))
    real, fake = torch.rand(4, *SHAPE), torch.rand(4, *SHAPE).double()
    gp, x_hat = gradient_penalty(critic, real, fake, rng=torch.Generator().manual_seed(0))
    assert x_hat.dtype == torch.float32 and gp.dtype == torch.float32
    loss, _ = critic_loss(critic, real, torch.tensor([0, 1, 2, 1]), fake)
    ref, _ = critic_loss(critic, real, torch.tensor([0, 1, 2, 1]), fake.float())
    torch.testing.assert_close(loss, ref)


class FixedCritic(nn.Module):
    """A critic without parameters: score = Σ w·x² with a fixed buffer w (float32)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("w", torch.linspace(-1.0, 1.0, math.prod(SHAPE)))
        self.dtypes: list[torch.dtype] = []

    def forward(self, x):
        self.dtypes.append(x.dtype)
        return (self.w * x.flatten(1).float().square()).sum(1), torch.zeros(x.shape[0], 2)


def test_gp_of_a_critic_without_parameters_runs_in_float32():
    """No weight to follow: the interpolates go in as float32 (bf16 images are promoted)."""
    critic = FixedCritic()
    real, fake = torch.rand(4, *SHAPE), torch.rand(4, *SHAPE)
    gp, x_hat = gradient_penalty(critic, real.bfloat16(), fake.bfloat16())
    assert critic.dtypes == [torch.float32] and x_hat.dtype == torch.float32
    assert torch.isfinite(gp) and gp.dtype == torch.float32


def test_gp_promotes_bf16_images_to_a_float32_critics_weights():
    """Outside autocast, bf16 images meet a float32 critic: its forward takes float32 inputs."""
    critic = DtypeCritic()
    real, fake = torch.rand(4, *SHAPE).bfloat16(), torch.rand(4, *SHAPE).bfloat16()
    gp, x_hat = gradient_penalty(critic, real, fake, rng=torch.Generator().manual_seed(1))
    assert critic.dtypes == [torch.float32] and x_hat.dtype == torch.float32
    gp.backward()
    assert critic.lin.weight.grad.dtype == torch.float32

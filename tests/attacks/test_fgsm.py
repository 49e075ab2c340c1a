"""FGSM, step-ll and fast FGSM against hand computations and a trained toy model."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from advaug.attacks import FFGSM, FGSM, StepLL

from .toys import accuracy

EPS = 8 / 255


class Linear(nn.Module):
    """f(x) = W·vec(x) + b, whose input gradient is known in closed form."""

    def __init__(self, d: int = 12, k: int = 3, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(k, d, generator=g))
        self.b = nn.Parameter(torch.randn(k, generator=g))

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.w.T + self.b


def ce_grad(model: Linear, x: Tensor, y: Tensor) -> Tensor:
    """∇_x CE(Wx + b, y) = Wᵀ(softmax − onehot(y)), by hand."""
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)
        p[torch.arange(len(y)), y] -= 1
        return (p @ model.w).view_as(x)


def images(n: int = 6, seed: int = 0) -> Tensor:
    return torch.rand(n, 3, 2, 2, generator=torch.Generator().manual_seed(seed))


def test_fgsm_matches_hand_computation() -> None:
    model, x = Linear(), images()
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    expected = (x + 0.1 * ce_grad(model, x, y).sign()).clamp(0, 1)
    assert torch.allclose(FGSM(model, eps=0.1)(x, y), expected)
    targeted = (x - 0.1 * ce_grad(model, x, y).sign()).clamp(0, 1)
    assert torch.allclose(FGSM(model, eps=0.1, targeted=True)(x, y), targeted)


def test_step_ll_matches_hand_computation_and_moves_toward_least_likely() -> None:
    model, x = Linear(), images()
    with torch.no_grad():
        ll = model(x).argmin(1)
    expected = (x - 0.05 * ce_grad(model, x, ll).sign()).clamp(0, 1)
    adv = StepLL(model, eps=0.05)(x)
    assert torch.allclose(adv, expected)
    with torch.no_grad():
        before = torch.log_softmax(model(x), 1).gather(1, ll[:, None])
        after = torch.log_softmax(model(adv), 1).gather(1, ll[:, None])
    assert (after > before).all()
    # labels are accepted and ignored
    assert torch.equal(StepLL(model, eps=0.05)(x, torch.zeros(6, dtype=torch.long)), adv)


def test_per_sample_eps() -> None:
    model, x = Linear(), images(seed=1) * 0.5 + 0.25  # inside [0.25, 0.75]: no [0, 1] clipping
    y = torch.zeros(6, dtype=torch.long)
    eps = torch.tensor([0.0, 0.01, 0.02, 0.05, 0.1, 0.2])
    delta = (FGSM(model, eps=eps)(x, y) - x).abs().flatten(1).amax(1)
    assert torch.allclose(delta, eps, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    eps=st.floats(0.0, 0.6),
    alpha=st.one_of(st.none(), st.floats(0.0, 1.0)),
    seed=st.integers(0, 10_000),
)
def test_all_stay_in_ball_and_unit_range(eps: float, alpha: float | None, seed: int) -> None:
    model, x = Linear(seed=seed % 7), images(seed=seed)
    y = torch.randint(0, 3, (6,), generator=torch.Generator().manual_seed(seed))
    rng = torch.Generator().manual_seed(seed)
    for atk in (FGSM(model, eps), StepLL(model, eps), FFGSM(model, eps, alpha, rng=rng)):
        adv = atk(x, y)
        assert adv.shape == x.shape and adv.dtype == x.dtype
        assert adv.min() >= 0 and adv.max() <= 1
        assert (adv - x).abs().max() <= eps + 1e-6


def test_ffgsm_hand_computation_with_seeded_start() -> None:
    model, x = Linear(), images()
    y = torch.tensor([2, 1, 0, 0, 1, 2])
    eps, alpha = 0.1, 0.125
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(5)) * 2 - 1
    start = (x + eps * u).clamp(0, 1)
    expected = (start + alpha * ce_grad(model, start, y).sign()).clamp(x - eps, x + eps).clamp(0, 1)
    adv = FFGSM(model, eps=eps, rng=torch.Generator().manual_seed(5))(x, y)
    assert torch.allclose(adv, expected, atol=1e-6)
    again = FFGSM(model, eps=eps, rng=torch.Generator().manual_seed(5))(x, y)
    assert torch.equal(adv, again)


@pytest.mark.parametrize(
    "make, max_acc",
    [
        (lambda m: FGSM(m, eps=EPS), 0.75),
        (lambda m: StepLL(m, eps=EPS), 0.95),
        (lambda m: FFGSM(m, eps=EPS, rng=torch.Generator().manual_seed(0)), 0.85),
    ],
)
def test_lowers_accuracy_of_trained_model(trained, test_batch, make, max_acc) -> None:
    x, y = test_batch
    assert accuracy(trained, x, y) > 0.97
    adv = make(trained)(x, y)
    assert accuracy(trained, adv, y) < max_acc
    assert (adv - x).abs().max() <= EPS + 1e-6
    assert trained.training


def test_targeted_fgsm_raises_target_probability(trained, test_batch) -> None:
    x, y = test_batch
    target = (y + 1) % 4
    adv = FGSM(trained, eps=EPS, targeted=True)(x, target)
    trained.eval()
    with torch.no_grad():
        before = torch.log_softmax(trained(x), 1).gather(1, target[:, None])
        after = torch.log_softmax(trained(adv), 1).gather(1, target[:, None])
    trained.train()
    assert (after > before).float().mean() > 0.95

"""FGSM, step-ll and fast FGSM against hand computations and a trained toy model."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from advaug.attacks import FFGSM, FGSM, AttackInputError, StepLL
from advaug.errors import NumericalError

from .toys import NaNModel, accuracy

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


def ball(adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Projection to the ε-ball around ``x`` and to [0, 1], by hand."""
    return adv.clamp(x - eps, x + eps).clamp(0, 1)


def seeded_start(x: Tensor, eps: float, seed: int = 5) -> Tensor:
    """FFGSM's random start for ``rng = Generator().manual_seed(seed)``, clipped to [0, 1]."""
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return (x + eps * u).clamp(0, 1)


def test_defaults_are_the_usual_cifar_budget() -> None:
    """ε = 8/255 for all three; FFGSM's alpha defaults to 1.25·ε; step-ll is targeted (at y_LL)."""
    model = Linear()
    fgsm, ll, fast = FGSM(model), StepLL(model), FFGSM(model)
    assert fgsm.eps == ll.eps == fast.eps == 8 / 255
    assert (fgsm.targeted, ll.targeted, fast.targeted, fast.alpha) == (False, True, False, None)


@pytest.mark.parametrize(
    "make, name",
    [(lambda m: FGSM(m, eps=-0.1), "eps"), (lambda m: StepLL(m, eps=-0.1), "eps"),
     (lambda m: FFGSM(m, eps=-0.1), "eps"), (lambda m: FFGSM(m, alpha=-0.1), "alpha"),
     (lambda m: FFGSM(m, alpha=float("nan")), "alpha")],
)  # fmt: skip
def test_bad_settings_name_the_argument(make, name) -> None:
    with pytest.raises(AttackInputError, match=f"^{name} must be finite and >= 0"):
        make(Linear())


def test_bad_alpha_shape_names_alpha() -> None:
    y = torch.zeros(6, dtype=torch.long)
    with pytest.raises(
        AttackInputError, match=r"^alpha must be a float or a tensor of shape \[6\]"
    ):
        FFGSM(Linear(), eps=0.1, alpha=torch.ones(3))(images(), y)


@pytest.mark.parametrize("targeted", [False, True])
def test_ffgsm_custom_alpha_follows_the_hand_computation(targeted: bool) -> None:
    """A per-sample alpha below ε (so the projection does not hide it), up or down the gradient."""
    model, x = Linear(), images()
    y = torch.tensor([2, 1, 0, 0, 1, 2])
    eps, alpha = 0.1, torch.tensor([0.01, 0.02, 0.03, 0.04, 0.05, 0.0])
    start = seeded_start(x, eps)
    sign = -1.0 if targeted else 1.0
    step = sign * alpha.view(-1, 1, 1, 1) * ce_grad(model, start, y).sign()
    rng = torch.Generator().manual_seed(5)
    adv = FFGSM(model, eps=eps, alpha=alpha, targeted=targeted, rng=rng)(x, y)
    assert torch.allclose(adv, ball(start + step, x, eps), atol=1e-6)


def test_ffgsm_random_start_is_clipped_to_the_image_range() -> None:
    """Saturated images: the start is clipped to [0, 1] before the gradient and the step."""
    model, x = Linear(), images().round()
    y = torch.tensor([2, 1, 0, 0, 1, 2])
    eps, alpha = 0.2, 0.05
    start = seeded_start(x, eps)
    expected = ball(start + alpha * ce_grad(model, start, y).sign(), x, eps)
    adv = FFGSM(model, eps=eps, alpha=alpha, rng=torch.Generator().manual_seed(5))(x, y)
    assert torch.allclose(adv, expected, atol=1e-6)


def test_pixels_without_gradient_do_not_move() -> None:
    """sign(0) = 0: a pixel the model ignores takes no step (no division by the sign)."""
    model, x = Linear(), torch.full((6, 3, 2, 2), 0.5)
    with torch.no_grad():
        model.w[:, 0] = 0.0  # the model ignores pixel (0, 0, 0)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    for adv in (FGSM(model, eps=0.1)(x, y), StepLL(model, eps=0.1)(x)):
        assert torch.equal(adv[:, 0, 0, 0], x[:, 0, 0, 0])
        assert ((adv - x).abs().flatten(1)[:, 1:] > 0.09).all()  # every other pixel moved by ε
    start = seeded_start(x, 0.1)
    fast = FFGSM(model, eps=0.1, alpha=0.05, rng=torch.Generator().manual_seed(5))(x, y)
    assert torch.equal(fast[:, 0, 0, 0], start[:, 0, 0, 0])


@pytest.mark.parametrize(
    "make",
    [lambda m: FGSM(m, eps=0.1), lambda m: StepLL(m, eps=0.1),
     lambda m: FFGSM(m, eps=0.1, rng=torch.Generator().manual_seed(0))],
)  # fmt: skip
def test_a_nan_model_stops_the_attack_unless_validation_is_off(make) -> None:
    """A NaN loss would give sign(NaN) = 0 steps, i.e. clean images passed off as adversarial."""
    x, y = images(), torch.zeros(6, dtype=torch.long)
    with pytest.raises(NumericalError, match=r"^attack loss \(the model's logits\) is NaN"):
        make(NaNModel())(x, y)
    atk = make(NaNModel())
    atk.validate = False  # the training loop's setting: no host sync, so no check
    assert atk(x, y).shape == x.shape


def test_step_ll_steps_on_each_samples_own_gradient_however_small() -> None:
    """The loss is summed, not averaged over the batch: a gradient that the mean would scale
    below float32's smallest number (here ~1e-44 per pixel, 100 images) still gives a full step."""
    model, x = Linear(), images(100)
    with torch.no_grad():
        model.w.mul_(1e-44)
    adv = StepLL(model, eps=0.05)(x)
    assert ((adv - x).abs() > 0).float().mean() > 0.9  # not clipped by [0, 1]: nearly all move


# The trained toy model (a module fixture) comes last: mutmut stops at the first failing test,
# so the fast hand computations above decide most mutants before any training.
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

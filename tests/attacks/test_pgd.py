"""PGD: projection, strength against FGSM, targeted mode, and the restart bookkeeping."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from advaug.attacks import FGSM, PGD, AttackInputError
from advaug.errors import NumericalError

from .toys import NaNModel, accuracy

EPS = 8 / 255


def test_one_step_without_random_start_equals_fgsm(trained, test_batch) -> None:
    x, y = test_batch
    pgd = PGD(trained, eps=EPS, alpha=EPS, steps=1, random_start=False)(x, y)
    assert torch.allclose(pgd, FGSM(trained, eps=EPS)(x, y))


def test_stronger_than_fgsm_and_in_ball(trained, test_batch) -> None:
    x, y = test_batch
    rng = torch.Generator().manual_seed(0)
    adv = PGD(trained, eps=EPS, alpha=EPS / 4, steps=10, rng=rng)(x, y)
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() <= EPS + 1e-6
    acc_pgd = accuracy(trained, adv, y)
    acc_fgsm = accuracy(trained, FGSM(trained, eps=EPS)(x, y), y)
    assert acc_pgd <= acc_fgsm and acc_pgd < 0.6
    assert trained.training and all(p.grad is None for p in trained.parameters())


def test_restarts_never_weaker(trained, test_batch) -> None:
    x, y = test_batch
    one = PGD(trained, eps=EPS, alpha=EPS / 4, steps=5, rng=torch.Generator().manual_seed(1))
    three = PGD(
        trained, eps=EPS, alpha=EPS / 4, steps=5, restarts=3, rng=torch.Generator().manual_seed(1)
    )
    # the first restart of `three` draws the same start as `one`, later restarts only add wins
    assert accuracy(trained, three(x, y), y) <= accuracy(trained, one(x, y), y)


def test_targeted_pgd_reaches_targets(trained, test_batch) -> None:
    x, y = test_batch
    target = (y + 2) % 4
    adv = PGD(trained, eps=4 * EPS, alpha=EPS / 2, steps=20, targeted=True)(x, target)
    assert accuracy(trained, adv, target) > 0.9
    assert (adv - x).abs().max() <= 4 * EPS + 1e-6


class Fixed(nn.Module):
    """Logits read straight from pixel (0, 0, 0) and (0, 0, 1): class 0 wins iff x₀ > x₁."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x[:, 0, 0, 0], x[:, 0, 0, 1]
        return torch.stack([10 * a, 10 * b], dim=1)


def test_restart_selection_keeps_first_success_else_highest_loss(monkeypatch) -> None:
    """Candidates per restart are scripted; PGD must pick per sample by the stated rule."""
    x = torch.full((3, 1, 1, 2), 0.5)
    y = torch.zeros(3, dtype=torch.long)  # correct = class 0 = (x₀ > x₁)

    def cand(*pairs: tuple[float, float]) -> Tensor:
        return torch.tensor(pairs).view(-1, 1, 1, 2)

    # restart 1: sample 0 fooled (x₀ < x₁); samples 1, 2 not (losses: sample 1 higher margin)
    # restart 2 (only samples 1, 2): sample 1 fooled, sample 2 still not but with a higher loss
    # restarts 3, 4 (only sample 2): lower losses than before, so restart 2's candidate stays
    script = [
        cand((0.45, 0.55), (0.6, 0.4), (0.7, 0.3)),
        cand((0.3, 0.7), (0.55, 0.45)),
        cand((0.9, 0.1)),
        cand((0.8, 0.2)),
    ]
    seen: list[int] = []

    def fake_run(self, images, labels, eps, alpha):
        seen.append(images.shape[0])
        return script[len(seen) - 1]

    monkeypatch.setattr(PGD, "_run", fake_run)
    adv = PGD(Fixed(), eps=0.5, restarts=4)(x, y)
    assert seen == [3, 2, 1, 1]  # restart 4 still runs for sample 2 (never fooled)
    assert torch.equal(adv[0], cand((0.45, 0.55))[0])
    assert torch.equal(adv[1], cand((0.3, 0.7))[0])
    assert torch.equal(adv[2], cand((0.55, 0.45))[0])


def test_restarts_stop_when_all_fooled() -> None:
    calls: list[int] = []

    class Counting(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            calls.append(x.shape[0])
            return torch.stack([x.flatten(1).sum(1), -x.flatten(1).sum(1)], dim=1)

    x = torch.full((4, 1, 1, 1), 0.5)
    y = torch.ones(4, dtype=torch.long)  # class 0 wins everywhere: all fooled after restart 1
    PGD(Counting(), eps=0.1, steps=3, restarts=5)(x, y)
    assert calls == [4, 4, 4, 4]  # 3 gradient steps + 1 evaluation, and no second restart


def _reference_pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, steps: int,
                   start: Tensor | None, sign: float = 1.0) -> Tensor:  # fmt: skip
    """Madry et al.'s PGD written out: x_{t+1} = Π_{B(x, ε) ∩ [0,1]}(x_t + α·sign(∇ CE)),
    from x_0 = clip(x + start) (or x); the model in eval mode, as the attack runs it. ``sign``
    -1 descends instead (targeted: ``y`` is the target)."""
    was = model.training
    model.eval()
    adv = x.clone() if start is None else (x + start).clamp(0, 1)
    path = []
    for _ in range(steps):
        adv = adv.detach().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(adv), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + sign * alpha * grad.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
        path.append(adv)
    model.train(was)
    return path


def test_pgd_follows_the_reference_path_step_by_step(trained, test_batch) -> None:
    """Every iterate, not only the end point: a PGD that projects only after the loop, or that
    steps by alpha = eps, leaves the reference path (alpha differs from eps here)."""
    x, y = test_batch
    x, y = x[:32], y[:32]
    alpha = EPS / 3
    path = _reference_pgd(trained, x, y, EPS, alpha, steps=6, start=None)
    for k, ref in enumerate(path, start=1):
        got = PGD(trained, eps=EPS, alpha=alpha, steps=k, random_start=False)(x, y)
        assert torch.allclose(got, ref, atol=1e-6), f"step {k}"
    # alpha = EPS/3 needs three steps to reach the ball's edge: not there after one
    assert (path[0] - x).abs().max() <= alpha + 1e-6 < EPS


def test_pgd_random_start_is_the_reference_start(trained, test_batch) -> None:
    x, y = test_batch
    x, y = x[:32], y[:32]
    alpha = EPS / 4
    gen = torch.Generator().manual_seed(3)
    start = EPS * (torch.rand(x.shape, generator=gen) * 2 - 1)
    ref = _reference_pgd(trained, x, y, EPS, alpha, steps=4, start=start)[-1]
    got = PGD(trained, eps=EPS, alpha=alpha, steps=4, rng=torch.Generator().manual_seed(3))(x, y)
    assert torch.allclose(got, ref, atol=1e-6)


def test_random_start_is_clipped_to_the_image_range(trained, test_batch) -> None:
    """Saturated images (pixels at 0 and 1): the random start must be clipped to [0, 1] before
    the first gradient, else the first step is taken from a point outside the image range."""
    x, y = test_batch
    x, y = x[:32].round(), y[:32]
    gen = torch.Generator().manual_seed(5)
    start = 4 * EPS * (torch.rand(x.shape, generator=gen) * 2 - 1)
    ref = _reference_pgd(trained, x, y, 4 * EPS, EPS / 2, steps=1, start=start)[-1]
    rng = torch.Generator().manual_seed(5)
    got = PGD(trained, eps=4 * EPS, alpha=EPS / 2, steps=1, rng=rng)(x, y)
    assert torch.allclose(got, ref, atol=1e-6)


def test_targeted_pgd_follows_the_reference_descent(trained, test_batch) -> None:
    """Targeted PGD steps by -alpha (not a larger step) along the target's loss gradient."""
    x, y = test_batch
    x, target = x[:32], (y[:32] + 1) % 4
    alpha = EPS / 5
    path = _reference_pgd(trained, x, target, EPS, alpha, steps=2, start=None, sign=-1.0)
    for k, ref in enumerate(path, start=1):
        atk = PGD(trained, eps=EPS, alpha=alpha, steps=k, random_start=False, targeted=True)
        assert torch.allclose(atk(x, target), ref, atol=1e-6), f"step {k}"


def test_pixels_without_gradient_do_not_move() -> None:
    """sign(0) = 0: a pixel the model ignores stays where it is (no step, no division by 0)."""
    x = torch.full((2, 1, 2, 3), 0.5)
    y = torch.zeros(2, dtype=torch.long)
    adv = PGD(Fixed(), eps=0.2, alpha=0.05, steps=3, random_start=False)(x, y)
    ignored = torch.ones_like(x, dtype=torch.bool)
    ignored[:, 0, 0, :2] = False  # Fixed reads only these two pixels
    assert torch.equal(adv[ignored], x[ignored])
    assert torch.allclose(adv[:, 0, 0, 0], torch.full((2,), 0.35))  # x₀ pushed down 3 × 0.05
    assert torch.allclose(adv[:, 0, 0, 1], torch.full((2,), 0.65))


def test_a_nan_model_stops_the_attack_unless_validation_is_off() -> None:
    """A NaN loss would give sign(NaN) = 0 steps, clean images passed off as adversarial; with
    validation off (PGD augmentation's setting) no check may wait for the device."""
    x, y = torch.full((2, 1, 2, 3), 0.5), torch.zeros(2, dtype=torch.long)
    with pytest.raises(NumericalError, match=r"^attack loss \(the model's logits\) is NaN"):
        PGD(NaNModel(), eps=0.1, alpha=0.05, steps=2, random_start=False)(x, y)
    atk = PGD(NaNModel(), eps=0.1, alpha=0.05, steps=2, random_start=False)
    atk.validate = False
    assert atk(x, y).shape == x.shape


def test_defaults_are_the_usual_cifar_budget() -> None:
    """eps 8/255, alpha 2/255, 10 steps, random start, one restart (Madry et al.; torchattacks)."""
    a = PGD(Fixed())
    assert (a.eps, a.alpha, a.steps, a.random_start, a.restarts) == (8 / 255, 2 / 255, 10, True, 1)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"eps": -0.1}, "eps"), ({"alpha": -0.1}, "alpha"), ({"steps": 0}, "steps"),
     ({"restarts": 0}, "restarts")],
)  # fmt: skip
def test_bad_settings_name_the_argument(kwargs, name) -> None:
    with pytest.raises(AttackInputError, match=f"^{name} must be"):
        PGD(Fixed(), **kwargs)


def test_targeted_restarts_keep_the_first_hit_else_the_lowest_target_loss(monkeypatch) -> None:
    """Targeted: success is reaching the target, and among misses the lowest target loss wins."""
    x = torch.full((3, 1, 1, 2), 0.5)
    target = torch.ones(3, dtype=torch.long)  # target class 1 = (x₁ > x₀)

    def cand(*pairs: tuple[float, float]) -> Tensor:
        return torch.tensor(pairs).view(-1, 1, 1, 2)

    # restart 1: sample 0 hits the target; samples 1, 2 miss
    # restart 2 (samples 1, 2): sample 1 misses closer (lower loss: kept), sample 2 misses
    # farther (higher loss: restart 1's stays)
    script = [cand((0.3, 0.7), (0.7, 0.3), (0.55, 0.45)), cand((0.55, 0.45), (0.9, 0.1))]
    seen: list[int] = []

    def fake_run(self, images, labels, eps, alpha):
        seen.append(images.shape[0])
        assert torch.equal(labels, target[: images.shape[0]])
        return script[len(seen) - 1]

    monkeypatch.setattr(PGD, "_run", fake_run)
    adv = PGD(Fixed(), eps=0.5, restarts=2, targeted=True)(x, target)
    assert seen == [3, 2]
    assert torch.equal(adv[0], cand((0.3, 0.7))[0])
    assert torch.equal(adv[1], cand((0.55, 0.45))[0])
    assert torch.equal(adv[2], cand((0.55, 0.45))[0])


def test_restart_ties_keep_the_earlier_candidate(monkeypatch) -> None:
    """A later restart must beat the loss strictly: on a tie the first candidate stays."""
    x = torch.full((1, 1, 1, 3), 0.5)
    y = torch.zeros(1, dtype=torch.long)
    # Fixed ignores the third pixel: both candidates have exactly the same logits and loss
    script = [torch.tensor([0.6, 0.4, 0.1]).view(1, 1, 1, 3),
              torch.tensor([0.6, 0.4, 0.9]).view(1, 1, 1, 3)]  # fmt: skip
    monkeypatch.setattr(PGD, "_run", lambda self, *a: script.pop(0))
    adv = PGD(Fixed(), eps=0.5, restarts=2)(x, y)
    assert script == [] and adv[0, 0, 0, 2].item() == pytest.approx(0.1)


def test_bad_alpha_shape_names_alpha() -> None:
    x = torch.full((2, 1, 1, 2), 0.5)
    with pytest.raises(
        AttackInputError, match=r"^alpha must be a float or a tensor of shape \[2\]"
    ):
        PGD(Fixed(), alpha=torch.tensor([0.1, 0.1, 0.1]))(x, torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("restarts, fixed", [(1, False), (2, True), (3, True)])
def test_cudnn_autotuning_is_off_only_with_restarts(restarts, fixed, monkeypatch) -> None:
    """Restarts shrink the batch (a new shape each time): cuDNN's benchmark is off for them and
    restored after; a single run keeps the user's setting."""
    seen: list[bool] = []

    class Recording(Fixed):
        def forward(self, x: Tensor) -> Tensor:
            seen.append(torch.backends.cudnn.benchmark)
            return super().forward(x)

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    x = torch.full((2, 1, 1, 2), 0.5)
    PGD(Recording(), eps=0.01, steps=1, restarts=restarts)(x, torch.zeros(2, dtype=torch.long))
    assert seen and set(seen) == {not fixed}
    assert torch.backends.cudnn.benchmark is True


def test_bookkeeping_lives_on_the_images_device() -> None:
    """Every tensor PGD allocates names the images' device: with another default device (here
    meta, standing in for a GPU run's mismatch) the attack still runs and answers on the CPU."""
    x, y = torch.full((3, 1, 1, 2), 0.5), torch.zeros(3, dtype=torch.long)
    atk = PGD(
        Fixed(), eps=0.1, alpha=0.05, steps=2, restarts=2, rng=torch.Generator().manual_seed(0)
    )
    expect = PGD(Fixed(), eps=0.1, alpha=0.05, steps=2, restarts=2,
                 rng=torch.Generator().manual_seed(0))(x, y)  # fmt: skip
    with torch.device("meta"):
        got = atk(x, y)
    assert got.device.type == "cpu" and torch.equal(got, expect)

"""The Attack base: frozen models restored exactly, input validation, per-sample budgets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advaug.attacks import FGSM, PGD, Attack, AttackInputError, frozen
from advaug.attacks.base import per_sample, project, unwrap
from advaug.errors import AdvaugError, ConfigError

from .toys import ToyNet, toy_batch


def test_frozen_restores_mixed_modes_and_flags_even_on_error() -> None:
    model = ToyNet().train()
    model.bn.eval()  # a frozen BN inside a training model must come back frozen
    model.fc.bias.requires_grad_(False)
    with pytest.raises(RuntimeError, match="boom"), frozen(model):
        assert not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
        raise RuntimeError("boom")
    assert model.training and model.conv.training and model.drop.training
    assert not model.bn.training
    assert model.conv.weight.requires_grad and model.fc.weight.requires_grad
    assert not model.fc.bias.requires_grad


def test_frozen_handles_shared_modules_once() -> None:
    shared = nn.Linear(2, 2)
    a, b = nn.Sequential(shared), nn.Sequential(shared)
    shared.weight.requires_grad_(False)
    with frozen(a, b):
        pass
    assert not shared.weight.requires_grad and shared.bias.requires_grad


@pytest.mark.parametrize("make", [lambda m: FGSM(m, eps=0.1), lambda m: PGD(m, eps=0.1, steps=2)])
def test_call_leaves_model_untouched(make) -> None:
    model = ToyNet().train()
    model.conv.weight.grad = torch.ones_like(model.conv.weight)  # an existing grad stays as is
    stats = [t.clone() for t in (model.bn.running_mean, model.bn.running_var)]
    params = [p.clone() for p in model.parameters()]
    x, y = toy_batch(16, seed=3)
    make(model)(x, y)
    assert model.training and model.bn.training and model.drop.training
    assert torch.equal(model.bn.running_mean, stats[0]) and torch.equal(
        model.bn.running_var, stats[1]
    )
    assert int(model.bn.num_batches_tracked) == 0
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params))
    assert torch.equal(model.conv.weight.grad, torch.ones_like(model.conv.weight))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "conv.weight")
    assert all(p.requires_grad for p in model.parameters())


def test_attack_uses_eval_mode() -> None:
    """Dropout is off during the attack: the same input gives the same adversarial twice."""
    model = ToyNet().train()
    x, y = toy_batch(8, seed=3)
    atk = FGSM(model, eps=0.05)
    assert torch.equal(atk(x, y), atk(x, y))


@pytest.mark.parametrize(
    "images, match",
    [
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "float"),
        (torch.full((2, 3, 8, 8), 1.5), r"\[0, 1\]"),
        (torch.full((2, 3, 8, 8), -0.1), r"\[0, 1\]"),
        (torch.zeros(3, 8, 8), "NCHW"),
    ],
)
def test_invalid_images_raise_one_line_error(images, match) -> None:
    with pytest.raises(AttackInputError, match=match) as info:
        FGSM(ToyNet(), eps=0.1)(images, torch.zeros(images.shape[0], dtype=torch.long))
    assert "\n" not in str(info.value)
    assert isinstance(info.value, AdvaugError | ValueError) and isinstance(info.value, ConfigError)


def test_invalid_labels_and_settings_raise() -> None:
    x, _ = toy_batch(4, seed=0)
    with pytest.raises(AttackInputError, match="shape"):
        FGSM(ToyNet(), eps=0.1)(x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(AttackInputError, match="integer"):
        FGSM(ToyNet(), eps=0.1)(x, torch.zeros(4))
    with pytest.raises(AttackInputError, match="needs labels"):
        FGSM(ToyNet(), eps=0.1)(x)
    with pytest.raises(AttackInputError, match="eps"):
        FGSM(ToyNet(), eps=-0.1)
    with pytest.raises(AttackInputError, match="eps"):
        FGSM(ToyNet(), eps=torch.tensor([0.1, -0.1]))
    with pytest.raises(AttackInputError, match="steps"):
        PGD(ToyNet(), steps=0)
    with pytest.raises(AttackInputError, match="restarts"):
        PGD(ToyNet(), restarts=0)
    with pytest.raises(AttackInputError, match="nn.Module"):
        FGSM(lambda x: x, eps=0.1)  # type: ignore[arg-type]
    with pytest.raises(AttackInputError, match=r"shape \[4\]"):
        FGSM(ToyNet(), eps=torch.full((3,), 0.1))(x, torch.zeros(4, dtype=torch.long))


def test_per_sample_and_project_by_hand() -> None:
    x = torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1, 1)
    eps = per_sample(torch.tensor([0.1, 0.2, 0.3]), x)
    assert eps.shape == (3, 1, 1, 1)
    adv = torch.tensor([0.5, 0.0, 0.5]).view(3, 1, 1, 1)
    assert torch.allclose(project(adv, x, eps).flatten(), torch.tensor([0.1, 0.3, 0.7]))
    assert per_sample(0.25, x).flatten().tolist() == [0.25] * 3


def test_unwrap_dataparallel() -> None:
    inner = ToyNet()
    assert unwrap(nn.DataParallel(inner)) is inner
    assert FGSM(nn.DataParallel(inner)).model is inner


def test_base_perturb_is_abstract() -> None:
    x, y = toy_batch(2, seed=0)
    with pytest.raises(NotImplementedError):
        Attack(ToyNet())(x, y)
    assert "eps=0.1" in repr(FGSM(ToyNet(), eps=0.1))

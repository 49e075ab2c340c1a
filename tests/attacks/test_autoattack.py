"""The AutoAttack adapter: one-line error without torchattacks; with it, a working, side-effect
free attack (modes, parameters and the global RNG unchanged)."""

from __future__ import annotations

import importlib

import pytest
import torch

from advaug.attacks import PGD, AttackInputError, AutoAttack, MissingDependencyError
from advaug.attacks import autoattack as aa_mod
from advaug.errors import AdvaugError

from .toys import ToyNet, accuracy


def test_missing_torchattacks_names_the_install_command(monkeypatch) -> None:
    real = importlib.import_module

    def fake(name: str, *args, **kwargs):
        if name == "torchattacks":
            raise ImportError("No module named 'torchattacks'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(aa_mod.importlib, "import_module", fake)
    assert not aa_mod.torchattacks_available()
    with pytest.raises(MissingDependencyError) as info:
        AutoAttack(ToyNet())
    msg = str(info.value)
    assert "pip install --no-deps torchattacks==3.5.1 scipy" in msg and "\n" not in msg
    assert isinstance(info.value, AdvaugError)


def test_bad_settings_raise() -> None:
    pytest.importorskip("torchattacks")
    with pytest.raises(AttackInputError, match="norm"):
        AutoAttack(ToyNet(), norm="L1")
    with pytest.raises(AttackInputError, match="version"):
        AutoAttack(ToyNet(), version="fast")
    with pytest.raises(AttackInputError, match="float"):
        AutoAttack(ToyNet(), eps=torch.tensor([0.1]))  # type: ignore[arg-type]


def test_autoattack_runs_without_side_effects(trained, test_batch) -> None:
    pytest.importorskip("torchattacks")
    x, y = test_batch
    x, y = x[:32], y[:32]
    eps = 16 / 255
    trained.bn.eval()  # mixed modes must come back exactly
    stats = trained.bn.running_mean.clone()
    torch.manual_seed(123)
    rng_before = torch.random.get_rng_state()
    atk = AutoAttack(trained, eps=eps, seed=0)
    adv = atk(x, y)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert atk._impl.n_classes == 4  # taken from the logits, not torchattacks' default 10
    assert trained.training and not trained.bn.training
    trained.bn.train()
    assert torch.equal(trained.bn.running_mean, stats)
    assert all(p.grad is None and p.requires_grad for p in trained.parameters())
    assert adv.min() >= 0 and adv.max() <= 1 and (adv - x).abs().max() <= eps + 1e-6
    assert accuracy(trained, adv, y) < 0.1 < accuracy(trained, x, y)


def test_autoattack_at_least_as_strong_as_pgd(trained, test_batch) -> None:
    """The cross-check ANCHORS D asks for: AutoAttack's robust accuracy <= our PGD-20's."""
    pytest.importorskip("torchattacks")

    x, y = test_batch
    x, y = x[:64], y[:64]
    eps = 8 / 255
    acc_aa = accuracy(trained, AutoAttack(trained, eps=eps)(x, y), y)
    pgd = PGD(trained, eps=eps, alpha=eps / 4, steps=20, rng=torch.Generator().manual_seed(0))
    acc_pgd = accuracy(trained, pgd(x, y), y)
    assert acc_aa <= acc_pgd < 0.8

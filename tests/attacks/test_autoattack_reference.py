"""The reference AutoAttack adapter (Croce & Hein's code via ``pip install advaug[autoattack]``):
side-effect free, at least as strong as PGD, the backend choice, and one-line errors without it.
``make`` installs the extra, so these run in CI."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

from advaug.attacks import PGD, AttackInputError, MissingDependencyError, ReferenceAutoAttack
from advaug.attacks import autoattack_reference as ref_mod
from advaug.attacks.autoattack_reference import make_autoattack, resolve_backend

from .toys import ToyNet, accuracy

pytest.importorskip("pyautoattack", reason="pip install 'advaug[autoattack]' (make installs it)")


def test_docstring_example_runs() -> None:
    result = doctest.testmod(ref_mod)
    assert result.attempted > 0 and result.failed == 0


def test_runs_without_side_effects(trained, test_batch) -> None:
    x, y = test_batch
    x, y = x[:32], y[:32]
    eps = 16 / 255
    trained.bn.eval()  # mixed modes must come back exactly
    stats = trained.bn.running_mean.clone()
    torch.manual_seed(123)
    rng_before = torch.random.get_rng_state()
    adv = ReferenceAutoAttack(trained, eps=eps, seed=0)(x, y)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert trained.training and not trained.bn.training
    trained.bn.train()
    assert torch.equal(trained.bn.running_mean, stats)
    assert all(p.grad is None and p.requires_grad for p in trained.parameters())
    assert adv.min() >= 0 and adv.max() <= 1 and (adv - x).abs().max() <= eps + 1e-6
    assert accuracy(trained, adv, y) < 0.1 < accuracy(trained, x, y)


@pytest.mark.slow
def test_at_least_as_strong_as_pgd(trained, test_batch) -> None:
    """The cross-check ANCHORS D asks for. Slow: FAB-T's 9 targets and Square's 5,000 queries
    on the points that survive took 50-60 s on the 2-core machine."""
    x, y = test_batch
    x, y = x[:24], y[:24]
    eps = 8 / 255
    acc_aa = accuracy(trained, ReferenceAutoAttack(trained, eps=eps)(x, y), y)
    pgd = PGD(trained, eps=eps, alpha=eps / 4, steps=20, rng=torch.Generator().manual_seed(0))
    assert acc_aa <= accuracy(trained, pgd(x, y), y) < 0.8


def test_bad_settings_raise() -> None:
    with pytest.raises(AttackInputError, match="norm"):
        ReferenceAutoAttack(ToyNet(), norm="L3")
    with pytest.raises(AttackInputError, match="version"):
        ReferenceAutoAttack(ToyNet(), version="fast")
    with pytest.raises(AttackInputError, match="float"):
        ReferenceAutoAttack(ToyNet(), eps=torch.tensor([0.1]))  # type: ignore[arg-type]
    with pytest.raises(AttackInputError, match="backend"):
        resolve_backend("cleverhans")


def test_backend_choice(monkeypatch) -> None:
    assert resolve_backend("auto") == "reference"
    assert isinstance(make_autoattack(ToyNet(), backend="auto"), ReferenceAutoAttack)
    monkeypatch.setattr(ref_mod, "reference_available", lambda: False)
    monkeypatch.setattr(ref_mod, "torchattacks_available", lambda: True)
    assert resolve_backend("auto") == "torchattacks"
    monkeypatch.setattr(ref_mod, "torchattacks_available", lambda: False)
    with pytest.raises(MissingDependencyError, match=r"advaug\[autoattack\]"):
        resolve_backend("auto")


def test_missing_package_names_the_extra(monkeypatch) -> None:
    real = importlib.import_module

    def fake(name: str, *args, **kwargs):
        if name == "pyautoattack":
            raise ImportError("No module named 'pyautoattack'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(ref_mod.importlib, "import_module", fake)
    assert not ref_mod.reference_available()
    with pytest.raises(MissingDependencyError) as info:
        ReferenceAutoAttack(ToyNet())
    assert "pip install 'advaug[autoattack]'" in str(info.value)
    assert "\n" not in str(info.value)

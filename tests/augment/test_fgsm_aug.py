"""The ``fgsm`` technique (augment/fgsm.py): one ε per batch drawn from U(eps_min, eps_max) on its
own seeded stream, the attack ``kind`` names, labels kept, and a resumable state."""

from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from advaug.attacks.fgsm import FFGSM, FGSM, StepLL
from advaug.augment import build_technique
from advaug.augment.fgsm import FGSMTechnique
from advaug.config import FGSMAugConfig, build_config

CPU = torch.device("cpu")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3)).train()


def _batch(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return 0.2 + 0.6 * torch.rand(n, 3, 4, 4, generator=g), torch.arange(n) % 3


@given(
    lo=st.floats(0, 0.5),
    width=st.floats(1e-3, 0.5),
    seed=st.integers(0, 2**31),
)
def test_eps_is_drawn_per_batch_within_the_range_from_its_own_seeded_stream(lo, width, seed):
    cfg = FGSMAugConfig(eps_min=lo, eps_max=lo + width)
    t = FGSMTechnique(cfg, seed, CPU)
    assert t.metrics() == {"eps": lo}  # before the first batch: eps_min
    draws = [t.draw_eps() for _ in range(4)]
    # the draw is eps_min + (eps_max - eps_min) * u, u ~ U(0, 1) from a CPU stream seeded seed+102
    g = torch.Generator().manual_seed(seed + 102)
    expected = [lo + width * torch.rand((), generator=g).item() for _ in range(4)]
    assert draws == pytest.approx(expected, rel=1e-12, abs=0)
    assert all(lo <= e <= lo + width for e in draws)
    assert len(set(draws)) == 4  # a new ε every batch


def test_a_fixed_eps_is_used_as_is_without_drawing():
    t = FGSMTechnique(FGSMAugConfig(eps_min=0.1, eps_max=0.1), 0, CPU)
    before = t.eps_rng.get_state()
    assert t.draw_eps() == 0.1
    assert torch.equal(t.eps_rng.get_state(), before)  # the stream did not move


@pytest.mark.parametrize(
    ("kind", "attack"), [("fgsm", FGSM), ("step-ll", StepLL), ("ffgsm", FFGSM)]
)
def test_each_kind_runs_its_attack_with_the_drawn_eps(kind, attack, monkeypatch):
    model = _model()
    x, y = _batch()
    t = FGSMTechnique(FGSMAugConfig(kind=kind, eps_min=0.05, eps_max=0.2), 7, CPU)
    made = []
    init = attack.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(attack, "__init__", spy)
    x_adv, y_adv = t(model, x, y, 0)
    assert len(made) == 1 and type(made[0]) is attack and made[0].model is model
    eps = t.metrics()["eps"]
    assert 0.05 <= eps <= 0.2 and made[0].eps == eps
    assert torch.equal(y_adv, y) and x_adv.shape == x.shape and not x_adv.requires_grad
    assert model.training
    # the same attack by hand, at the same ε, gives the same examples
    ref = attack(model, eps=eps, rng=torch.Generator().manual_seed(7 + 101)) if kind == "ffgsm" \
        else attack(model, eps=eps)  # fmt: skip
    torch.testing.assert_close(x_adv, ref(x, y))
    assert (x_adv - x).abs().max() <= eps + 1e-6 and (x_adv - x).abs().max() > 0


def test_ffgsm_random_starts_use_the_techniques_own_stream():
    model = _model()
    x, y = _batch()
    t = FGSMTechnique(FGSMAugConfig(kind="ffgsm", eps_min=0.1, eps_max=0.1), 3, CPU)
    first = t(model, x, y, 0)[0]
    # the random start comes from a stream seeded seed + 101, not the ε stream (seed + 102)
    ref = FFGSM(model, eps=0.1, rng=torch.Generator().manual_seed(3 + 101))(x, y)
    torch.testing.assert_close(first, ref)
    assert not torch.equal(t(model, x, y, 1)[0], first)  # the stream moved on


def test_the_attack_skips_its_validation_checks():
    """validate=False: the step has no host sync, so a NaN model is not stopped here."""
    nan = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    with torch.no_grad():
        nan[1].weight.fill_(float("nan"))
    x, y = _batch()
    for kind in ("fgsm", "step-ll", "ffgsm"):
        t = FGSMTechnique(FGSMAugConfig(kind=kind), 0, CPU)
        x_adv, _ = t(nan, x, y, 0)  # FGSM itself would raise (validation on)
        assert x_adv.shape == x.shape


def test_state_dict_round_trip_resumes_both_streams():
    model = _model()
    x, y = _batch()
    cfg = FGSMAugConfig(kind="ffgsm", eps_min=0.02, eps_max=0.3)
    a = FGSMTechnique(cfg, 5, CPU)
    a(model, x, y, 0)
    state = a.state_dict()
    assert set(state) == {"rng", "eps_rng"}
    nxt = a(model, x, y, 1)[0]
    b = FGSMTechnique(cfg, 99, CPU)
    b.load_state_dict(state)
    torch.testing.assert_close(b(model, x, y, 1)[0], nxt)
    assert b.metrics() == a.metrics()


def test_a_random_stream_from_another_device_restarts_from_the_techniques_seed(caplog):
    """A GPU generator's state does not fit a CPU one: the random-start stream restarts from
    its own seed (seed + 101), with a warning, and the ε stream still resumes."""
    a = FGSMTechnique(FGSMAugConfig(kind="ffgsm", eps_min=0.0, eps_max=0.2), 4, CPU)
    a.draw_eps()
    state = {"rng": torch.zeros(16, dtype=torch.uint8), "eps_rng": a.eps_rng.get_state()}
    b = FGSMTechnique(FGSMAugConfig(kind="ffgsm", eps_min=0.0, eps_max=0.2), 4, CPU)
    torch.rand(3, generator=b.rng)  # the stream has moved on before the resume
    with caplog.at_level(logging.WARNING, logger="advaug"):
        b.load_state_dict(state)
    assert "restarts from seed 105" in caplog.text
    fresh = torch.Generator().manual_seed(4 + 101)
    assert torch.equal(b.rng.get_state(), fresh.get_state())
    assert b.draw_eps() == a.draw_eps()


def test_the_config_reaches_the_technique():
    cfg = build_config(
        "smoke",
        ["classifier.augment.technique=fgsm", "classifier.augment.fgsm.kind=step-ll",
         "classifier.augment.fgsm.eps_min=0.01", "classifier.augment.fgsm.eps_max=0.04"],
    )  # fmt: skip
    t = build_technique(cfg.classifier.augment, seed=0, device=CPU)
    assert isinstance(t, FGSMTechnique)
    assert (t.cfg.kind, t.cfg.eps_min, t.cfg.eps_max) == ("step-ll", 0.01, 0.04)
    assert t.name == "fgsm"


def test_the_random_start_stream_is_built_on_the_techniques_device(generator_devices):
    """The random starts are drawn on the data's device (meta stands in for a GPU): a stream on
    the CPU would draw there and copy every start to the device."""
    meta = torch.device("meta")
    FGSMTechnique(FGSMAugConfig(), seed=0, device=meta)
    assert generator_devices[0] == meta

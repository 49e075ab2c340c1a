"""Accuracy under attack (evaluate/robustness.py): the ε labels, per-image outcomes batch by
batch, and every attack's settings, count and protocol line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import advaug.evaluate.robustness as rob
from advaug.attacks import FGSM, PGD
from advaug.evaluate.robustness import attacked_accuracy, attacked_correct, eps_label, robustness

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("eps", "label"),
    [(8 / 255, "8/255"), (0.0, "0"), ((8 + 5e-4) / 255, "8/255"),
     ((8 + 2e-3) / 255, "0.03138"), (0.1, "0.1"), (0.123456, "0.1235")],
)  # fmt: skip
def test_eps_label_uses_the_255_grid_within_a_thousandth(eps, label):
    assert eps_label(eps) == label


def test_eps_label_a_thousandth_off_the_grid_is_a_decimal():
    eps = 3.92156862745098e-06  # eps * 255 is exactly 0.001 in float64
    assert abs(eps * 255 - round(eps * 255)) == 1e-3
    assert eps_label(eps) == "3.922e-06"


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 2, 3)).eval()


def _data(n: int = 7):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 3, 2, 2), dtype=torch.uint8, generator=g), torch.arange(n) % 3


class _Shift:
    """An 'attack' that moves every image by a fixed amount and records its batches."""

    def __init__(self, by: float) -> None:
        self.by, self.batches = by, []

    def __call__(self, x, y):
        assert x.dtype == torch.float32 and x.max() <= 1  # converted from uint8
        self.batches.append((x.shape[0], y.clone()))
        return (x + self.by).clamp(0, 1)


def test_attacked_correct_is_per_image_in_order_batch_by_batch(monkeypatch):
    model, (x, y) = _model(), _data()
    atk = _Shift(0.3)
    descs = []
    real = rob.progress
    monkeypatch.setattr(rob, "progress", lambda it, **kw: descs.append(kw) or real(it, **kw))
    got = attacked_correct(model, lambda m: atk if m is model else None, x, y, 3, CPU, "FGSM x")
    with torch.no_grad():
        ref = model((x.float() / 255 + 0.3).clamp(0, 1)).argmax(1) == y
    assert got.dtype == torch.bool and got.tolist() == ref.tolist()
    assert [b[0] for b in atk.batches] == [3, 3, 1]
    assert torch.equal(torch.cat([b[1] for b in atk.batches]), y)
    assert descs == [{"desc": "FGSM x", "unit": "batch"}]
    attacked_correct(model, lambda m: atk, x, y, 3, CPU)
    assert descs[-1]["desc"] == "attack"  # the default name


def test_attacked_accuracy_is_the_share_still_right():
    model, (x, y) = _model(), _data()
    got = attacked_correct(model, lambda m: _Shift(0.0), x, y, 4, CPU)
    assert attacked_accuracy(model, lambda m: _Shift(0.0), x, y, 4, CPU) == pytest.approx(
        got.float().mean().item()
    )
    right = model(x[:1].float() / 255).argmax(1)  # one image the model gets right
    assert attacked_accuracy(model, lambda m: _Shift(0.0), x[:1], right, 4, CPU) == 1.0


def test_no_images_give_no_outcomes_and_zero_accuracy():
    model = _model()
    x, y = torch.zeros(0, 3, 2, 2, dtype=torch.uint8), torch.zeros(0, dtype=torch.long)
    got = attacked_correct(model, lambda m: _Shift(0.0), x, y, 4, CPU)
    assert got.dtype == torch.bool and got.shape == (0,)
    assert attacked_accuracy(model, lambda m: _Shift(0.0), x, y, 4, CPU) == 0.0


def _settings(**kw):
    base = dict(fgsm_eps=[2 / 255, 0.05], pgd_eps=8 / 255, pgd_alpha=2 / 255, pgd_steps=3,
                pgd_restarts=2, autoattack=False, batch_size=4, device=CPU, split="toy",
                seed=5)  # fmt: skip
    return {**base, **kw}


def test_robustness_runs_each_attack_as_configured_and_records_it():
    model, (x, y) = _model(), _data()
    outcomes: dict[str, torch.Tensor] = {}
    out = robustness(model, x, y, **_settings(), outcomes=outcomes)
    assert list(out) == ["fgsm@2/255", "fgsm@0.05", "pgd3@8/255"]
    xf = x.float() / 255
    refs = {
        "fgsm@2/255": FGSM(model, eps=2 / 255),
        "fgsm@0.05": FGSM(model, eps=0.05),
        # one generator seeded with the seed, shared by all batches: batch by batch by hand
        "pgd3@8/255": PGD(model, eps=8 / 255, alpha=2 / 255, steps=3, random_start=True,
                          restarts=2, rng=torch.Generator().manual_seed(5)),
    }  # fmt: skip
    for key, atk in refs.items():
        adv = torch.cat([atk(xf[i : i + 4], y[i : i + 4]) for i in range(0, 7, 4)])
        with torch.no_grad():
            ref = model(adv).argmax(1) == y
        assert outcomes[key].tolist() == ref.tolist(), key
        assert out[key]["value"] == pytest.approx(ref.float().mean().item()), key
        assert out[key]["n"] == 7
    assert out["fgsm@2/255"]["protocol"] == "FGSM L∞ ε=2/255, 7 toy images"
    assert out["pgd3@8/255"]["protocol"] == (
        "PGD-3 L∞ ε=8/255 α=2/255, random start, 2 restart(s), 7 toy images, seed 5"
    )


def test_robustness_without_an_outcomes_dict_still_reports():
    model, (x, y) = _model(), _data()
    out = robustness(model, x, y, **_settings(fgsm_eps=[]))
    assert list(out) == ["pgd3@8/255"] and 0 <= out["pgd3@8/255"]["value"] <= 1


@pytest.mark.parametrize(("backend", "impl"), [("reference", "reference code, pyautoattack"),
                                               ("torchattacks", "torchattacks")])  # fmt: skip
def test_autoattack_gets_the_budget_backend_seed_and_classes(backend, impl, monkeypatch):
    model, (x, y) = _model(), _data()
    model.num_classes = 3
    made = []

    def fake(m, **kw):
        made.append((m, kw))
        return _Shift(0.0)

    monkeypatch.setattr(rob, "make_autoattack", fake)
    monkeypatch.setattr(rob, "resolve_backend", lambda b: b)  # the name asked for, as is
    outcomes: dict[str, torch.Tensor] = {}
    settings = _settings(fgsm_eps=[], autoattack=True, autoattack_backend=backend)
    out = robustness(model, x, y, **settings, outcomes=outcomes)
    assert made == [(model, {"eps": 8 / 255, "backend": backend, "seed": 5, "num_classes": 3})]
    with torch.no_grad():
        clean = model(x.float() / 255).argmax(1) == y
    assert outcomes["autoattack@8/255"].tolist() == clean.tolist()
    assert out["autoattack@8/255"] == {
        "value": pytest.approx(clean.float().mean().item()),
        "protocol": f"AutoAttack standard ({impl}) L∞ ε=8/255, 7 toy images, seed 5",
        "n": 7,
    }


def _descs(monkeypatch) -> list[str]:
    """Record the name of every progress bar the module opens."""
    names: list[str] = []
    real = rob.progress
    monkeypatch.setattr(
        rob, "progress", lambda it, **kw: names.append(kw["desc"]) or real(it, **kw)
    )
    return names


def test_attacked_accuracy_names_its_progress_bar(monkeypatch):
    names = _descs(monkeypatch)
    model, (x, y) = _model(), _data()
    attacked_accuracy(model, lambda m: _Shift(0.0), x, y, 4, CPU, "PGD-7 8/255")
    attacked_accuracy(model, lambda m: _Shift(0.0), x, y, 4, CPU)
    assert names == ["PGD-7 8/255", "attack"]


def test_robustness_names_each_progress_bar_and_defaults_to_seed_0_and_auto(monkeypatch):
    names = _descs(monkeypatch)
    backends = []
    monkeypatch.setattr(rob, "resolve_backend", lambda b: backends.append(b) or "reference")
    monkeypatch.setattr(rob, "make_autoattack", lambda m, **kw: _Shift(0.0))
    model, (x, y) = _model(), _data()
    settings = _settings(autoattack=True)
    del settings["seed"]
    out = robustness(model, x, y, **settings)
    assert names == ["FGSM 2/255", "FGSM 0.05", "PGD-3 8/255", "AutoAttack"]
    assert backends == ["auto"]
    assert out["pgd3@8/255"]["protocol"].endswith(", seed 0")
    assert out["autoattack@8/255"]["protocol"].endswith(", seed 0")


def test_robustness_builds_each_attack_with_its_settings(monkeypatch):
    """The attacks as built, not only their outcomes: a tiny model's outcomes can coincide."""
    made: list[tuple[str, object]] = []

    class SpyFGSM(FGSM):
        def __init__(self, model, **kw):
            super().__init__(model, **kw)
            made.append(("fgsm", kw))

    class SpyPGD(PGD):
        def __init__(self, model, **kw):
            super().__init__(model, **kw)
            made.append(("pgd", {**kw, "rng": (kw["rng"].device, kw["rng"].initial_seed())}))

    monkeypatch.setattr(rob, "FGSM", SpyFGSM)
    monkeypatch.setattr(rob, "PGD", SpyPGD)
    model, (x, y) = _model(), _data()
    robustness(model, x, y, **_settings())
    assert made == [
        ("fgsm", {"eps": 2 / 255}),
        ("fgsm", {"eps": 0.05}),
        ("pgd", {"eps": 8 / 255, "alpha": 2 / 255, "steps": 3, "random_start": True,
                 "restarts": 2, "rng": (CPU, 5)}),
    ]  # fmt: skip


def test_the_rate_of_one_image_is_zero_or_one():
    model, x = _model(), _data()[0]
    right = model(x[:1].float() / 255).argmax(1)  # the model's own answer: right
    out = robustness(model, x[:1], right, **_settings(fgsm_eps=[0.0]))  # ε 0: the clean image
    assert out["fgsm@0"]["value"] == 1.0 and out["fgsm@0"]["n"] == 1


def test_eps_label_the_two_decimal_tolerance_is_strict():
    """1e-8 lies exactly 1e-6 (in float64) off the two-decimal grid, so it is not read as a
    short decimal; it is 0.00000255 off the 1/255 grid, so it is labelled 0/255."""
    eps = 1e-8
    assert abs(eps * 100 - round(eps * 100)) == 1e-6
    assert eps_label(eps) == "0/255"

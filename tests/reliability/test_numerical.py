"""Numerical faults: a NaN or inf in the GAN, the classifier and the attacks.

A run that meets one must stop with one line that names what blew up, keep its last good
checkpoint (whole, finite), write no result.json, and, once the fault is gone, resume to the
same weights as a run that never met it.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import advaug.train.classifier as classifier_mod
import advaug.train.steps as steps_mod
from advaug.attacks import UnrestrictedAttack
from advaug.attacks.fgsm import FGSM
from advaug.attacks.pgd import PGD
from advaug.config import build_config
from advaug.data.splits import load_splits
from advaug.errors import NumericalError
from advaug.evaluate.gan_quality import diversity
from advaug.models import build_model
from advaug.models.gan import Critic, Generator
from advaug.runtime.checkpoint import CheckpointManager, first_nonfinite, load_file
from advaug.train.classifier import ClassifierJob, train_classifier
from advaug.train.gan import GANJob, train_gan
from tests.hooks import nan_in_critic_at
from tests.reliability.helpers import assert_states_equal, check_checkpoints, steps_by_split
from tests.reliability.test_kill_resume import GAN


@pytest.fixture(scope="module")
def splits():
    return load_splits(build_config("smoke").data)


def _newest_is_good(run) -> dict:
    """The newest checkpoint of ``run``: whole, loadable, every tensor finite."""
    assert not check_checkpoints(run), check_checkpoints(run)
    m = CheckpointManager(run / "checkpoints").entries()[-1]
    state = load_file(run / "checkpoints" / m["file"])
    assert first_nonfinite(state) is None
    assert not (run / "result.json").exists()
    return m


# ---------------------------------------------------------------------------------------------
# GAN
# ---------------------------------------------------------------------------------------------


def _gan_job() -> GANJob:
    cfg = build_config("smoke", GAN)
    return GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan, seed=0)


@pytest.fixture(scope="module")
def gan_full(tmp_path_factory, splits):
    out = tmp_path_factory.mktemp("gan") / "full"
    train_gan(_gan_job(), out, splits=splits)
    return out


def test_gan_nan_names_the_term_keeps_the_last_good_checkpoint_and_resumes(
    tmp_path, splits, gan_full, monkeypatch
):
    run = tmp_path / "r"
    with monkeypatch.context() as patch, pytest.raises(NumericalError) as e:
        nan_in_critic_at(patch, 4, _gan_job().gan.n_critic)  # the 5th iteration
        train_gan(_gan_job(), run, splits=splits)
    msg = str(e.value)
    assert "'d_gp' became nan" in msg and str(run / "checkpoints") in msg and "\n" not in msg
    assert _newest_is_good(run)["step"] == 4
    assert steps_by_split(run)["train"] == [1, 2, 3, 4]  # the bad iteration is not logged
    train_gan(_gan_job(), run, splits=splits)  # the fault is gone: resume from iteration 4
    assert_states_equal(
        load_file(gan_full / "checkpoints" / "final.pt"),
        load_file(run / "checkpoints" / "final.pt"),
    )
    assert steps_by_split(run) == steps_by_split(gan_full)


def test_gan_inf_in_the_generator_loss_names_the_generator_term(tmp_path, splits, monkeypatch):
    real = steps_mod.generator_loss
    calls = {"n": 0}

    def blows_up_at_call_3(*args, **kwargs):
        calls["n"] += 1
        loss, parts = real(*args, **kwargs)
        if calls["n"] == 3:
            loss = loss * math.inf
            parts = {**parts, "ac": parts["ac"] * math.inf}
        return loss, parts

    monkeypatch.setattr(steps_mod, "generator_loss", blows_up_at_call_3)
    with pytest.raises(NumericalError, match="'g_ac' became inf"):
        train_gan(_gan_job(), tmp_path / "r", splits=splits)
    assert _newest_is_good(tmp_path / "r")["step"] == 2


# ---------------------------------------------------------------------------------------------
# Classifier: no injection hook, so the model's forward turns NaN after some steps
# ---------------------------------------------------------------------------------------------


def _nan_after(monkeypatch, calls: int) -> None:
    """Classifiers built from now on return NaN logits from their ``calls``-th forward on."""
    real = classifier_mod.build_classifier

    def build(job, num_classes):
        model = real(job, num_classes)
        forward, seen = model.forward, {"n": 0}

        def poisoned(x):
            seen["n"] += 1
            out = forward(x)
            return out * float("nan") if seen["n"] >= calls else out

        model.forward = poisoned
        return model

    monkeypatch.setattr(classifier_mod, "build_classifier", build)


def _clf_job(ckpt_every_steps: int) -> ClassifierJob:
    cfg = build_config("smoke", ["runtime.ckpt_every_min=1000"])
    return ClassifierJob(
        data=cfg.data,
        runtime=cfg.runtime,
        classifier=cfg.classifier,
        seed=0,
        ckpt_every_steps=ckpt_every_steps,
    )


@pytest.mark.parametrize(
    "ckpt_every_steps, blows_at, kept, says",
    [
        (4, 11, 9, "refused to write checkpoint step-00000012.pt: 'model."),  # mid-epoch save
        (0, 11, 9, "classifier loss became nan in epoch 2"),  # the end-of-epoch check
    ],
)
def test_classifier_nan_stops_cleanly_and_keeps_the_last_good_checkpoint(
    tmp_path, splits, monkeypatch, ckpt_every_steps, blows_at, kept, says
):
    full = tmp_path / "full"
    train_classifier(_clf_job(ckpt_every_steps), full, splits=splits)
    run = tmp_path / "r"
    _nan_after(monkeypatch, blows_at)  # steps 1..10 are fine, 11 on are NaN
    with pytest.raises(NumericalError) as e:
        train_classifier(_clf_job(ckpt_every_steps), run, splits=splits)
    msg = str(e.value)
    assert says in msg and str(run / "checkpoints") in msg and "\n" not in msg
    assert _newest_is_good(run)["step"] == kept
    monkeypatch.undo()
    train_classifier(_clf_job(ckpt_every_steps), run, splits=splits)  # resume, fault gone
    assert_states_equal(
        load_file(full / "checkpoints" / "final.pt"), load_file(run / "checkpoints" / "final.pt")
    )
    assert steps_by_split(run) == steps_by_split(full)


def test_checkpoint_manager_refuses_non_finite_states(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=2)
    mgr.save({"model": {"w": torch.ones(3)}}, 1)
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(NumericalError, match=r"'optimizer\.state\[0\]' holds NaN or inf"):
            mgr.save(
                {"model": {"w": torch.ones(3)}, "optimizer": {"state": [torch.tensor(bad)]}}, 2
            )
    assert [e["step"] for e in mgr.entries()] == [1]
    # integer tensors (RNG states, labels) are never "non-finite"
    mgr.save({"rng": torch.zeros(5, dtype=torch.uint8), "y": torch.arange(3)}, 3)
    assert json.loads((tmp_path / "step-00000003.json").read_text())["step"] == 3


# ---------------------------------------------------------------------------------------------
# Attacks against a model whose logits are NaN: today they do not notice
# ---------------------------------------------------------------------------------------------


class NaNNet(nn.Module):
    """tiny-cnn whose logits are all NaN."""

    def __init__(self):
        super().__init__()
        self.net = build_model("tiny-cnn", 10)

    def forward(self, x):
        return self.net(x) * float("nan")


@pytest.mark.parametrize(
    "make", [lambda f: FGSM(f, eps=8 / 255), lambda f: PGD(f, steps=2)], ids=["fgsm", "pgd"]
)
def test_norm_bounded_attacks_stop_on_a_nan_model(make):
    x, y = torch.rand(4, 3, 32, 32), torch.arange(4)
    try:
        make(NaNNet().eval())(x, y)
    except NumericalError as e:
        assert "nan" in str(e).lower() and "\n" not in str(e)
    else:
        raise AssertionError("the attack returned images for a model with NaN logits")


def test_latent_attack_stops_on_a_nan_model():
    torch.manual_seed(0)
    g = Generator(z_dim=8, width=8, num_classes=10).eval()
    d = Critic(width=8, num_classes=10).eval()
    try:
        res = UnrestrictedAttack(g, d, NaNNet().eval(), steps=3)(torch.arange(10))
    except NumericalError as e:
        assert "nan" in str(e).lower()
    else:
        assert torch.isfinite(res.images).all(), "NaN images were returned as attack results"
        raise AssertionError("the attack reported results for a model with NaN logits")


# ---------------------------------------------------------------------------------------------
# A collapsed GAN: the measure exists, the flag does not
# ---------------------------------------------------------------------------------------------


def test_diversity_ratio_sees_a_collapsed_class():
    """The building block of a collapse flag: per-class diversity fake/real near 0 for a class
    whose samples are all the same (no flag uses it yet; see the reliability report)."""
    g = torch.Generator().manual_seed(0)
    real = torch.randn(40, 16, generator=g)
    labels = torch.arange(40) % 4
    fake = torch.randn(40, 16, generator=g)
    fake[labels == 2] = fake[labels == 2][0]  # class 2 collapsed onto one sample
    d = diversity(fake, labels, real_feats=real, real_labels=labels, num_classes=4)
    ratio = d["ratio_per_class"]
    assert ratio[2] == 0
    assert all(0.7 < float(ratio[c]) < 1.4 for c in (0, 1, 3))

"""The ``gan`` technique (augment/gan.py): AC-GAN samples G(z, y) for the batch's labels, z from
the technique's own seeded stream, an optional AC filter, the kept share, and a resumable
state."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from advaug.augment import build_technique
from advaug.augment.gan import GANTechnique, _fmt
from advaug.config import GANAugConfig, build_config
from advaug.models.gan import Critic, Generator

CPU = torch.device("cpu")


class _Pair:
    """A tiny loaded GAN: generator and critic in eval mode, as a run loads them."""

    def __init__(self, k: int = 4):
        torch.manual_seed(0)
        self.generator = Generator(z_dim=8, width=8, num_classes=k, image_size=16).eval()
        self.critic = Critic(width=8, num_classes=k).eval()


def _batch(n: int = 6, k: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(1)), torch.arange(n) % k


def test_samples_are_the_generator_at_seeded_latents_for_the_batchs_labels():
    pair = _Pair()
    x, y = _batch()
    y = y.flip(0)  # labels in no particular order
    model = nn.Linear(1, 1).train()
    t = GANTechnique(GANAugConfig(), pair, seed=5, device=CPU)
    imgs, labels = t(model, x, y, 0)
    assert torch.equal(labels, y)
    # z ~ N(0, I) from a stream seeded seed + 202, one row per label
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(5 + 202))
    with torch.no_grad():
        torch.testing.assert_close(imgs, pair.generator(z, y))
    assert imgs.shape == x.shape and imgs.dtype == x.dtype and not imgs.requires_grad
    assert model.training and not pair.generator.training  # modes are left as they were
    assert not torch.equal(t(model, x, y, 1)[0], imgs)  # the stream moved on
    assert t.metrics() == {"gan_kept": 1.0}
    assert t.name == "gan" and t.needs_gan


def test_no_metrics_before_the_first_batch():
    assert GANTechnique(GANAugConfig(), _Pair(), seed=0, device=CPU).metrics() == {}


def test_samples_take_the_images_dtype():
    pair = _Pair()
    x, y = _batch()
    imgs, _ = GANTechnique(GANAugConfig(), pair, 0, CPU)(None, x.double(), y, 0)
    assert imgs.dtype == torch.float64


@pytest.mark.parametrize("min_confidence", [0.0, 0.3])
def test_the_ac_filter_keeps_confident_agreeing_rows_and_counts_them(min_confidence):
    pair = _Pair()
    x, y = _batch(12)
    cfg = GANAugConfig(filter_ac=min_confidence == 0, min_confidence=min_confidence)
    t = GANTechnique(cfg, pair, 0, CPU)
    imgs, labels, keep = t(None, x, y, 0)
    with torch.no_grad():
        probs = pair.critic(imgs)[1].softmax(1)
    expected = probs.argmax(1) == y if cfg.filter_ac else probs[torch.arange(12), y] >= 0.3
    assert torch.equal(keep, expected) and torch.equal(labels, y)
    assert t.metrics() == {"gan_kept": pytest.approx(expected.float().mean().item())}


def test_state_dict_round_trip_resumes_the_stream_and_the_counts():
    pair = _Pair()
    x, y = _batch(12)
    a = GANTechnique(GANAugConfig(filter_ac=True), pair, 3, CPU)
    a(None, x, y, 0)
    state = a.state_dict()
    assert state["asked"] == 12 and state["kept"] == int(a.kept)
    assert isinstance(state["kept"], int)
    nxt = a(None, x, y, 1)
    b = GANTechnique(GANAugConfig(filter_ac=True), pair, 99, CPU)
    b.load_state_dict(state)
    again = b(None, x, y, 1)
    for u, v in zip(nxt, again, strict=True):
        torch.testing.assert_close(u, v)
    assert (b.asked, int(b.kept)) == (a.asked, int(a.kept)) == (24, int(a.kept))
    assert b.metrics() == a.metrics()


def test_the_kept_count_stays_exact_past_float32s_integers():
    """The kept counter is an integer tensor: a float32 one would lose counts past 2**24 (about
    16.8 M samples, a long run)."""
    t = GANTechnique(GANAugConfig(filter_ac=True), _Pair(), 0, CPU)
    assert t.kept.dtype == torch.long
    t.load_state_dict({"rng": t.rng.get_state(), "kept": 2**24 + 1, "asked": 2**24 + 3})
    x, y = _batch(12)
    keep = t(None, x, y, 0)[2]
    assert t.state_dict()["kept"] == 2**24 + 1 + int(keep.sum())
    assert t.state_dict()["asked"] == 2**24 + 15


def test_a_stream_from_another_device_restarts_from_the_techniques_seed(caplog):
    pair = _Pair()
    t = GANTechnique(GANAugConfig(), pair, 4, CPU)
    torch.rand(3, generator=t.rng)
    with caplog.at_level(logging.WARNING, logger="advaug"):
        t.load_state_dict({"rng": torch.zeros(16, dtype=torch.uint8), "kept": 3, "asked": 5})
    assert "restarts from seed 206" in caplog.text
    assert torch.equal(t.rng.get_state(), torch.Generator().manual_seed(206).get_state())
    assert t.metrics() == {"gan_kept": 0.6}


def test_memory_format_follows_channels_last_images():
    x = torch.rand(2, 3, 16, 16)
    cl = x.contiguous(memory_format=torch.channels_last)
    assert _fmt(x) == torch.contiguous_format
    assert _fmt(cl) == torch.channels_last
    # one pixel per image: both layouts at once, so the plain one is kept
    assert _fmt(torch.rand(2, 3, 1, 1)) == torch.contiguous_format
    assert _fmt(torch.rand(2, 3)) == torch.contiguous_format
    # a batch in neither layout (a transposed view) gets the plain one
    assert _fmt(x.transpose(2, 3)) == torch.contiguous_format
    assert _fmt(torch.rand(1, 2, 3, 4, 5)) == torch.contiguous_format
    pair = _Pair()
    imgs, _ = GANTechnique(GANAugConfig(), pair, 0, CPU)(None, cl, torch.arange(2), 0)
    assert imgs.is_contiguous(memory_format=torch.channels_last) and not imgs.is_contiguous()


def test_the_config_reaches_the_technique():
    cfg = build_config(
        "smoke",
        ["classifier.augment.technique=gan", "classifier.augment.gan.filter_ac=true",
         "classifier.augment.gan.min_confidence=0.4"],
    )  # fmt: skip
    t = build_technique(cfg.classifier.augment, seed=0, device=CPU, gan=_Pair())
    assert isinstance(t, GANTechnique)
    assert (t.cfg.filter_ac, t.cfg.min_confidence) == (True, 0.4)


def test_the_stream_and_the_kept_count_live_on_the_techniques_device(generator_devices):
    """The latents are drawn from a stream on the data's device, and the kept count is a device
    tensor (no host sync per batch); meta stands in for a GPU."""
    meta = torch.device("meta")
    t = GANTechnique(GANAugConfig(), _Pair(), seed=0, device=meta)
    assert generator_devices == [meta]
    assert (t.kept.device, t.kept.dtype) == (meta, torch.long)

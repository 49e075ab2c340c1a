from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from advaug.attacks import UnrestrictedAttack
from advaug.config import build_config
from advaug.data.splits import Splits, load_splits
from advaug.data.types import Split
from advaug.errors import NumericalError
from advaug.loading import load_gan
from advaug.models import build_gan, build_model
from advaug.runtime.checkpoint import load_file
from advaug.train.gan import GANJob, train_gan
from tests.hooks import Interrupted, nan_in_critic_at, stop_after


@pytest.fixture(scope="module")
def splits():
    return load_splits(build_config("smoke").data)


def _job(*over: str) -> GANJob:
    cfg = build_config("smoke", list(over))
    return GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan, seed=0)


def test_gan_resume_is_bit_identical(tmp_path, splits):
    job = _job("gan.ckpt_every=2")
    train_gan(job, tmp_path / "full", splits=splits)
    with pytest.raises(Interrupted):
        train_gan(job, tmp_path / "cut", splits=splits, on_step=stop_after(3))
    train_gan(job, tmp_path / "cut", splits=splits)
    a = load_file(tmp_path / "full" / "checkpoints" / "final.pt")
    b = load_file(tmp_path / "cut" / "checkpoints" / "final.pt")
    for part in ("generator", "critic"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "train"
    ]
    assert steps == sorted(set(steps)) and steps[-1] == job.gan.iters


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, splits, monkeypatch):
    job = _job("gan.iters=8", "gan.ckpt_every=2")
    nan_in_critic_at(monkeypatch, 4, job.gan.n_critic)
    with pytest.raises(NumericalError, match="gp"):
        train_gan(job, tmp_path / "r", splits=splits)
    manifests = sorted((tmp_path / "r" / "checkpoints").glob("step-*.json"))
    assert manifests, "a good checkpoint should remain"
    steps = [json.loads(m.read_text())["step"] for m in manifests]
    assert max(steps) <= 4
    assert not (tmp_path / "r" / "result.json").exists()


def test_critic_learns_to_separate_real_from_fake(tmp_path, splits):
    job = _job("gan.iters=30", "gan.n_critic=2", "gan.sample_every=100", "gan.eval_every=100")
    train_gan(job, tmp_path / "r", splits=splits)
    recs = [
        json.loads(line)
        for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "train"
    ]
    # the Wasserstein estimate mean D(x) - mean D(G(z)) grows from ~0 as the critic learns
    assert recs[-1]["d_wasserstein"] > recs[0]["d_wasserstein"]
    assert recs[-1]["d_wasserstein"] > 0
    tests = [
        json.loads(line)
        for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "test"
    ]
    assert all(0 <= t["collapsed_classes"] <= 10 and t["diversity_min_ratio"] >= 0 for t in tests)


def test_load_gan_gives_frozen_eval_models(tmp_path, splits):
    train_gan(_job(), tmp_path / "r", splits=splits)
    pair = load_gan(tmp_path / "r")
    assert not pair.generator.training and not pair.critic.training
    assert all(not p.requires_grad for p in pair.generator.parameters())
    imgs = pair.generator(torch.randn(4, pair.generator.z_dim), torch.arange(4))
    assert imgs.shape == (4, 3, 32, 32) and imgs.min() >= 0 and imgs.max() <= 1
    assert (tmp_path / "r" / "samples" / "final.png").is_file()
    assert (tmp_path / "r" / "samples" / "interpolation.png").is_file()


def test_gan_training_seconds_add_up_over_a_resume(tmp_path, splits):
    import time

    def slow_then_stop(state, save):
        time.sleep(0.2)
        stop_after(3)(state, save)

    job = _job()
    with pytest.raises(Interrupted):
        train_gan(job, tmp_path / "r", splits=splits, on_step=slow_then_stop)
    manifest = json.loads((tmp_path / "r" / "checkpoints" / "step-00000003.json").read_text())
    assert manifest["train_seconds"] >= 3 * 0.2
    result = train_gan(job, tmp_path / "r", splits=splits)
    assert result["train_seconds"] >= manifest["train_seconds"]


def _grey28(splits: Splits) -> Splits:
    """The smoke digits as grey 1x28x28 images: the shape of MNIST, made in the test."""

    def shrink(part: Split) -> Split:
        x = F.interpolate(part.x.float().mean(1, keepdim=True), size=(28, 28), mode="bilinear")
        return Split(x.round().clamp(0, 255).to(torch.uint8), part.y)

    val = shrink(splits.val) if splits.val is not None else None
    return Splits(splits.name, shrink(splits.train), val, shrink(splits.test), splits.classes)


def test_the_mnist_acgan_trains_on_grey_28x28_data_and_the_latent_attack_runs(tmp_path, splits):
    """train-gan builds the AC-GAN for the data's shape: with Song et al.'s MNIST settings
    (one-hot z, width 32 here narrowed to 8) it is exactly the ``acgan-mnist`` variant; the
    checkpoint reloads, and the unrestricted attack searches its latent space against
    madry-mnist."""
    grey = _grey28(splits)
    job = _job("gan.width=8", "gan.z_dim=16", "gan.concat_onehot=true", "gan.iters=3")
    train_gan(job, tmp_path / "r", splits=grey)
    pair = load_gan(tmp_path / "r")
    g, d = pair.generator, pair.critic
    ref_g, ref_d = build_gan("acgan-mnist", num_classes=10, width=8, z_dim=16)
    assert g.arch_kwargs == ref_g.arch_kwargs and d.arch_kwargs == ref_d.arch_kwargs
    imgs = g(torch.randn(4, g.z_dim), torch.arange(4))
    assert imgs.shape == (4, 1, 28, 28) and imgs.min() >= 0 and imgs.max() <= 1
    assert (tmp_path / "r" / "samples" / "final.png").is_file()
    f = build_model("madry-mnist", num_classes=10).eval()
    result = UnrestrictedAttack(g, d, f, steps=2, show_progress=False)(torch.arange(6) % 10)
    assert result.images.shape == (6, 1, 28, 28) and result.z.shape == (6, 16)


def test_gan_monitoring_uses_the_validation_split_when_there_is_one(tmp_path, splits):
    job = _job("data.val_size=50", "gan.eval_every=3")
    with_val = load_splits(job.data)
    assert with_val.val is not None and len(with_val.val) == 50
    train_gan(job, tmp_path / "r", splits=with_val)
    recs = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    monitored = [r for r in recs if "ac_top1" in r]
    assert monitored and all(r["split"] == "val" for r in monitored)
    # without a validation split the monitor falls back to the test split
    train_gan(_job("gan.eval_every=3"), tmp_path / "t", splits=splits)
    recs = [json.loads(x) for x in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in recs if "ac_top1" in r} == {"test"}


def test_short_ema_warm_up_warns_with_the_share_and_the_fix(caplog):
    from advaug.train.gan import ema_start_share, warn_short_ema

    # by hand: the first update copies, each of the other 999 multiplies by 0.999
    assert ema_start_share(0.999, 1000) == pytest.approx(0.999**999)
    with caplog.at_level("WARNING", logger="advaug"):
        share = warn_short_ema(0.999, 1000)
    assert share == pytest.approx(0.3681, abs=1e-4)
    msg = caplog.text
    assert "37%" in msg and "gan.ema_decay <= 0.9954" in msg and "4604" in msg
    caplog.clear()
    with caplog.at_level("WARNING", logger="advaug"):
        assert warn_short_ema(0.999, 10_000) < 0.01
    assert caplog.text == ""


def test_train_gan_warns_about_a_short_ema(tmp_path, splits, caplog):
    with caplog.at_level("WARNING", logger="advaug"):
        train_gan(_job("gan.ema_decay=0.999"), tmp_path / "r", splits=splits)
    assert "GAN EMA: decay 0.999 over 6 iterations keeps 100%" in caplog.text

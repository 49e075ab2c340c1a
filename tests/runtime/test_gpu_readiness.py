"""The GPU path's faults (shared/docs/GPU-NOTES.md), caught on the CPU: CUDA is faked where a
test needs it, and device transfers, cuDNN flags and autocast state are observed directly."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import advaug.runtime as runtime_mod
from advaug.attacks import PGD, UnrestrictedAttack
from advaug.attacks.base import per_sample
from advaug.augment import Technique, build_technique
from advaug.augment.base import forward_mixed
from advaug.augment.gan import GANTechnique
from advaug.augment.unrestricted import UnrestrictedTechnique
from advaug.config import (
    ClassifierConfig,
    GANAugConfig,
    RuntimeConfig,
    UnrestrictedAugConfig,
    build_config,
)
from advaug.evaluate import gan_quality
from advaug.models.gan import Critic, Generator
from advaug.runtime import make_runtime, resolve_device, restore_generator
from advaug.runtime.checkpoint import load_file
from advaug.train.gan import GANJob, train_gan
from advaug.train.steps import classifier_step
from tests.hooks import Interrupted, stop_after


class _Ops(TorchDispatchMode):
    """Records the aten ops that run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []
        self.lifted: list[torch.dtype] = []  # dtypes of tensors made from Python data

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        out = func(*args, **(kwargs or {}))
        if str(func) == "aten.lift_fresh.default":
            self.lifted.append(out.dtype)
        return out


class _Pair:
    def __init__(self, k: int = 4):
        torch.manual_seed(0)
        self.generator = Generator(z_dim=8, width=8, num_classes=k).eval()
        self.critic = Critic(width=8, num_classes=k).eval()


# -- 1. runtime.device=cuda --------------------------------------------------------------------


def test_a_bare_cuda_device_gets_the_local_rank_as_its_index(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:3", local_rank=1) == torch.device("cuda", 3)
    assert resolve_device("auto", local_rank=2) == torch.device("cuda", 2)


@pytest.mark.parametrize("name", ["cuda", "auto"])
def test_make_runtime_hands_set_device_an_index(monkeypatch, name):
    seen = []

    def set_device(device):  # torch's own raises without an index
        if torch.device(device).index is None:
            raise ValueError("Expected a torch.device with a specified index")
        seen.append(torch.device(device))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    monkeypatch.setenv("LOCAL_RANK", "1")
    benchmark = torch.backends.cudnn.benchmark
    try:
        rt = make_runtime(RuntimeConfig(device=name, progress=False))
    finally:
        torch.backends.cudnn.benchmark = benchmark
    assert seen == [torch.device("cuda", 1)] and rt.device == torch.device("cuda", 1)
    assert rt.amp_dtype == torch.bfloat16 and rt.channels_last


# -- 2. cuDNN autotuning while batch shapes change ---------------------------------------------


class _Watch(nn.Module):
    """A linear classifier that records cuDNN's benchmark flag at every forward."""

    def __init__(self, k: int = 4, features: int = 3 * 32 * 32):
        super().__init__()
        self.fc = nn.Linear(features, k)
        self.flags: list[bool] = []

    def forward(self, x):
        self.flags.append(torch.backends.cudnn.benchmark)
        return self.fc(x.flatten(1))


@pytest.fixture
def benchmark_on():
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    yield
    torch.backends.cudnn.benchmark = before


def test_the_unrestricted_attack_runs_without_cudnn_autotuning(benchmark_on):
    pair, f = _Pair(), _Watch()
    UnrestrictedAttack(pair.generator, pair.critic, f, steps=3, rng=torch.Generator())(
        torch.arange(8) % 4
    )
    assert f.flags and not any(f.flags)
    assert torch.backends.cudnn.benchmark  # restored


def test_pgd_restarts_run_without_autotuning_and_one_restart_keeps_it(benchmark_on):
    x, y = torch.rand(6, 3, 8, 8), torch.arange(6) % 4
    f = _Watch(features=3 * 8 * 8)
    PGD(f, eps=8 / 255, alpha=2 / 255, steps=2, restarts=2)(x, y)
    assert not any(f.flags) and torch.backends.cudnn.benchmark
    f.flags.clear()
    PGD(f, eps=8 / 255, alpha=2 / 255, steps=2)(x, y)  # fixed shapes: autotuning pays off
    assert all(f.flags)


# -- 3. FGSM augmentation: no host-to-device copy per step --------------------------------------


def test_a_float_eps_becomes_a_device_fill_not_a_host_tensor():
    x = torch.rand(4, 3, 2, 2)
    with _Ops() as rec:
        t = per_sample(0.1, x)
    assert rec.ops == ["aten.full.default", "aten.expand.default", "aten.view.default"]
    assert t.shape == (4, 1, 1, 1) and torch.allclose(t, torch.full_like(t, 0.1))
    with _Ops() as rec:
        per_sample(torch.tensor([0.1, 0.2, 0.3, 0.4]), x)  # a tensor is used as it is
    assert "aten.full.default" not in rec.ops


def test_the_fgsm_technique_step_creates_no_host_tensor():
    cfg = ClassifierConfig()
    cfg.augment.technique = "fgsm"
    t = build_technique(cfg.augment, seed=0, device=torch.device("cpu"))
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    x, y = torch.rand(6, 3, 4, 4), torch.arange(6) % 3
    with _Ops() as rec:
        t(model, x, y, 0)
    # eps is checked once on the host (float64, never sent to the device); nothing of the
    # images' dtype is made from Python data, and nothing is copied between devices
    assert torch.float32 not in rec.lifted and "aten._to_copy.default" not in rec.ops


# -- 4. filter_ac: a fixed shape, rejected rows carry no loss --------------------------------------


def test_filter_ac_keeps_the_shape_and_masks_the_rejected_rows():
    pair = _Pair()
    t = GANTechnique(GANAugConfig(filter_ac=True), pair, seed=0, device=torch.device("cpu"))
    x, y = torch.rand(12, 3, 32, 32), torch.arange(12) % 4
    out = t(nn.Identity(), x, y, 0)
    assert len(out) == 3
    imgs, labels, keep = out
    assert imgs.shape == x.shape and torch.equal(labels, y) and keep.dtype == torch.bool
    with torch.no_grad():
        ac = pair.critic(imgs)[1].argmax(1)
    assert torch.equal(keep, ac == y)
    assert t.metrics()["gan_kept"] == pytest.approx(keep.float().mean().item())


@pytest.mark.parametrize("weight", [1.0, 0.3])
def test_the_masked_mixed_loss_equals_the_loss_on_the_kept_rows(weight):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    xc, yc = torch.rand(6, 3, 2, 2), torch.arange(6) % 5
    xa, ya = torch.rand(8, 3, 2, 2), torch.arange(8) % 5
    keep = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1], dtype=torch.bool)
    masked, stats = forward_mixed(model, xc, yc, (xa, ya, keep), weight=weight, bn="separate")
    kept, ref = forward_mixed(model, xc, yc, (xa[keep], ya[keep]), weight=weight, bn="separate")
    assert masked.item() == pytest.approx(kept.item(), rel=1e-6)
    assert int(stats["aug_n"]) == 5 == int(ref["aug_n"])
    assert int(stats["aug_correct"]) == int(ref["aug_correct"])
    assert stats["loss_sum"].item() == pytest.approx(ref["loss_sum"].item(), rel=1e-6)


def test_all_rows_rejected_leaves_the_clean_loss():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    xc, yc = torch.rand(6, 3, 2, 2), torch.arange(6) % 5
    xa, ya = torch.rand(4, 3, 2, 2), torch.arange(4) % 5
    none = torch.zeros(4, dtype=torch.bool)
    loss, stats = forward_mixed(model, xc, yc, (xa, ya, none), weight=1.0, bn="separate")
    clean, _ = forward_mixed(model, xc, yc, None, weight=1.0, bn="separate")
    assert torch.isfinite(loss) and loss.item() == pytest.approx(clean.item(), rel=1e-6)
    assert int(stats["aug_n"]) == 0


# -- 5. techniques in the training precision; an attack batch that does not fit ------------------


class _Spy(Technique):
    name = "spy"

    def __init__(self):
        self.autocast: list[bool] = []

    def generate(self, model, x, y, step):
        self.autocast.append(torch.is_autocast_enabled("cpu"))
        return None


@pytest.mark.parametrize(("precision", "expected"), [("bf16", True), ("fp32", False)])
def test_the_technique_runs_under_the_steps_autocast(precision, expected):
    rt = make_runtime(RuntimeConfig(device="cpu", precision=precision, progress=False))
    cfg = ClassifierConfig()
    cfg.augment.technique = "fgsm"  # any technique: share 0.5 of the batch goes to it
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    spy = _Spy()
    classifier_step(model, opt, spy, torch.rand(4, 3, 4, 4), torch.arange(4) % 3, 0, cfg=cfg, rt=rt)
    assert spy.autocast == [expected]


def test_an_attack_batch_without_device_memory_is_halved_until_it_fits(monkeypatch, caplog):
    real = UnrestrictedAttack.__call__
    tried = []

    def out_of_memory_above_8(self, *args, **kwargs):
        tried.append(self.cfg.batch_size)
        if self.cfg.batch_size > 8:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(UnrestrictedAttack, "__call__", out_of_memory_above_8)
    cfg = UnrestrictedAugConfig(pool_size=16, steps=2, attack_batch=32)
    t = UnrestrictedTechnique(cfg, _Pair(), seed=0, device=torch.device("cpu"))
    clf = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))
    with caplog.at_level(logging.WARNING, logger="advaug"):
        t(clf, torch.rand(4, 3, 32, 32), torch.arange(4) % 4, step=0)
    assert tried == [32, 16, 8] and t.attack_batch == 8 and t.stats["attacked"] == 16
    assert "out of device memory at batch 32" in caplog.text
    t(clf, torch.rand(4, 3, 32, 32), torch.arange(4) % 4, step=cfg.refresh_every)
    assert tried[-1] == 8  # the lower batch stays


# -- 6. k-NN radii in float64 -------------------------------------------------------------------


def test_precision_recall_measures_distances_in_float64(monkeypatch):
    real_cdist, dtypes = torch.cdist, set()

    def cdist(a, b, *args, **kwargs):
        dtypes.add(a.dtype)
        return real_cdist(a, b, *args, **kwargs)

    monkeypatch.setattr(torch, "cdist", cdist)
    g = torch.Generator().manual_seed(0)
    p, r = gan_quality.precision_recall(
        torch.randn(40, 5, generator=g), torch.randn(30, 5, generator=g)
    )
    assert dtypes == {torch.float64} and 0 <= p <= 1 and 0 <= r <= 1


# -- 8. resume across device types --------------------------------------------------------------


def test_a_generator_state_from_another_device_type_restarts_the_stream(caplog):
    gen = torch.Generator().manual_seed(5)
    good = gen.get_state()
    expected = torch.rand(3, generator=gen)
    assert restore_generator(gen, good, fallback_seed=9) and torch.equal(
        torch.rand(3, generator=gen), expected
    )
    cuda_like = torch.zeros(16, dtype=torch.uint8)  # a CUDA Philox state: seed and offset
    with caplog.at_level(logging.WARNING, logger="advaug"):
        assert not restore_generator(gen, cuda_like, fallback_seed=9)
    assert "another device type" in caplog.text
    assert torch.equal(
        torch.rand(3, generator=gen), torch.rand(3, generator=torch.Generator().manual_seed(9))
    )


def test_a_gan_checkpoint_with_a_cuda_noise_state_resumes_on_the_cpu(tmp_path, caplog):
    cfg = build_config("smoke", ["gan.ckpt_every=2"])
    job = GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan, seed=0)
    with pytest.raises(Interrupted):
        train_gan(job, tmp_path / "r", on_step=stop_after(2))
    ckpt = sorted((tmp_path / "r" / "checkpoints").glob("step-*.pt"))[-1]
    state = load_file(ckpt)
    state["gen_rng"] = torch.zeros(16, dtype=torch.uint8)  # as a CUDA run would have saved it
    torch.save(state, ckpt)
    manifest = json.loads(ckpt.with_suffix(".json").read_text())
    manifest["sha256"] = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    ckpt.with_suffix(".json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="advaug"):
        result = train_gan(job, tmp_path / "r")
    assert result["iters"] == cfg.gan.iters
    assert "another device type" in caplog.text


# -- 9. compile: the recompile limit does not fall back to eager silently ------------------------


def test_maybe_compile_makes_dynamo_raise_at_its_recompile_limit(monkeypatch):
    import torch._dynamo.config as dynamo_config

    monkeypatch.setattr(dynamo_config, "fail_on_recompile_limit_hit", False)
    rt = runtime_mod.Runtime(torch.device("cpu"), None, False, compile=True)
    rt.maybe_compile(lambda x: x + 1)
    assert dynamo_config.fail_on_recompile_limit_hit is True

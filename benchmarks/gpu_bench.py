"""One-call GPU check and benchmark: correctness on the device, then speed against the card's peak.

    bash benchmarks/gpu.sh                       # on a GPU machine; at most 8 minutes
    python benchmarks/gpu_bench.py --tiny        # the same on the CPU, tiny sizes, seconds
    ADVAUG_BENCH_TINY=1 python benchmarks/gpu_bench.py

Checks (each ``ok`` with its numbers; a failed check makes the exit code 1):

- ``classifier``: ``train_classifier`` on the embedded digits with the default fast path (bf16
  autocast, channels_last, fused SGD on CUDA) learns far above chance; an interrupted run
  resumes on the device to the full step count;
- ``gan``: ``train_gan`` (smoke size) gives finite losses and resumes after an interruption;
- ``bf16_vs_fp32``: the same DenseNet and batch give the same loss (relative difference < 2%)
  and gradients (cosine > 0.99) under bf16 autocast as in fp32, and the same AC-GAN critic loss;
- ``attacks``: FGSM and PGD-10 at 8/255 flip ≥ 99% of a toy brightness classifier's correct
  answers, and the unrestricted latent attack fools a toy classifier on ≥ 90% of samples;
- ``study_smoke``: ``advaug study --preset smoke`` runs every stage, the evaluation and the
  report on the device.

The classifier check spells the device ``runtime.device=cuda`` (no index) and the GAN check
``auto``, the two ways users write it. Every section records its peak device memory
(``max_memory_allocated_gib``); the bf16 check also compares the critic's gradient (gradient
penalty included) with fp32's.

Diagnostics (CUDA only): ``host_syncs`` lists the Python lines that synchronised host and device
(``torch.cuda.set_sync_debug_mode``) during real training loops (the GAN, then the classifier
with techniques ``none``, ``fgsm``, ``gan`` and ``unrestricted``), with how often; a line hit on
every step is a stall in the hot path.

Throughput, each as an fp32 eager baseline (TF32 off, NCHW) against the fast path (bf16 autocast,
channels_last, TF32 on) in the same run, with FLOPs counted once by ``FlopCounterMode``, the
achieved TFLOP/s and its share of the card's dense bf16 peak (looked up by name; unknown cards
get none): the DenseNet-BC-100 training step (and ``torch.compile`` on/off, in a child process
with a time cap), an AC-GAN iteration at widths 128 and 256, the unrestricted attack's
examples/s, and PGD-10 evaluation images/s. The measurement functions come from
``benchmarks/bench_*.py`` (imported by path); a missing one skips its rows.

Percentages are given against the datasheet's dense bf16 peak and, where one was measured, the
card's real bf16 ceiling (H200: about 790 TFLOP/s). The unrestricted attack's first (cold) call
is timed apart from the warm ones.

Writes ``gpu-<card>-<date>.json`` under ``$OUT`` when set (what a device machine sends back),
else under ``benchmarks/results/`` (``--out-dir``), and prints a short table
last. Needs only torch and this checkout (``PYTHONPATH=src``); pyyaml and numpy are
needed by the checks that train (they are skipped with the reason when missing).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import importlib.util
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "src", ROOT / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

#: Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, matched in order against the name.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM (e.g. "NVIDIA H100 80GB HBM3")
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)
#: Measured dense bf16 matmul ceilings in TFLOP/s (what a large GEMM actually reaches; the
#: datasheet peak above is not reachable): percentages are also given against these.
MEASURED_BF16_TFLOPS: tuple[tuple[str, float], ...] = (("H200", 790.0),)
CHILD_TAG = "GPU_BENCH_CHILD "
#: (name, channels_last, autocast dtype, TF32): the fp32 eager baseline and the fast path.
VARIANTS = (("baseline", False, None, False), ("fast", True, torch.bfloat16, True))


@dataclass
class Sizes:
    """Problem sizes of one run (full on a GPU, tiny on a CPU)."""

    clf_model: str = "densenet-bc-100"
    clf_batch: int = 128
    clf_steps: int = 20
    clf_repeats: int = 3
    gan_widths: tuple[int, ...] = (128, 256)
    gan_batch: int = 64
    gan_n_critic: int = 5
    gan_iters: int = 5
    unres_model: str = "densenet-bc-100"
    unres_width: int = 128
    unres_n: int = 512
    unres_steps: int = 20
    pgd_model: str = "densenet-bc-100"
    pgd_batch: int = 512
    check_model: str = "densenet-bc-100"
    check_batch: int = 64
    train_epochs: int = 8
    sync_steps: int = 20
    gan_check_iters: int = 6
    compile_cap_s: float = 240.0
    budget_s: float = 450.0
    num_classes: int = 100
    repeats: int = 3


TINY = Sizes(
    clf_model="tiny-cnn",
    clf_batch=8,
    clf_steps=2,
    clf_repeats=1,
    gan_widths=(16,),
    gan_batch=8,
    gan_n_critic=2,
    gan_iters=1,
    unres_model="tiny-cnn",
    unres_width=8,
    unres_n=8,
    unres_steps=3,
    pgd_model="tiny-cnn",
    pgd_batch=8,
    check_model="tiny-cnn",
    check_batch=8,
    train_epochs=2,
    sync_steps=3,
    gan_check_iters=2,
    compile_cap_s=120.0,
    budget_s=300.0,
    num_classes=10,
    repeats=1,
)


@dataclass
class Report:
    """Everything the run found; written as JSON."""

    env: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


@functools.cache
def load_bench(name: str) -> ModuleType | None:
    """``benchmarks/<name>.py`` imported by path, or None when it is missing or fails."""
    path = ROOT / "benchmarks" / f"{name}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"_gpu_bench_{name}", path)
    if spec is None or spec.loader is None:
        return None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
    except Exception as e:  # an optional module that does not import: skip its rows
        sys.modules.pop(spec.name, None)
        print(f"[gpu_bench] {path.name} not usable: {type(e).__name__}: {e}", file=sys.stderr)
        return None
    return mod


def peak_tflops(name: str) -> float | None:
    """The dense bf16 peak of a card from its name, or None when unknown."""
    for key, peak in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return peak
    return None


def measured_tflops(name: str) -> float | None:
    """The measured bf16 ceiling of a card from its name, or None when none was measured."""
    for key, peak in MEASURED_BF16_TFLOPS:
        if key.lower() in name.lower():
            return peak
    return None


def card_slug(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 for fp32 matmuls and convolutions on or off (restored afterwards)."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def count_flops(fn: Callable[[], Any]) -> int | None:
    """FLOPs of one call of ``fn`` (FlopCounterMode; totals only, so that the gradient
    penalty's ``autograd.grad`` works), or None when counting fails."""
    from torch.utils.flop_counter import FlopCounterMode

    gan = load_bench("bench_gan")
    counter = gan.flop_counter() if gan is not None and hasattr(gan, "flop_counter") else None
    if counter is None:
        counter = FlopCounterMode(display=False)
    try:
        with counter:
            fn()
    except Exception as e:
        print(f"[gpu_bench] FLOP counting failed: {type(e).__name__}: {e}", file=sys.stderr)
        return None
    return int(counter.get_total_flops())


def rate_row(
    per_s: float | None, unit: str, flops_per_item: float | None, peak: float | None
) -> dict[str, Any]:
    """A measurement with its achieved TFLOP/s and share of the peak."""
    tflops = per_s * flops_per_item / 1e12 if per_s and flops_per_item else None
    ceiling = _CEILING.get("tflops")
    return {
        "per_s": per_s,
        "unit": unit,
        "flops_per_item": flops_per_item,
        "tflops": tflops,
        "fraction_of_peak": tflops / peak if tflops and peak else None,
        "fraction_of_measured_ceiling": tflops / ceiling if tflops and ceiling else None,
    }


_CEILING: dict[str, float | None] = {"tflops": None}  # set by run() from the card's name


def compare(baseline: dict[str, Any], fast: dict[str, Any]) -> dict[str, Any]:
    """Baseline and fast rows with the speed-up of the fast path."""
    a, b = baseline.get("per_s"), fast.get("per_s")
    return {"baseline": baseline, "fast": fast, "speedup": b / a if a and b else None}


class Deadline:
    """The run's time budget: sections are skipped when too little of it is left."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def write_report(report: Report, path: Path) -> None:
    """Write the report as JSON (atomically); called after every section, so that a run cut
    short by the time limit still leaves everything it measured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
    os.replace(tmp, path)


def section(
    report: Report,
    where: str,
    name: str,
    deadline: Deadline,
    need_s: float,
    path: Path | None = None,
):
    """Run ``fn`` into ``report.<where>[name]`` unless the budget is short; errors are kept,
    and the report is written to ``path`` afterwards."""

    def run(fn: Callable[[], dict[str, Any]]) -> None:
        target = getattr(report, where)
        if deadline.left() < need_s:
            target[name] = {"status": "skipped", "reason": f"time budget ({need_s:.0f} s needed)"}
            report.skipped.append(f"{where}.{name}")
            return
        t0 = time.perf_counter()
        print(f"[gpu_bench] {where}.{name} ...", file=sys.stderr, flush=True)
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        try:
            out = fn()
        except Exception as e:
            out = {
                "status": "error",
                "ok": False if where == "checks" else None,
                "error": f"{type(e).__name__}: {str(e).strip()[:400]}",
                "traceback": traceback.format_exc()[-2000:],
            }
        out.setdefault("status", "done")
        out["seconds"] = round(time.perf_counter() - t0, 2)
        if cuda:
            out["max_memory_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        target[name] = out
        if path is not None:
            write_report(report, path)

    return run


# ---------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------


def _smoke_overrides(device: torch.device | str) -> list[str]:
    """``runtime.device`` as given: ``cuda`` (no index) and ``auto`` are both exercised."""
    return [f"runtime.device={device}", "runtime.progress=false", "runtime.threads=0"]


def _spelling(device: torch.device, spelling: str) -> str:
    """``device`` written as a user would: ``cuda`` (bare) or ``auto``; the CPU stays ``cpu``."""
    return spelling if device.type == "cuda" else "cpu"


class _Stopped(Exception):
    """Raised by :func:`_stop_at` once the run is checkpointed (a kill, simulated)."""


def _stop_at(n: int):
    """``on_step`` hook: checkpoint at step (or GAN iteration) ``n``, then stop the run."""

    def on_step(state: Any, save: Any) -> None:
        if state.step >= n:
            save()
            raise _Stopped

    return on_step


def check_classifier(device: torch.device, sizes: Sizes, tmp: Path) -> dict[str, Any]:
    from advaug.config import build_config
    from advaug.train.classifier import ClassifierJob, train_classifier

    over = [*_smoke_overrides(_spelling(device, "cuda")), f"classifier.epochs={sizes.train_epochs}"]
    if sizes.train_epochs >= 8:  # the full digits set: far above chance
        over += ["data.train_limit=0", "data.test_limit=0", "classifier.optim.lr=0.1"]
    floor = 0.5 if sizes.train_epochs >= 8 else 0.15
    cfg = build_config("smoke", over)
    job = ClassifierJob(data=cfg.data, runtime=cfg.runtime, classifier=cfg.classifier, seed=0)
    res = train_classifier(job, tmp / "clf")
    # an interrupted run resumes on the device (RNG states and optimiser state included)
    cut = ClassifierJob(data=cfg.data, runtime=cfg.runtime, classifier=cfg.classifier, seed=1)
    with contextlib.suppress(_Stopped):
        train_classifier(cut, tmp / "clf-cut", on_step=_stop_at(5))
    resumed = train_classifier(cut, tmp / "clf-cut")
    losses = [
        json.loads(line)["loss"]
        for line in (tmp / "clf" / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "train"
    ]
    ok = (
        res["test_top1"] > floor
        and all(math.isfinite(v) for v in losses)
        and resumed["steps"] == res["steps"]
    )
    return {
        "ok": bool(ok),
        "test_top1": res["test_top1"],
        "chance": 0.1,
        "required_top1": floor,
        "epoch_losses": losses,
        "resumed_steps": resumed["steps"],
        "expected_steps": res["steps"],
        "runtime": res["runtime"],
    }


def check_gan(device: torch.device, sizes: Sizes, tmp: Path) -> dict[str, Any]:
    from advaug.config import build_config
    from advaug.train.gan import GANJob, train_gan

    over = [*_smoke_overrides(_spelling(device, "auto")), f"gan.iters={sizes.gan_check_iters}"]
    cfg = build_config("smoke", over)
    job = GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan, seed=0)
    res = train_gan(job, tmp / "gan")
    with contextlib.suppress(_Stopped):
        train_gan(job, tmp / "gan-cut", on_step=_stop_at(1))
    resumed = train_gan(job, tmp / "gan-cut")
    recs = [json.loads(x) for x in (tmp / "gan" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["split"] == "train"]
    finite = all(
        isinstance(v, float) and math.isfinite(v)
        for r in train
        for k, v in r.items()
        if k.startswith(("d_", "g_"))
    )
    ok = finite and bool(train) and resumed["iters"] == res["iters"] == sizes.gan_check_iters
    return {
        "ok": bool(ok),
        "iters": res["iters"],
        "resumed_iters": resumed["iters"],
        "last": {k: v for k, v in train[-1].items() if k.startswith(("d_", "g_"))} if train else {},
        "ac_test_top1": res["ac_test_top1"],
    }


def check_bf16(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    from advaug.models import build_model
    from advaug.models.gan import Critic
    from advaug.train.gan_losses import critic_loss

    torch.manual_seed(0)
    model = build_model(sizes.check_model, num_classes=sizes.num_classes).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(sizes.check_batch, 3, 32, 32, generator=gen).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, sizes.num_classes, (sizes.check_batch,), generator=gen).to(device)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def loss_and_grad(dtype: torch.dtype | None) -> tuple[float, torch.Tensor]:
        model.load_state_dict(state)  # same BN running stats for both
        model.zero_grad(set_to_none=True)
        with tf32(False), autocast(device, dtype):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        grad = torch.cat([p.grad.reshape(-1).float() for p in model.parameters()])
        return float(loss.detach()), grad

    l32, g32 = loss_and_grad(None)
    l16, g16 = loss_and_grad(torch.bfloat16)
    rel = abs(l16 - l32) / max(abs(l32), 1e-12)
    cos = float(F.cosine_similarity(g32, g16, dim=0))

    torch.manual_seed(1)
    critic = Critic(width=16 if sizes.check_model == "tiny-cnn" else 128, num_classes=10)
    critic = critic.to(device)
    real, fake = torch.rand(2, sizes.check_batch, 3, 32, 32, generator=gen).to(device)
    ycls = torch.randint(0, 10, (sizes.check_batch,), generator=gen).to(device)

    def critic_total(dtype: torch.dtype | None) -> tuple[float, torch.Tensor]:
        """The critic loss (WGAN + gradient penalty + AC) and its gradient on the critic."""
        critic.zero_grad(set_to_none=True)
        rng = torch.Generator(device=device).manual_seed(5)
        with tf32(False), autocast(device, dtype):
            loss, _ = critic_loss(critic, real, ycls, fake, rng=rng)
        loss.backward()
        grad = torch.cat([p.grad.reshape(-1).float() for p in critic.parameters()])
        return float(loss.detach()), grad

    (c32, cg32), (c16, cg16) = critic_total(None), critic_total(torch.bfloat16)
    crel = abs(c16 - c32) / max(1.0, abs(c32))
    gp_cos = float(F.cosine_similarity(cg32, cg16, dim=0))
    return {
        "ok": bool(rel < 0.02 and cos > 0.99 and crel < 0.02 and gp_cos > 0.99),
        "critic_grad_cosine": gp_cos,
        "model": sizes.check_model,
        "loss_fp32": l32,
        "loss_bf16": l16,
        "loss_rel_diff": rel,
        "grad_cosine": cos,
        "critic_loss_fp32": c32,
        "critic_loss_bf16": c16,
        "critic_rel_diff": crel,
        "tolerances": {
            "loss_rel_diff": 0.02,
            "grad_cosine": 0.99,
            "critic_rel_diff": 0.02,
            "critic_grad_cosine": 0.99,
        },
    }


class _Brightness(nn.Module):
    """Toy classifier: class 1 when the mean of channel ``ch`` (all channels: None) is above
    0.5, else class 0; the margin is 50 × the distance to 0.5."""

    def __init__(self, ch: int | None = None, k: float = 50.0) -> None:
        super().__init__()
        self.ch, self.k = ch, k
        self.scale = nn.Parameter(torch.ones(()))  # a parameter, so it is a model like any other

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x if self.ch is None else x[:, self.ch]
        d = self.k * self.scale * (v.float().flatten(1).mean(1) - 0.5)
        return torch.stack([-d, d], dim=1)


class _ToyG(nn.Module):
    """Toy generator: channel 0 brightness 0.5 ± 0.02 (class-typical) + 0.1·tanh(z₀); channel 1
    encodes the class for the AC head."""

    z_dim, num_classes, bn_stats = 4, 2, "running"

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b = 0.5 + 0.02 * (2 * y.float() - 1) + 0.1 * torch.tanh(self.w * z[:, 0])
        c1 = y.float()
        img = torch.stack([b, c1, torch.full_like(b, 0.5)], 1)[:, :, None, None]
        return img.expand(-1, -1, 8, 8)


class _ToyD(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ac = _Brightness(ch=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.new_zeros(x.shape[0]), self.ac(x)


def check_attacks(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    from advaug.attacks import FGSM, PGD, UnrestrictedAttack

    gen = torch.Generator().manual_seed(0)
    n = 256
    y = (torch.arange(n) % 2).to(device)
    base = 0.5 + 0.01 * (2 * y.float() - 1)  # mean 0.51 for class 1, 0.49 for class 0
    noise = (torch.rand(n, 3, 32, 32, generator=gen).to(device) - 0.5) * 0.1
    x = (base[:, None, None, None] + noise - noise.mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
    f = _Brightness().to(device).eval()
    out: dict[str, Any] = {}
    ok = True
    for dtype in (None, torch.bfloat16):
        key = "fp32" if dtype is None else "bf16"
        with autocast(device, dtype):
            clean = f(x).argmax(1) == y
            for name, atk in (
                ("fgsm", FGSM(f, eps=8 / 255)),
                ("pgd10", PGD(f, eps=8 / 255, alpha=2 / 255, steps=10)),
            ):
                adv = atk(x, y)
                fooled = (f(adv).argmax(1) != y) & clean
                rate = float(fooled.sum()) / max(1, int(clean.sum()))
                linf = float((adv - x).abs().max())
                out[f"{name}_{key}"] = {
                    "success": rate,
                    "linf": linf,
                    "clean_acc": float(clean.float().mean()),
                }
                ok &= rate >= 0.99 and linf <= 8 / 255 + 1e-6 and bool(clean.all())
    g, d, clf = _ToyG().to(device), _ToyD().to(device), _Brightness(ch=0).to(device)
    atk = UnrestrictedAttack(
        g,
        d,
        clf,
        steps=50,
        lr=0.05,
        lambda1=0.0,
        lambda2=1.0,
        batch_size=n,
        rng=torch.Generator(device=device).manual_seed(0),
        show_progress=False,
    )
    res = atk(y)
    out["unrestricted_toy"] = {
        "success": res.success_rate,
        "mean_steps": float(res.steps.float().mean()),
    }
    ok &= res.success_rate >= 0.9
    return {"ok": bool(ok), **out, "thresholds": {"fgsm/pgd": 0.99, "unrestricted": 0.9}}


def check_study(device: torch.device, tmp: Path) -> dict[str, Any]:
    """``advaug study --preset smoke`` on the device: every stage, the evaluation and the report."""
    from advaug.config import build_config
    from advaug.study import run_study

    cfg = build_config("smoke", _smoke_overrides(_spelling(device, "cuda")))
    out = tmp / "study"
    run_study(cfg, out)
    info = json.loads((out / "study.json").read_text())
    evals = sorted(p.stem for p in (out / "eval").glob("*.json"))
    ok = info.get("finished") is True and (out / "report" / "index.html").is_file()
    ok &= evals == sorted(info["models"])
    return {"ok": bool(ok), "models": info["models"], "evaluated": evals}


# ---------------------------------------------------------------------------------------------
# diagnostics
# ---------------------------------------------------------------------------------------------


def host_syncs(device: torch.device, sizes: Sizes, tmp: Path) -> dict[str, Any]:
    """Where the real training loops synchronise host and device (CUDA sync debug mode)."""
    if device.type != "cuda":
        return {"status": "not applicable", "reason": "sync debug mode needs CUDA"}
    from advaug.config import build_config
    from advaug.train.classifier import ClassifierJob, train_classifier
    from advaug.train.gan import GANJob, train_gan

    n = sizes.sync_steps
    bs = 32
    out: dict[str, Any] = {"steps": n}
    runs: dict[str, Callable[[], Any]] = {}
    gcfg = build_config(
        "smoke",
        [
            *_smoke_overrides(device),
            f"gan.iters={2 * n}",
            "gan.sample_every=100000",
            "gan.eval_every=100000",
            "gan.ckpt_every=100000",
        ],
    )
    gjob = GANJob(data=gcfg.data, runtime=gcfg.runtime, gan=gcfg.gan)
    runs["gan"] = lambda: train_gan(gjob, tmp / "sync-gan")  # first: the techniques use it
    for technique in ("none", "fgsm", "gan", "unrestricted"):
        cfg = build_config(
            "smoke",
            [
                *_smoke_overrides(device),
                f"data.train_limit={n * bs}",
                "data.test_limit=100",
                "classifier.epochs=1",
                f"classifier.batch_size={bs}",
                f"classifier.augment.technique={technique}",
                "classifier.optim.ema_decay=0.99",
            ],
        )
        job = ClassifierJob(
            data=cfg.data,
            runtime=cfg.runtime,
            classifier=cfg.classifier,
            gan=str(tmp / "sync-gan") if technique in ("gan", "unrestricted") else None,
        )
        runs[f"classifier-{technique}"] = lambda job=job, t=technique: train_classifier(
            job, tmp / f"sync-{t}"
        )
    for name, fn in runs.items():
        per_step = n if name.startswith("classifier") else 2 * n
        sites = sync_sites(
            fn,
            lambda: torch.cuda.set_sync_debug_mode("warn"),
            lambda: torch.cuda.set_sync_debug_mode(0),
        )
        out[name] = {
            "steps": per_step,
            "syncs": sum(sites.values()),
            "per_step_sites": {s: c for s, c in sites.most_common() if c >= per_step},
            "sites": dict(sites.most_common(25)),
        }
    out["ok"] = not any(out[k]["per_step_sites"] for k in runs)
    return out


def sync_sites(
    fn: Callable[[], Any], enable: Callable[[], Any], disable: Callable[[], Any]
) -> Counter:
    """How often each Python line (``file:line``) warned of a synchronising operation while
    ``fn`` ran between ``enable()`` and ``disable()`` (torch's sync debug mode warns from the
    line that made the call)."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        enable()
        try:
            fn()
        finally:
            disable()
    return Counter(
        f"{_short(w.filename)}:{w.lineno}" for w in rec if "synchroniz" in str(w.message)
    )


def _short(path: str) -> str:
    p = Path(path)
    for anchor in (ROOT / "src", ROOT):
        with contextlib.suppress(ValueError):
            return str(p.relative_to(anchor))
    return "/".join(p.parts[-3:])


# ---------------------------------------------------------------------------------------------
# throughput
# ---------------------------------------------------------------------------------------------


def bench_classifier(device: torch.device, sizes: Sizes, peak: float | None) -> dict[str, Any]:
    mod = load_bench("bench_classifier")
    if mod is None:
        return {"status": "skipped", "reason": "benchmarks/bench_classifier.py missing"}
    fpi = mod.count_train_flops(
        sizes.clf_model, batch=min(8, sizes.clf_batch), device=device, num_classes=sizes.num_classes
    )
    rows = {}
    for name, cl, dtype, allow_tf32 in VARIANTS:
        with tf32(allow_tf32):
            r = mod.bench_train_step(
                sizes.clf_model,
                sizes.clf_batch,
                device,
                channels_last=cl,
                amp_dtype=dtype,
                steps=sizes.clf_steps,
                repeats=sizes.clf_repeats,
                num_classes=sizes.num_classes,
                flops_per_image=fpi,
            )
        rows[name] = {
            **rate_row(r["images_per_s"], "images/s", fpi, peak),
            "variant": "fp32 eager, NCHW, TF32 off" if name == "baseline" else "bf16 + CL",
            "seconds_per_step": r["seconds_per_step"],
        }
    return {
        "model": sizes.clf_model,
        "batch": sizes.clf_batch,
        **compare(rows["baseline"], rows["fast"]),
    }


def bench_compile(
    device: torch.device,
    sizes: Sizes,
    peak: float | None,
    eager: dict[str, Any],
    cap: float,
    tiny: bool,
) -> dict[str, Any]:
    """torch.compile of the fast training step in a child process, killed after ``cap`` s."""
    spec = {
        "device": str(device),
        "tiny": tiny,
        "model": sizes.clf_model,
        "batch": sizes.clf_batch,
        "steps": sizes.clf_steps,
        "repeats": sizes.clf_repeats,
        "num_classes": sizes.num_classes,
    }
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-compile", json.dumps(spec)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=cap)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the child and its compile workers
        proc.communicate()
        return {"status": "timeout", "cap_s": cap, "note": "compiling took longer than the cap"}
    line = [x for x in stdout.splitlines() if x.startswith(CHILD_TAG)]
    if proc.returncode != 0 or not line:
        return {"status": "error", "returncode": proc.returncode, "stderr": stderr[-1500:]}
    r = json.loads(line[-1][len(CHILD_TAG) :])
    if "falling back to eager" in stderr or "running eager" in stderr:
        r["compiled"] = False
        r["note"] = "torch.compile failed; eager fallback: " + stderr[-300:]
    fast = rate_row(
        r["images_per_s"], "images/s", (eager.get("fast") or {}).get("flops_per_item"), peak
    )
    return {
        "compiled": r["compiled"],
        "note": r.get("note"),
        "warmup_s": r["warmup_seconds"],
        "child_wall_s": round(time.perf_counter() - t0, 1),
        "eager": eager.get("fast"),
        "compile": fast,
        "speedup": (fast["per_s"] / eager["fast"]["per_s"]) if eager.get("fast") else None,
    }


def compile_child(spec: dict[str, Any]) -> int:
    """The child of :func:`bench_compile`: one measurement, one tagged JSON line."""
    mod = load_bench("bench_classifier")
    if mod is None:
        print("bench_classifier.py missing", file=sys.stderr)
        return 2
    device = torch.device(spec["device"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    compiled = not spec["tiny"]  # on the CPU test: the plumbing only (compiling costs minutes)
    with tf32(True):
        r = mod.bench_train_step(
            spec["model"],
            spec["batch"],
            device,
            channels_last=True,
            amp_dtype=torch.bfloat16,
            compile=compiled,
            steps=spec["steps"],
            warmup=3,
            repeats=spec["repeats"],
            num_classes=spec["num_classes"],
        )
    note = None if compiled else "--tiny: eager stand-in (compiling is not timed on the CPU)"
    print(CHILD_TAG + json.dumps({**r, "compiled": compiled, "note": note}), flush=True)
    return 0


def bench_gan(device: torch.device, sizes: Sizes, width: int, peak: float | None) -> dict[str, Any]:
    mod = load_bench("bench_gan")
    if mod is None:
        return {"status": "skipped", "reason": "benchmarks/bench_gan.py missing"}
    rows = {}
    for name, cl, dtype, allow_tf32 in VARIANTS:
        with tf32(allow_tf32):
            r = mod.bench_gan_iteration(
                width,
                device,
                iters=sizes.gan_iters,
                batch=sizes.gan_batch,
                autocast_dtype=dtype,
                n_critic=sizes.gan_n_critic,
                num_classes=sizes.num_classes,
                channels_last=cl,
                warmup=1,
                count_flops=name == "baseline",
            )
        rows[name] = {**r, "per_s": r["it_per_s"]}
    flops = rows["baseline"]["flops_per_iter"]
    out = {
        k: {**rate_row(v["it_per_s"], "iterations/s", flops, peak), "median_s": v["median_s"]}
        for k, v in rows.items()
    }
    return {
        "width": width,
        "batch": sizes.gan_batch,
        "n_critic": sizes.gan_n_critic,
        **compare(out["baseline"], out["fast"]),
    }


def bench_unrestricted(device: torch.device, sizes: Sizes, peak: float | None) -> dict[str, Any]:
    mod = load_bench("bench_attacks")
    if mod is None:
        return {"status": "skipped", "reason": "benchmarks/bench_attacks.py missing"}
    torch.manual_seed(0)
    f, fname = mod.build_classifier(sizes.unres_model, sizes.num_classes)
    from advaug.attacks import UnrestrictedAttack
    from advaug.models import build_gan

    z_dim = 128 if sizes.unres_width >= 64 else 16
    g, d = build_gan(mod.GAN, sizes.num_classes, z_dim=z_dim, width=sizes.unres_width)
    gname = f"{mod.GAN} width {sizes.unres_width}"

    source = torch.arange(sizes.unres_n, device=device) % sizes.num_classes

    def one(dtype: torch.dtype | None) -> None:
        atk = UnrestrictedAttack.from_preset(
            "fast",
            g,
            d,
            f,
            steps=sizes.unres_steps,
            early_stop=True,
            batch_size=sizes.unres_n,
            rng=torch.Generator(device=device).manual_seed(0),
            show_progress=False,
        )
        with autocast(device, dtype):
            atk(source)

    rows: dict[str, Any] = {}
    for name, cl, dtype, allow_tf32 in VARIANTS:
        fmt = torch.channels_last if cl else torch.contiguous_format
        for m in (f, g, d):
            m.to(device, memory_format=fmt).eval()
        with tf32(allow_tf32):
            sync(device)
            t0 = time.perf_counter()
            one(dtype)  # cold: first call on these weights (kernel selection, allocator growth)
            sync(device)
            cold_s = time.perf_counter() - t0
            r = mod.bench_unrestricted(
                g, d, f, sizes.unres_n, steps=sizes.unres_steps, repeats=sizes.repeats, amp=dtype
            )
            if name == "baseline":  # the same call, counted once (FLOPs do not depend on dtype)
                flops = count_flops(lambda: one(None))
        per_example = flops / sizes.unres_n if flops else None
        rows[name] = {
            **rate_row(r["examples_per_s"], "examples/s", per_example, peak),
            "cold_seconds": cold_s,
            "warm_seconds": sizes.unres_n / r["examples_per_s"] if r["examples_per_s"] else None,
            "success_rate": r["success_rate"],
            "mean_steps": r["mean_steps"],
        }
    return {
        "classifier": fname,
        "gan": gname,
        "n": sizes.unres_n,
        "steps": sizes.unres_steps,
        "note": "random weights: success and early stopping say nothing here",
        **compare(rows["baseline"], rows["fast"]),
    }


def bench_pgd(device: torch.device, sizes: Sizes, peak: float | None) -> dict[str, Any]:
    mod = load_bench("bench_attacks")
    if mod is None:
        return {"status": "skipped", "reason": "benchmarks/bench_attacks.py missing"}
    from advaug.attacks import PGD

    torch.manual_seed(0)
    model, name_ = mod.build_classifier(sizes.pgd_model, sizes.num_classes)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(sizes.pgd_batch, 3, 32, 32, generator=gen)
    y = torch.randint(0, sizes.num_classes, (sizes.pgd_batch,), generator=gen)
    rows = {}
    flops = None
    for name, cl, dtype, allow_tf32 in VARIANTS:
        fmt = torch.channels_last if cl else torch.contiguous_format
        model.to(device, memory_format=fmt).eval()
        xi, yi = x.to(device).contiguous(memory_format=fmt), y.to(device)
        with tf32(allow_tf32):
            r = mod.bench_norm_attacks(
                model, xi, yi, pgd_steps=10, repeats=sizes.repeats, amp=dtype
            )
            if flops is None:
                atk = PGD(model, eps=8 / 255, alpha=2 / 255, steps=10)
                flops = count_flops(lambda atk=atk, xi=xi, yi=yi: atk(xi, yi))
        per_image = flops / sizes.pgd_batch if flops else None
        rows[name] = {
            **rate_row(r["pgd-10"]["images_per_s"], "images/s", per_image, peak),
            "fgsm_images_per_s": r["fgsm"]["images_per_s"],
        }
    return {"model": name_, "batch": sizes.pgd_batch, **compare(rows["baseline"], rows["fast"])}


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


def environment(device: torch.device, tiny: bool) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    packages = {}
    for pkg in ("numpy", "yaml", "tqdm", "tensorboard", "safetensors"):
        packages[pkg] = importlib.util.find_spec(pkg) is not None
    env = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "tiny": tiny,
        "device": str(device),
        "card": name or platform.machine(),
        "peak_bf16_tflops": peak_tflops(name) if device.type == "cuda" else None,
        "measured_bf16_tflops": measured_tflops(name) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "packages": packages,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["multiprocessors"] = props.multi_processor_count
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
    return env


def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else format(v, spec)
    return str(v)


def _failed(row: dict[str, Any]) -> str:
    status = row.get("status", "done")
    return "FAILED" if status == "done" else status.upper()


def table(report: Report) -> str:
    """The short summary printed last."""
    env = report.env
    peak = env.get("peak_bf16_tflops")
    lines = [
        f"advaug GPU bench: {env.get('card')} ({env.get('device')}), torch {env.get('torch')}, "
        f"bf16 peak {_fmt(peak) if peak else 'unknown'} TFLOP/s"
        + (" [--tiny: CPU smoke sizes, numbers mean nothing]" if env.get("tiny") else ""),
        "checks: "
        + ", ".join(f"{k} {'ok' if v.get('ok') else _failed(v)}" for k, v in report.checks.items()),
    ]
    for k, v in report.checks.items():
        if not v.get("ok"):
            lines.append(f"  {k}: {str(v.get('error') or v.get('reason') or v)[:300]}")
    hs = report.diagnostics.get("host_syncs", {})
    if hs.get("status") == "done":
        for k, v in hs.items():
            if isinstance(v, dict):
                sites = ", ".join(f"{s} ({c}x)" for s, c in v["per_step_sites"].items()) or "none"
                lines.append(f"host syncs on every step, {k} ({v['steps']} steps): {sites}")
    elif hs:
        lines.append(f"host syncs: {hs.get('status')} ({hs.get('reason') or hs.get('error')})")
    lines += [
        "",
        "| workload | baseline /s | fast /s | speed-up | fast TFLOP/s | % of peak | % of ceiling |",
        "|---|---|---|---|---|---|---|",
    ]
    model = report.env.get("sizes", {}).get("clf_model", "classifier")
    names = {
        "classifier_step": f"{model} train step (images)",
        "classifier_compile": "  + torch.compile (images)",
        "unrestricted": "unrestricted attack (examples)",
        "pgd10_eval": "PGD-10 evaluation (images)",
    }
    for key, row in report.throughput.items():
        label = names.get(key, key.replace("acgan_w", "AC-GAN iteration, width "))
        if row.get("status") not in (None, "done"):
            why = row.get("reason") or row.get("error") or row.get("note") or ""
            why = str(why)[:80].replace("|", "/")
            lines.append(f"| {label} | {row.get('status')}: {why} | | | | | |")
            continue
        if key == "classifier_compile":
            base, fast, speed = row.get("eager") or {}, row.get("compile") or {}, row.get("speedup")
        else:
            base, fast, speed = row.get("baseline") or {}, row.get("fast") or {}, row.get("speedup")
        frac, ceil = fast.get("fraction_of_peak"), fast.get("fraction_of_measured_ceiling")
        lines.append(
            f"| {label} | {_fmt(base.get('per_s'))} | {_fmt(fast.get('per_s'))} | "
            f"{_fmt(speed, '.2f')}x | {_fmt(fast.get('tflops'))} | "
            f"{_fmt(100 * frac, '.1f') if frac else '-'} | "
            f"{_fmt(100 * ceil, '.1f') if ceil else '-'} |"
        )
    return "\n".join(lines)


def output_path(out_dir: Path, device: torch.device) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc)
    path = out_dir / f"gpu-{card_slug(device)}-{stamp:%Y-%m-%d}.json"
    if path.exists():
        path = out_dir / f"gpu-{card_slug(device)}-{stamp:%Y-%m-%d-%H%M%S}.json"
    return path


def run(args: argparse.Namespace) -> tuple[Report, Path, int]:
    tiny = args.tiny
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sizes = TINY if tiny else Sizes()
    if args.budget_s:
        sizes.budget_s = args.budget_s
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1)))
    deadline = Deadline(sizes.budget_s)
    report = Report(env=environment(device, tiny))
    report.env["sizes"] = asdict(sizes)
    peak = report.env["peak_bf16_tflops"]
    _CEILING["tflops"] = report.env.get("measured_bf16_tflops")
    path = args.out or output_path(args.out_dir, device)
    write_report(report, path)
    with tempfile.TemporaryDirectory(prefix="advaug-gpu-bench-") as tmp_name:
        tmp = Path(tmp_name)
        c = lambda name, need: section(report, "checks", name, deadline, need, path)  # noqa: E731
        c("classifier", 20)(lambda: check_classifier(device, sizes, tmp))
        c("gan", 15)(lambda: check_gan(device, sizes, tmp))
        c("bf16_vs_fp32", 10)(lambda: check_bf16(device, sizes))
        c("attacks", 10)(lambda: check_attacks(device, sizes))
        c("study_smoke", 30)(lambda: check_study(device, tmp))
        section(report, "diagnostics", "host_syncs", deadline, 30, path)(
            lambda: host_syncs(device, sizes, tmp)
        )
        t = lambda name, need: section(report, "throughput", name, deadline, need, path)  # noqa: E731
        t("classifier_step", 20)(lambda: bench_classifier(device, sizes, peak))
        for w in sizes.gan_widths:
            t(f"acgan_w{w}", 15)(lambda w=w: bench_gan(device, sizes, w, peak))
        t("unrestricted", 15)(lambda: bench_unrestricted(device, sizes, peak))
        t("pgd10_eval", 15)(lambda: bench_pgd(device, sizes, peak))
        if args.no_compile:
            report.throughput["classifier_compile"] = {
                "status": "skipped",
                "reason": "--no-compile",
            }
        else:
            cap = min(sizes.compile_cap_s, max(0.0, deadline.left() - 15))
            eager = report.throughput.get("classifier_step", {})
            t("classifier_compile", 45)(
                lambda: bench_compile(device, sizes, peak, eager, cap, tiny)
            )
    report.env["elapsed_s"] = round(sizes.budget_s - deadline.left(), 1)
    failed = [k for k, v in report.checks.items() if not v.get("ok")]
    report.env["failed_checks"] = failed
    report.env["finished"] = True
    write_report(report, path)
    return report, path, 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CPU smoke sizes (ADVAUG_BENCH_TINY=1)")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument(
        "--out-dir",
        type=Path,
        default=Path(os.environ["OUT"])
        if os.environ.get("OUT")
        else ROOT / "benchmarks" / "results",
        help="default: $OUT when set (what a device machine sends back), else benchmarks/results",
    )
    ap.add_argument("--out", type=Path, default=None, help="exact JSON path (overrides --out-dir)")
    ap.add_argument("--budget-s", type=float, default=None, help="time budget of the sections")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    ap.add_argument("--child-compile", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_compile is not None:
        return compile_child(json.loads(args.child_compile))
    args.tiny = args.tiny or os.environ.get("ADVAUG_BENCH_TINY", "") not in ("", "0")
    if not args.tiny and not torch.cuda.is_available() and args.device in (None, "cuda"):
        print("gpu_bench: no CUDA device here; use --tiny for the CPU smoke run", file=sys.stderr)
        return 2
    report, path, code = run(args)
    print(f"wrote {path}")
    print(table(report))
    return code


if __name__ == "__main__":
    raise SystemExit(main())

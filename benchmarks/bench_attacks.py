"""Attack throughput: FGSM and PGD-10 images/s, and the unrestricted attack's examples/s.

The norm-bounded attacks run against DenseNet-BC-40 (``advaug.models.build_model``; a small CNN
if the registry is missing). The unrestricted attack runs Adam for ``--unres-steps`` latent steps
with early stopping on and off, against the same classifier, with the project's AC-GAN built by
name (``advaug.models.build_gan``, narrow by default on the CPU).
Weights are random, so success rates say nothing about real models: with untrained nets few
samples succeed and early stopping saves little. The per-example cost ratio against FGSM is the
number that matters for DESIGN §6 (the seed's 500 steps cost about 1,300× FGSM training).

    python benchmarks/bench_attacks.py                 # CPU, tiny-but-real sizes, ~1 minute
    python benchmarks/bench_attacks.py --quick         # seconds
    python benchmarks/bench_attacks.py --device cuda --batch 256 --gan-width 128 --autocast bf16

A GPU script can import :func:`bench_norm_attacks`, :func:`bench_unrestricted` and
:func:`run_benchmark` directly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

from advaug.attacks import FGSM, PGD, UnrestrictedAttack  # noqa: E402

DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
GAN = "acgan"  # the project's AC-GAN: running BN statistics, so compaction is exact


# ------------------------------------------------------------------------------ models


class SmallCNN(nn.Module):
    """Fallback classifier when ``advaug.models`` is absent: 3 conv-BN-ReLU layers and a head."""

    def __init__(self, num_classes: int = 100, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for i, w in enumerate((width, 2 * width, 4 * width)):
            layers += [nn.Conv2d(c, w, 3, stride=1 if i == 0 else 2, padding=1), nn.BatchNorm2d(w)]
            layers.append(nn.ReLU())
            c = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x * 2 - 1).mean(dim=(2, 3)))


def build_classifier(name: str, num_classes: int) -> tuple[nn.Module, str]:
    """``build_model(name)`` if the registry exists, else :class:`SmallCNN`; and what was used."""
    try:
        from advaug.models import build_model
    except ImportError:
        return SmallCNN(num_classes), "small-cnn (fallback)"
    return build_model(name, num_classes=num_classes), name


# ------------------------------------------------------------------------------ timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def time_call(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Seconds per call: one warm-up call, then the best of ``repeats`` timed calls."""
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def bench_norm_attacks(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    eps: float = 8 / 255,
    pgd_steps: int = 10,
    repeats: int = 3,
    amp: torch.dtype | None = None,
) -> dict[str, dict[str, float]]:
    """Images/s of FGSM and PGD-``pgd_steps`` (α = ε/4) on one batch."""
    device = images.device
    attacks = {
        "fgsm": FGSM(model, eps=eps),
        f"pgd-{pgd_steps}": PGD(model, eps=eps, alpha=eps / 4, steps=pgd_steps),
    }
    out: dict[str, dict[str, float]] = {}
    for name, atk in attacks.items():

        def call(atk: Any = atk) -> Tensor:
            with _autocast(device, amp):
                return atk(images, labels)

        sec = time_call(call, device, repeats)
        out[name] = {"seconds_per_batch": sec, "images_per_s": images.shape[0] / sec}
    return out


def bench_unrestricted(
    generator: nn.Module,
    critic: nn.Module,
    classifier: nn.Module,
    n: int,
    *,
    steps: int = 20,
    early_stop: bool = True,
    repeats: int = 1,
    amp: torch.dtype | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Examples/s, success rate and mean steps of the unrestricted attack (Adam, FAST preset)."""
    device = next(generator.parameters()).device
    source = torch.arange(n, device=device) % int(generator.num_classes)
    result: dict[str, Any] = {}

    def call() -> None:
        atk = UnrestrictedAttack.from_preset(
            "fast",
            generator,
            critic,
            classifier,
            steps=steps,
            early_stop=early_stop,
            batch_size=n,
            rng=torch.Generator(device=device).manual_seed(seed),
            show_progress=False,
        )
        with _autocast(device, amp):
            result["r"] = atk(source)

    sec = time_call(call, device, repeats)
    r = result["r"]
    return {
        "steps": steps,
        "early_stop": early_stop,
        "seconds": sec,
        "examples_per_s": n / sec,
        "success_rate": r.success_rate,
        "mean_steps": float(r.steps.float().mean()),
        # forward passes over (G, D, f) per second, one per sample and step: the cost of a run
        # with early stopping is about (mean steps to success + 1) / this rate per example
        "sample_steps_per_s": float((r.steps + 1).sum()) / sec,
    }


def run_benchmark(
    device: str = "cpu",
    *,
    batch: int = 32,
    classifier: str = "densenet-bc-40",
    num_classes: int = 100,
    gan_width: int = 32,
    z_dim: int = 128,
    unres_n: int = 32,
    unres_steps: int = 20,
    repeats: int = 2,
    autocast: str = "none",
    channels_last: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Run every measurement and return a JSON-ready dict."""
    dev = torch.device(device)
    amp = DTYPES[autocast]
    torch.manual_seed(seed)
    model, model_name = build_classifier(classifier, num_classes)
    from advaug.models import build_gan

    g, d = build_gan(GAN, num_classes, z_dim=z_dim, width=gan_width)
    gan_name = f"{GAN} width {gan_width}"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for m in (model, g, d):
        m.to(dev, memory_format=fmt)
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, 32, 32, generator=gen).to(dev, memory_format=fmt)
    labels = torch.randint(0, num_classes, (batch,), generator=gen).to(dev)
    norm = bench_norm_attacks(model, images, labels, repeats=repeats, amp=amp)
    unres = [
        bench_unrestricted(
            g, d, model, unres_n, steps=unres_steps, early_stop=es, amp=amp, seed=seed
        )
        for es in (True, False)
    ]
    fgsm_cost = 1 / norm["fgsm"]["images_per_s"]
    for row in unres:
        row["cost_vs_fgsm"] = (1 / row["examples_per_s"]) / fgsm_cost
    return {
        "benchmark": "attacks",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "settings": {
            "classifier": model_name,
            "gan": gan_name,
            "z_dim": z_dim,
            "num_classes": num_classes,
            "batch": batch,
            "unres_n": unres_n,
            "unres_steps": unres_steps,
            "repeats": repeats,
            "autocast": autocast,
            "channels_last": channels_last,
            "eps": 8 / 255,
            "weights": "random (throughput only)",
        },
        "note": (
            "random weights: success rates are not meaningful and early stopping rarely fires; "
            "on a shared CPU, timings vary by tens of percent between runs"
        ),
        "norm_attacks": norm,
        "unrestricted": unres,
    }


def format_table(res: dict[str, Any]) -> str:
    """A plain-text table of the results."""
    lines = [
        f"device {res['device']} ({res['device_name']}), torch {res['torch']}, "
        f"{res['threads']} threads, classifier {res['settings']['classifier']}, "
        f"GAN {res['settings']['gan']}",
        f"{'attack':<34}{'per s':>12}{'sec':>10}{'success':>9}{'steps':>7}{'x FGSM':>8}",
    ]
    for name, row in res["norm_attacks"].items():
        lines.append(f"{name:<34}{row['images_per_s']:>10.1f}/s{row['seconds_per_batch']:>10.3f}")
    for row in res["unrestricted"]:
        name = f"unrestricted adam {row['steps']} steps, es={'on' if row['early_stop'] else 'off'}"
        lines.append(
            f"{name:<34}{row['examples_per_s']:>10.2f}/s{row['seconds']:>10.3f}"
            f"{row['success_rate']:>9.2f}{row['mean_steps']:>7.1f}{row['cost_vs_fgsm']:>8.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--classifier", default="densenet-bc-40")
    p.add_argument("--gan-width", type=int, default=32)
    p.add_argument("--unres-n", type=int, default=32)
    p.add_argument("--unres-steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--autocast", choices=sorted(DTYPES), default="none")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    p.add_argument(
        "--out", type=Path, default=None, help="JSON path (default results/attacks-<dev>)"
    )
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    kw: dict[str, Any] = {
        "batch": a.batch,
        "classifier": a.classifier,
        "gan_width": a.gan_width,
        "unres_n": a.unres_n,
        "unres_steps": a.unres_steps,
        "repeats": a.repeats,
        "autocast": a.autocast,
        "channels_last": a.channels_last,
    }
    if a.quick:
        kw.update(batch=8, classifier="tiny-cnn", gan_width=8, unres_n=8, unres_steps=5, repeats=1)
    res = run_benchmark(a.device, **kw)
    print(format_table(res))
    dev = torch.device(a.device).type
    out = (
        a.out
        or ROOT / "benchmarks" / "results" / f"attacks-{dev}{'-quick' if a.quick else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

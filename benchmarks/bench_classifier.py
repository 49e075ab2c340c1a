"""Classifier training throughput: images/s of one training step, per model, batch and variant.

One step is the trainer's own :func:`advaug.train.steps.classifier_step` with technique ``none``
(forward + cross-entropy under the runtime's autocast, backward, then SGD with Nesterov momentum
and weight decay from ``make_optimizer``). The model and inputs are laid out by
:class:`advaug.runtime.Runtime`, which also does the compiling, exactly as ``train_classifier``
does. Variants:

- ``eager``: fp32, contiguous (NCHW);
- ``channels_last``: fp32, channels_last model and inputs;
- ``channels_last+bf16``: and bf16 autocast;
- with ``--compile`` also ``compile`` (fp32, NCHW) and ``channels_last+bf16+compile``
  (``torch.compile`` of the forward + loss; 40-90 s to compile on the CPU).

Each measurement: a few warm-up steps, then ``--repeats`` repeats of ``--steps`` timed steps on
one fixed random batch; the median of the repeats is reported. The FLOPs of one step per image
(forward + backward, ``torch.utils.flop_counter.FlopCounterMode``) turn images/s into TFLOP/s.

    python benchmarks/bench_classifier.py                  # BC-100 and BC-40, batch 64 and 128
    python benchmarks/bench_classifier.py --quick          # tiny-cnn, seconds; no JSON unless --out
    python benchmarks/bench_classifier.py --models densenet-bc-40 --batches 64 --compile --merge
    python benchmarks/bench_classifier.py --device cuda --out results/classifier-cuda.json

A GPU script can import :func:`bench_train_step` and :func:`count_train_flops`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "src", ROOT / "benchmarks"):  # run from a checkout without installing
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
from advaug.augment import Technique  # noqa: E402
from advaug.augment.base import forward_mixed  # noqa: E402
from advaug.config import ClassifierConfig  # noqa: E402
from advaug.models import build_model  # noqa: E402
from advaug.runtime import Runtime  # noqa: E402
from advaug.train.classifier import make_optimizer  # noqa: E402
from advaug.train.steps import classifier_step, mixed_forward  # noqa: E402
from common import (  # noqa: E402
    RESULTS,
    SHARED_CPU_NOTE,
    load_average,
    machine_info,
    markdown_table,
    median,
    now_iso,
    ratio,
    sync,
    write_json,
)

#: name -> (channels_last, autocast dtype, torch.compile)
VARIANTS: dict[str, tuple[bool, torch.dtype | None, bool]] = {
    "eager": (False, None, False),
    "channels_last": (True, None, False),
    "channels_last+bf16": (True, torch.bfloat16, False),
    "compile": (False, None, True),
    "channels_last+bf16+compile": (True, torch.bfloat16, True),
}
DEFAULT_VARIANTS = ("eager", "channels_last", "channels_last+bf16")
COMPILE_VARIANTS = ("compile", "channels_last+bf16+compile")


def _as_model(model: str | nn.Module, num_classes: int) -> tuple[nn.Module, str]:
    if isinstance(model, nn.Module):
        return model, getattr(model, "arch_name", type(model).__name__)
    return build_model(model, num_classes=num_classes), model


def count_train_flops(
    model: str | nn.Module,
    batch: int = 4,
    device: str | torch.device = "cpu",
    *,
    num_classes: int = 100,
    image_size: int = 32,
) -> int:
    """FLOPs of one training step's forward and backward **per image** (optimiser excluded).

    Counted in fp32 at batch ``batch`` and divided by it: convolution and matmul FLOPs grow
    linearly with the batch, so the count per image does not depend on it. The model's
    parameter gradients are cleared afterwards.
    """
    device = torch.device(device)
    net, _ = _as_model(model, num_classes)
    net = net.to(device).train()
    x = torch.rand(batch, 3, image_size, image_size, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        loss, _ = forward_mixed(net, x, y, None, weight=1.0, bn="joint")
        loss.backward()
    net.zero_grad(set_to_none=True)
    return int(counter.get_total_flops()) // batch


def bench_train_step(
    model_name: str | nn.Module,
    batch: int,
    device: str | torch.device = "cpu",
    channels_last: bool = False,
    amp_dtype: torch.dtype | None = None,
    compile: bool = False,
    steps: int = 5,
    *,
    warmup: int = 2,
    repeats: int = 3,
    num_classes: int = 100,
    flops_per_image: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Training images/s of ``model_name`` (a registry name, or a module) at batch ``batch``.

    ``warmup`` untimed steps (compilation happens there), then ``repeats`` timings of ``steps``
    steps each; returns the per-repeat rates, their median, seconds per step, and TFLOP/s when
    ``flops_per_image`` is given (see :func:`count_train_flops`).
    """
    device = torch.device(device)
    torch.manual_seed(seed)
    rt = Runtime(device, amp_dtype, channels_last, compile)
    net, name = _as_model(model_name, num_classes)
    net = rt.prepare(net).train()
    cfg = ClassifierConfig()  # technique none: a plain training step
    opt = make_optimizer(net, cfg, rt)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, 32, 32, generator=gen).to(device).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,), generator=gen).to(device)
    fwd = rt.maybe_compile(mixed_forward(net, cfg))
    none = Technique()

    def step() -> None:
        classifier_step(net, opt, none, x, y, 0, cfg=cfg, rt=rt, forward=fwd)

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    warmup_s = time.perf_counter() - t0
    rates, step_s, cpu_s = [], [], []
    for _ in range(repeats):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        sync(device)
        sec = time.perf_counter() - t0
        rates.append(steps * batch / sec)
        step_s.append(sec / steps)
        cpu_s.append((time.process_time() - c0) / steps)
    rate = median(rates)
    return {
        "model": name,
        "batch": batch,
        "device": str(device),
        "channels_last": channels_last,
        "autocast": str(amp_dtype).replace("torch.", "") if amp_dtype is not None else "none",
        "compile": compile,
        "warmup_steps": warmup,
        "steps": steps,
        "repeats": repeats,
        "warmup_seconds": warmup_s,
        "images_per_s": rate,
        "images_per_s_repeats": rates,
        "seconds_per_step": median(step_s),
        # CPU seconds of this process per step: less sensitive than wall time to other jobs on
        # the cores (with 1 thread, images_per_cpu_s is close to what an idle core would give;
        # meaningless on CUDA, where the host waits)
        "cpu_seconds_per_step": median(cpu_s),
        "images_per_cpu_s": batch / median(cpu_s) if median(cpu_s) > 0 else None,
        "flops_per_image": flops_per_image,
        "tflops_per_s": rate * flops_per_image / 1e12 if flops_per_image else None,
        "params": sum(p.numel() for p in net.parameters()),
    }


def run_benchmark(
    models: list[str],
    batches: list[int],
    variants: list[str],
    *,
    device: str = "cpu",
    steps: int = 2,
    warmup: int = 1,
    repeats: int = 3,
    num_classes: int = 100,
    flops: bool = True,
) -> list[dict[str, Any]]:
    """Every (model, batch, variant) measurement, with ``vs_eager`` ratios within the run."""
    rows: list[dict[str, Any]] = []
    for name in models:
        fpi = count_train_flops(name, 4, device, num_classes=num_classes) if flops else None
        for batch in batches:
            for v in variants:
                cl, amp, comp = VARIANTS[v]
                r = bench_train_step(
                    name,
                    batch,
                    device,
                    cl,
                    amp,
                    comp,
                    steps,
                    warmup=warmup,
                    repeats=repeats,
                    num_classes=num_classes,
                    flops_per_image=fpi,
                )
                r.update(variant=v, date=now_iso(), load_avg_1_5_15=load_average())
                rows.append(r)
                print(
                    f"{name:<18} batch {batch:>4}  {v:<28} {r['images_per_s']:9.1f} img/s",
                    flush=True,
                )
            eager = next((r for r in rows[-len(variants) :] if r["variant"] == "eager"), None)
            for r in rows[-len(variants) :]:
                r["vs_eager"] = ratio(r["images_per_s"], eager and eager["images_per_s"])
                base_cpu = eager and eager["images_per_cpu_s"]
                r["vs_eager_cpu"] = ratio(r["images_per_cpu_s"], base_cpu)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The results as a markdown table."""
    headers = ["model", "batch", "variant", "img/s", "ms/step", "x eager", "img/CPU-s"]
    headers += ["GFLOP/img", "TFLOP/s"]
    body = [
        [
            r["model"],
            r["batch"],
            r["variant"],
            r["images_per_s"],
            1000 * r["seconds_per_step"],
            r.get("vs_eager"),
            r["images_per_cpu_s"],
            r["flops_per_image"] / 1e9 if r["flops_per_image"] else None,
            r["tflops_per_s"],
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def _key(r: dict[str, Any]) -> tuple[str, int, str, str]:
    return (r["model"], r["batch"], r["variant"], r["device"])


def merge_payloads(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` plus the rows of ``old`` that it does not re-measure (same model, batch, variant,
    device); ``old``'s machine and settings move to ``earlier_runs``. Ratios stay within a run:
    every row's ``vs_eager`` was computed against the eager row measured beside it."""
    fresh = {_key(r) for r in new["results"]}
    kept = [r for r in old.get("results", []) if _key(r) not in fresh]
    earlier = [*old.get("earlier_runs", [])]
    if kept:
        earlier.append({"machine": old.get("machine"), "settings": old.get("settings")})
    return {**new, "results": kept + new["results"], "earlier_runs": earlier}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="densenet-bc-100,densenet-bc-40")
    ap.add_argument("--batches", default="64,128")
    ap.add_argument(
        "--variants",
        default=None,
        help=f"comma-separated, from {', '.join(VARIANTS)} (default: the non-compiled ones)",
    )
    ap.add_argument("--compile", action="store_true", help="add the torch.compile variants")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per repeat")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--num-classes", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--quick", action="store_true", help="tiny-cnn, batch 8, one step: seconds")
    ap.add_argument("--out", type=Path, default=None, help="JSON (default results/classifier-DEV)")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of an existing JSON at --out that this run does not re-measure",
    )
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    models = [m for m in a.models.split(",") if m]
    batches = [int(b) for b in a.batches.split(",") if b]
    variants = a.variants.split(",") if a.variants else list(DEFAULT_VARIANTS)
    if a.compile:
        variants += [v for v in COMPILE_VARIANTS if v not in variants]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    steps, warmup, repeats = a.steps, a.warmup, a.repeats
    if a.quick:
        models, batches, steps, warmup, repeats = ["tiny-cnn"], [8], 1, 1, 1
    load_before = load_average()
    rows = run_benchmark(
        models,
        batches,
        variants,
        device=a.device,
        steps=steps,
        warmup=warmup,
        repeats=repeats,
        num_classes=a.num_classes,
    )
    print()
    print(format_table(rows))
    dev = torch.device(a.device).type
    out = a.out or (None if a.quick else RESULTS / f"classifier-{dev}.json")
    if out is None:
        return 0
    payload = {
        "benchmark": "classifier-train-step",
        "what": "one training step (forward_mixed + CE, backward, SGD Nesterov) on a fixed "
        "random batch of 32x32 images; images/s is the median over repeats; flops_per_image "
        "counts forward + backward (FlopCounterMode, fp32)",
        "note": SHARED_CPU_NOTE if dev == "cpu" else "",
        "machine": {**machine_info(a.device), "load_avg_before": load_before},
        "settings": {
            "models": models,
            "batches": batches,
            "variants": variants,
            "steps": steps,
            "warmup": warmup,
            "repeats": repeats,
            "num_classes": a.num_classes,
            "optimizer": "SGD lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4",
        },
        "results": rows,
    }
    if a.merge and out.is_file():
        payload = merge_payloads(json.loads(out.read_text()), payload)
    print(f"wrote {write_json(out, payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

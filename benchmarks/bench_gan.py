"""AC-GAN training throughput: generator iterations per second and FLOPs per iteration.

One iteration is the seed's (SEED-SPEC §3.5-3.6): n_critic = 5 critic steps on a batch of 64 real
and 64 fake images with the gradient penalty, then one generator step on 128 samples; Adam with
lr 2e-4 and β = (0, 0.9). The FLOPs of one iteration (forward, backward and the GP's double
backward) are counted with ``torch.utils.flop_counter.FlopCounterMode``, so the achieved TFLOP/s
can be set against the device's peak (``--peak-tflops``).

    python benchmarks/bench_gan.py                       # widths 128 and 256 on the CPU
    python benchmarks/bench_gan.py --quick               # a seconds-long smoke run
    python benchmarks/bench_gan.py --device cuda --autocast bf16 --channels-last --iters 20

A GPU script can import :func:`bench_gan_iteration` directly.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "src", ROOT / "benchmarks"):  # run from a checkout without installing
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
from advaug.config import GANConfig  # noqa: E402
from advaug.models import build_gan  # noqa: E402
from advaug.runtime import Runtime  # noqa: E402
from advaug.train.steps import critic_step, generator_step  # noqa: E402
from common import (  # noqa: E402
    DTYPES,
    RESULTS,
    SHARED_CPU_NOTE,
    load_average,
    machine_info,
    markdown_table,
    median,
    sync,
    write_json,
)


class _GlobalOnlyTracker:
    """Stands in for FlopCounterMode's ModuleTracker, whose hooks make ``torch.autograd.grad``
    on a leaf input fail (pytorch/pytorch#131753), which the gradient penalty needs. Only the
    per-module breakdown is lost; the total is unchanged."""

    parents = frozenset({"Global"})

    def __enter__(self) -> _GlobalOnlyTracker:
        return self

    def __exit__(self, *args: object) -> None:
        return None


def flop_counter() -> FlopCounterMode:
    """A FlopCounterMode that counts totals only and works with the GP's autograd.grad."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnlyTracker()  # type: ignore[assignment]
    return counter


def bench_gan_iteration(
    width: int,
    device: str | torch.device = "cpu",
    iters: int = 3,
    batch: int = 64,
    autocast_dtype: torch.dtype | None = None,
    *,
    gen_batch: int | None = None,
    n_critic: int = 5,
    z_dim: int = 128,
    num_classes: int = 100,
    channels_last: bool = False,
    warmup: int = 1,
    count_flops: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Time ``iters`` AC-GAN iterations (after ``warmup``) and count one iteration's FLOPs.

    Returns a dict with the per-iteration times, their median, iterations/s, FLOPs per
    iteration and the achieved TFLOP/s at the median time.
    """
    device = torch.device(device)
    gen_batch = 2 * batch if gen_batch is None else gen_batch
    if gen_batch % batch:
        raise ValueError(f"gen_batch={gen_batch} must be a multiple of batch={batch}")
    torch.manual_seed(seed)
    cfg = GANConfig(
        z_dim=z_dim, width=width, batch_size=batch, g_batch_mult=gen_batch // batch,
        n_critic=n_critic,
    )  # fmt: skip
    rt = Runtime(device, autocast_dtype, channels_last, compile=False)
    G, D = build_gan("acgan", num_classes, **cfg.arch_kwargs())
    G, D = rt.prepare(G), rt.prepare(D)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    real = torch.rand(n_critic * batch, 3, 32, 32, device=device).to(memory_format=fmt)
    real_y = torch.randint(num_classes, (n_critic * batch,), device=device)
    rng = torch.Generator(device=device).manual_seed(seed)

    def iteration() -> None:
        """One training iteration, through the trainer's own step functions."""
        for i in range(n_critic):
            x, y = real[i * batch : (i + 1) * batch], real_y[i * batch : (i + 1) * batch]
            critic_step(G, D, opt_d, x, y, cfg=cfg, rt=rt, rng=rng)
        generator_step(G, D, opt_g, num_classes, cfg=cfg, rt=rt, rng=rng)

    for _ in range(warmup):
        iteration()
    sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        iteration()
        sync(device)
        times.append(time.perf_counter() - t0)
    flops = None
    if count_flops:
        counter = flop_counter()
        with counter:
            iteration()
        sync(device)
        flops = int(counter.get_total_flops())
    med = median(times)
    return {
        "width": width,
        "device": str(device),
        "autocast": str(autocast_dtype).replace("torch.", "") if autocast_dtype else "none",
        "channels_last": channels_last,
        "batch": batch,
        "gen_batch": gen_batch,
        "n_critic": n_critic,
        "z_dim": z_dim,
        "num_classes": num_classes,
        "iters": iters,
        "warmup": warmup,
        "times_s": [round(t, 4) for t in times],
        "median_s": med,
        "it_per_s": 1.0 / med,
        "flops_per_iter": flops,
        "achieved_tflops": (flops / med / 1e12) if flops else None,
        "params_G": sum(p.numel() for p in G.parameters()),
        "params_D": sum(p.numel() for p in D.parameters()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", default="128,256", help="comma-separated channel widths")
    ap.add_argument("--iters", type=int, default=3, help="timed iterations per width (median)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--autocast", choices=sorted(DTYPES), default="none")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak, for % of peak")
    ap.add_argument("--quick", action="store_true", help="width 16, 1 iteration, batch 8")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default: results/)")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    widths = [int(w) for w in args.widths.split(",") if w]
    iters, warmup, batch = args.iters, args.warmup, args.batch
    if args.quick:
        widths, iters, warmup, batch = [16], 1, 0, 8

    load_before = load_average()
    rows = []
    for w in widths:
        r = bench_gan_iteration(
            w,
            device,
            iters=iters,
            batch=batch,
            autocast_dtype=DTYPES[args.autocast],
            channels_last=args.channels_last,
            warmup=warmup,
        )
        if args.peak_tflops and r["achieved_tflops"]:
            r["fraction_of_peak"] = r["achieved_tflops"] / args.peak_tflops
        rows.append(r)
        print(
            f"width {w:4d}: {r['median_s']:8.3f} s/iter  {r['it_per_s']:8.3f} it/s  "
            f"{(r['flops_per_iter'] or 0) / 1e12:7.3f} TFLOP/iter  "
            f"{(r['achieved_tflops'] or 0):7.3f} TFLOP/s",
            flush=True,
        )

    print()
    print(
        markdown_table(
            ["width", "device", "autocast", "s/iter (median)", "it/s", "TFLOP/iter", "TFLOP/s"],
            [
                [
                    r["width"],
                    r["device"],
                    r["autocast"],
                    r["median_s"],
                    r["it_per_s"],
                    (r["flops_per_iter"] or 0) / 1e12,
                    r["achieved_tflops"],
                ]
                for r in rows
            ],
        )
    )

    out = args.out
    if out is None and not args.quick:
        out = RESULTS / f"gan-{device.type}.json"
    if out is not None:
        payload = {
            "benchmark": "bench_gan",
            "what": "one AC-GAN iteration: n_critic critic steps (batch real + batch fake, GP) "
            "+ one G step (gen_batch), Adam(lr 2e-4, betas (0, 0.9)); FLOPs by FlopCounterMode",
            "note": SHARED_CPU_NOTE if device.type == "cpu" else "",
            "machine": {**machine_info(device), "load_avg_before": load_before},
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "results": rows,
        }
        print(f"\nwrote {write_json(out, payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

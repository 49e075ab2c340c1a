"""AC-GAN recipes on 28x28 data: GAN-test accuracy against wall time on one CPU thread.

One run trains an AC-GAN with the project's own steps (``critic_step``, ``generator_step``) and
the given ``GANConfig`` fields, and every ``--every`` iterations measures GAN-test accuracy: an
independent judge (a finished classifier run, trained on the real data only) classifies 1,000
samples, 100 per class, from fixed latents, drawn in mixed-class batches of 100 with the
generator in training mode (batch statistics) and from its EMA. It stops after ``--budget-s``
seconds or ``iters`` iterations. ``--combine`` gathers the run files into one JSON.

This is how the presets' CPU recipe was chosen (``benchmarks/results/gan-recipe-cpu.json``)::

    python benchmarks/bench_gan_recipe.py mnist JUDGE 600 250 runs/B.json width=16 z_dim=64 \\
        iters=3000 batch_size=64 n_critic=1 g_batch_mult=1 lr_g=1e-3 lr_d=1e-3 \\
        ac_scale_d=2 ac_scale_g=3 ema_decay=0.99 concat_onehot=true
    python benchmarks/bench_gan_recipe.py --combine runs/*.json \\
        --out benchmarks/results/gan-recipe-cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from advaug.config import DataConfig, GANConfig, RuntimeConfig, from_dict, parse_overrides
from advaug.data.loader import DeviceLoader
from advaug.data.splits import load_splits
from advaug.errors import ConfigError
from advaug.loading import load_classifier
from advaug.models import build_gan
from advaug.runtime import make_runtime
from advaug.train.classifier import make_ema
from advaug.train.schedule import gan_lr_scale, set_lr
from advaug.train.shapes import gan_shape_kwargs
from advaug.train.steps import critic_step, generator_step
from common import machine_info, write_json

SAMPLES, PER_BATCH = 1000, 100


def parse_fields(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` strings as ``GANConfig`` fields, parsed, typed and checked as the CLI's
    overrides are (``parse_overrides``, then the config's own coercion and validation)."""
    fields = parse_overrides(pairs)
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(GANConfig)})
    if unknown:
        raise SystemExit(f"unknown GANConfig field {unknown[0]!r}")
    try:
        cfg = from_dict(GANConfig, fields)
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    return {key: getattr(cfg, key) for key in fields}


@torch.no_grad()
def gan_test(g: torch.nn.Module, judge: torch.nn.Module, z: torch.Tensor, y: torch.Tensor) -> float:
    """The judge's accuracy on G(z, y), drawn in batches of ``PER_BATCH`` (batch statistics)."""
    g.train()
    parts = range(0, len(y), PER_BATCH)
    x = torch.cat([g(z[i : i + PER_BATCH], y[i : i + PER_BATCH]) for i in parts])
    return (judge(x).argmax(1) == y).float().mean().item()


def run(dataset: str, root: str, judge_path: str, budget_s: float, every: int,
        fields: dict[str, Any]) -> list[dict[str, Any]]:  # fmt: skip
    """Train until the budget or ``iters``; the GAN-test record every ``every`` iterations."""
    cfg = GANConfig(**fields)
    torch.manual_seed(0)
    rt = make_runtime(RuntimeConfig(device="cpu", threads=1))
    splits = load_splits(DataConfig(name=dataset, root=root, crop_pad=0, flip=False))
    judge = load_classifier(judge_path).eval()
    k = splits.num_classes
    g, d = build_gan("acgan", k, **cfg.arch_kwargs(),
                     **gan_shape_kwargs("acgan", tuple(splits.train.x.shape[1:])))  # fmt: skip
    betas = (cfg.beta1, cfg.beta2)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g, betas=betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=betas)
    loader = DeviceLoader(splits.train.x, splits.train.y, cfg.batch_size, shuffle=True, seed=0,
                          crop_pad=0, flip=False, drop_last=True, device=rt.device)  # fmt: skip
    batches = (b for _ in iter(int, 1) for b in loader)
    rng = torch.Generator().manual_seed(1)
    ema = make_ema(g, cfg.ema_decay, use_buffers=False)
    z = torch.randn(SAMPLES, g.z_dim, generator=torch.Generator().manual_seed(5))
    y = torch.arange(SAMPLES) % k
    records: list[dict[str, Any]] = []
    t0, it = time.time(), 0
    while True:
        set_lr(opt_g, cfg.lr_g * gan_lr_scale(cfg, it))
        set_lr(opt_d, cfg.lr_d * gan_lr_scale(cfg, it))
        for _ in range(cfg.n_critic):
            x, yb = next(batches)
            critic_step(g, d, opt_d, x, yb, cfg=cfg, rt=rt, rng=rng)
        generator_step(g, d, opt_g, k, cfg=cfg, rt=rt, rng=rng, ema=None)
        if ema is not None:
            ema.update_parameters(g)
        it += 1
        if it % every == 0 or it >= cfg.iters:
            seconds = time.time() - t0
            records.append({
                "it": it,
                "s": round(seconds),
                "gantest": gan_test(g, judge, z, y),
                "gantest_ema": gan_test(ema.module, judge, z, y) if ema is not None else None,
            })  # fmt: skip
            print(json.dumps(records[-1]), flush=True)
            if seconds > budget_s or it >= cfg.iters:
                return records


def combine(files: list[Path]) -> dict[str, Any]:
    """The run files as one result, with the protocol and the machine."""
    return {
        "benchmark": "gan_recipe",
        "protocol": (
            f"GAN-test accuracy: an independent judge on {SAMPLES} samples ({SAMPLES // 10} per "
            f"class, fixed latents, mixed-class batches of {PER_BATCH}, batch statistics), live "
            "generator and its EMA; wall seconds of one torch thread on a shared 2-core CPU, "
            "evaluation included"
        ),
        "runs": {f.stem: json.loads(f.read_text()) for f in files},
        "machine": machine_info("cpu"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--combine", nargs="+", type=Path, help="run files to gather into --out")
    p.add_argument("--out", type=Path)
    p.add_argument("--root", default="../shared/data", help="data root (default ../shared/data)")
    p.add_argument("args", nargs="*", help="DATASET JUDGE BUDGET_S EVERY OUT [field=value ...]")
    a = p.parse_args(argv)
    if a.combine:
        write_json(a.out, combine(a.combine))
        return 0
    dataset, judge, budget, every, out, *pairs = a.args
    fields = parse_fields(pairs)
    records = run(dataset, a.root, judge, float(budget), int(every), fields)
    write_json(out, {"dataset": dataset, "judge": judge, "cfg": fields, "rec": records})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pooled or per-batch unrestricted augmentation: what the pool buys in UAE robustness, and costs.

Three classifiers train from the same seed, on the same data, for the same number of epochs,
with the same attack settings (the ``unrestricted`` section's optimizer, lr, λ, z_eps and steps):

- ``pooled``: the default pool, each draw re-checked against the current model (``recheck``);
- ``pooled-norecheck``: the pool as before the re-check (stale entries still trained on);
- ``seed``: the seed's schedule, fresh codes attacked for every batch (``mode=seed``; no early
  stop, so each batch pays every latent step).

Each model is then attacked with the evaluation protocol (``evaluate.uae_attack()``, fresh
balanced codes, the same seed for all): the attack's success among the codes the model
classified correctly at z⁰ (lower = more robust), the share already wrong at z⁰, and the clean
test accuracy. Cost: training seconds, as ratios to ``pooled``.

    python benchmarks/bench_pool_vs_seed.py              # smoke preset on the digits; ~1 minute
    python benchmarks/bench_pool_vs_seed.py --preset demo --epochs 3

Writes ``benchmarks/results/pool-vs-seed-DEV.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "src", ROOT / "benchmarks"):  # run from a checkout without installing
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
from advaug.config import StudyConfig, to_dict  # noqa: E402
from advaug.data.splits import Splits, load_splits  # noqa: E402
from advaug.evaluate.accuracy import accuracy  # noqa: E402
from advaug.evaluate.uae import attack_protocol, run_uae, uae_measures  # noqa: E402
from advaug.loading import GANPair, load_gan  # noqa: E402
from advaug.runtime import make_runtime  # noqa: E402
from advaug.train.classifier import ClassifierJob  # noqa: E402
from advaug.train.gan import GANJob, train_gan  # noqa: E402
from bench_techniques import Trainer, make_config  # noqa: E402
from common import (  # noqa: E402
    RESULTS,
    SHARED_CPU_NOTE,
    machine_info,
    markdown_table,
    now_iso,
    ratio,
    write_json,
)

MODES: dict[str, dict[str, Any]] = {
    "pooled": {"mode": "pooled", "recheck": True},
    "pooled-norecheck": {"mode": "pooled", "recheck": False},
    "seed": {"mode": "seed"},
}


def train_mode(
    name: str, cfg: StudyConfig, splits: Splits, gan: GANPair, epochs: int
) -> tuple[Trainer, dict[str, Any]]:
    """Train one classifier with the unrestricted technique in mode ``name``; its cost."""
    clf = copy.deepcopy(cfg.classifier)
    clf.epochs = epochs
    clf.augment.technique = "unrestricted"
    for k, v in MODES[name].items():
        setattr(clf.augment.unrestricted, k, v)
    job = ClassifierJob(data=cfg.data, runtime=cfg.runtime, classifier=clf, seed=cfg.seed)
    tr = Trainer(job, splits, gan)
    t0 = time.perf_counter()
    eps = [tr.run_epoch(e) for e in range(epochs)]
    row = {
        "train_seconds": time.perf_counter() - t0,
        "cpu_seconds": sum(e["cpu_seconds"] for e in eps),
        "technique_seconds": sum(e["aug_seconds"] for e in eps),
        "steps": sum(e["steps"] for e in eps),
        "codes_attacked": sum(e["attacked"] for e in eps),
        "augmented_used": sum(e["augmented_used"] for e in eps),
        "technique_metrics_last_epoch": tr.technique.metrics(),
        "attack": to_dict(clf.augment.unrestricted.attack_config()),
    }
    return tr, row


def robustness(tr: Trainer, cfg: StudyConfig, splits: Splits, gan: GANPair) -> dict[str, Any]:
    """The evaluation protocol's UAE measures and the clean test accuracy of a trained model."""
    model = tr.model.eval()
    e = cfg.evaluate
    res = run_uae(gan.generator, gan.critic, model, e.uae_samples, e.uae_attack(), seed=cfg.seed)
    m = uae_measures(res)
    clean = accuracy(model, splits.test.x, splits.test.y, e.batch_size)["top1"]
    keys = ("success_correct", "clean_wrong_rate", "success", "dz_rms_p50", "dz_max_p99")
    return {"clean_top1": clean, **{f"uae_{k}": m[k] for k in keys}}


def run(cfg: StudyConfig, epochs: int, modes: list[str]) -> dict[str, Any]:
    splits = load_splits(cfg.data, seed=cfg.seed)
    with tempfile.TemporaryDirectory() as tmp:
        job = GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan, seed=cfg.seed)
        gan_res = train_gan(job, Path(tmp) / "gan", splits=splits)
        gan = load_gan(Path(tmp) / "gan", make_runtime(cfg.runtime).device)
    rows: dict[str, dict[str, Any]] = {}
    for name in modes:
        tr, row = train_mode(name, cfg, splits, gan, epochs)
        row.update(robustness(tr, cfg, splits, gan))
        rows[name] = row
        print(f"{name:<18} {row['train_seconds']:8.1f} s  attack success (correct at z0) "
              f"{row['uae_success_correct']['value']}", flush=True)  # fmt: skip
    base = rows.get("pooled")
    for r in rows.values():
        r["time_vs_pooled"] = ratio(r["train_seconds"], base and base["train_seconds"])
        r["cpu_vs_pooled"] = ratio(r["cpu_seconds"], base and base["cpu_seconds"])
    e = cfg.evaluate
    return {
        "benchmark": "pool-vs-seed",
        "what": "unrestricted augmentation, pooled (with and without the draw-time re-check) "
        "against the seed's per-batch schedule: same data, seed, epochs and attack settings; "
        "then the evaluation's UAE attack on each model",
        "protocol": {
            "data": f"{cfg.data.name}: train {len(splits.train)}, test {len(splits.test)} "
            f"images, {splits.num_classes} classes",
            "classifier": cfg.classifier.model.name,
            "epochs": epochs,
            "batch_size": cfg.classifier.batch_size,
            "prop": cfg.classifier.augment.prop,
            "pool": {
                k: v
                for k, v in to_dict(cfg.classifier.augment.unrestricted).items()
                if k in ("pool_size", "refresh_every", "refresh_fraction")
            },  # fmt: skip
            "gan": {"iters": gan_res["iters"], "width": cfg.gan.width, "z_dim": cfg.gan.z_dim},
            "evaluation_attack": attack_protocol(e.uae_attack(), e.uae_samples, cfg.seed),
            "seed": cfg.seed,
            "runtime": make_runtime(cfg.runtime).describe(),
        },
        "modes": rows,
    }


def format_table(res: dict[str, Any]) -> str:
    headers = ["mode", "train s", "x pooled", "codes attacked", "UAE success (correct at z0)",
               "n", "wrong at z0", "clean top-1"]  # fmt: skip
    body = [
        [
            name,
            r["train_seconds"],
            r["time_vs_pooled"],
            r["codes_attacked"],
            r["uae_success_correct"]["value"],
            r["uae_success_correct"]["n"],
            r["uae_clean_wrong_rate"]["value"],
            r["clean_top1"],
        ]
        for name, r in res["modes"].items()
    ]
    return markdown_table(headers, body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="smoke", help="config preset (default smoke)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    modes = [m for m in a.modes.split(",") if m]
    if any(m not in MODES for m in modes):
        ap.error(f"modes must be among {', '.join(MODES)}")
    cfg = make_config(a.preset, a.overrides, a.device)
    res = run(cfg, a.epochs, modes)
    res["protocol"].update(preset=a.preset, overrides=a.overrides)
    dev = torch.device(a.device).type
    res["note"] = SHARED_CPU_NOTE if dev == "cpu" else ""
    res["machine"] = machine_info(a.device)
    res["date"] = now_iso()
    print()
    print(format_table(res))
    out = a.out or RESULTS / f"pool-vs-seed-{dev}.json"
    print(f"\nwrote {write_json(out, res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

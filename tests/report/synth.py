"""A synthetic study folder with made-up but consistent numbers (hand-checkable in the tests)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image

PROTO = {
    "clean_top1": "CIFAR-100 test split, 10000 images, EMA weights",
    "clean_top5": "CIFAR-100 test split, 10000 images, EMA weights (top-5)",
    "fgsm@2/255": "FGSM untargeted, eps 2/255, 1000 test images",
    "fgsm@8/255": "FGSM untargeted, eps 8/255, 1000 test images",
    "pgd10@8/255": "PGD-10 step 2/255, eps 8/255, 1000 test images",
    "uae_success": "500 fresh codes, 50 Adam steps, AC-GAN agreement required",
    "uae_steps_p50": "median latent steps to success over the same 500 codes",
}
# model → metric → value (fractions for accuracies)
VALUES = {
    "none-s0": {"clean_top1": 0.50, "clean_top5": 0.80, "fgsm@2/255": 0.20, "fgsm@8/255": 0.05,
                "pgd10@8/255": 0.01, "uae_success": 0.90, "uae_steps_p50": 5.0},
    "none-s1": {"clean_top1": 0.54, "clean_top5": 0.82, "fgsm@2/255": 0.22, "fgsm@8/255": 0.07,
                "pgd10@8/255": 0.01, "uae_success": 0.80, "uae_steps_p50": 7.0},
    "fgsm-s0": {"clean_top1": 0.45, "clean_top5": 0.76, "fgsm@2/255": 0.35, "fgsm@8/255": 0.20,
                "pgd10@8/255": 0.12, "uae_success": 0.70, "uae_steps_p50": 12.0},
    "fgsm-s1": {"clean_top1": 0.47, "clean_top5": 0.78, "fgsm@2/255": 0.37, "fgsm@8/255": 0.26,
                "pgd10@8/255": 0.16, "uae_success": 0.60, "uae_steps_p50": 14.0},
}  # fmt: skip
SECONDS_PER_EPOCH = {"none-s0": 10.0, "none-s1": 12.0, "fgsm-s0": 20.0, "fgsm-s1": 24.0}
EPOCHS = 3
NUM_CLASSES = 4


def write_png(path: Path, cols: int = 8, rows: int = 4, tile: int = 8, seed: int = 0) -> Path:
    """A tiny PNG that looks like a sample grid: coloured tiles on a white 1-px grid."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    img = Image.new("RGB", (cols * (tile + 1) + 1, rows * (tile + 1) + 1), (255, 255, 255))
    for r in range(rows):
        for c in range(cols):
            colour = tuple(rng.randrange(256) for _ in range(3))
            x, y = 1 + c * (tile + 1), 1 + r * (tile + 1)
            img.paste(colour, (x, y, x + tile, y + tile))
    img.save(path)
    return path


def _curve(name: str, seed: int, val: bool) -> list[dict]:
    base = 0.1 + 0.05 * seed
    out = []
    for e in range(EPOCHS):
        aug = None if name.startswith("none") else 0.3 + 0.2 * e
        out.append({"step": 10 * (e + 1), "split": "train", "epoch": e, "loss": 3.0 - e,
                    "clean_acc": base + 0.1 * e, "aug_acc": aug, "lr": 0.1})  # fmt: skip
        if val:
            out.append({"step": 10 * (e + 1), "split": "val", "epoch": e,
                        "top1": base + (0.08 if name.startswith("none") else 0.06) * e,
                        "top5": 0.5})  # fmt: skip
    out.append({"step": 10 * EPOCHS, "split": "test", "top1": 0.5, "top5": 0.8})
    return out


def make_study(
    root: Path,
    models: dict[str, dict[str, float]] | None = None,
    *,
    techniques: list[str] | None = None,
    seeds: list[int] | None = None,
    grids: bool = True,
    val: bool = True,
    with_eval: bool = True,
) -> Path:
    """Write a study folder under ``root`` (2 techniques × 2 seeds by default)."""
    models = VALUES if models is None else models
    techniques = techniques or list(dict.fromkeys(n.rsplit("-s", 1)[0] for n in models))
    seeds = seeds if seeds is not None else sorted({int(n.rsplit("-s", 1)[1]) for n in models})
    root.mkdir(parents=True, exist_ok=True)
    meta = {
        "name": "synthetic",
        "preset": "smoke",
        "dataset": "cifar100",
        "num_classes": NUM_CLASSES,
        "techniques": techniques,
        "seeds": seeds,
        "created": "2025-01-01T12:00:00+00:00",
        "gan": {
            "run_dir": "gan",
            "result": {"iterations": 1000, "train_seconds": 3600.0, "nested": {"skip": 1}},
            "quality": {
                "fid": {"value": 45.25, "protocol": "FID, 10000 samples vs CIFAR-100 train, "
                        "Inception pool3"},
                "ac_acc": {"value": 0.61, "protocol": "AC head top-1 on 10000 samples"},
            },
        },
        "reference": {"run_dir": "reference", "arch": "wrn-16-4", "test_top1": 0.6},
        "models": list(models),
        "finished": True,
        "wall_seconds": 7300.0,
    }  # fmt: skip
    (root / "study.json").write_text(json.dumps(meta))
    for i, (name, vals) in enumerate(models.items()):
        tech, seed = name.rsplit("-s", 1)
        seed_i = int(seed)
        spe = SECONDS_PER_EPOCH.get(name, 10.0)
        cdir = root / "classifiers" / name
        cdir.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(r) for r in _curve(name, seed_i, val)]
        (cdir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        result = {"technique": tech, "seed": seed_i, "epochs": EPOCHS, "steps": 30,
                  "train_seconds": spe * EPOCHS, "test_top1": vals.get("clean_top1"),
                  "test_top5": 0.8, "protocol": "CIFAR-100 test split, 10000 images",
                  "runtime": {"device": "cpu", "precision": "fp32", "world_size": 1}}  # fmt: skip
        (cdir / "result.json").write_text(json.dumps(result))
        if not with_eval:
            continue
        ev = {
            "name": name,
            "technique": tech,
            "seed": seed_i,
            "checkpoint": f"classifiers/{name}/checkpoints/final.pt",
            "metrics": {k: {"value": v, "protocol": PROTO.get(k, f"protocol of {k}")}
                        for k, v in vals.items()},
            "per_class_top1": [0.9 - 0.2 * c + 0.01 * i for c in range(NUM_CLASSES)],
            "cost": {"train_seconds": spe * EPOCHS, "epochs": EPOCHS, "steps": 30,
                     "seconds_per_epoch": spe},
        }  # fmt: skip
        (root / "eval").mkdir(exist_ok=True)
        (root / "eval" / f"{name}.json").write_text(json.dumps(ev))
    if grids:
        write_png(root / "grids" / "real.png", seed=1)
        write_png(root / "grids" / "gan.png", seed=2)
        write_png(root / "grids" / f"uae-{next(iter(models))}.png", cols=4, rows=4, seed=3)
        write_png(root / "gan" / "samples" / "final.png", seed=4)
    return root

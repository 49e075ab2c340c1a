"""A torchrun worker for the DDP tests: tiny classifier and GAN runs on the embedded digits.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/train/ddp_worker.py \
        OUT [--jobs classifier,gan] [--batch 16] [--stop-after N] [--gan-iters 6] [--plain-exit]

Each rank trains ``OUT/classifier`` and/or ``OUT/gan`` (rank 0 writes them; the two runs share
the process group, as the stages of a study do), then writes
``OUT/rank<R>.json`` (its results) and ends through :func:`advaug.runtime.ddp.run_worker`, or, with
``--plain-exit``, by returning normally (the ending that aborts now and then; kept for evidence).
``--stop-after N`` interrupts the classifier after N steps (checkpointed) and still exits 0.

The classifier is a small MLP without batch norm, trained on un-augmented images with
``prop = 0``, so that a run of W ranks with batch B/W matches one process with batch B up to
floating-point summation order. The test imports :func:`classifier_job` for that reference run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "src", ROOT):  # advaug, and the tests' own helpers
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from advaug.config import build_config  # noqa: E402
from advaug.models import list_models, register_model  # noqa: E402
from advaug.runtime import ddp  # noqa: E402
from advaug.train.classifier import ClassifierJob, train_classifier  # noqa: E402
from advaug.train.gan import GANJob, train_gan  # noqa: E402
from tests.hooks import Interrupted, stop_after  # noqa: E402

MODEL = "ddp-test-mlp"


class _MLP(nn.Module):
    """Pool to 8x8, then Linear-ReLU-Linear: no batch norm, so the batch split does not matter."""

    def __init__(self, num_classes: int = 10, hidden: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.net = nn.Sequential(
            nn.AdaptiveAvgPool2d(8),
            nn.Flatten(),
            nn.Linear(3 * 8 * 8, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),  # each rank's random stream draws its masks
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


if MODEL not in list_models():
    register_model(MODEL)(_MLP)


def classifier_job(batch: int, dropout: float = 0.0) -> ClassifierJob:
    """The smoke preset's classifier with the MLP, no augmentation, per-rank batch ``batch``."""
    cfg = build_config(
        "smoke",
        [
            f"classifier.model.name={MODEL}",
            f"classifier.model.kwargs={{dropout: {dropout}}}",
            f"classifier.batch_size={batch}",
            "classifier.augment.prop=0",
            "data.crop_pad=0",
            "data.flip=false",
        ],
    )
    return ClassifierJob(data=cfg.data, runtime=cfg.runtime, classifier=cfg.classifier, seed=0)


def gan_job(iters: int = 6) -> GANJob:
    """The smoke preset's AC-GAN (width 16), ``iters`` iterations."""
    cfg = build_config("smoke", [f"gan.iters={iters}"])
    return GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan, seed=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--jobs", default="classifier,gan")
    ap.add_argument("--batch", type=int, default=16, help="per-rank classifier batch")
    ap.add_argument("--stop-after", type=int, default=None)
    ap.add_argument("--gan-iters", type=int, default=6)
    ap.add_argument("--plain-exit", action="store_true")
    ap.add_argument("--dropout", type=float, default=0.0, help="dropout in the classifier MLP")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", 0))
    results: dict[str, object] = {"rank": rank, "world_size": int(os.environ["WORLD_SIZE"])}
    jobs = args.jobs.split(",")
    if "classifier" in jobs:
        try:
            results["classifier"] = train_classifier(
                classifier_job(args.batch, args.dropout),
                args.out / "classifier",
                on_step=stop_after(args.stop_after) if args.stop_after else None,
            )
        except Interrupted:
            results["classifier"] = "interrupted"
    if "gan" in jobs:
        results["gan"] = train_gan(gan_job(args.gan_iters), args.out / "gan")
    (args.out / f"rank{rank}.json").write_text(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    if "--plain-exit" in sys.argv:
        sys.exit(main())
    ddp.run_worker(main)

"""AutoAttack through two packages on the same model and images: the reference implementation
(Croce & Hein's code, ``pip install pyautoattack``) and torchattacks' re-implementation
(``pip install --no-deps torchattacks==3.5.1 scipy``).

Both run the *standard* version (APGD-CE, APGD-T, FAB-T, Square 5000), L∞, on the same images of
one model that has some robustness (an FGSM-trained classifier on the embedded digits, trained
here in about a minute), so the later attacks of the ensemble have points left to work on. The
JSON records robust accuracy, seconds, how many images the two disagree on, and each package's
install facts as measured by the author (they are not measured by this script).

    python benchmarks/bench_autoattack.py            # about 5-10 minutes on 2 CPU cores
    python benchmarks/bench_autoattack.py --quick    # seconds: tiny model, 32 images
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

from advaug.config import build_config  # noqa: E402
from advaug.data.splits import load_splits  # noqa: E402
from advaug.loading import load_classifier  # noqa: E402
from advaug.train.classifier import ClassifierJob, train_classifier  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def train_model(out: Path, epochs: int, quick: bool) -> tuple[torch.nn.Module, Any]:
    """An FGSM-trained tiny CNN on the digits (smoke preset's model), and the splits."""
    overrides = [
        "classifier.augment.technique=fgsm",
        f"classifier.epochs={epochs}",
        "data.train_limit=0",
        "data.test_limit=0",
    ]
    if quick:
        overrides = ["classifier.augment.technique=fgsm", "classifier.epochs=1"]
    cfg = build_config("smoke", overrides)
    splits = load_splits(cfg.data)
    job = ClassifierJob(data=cfg.data, runtime=cfg.runtime, classifier=cfg.classifier, seed=0)
    train_classifier(job, out, splits=splits)
    return load_classifier(out), splits


def run_reference(model, x, y, eps: float, batch: int) -> tuple[torch.Tensor, float]:
    from pyautoattack import AutoAttack

    atk = AutoAttack(model, eps=eps, norm="Linf", version="standard", seed=0, device="cpu")
    t0 = time.perf_counter()
    adv, _ = atk.run_standard_evaluation(x, y, batch_size=batch)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        return model(adv).argmax(1) == y, seconds


def run_torchattacks(model, x, y, eps: float, batch: int) -> tuple[torch.Tensor, float]:
    import torchattacks

    k = int(model(x[:1]).shape[1])
    atk = torchattacks.AutoAttack(
        model, norm="Linf", eps=eps, version="standard", n_classes=k, seed=0
    )
    t0 = time.perf_counter()
    adv = torch.cat([atk(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)])
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        return model(adv).argmax(1) == y, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--eps", type=float, nargs="+", default=[4 / 255, 8 / 255])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--out", type=Path, default=RESULTS / "autoattack-cpu.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model, splits = train_model(Path(tmp) / "fgsm", args.epochs, args.quick)
    x, y = splits.test.x.float() / 255, splits.test.y
    if args.quick:
        x, y = x[:32], y[:32]
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).double().mean().item()
    rows = []
    for eps in args.eps:
        ref_ok, ref_s = run_reference(model, x, y, eps, args.batch)
        ta_ok, ta_s = run_torchattacks(model, x, y, eps, args.batch)
        rows.append(
            {
                "eps": eps,
                "eps_255": round(eps * 255, 3),
                "pyautoattack": {"robust_acc": ref_ok.double().mean().item(), "seconds": ref_s},
                "torchattacks": {"robust_acc": ta_ok.double().mean().item(), "seconds": ta_s},
                "images_where_they_disagree": int((ref_ok != ta_ok).sum()),
                "robust_under_pyautoattack_only": int((ref_ok & ~ta_ok).sum()),
                "robust_under_torchattacks_only": int((ta_ok & ~ref_ok).sum()),
            }
        )
    from common import machine_info

    result = {
        "benchmark": "autoattack",
        "machine": machine_info("cpu"),
        "model": "tiny-cnn, FGSM-trained on the embedded digits (smoke preset, full split)",
        "epochs": 1 if args.quick else args.epochs,
        "images": len(y),
        "clean_acc": clean,
        "version": "standard (APGD-CE, APGD-T, FAB-T, Square 5000), Linf, seed 0",
        "rows": rows,
    }
    print(json.dumps(result, indent=2))
    if not args.quick:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Input-pipeline throughput: DeviceLoader against a per-sample torch DataLoader.

Both pipelines produce the same thing: batches of float [0, 1] images with a random crop
(4-pixel reflect padding) and a random horizontal flip, from the same uint8 N x 3 x 32 x 32
tensor. The DataLoader pipeline does that per sample in ``__getitem__`` with hand-written torch
ops (torchvision is absent) and collates, with ``num_workers`` 0 and 1; DeviceLoader does it for
the whole batch at once. One epoch is timed per repeat (worker start-up included, as in
training); medians are reported in images/s, with the ratio DeviceLoader / DataLoader.

Data: the real CIFAR-100 training set when present (``$ADVAUG_CIFAR100`` or
``../shared/data/cifar-100-python``), else random images of CIFAR size.

    python benchmarks/bench_loader.py            # full epochs, 3 repeats, JSON to results/
    python benchmarks/bench_loader.py --quick    # a few seconds, JSON not written unless --out
    python benchmarks/bench_loader.py --device cuda --out benchmarks/results/loader-cuda.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

from advaug.data import DeviceLoader, load_cifar  # noqa: E402
from advaug.errors import DataError  # noqa: E402

CIFAR100_DIR = Path(os.environ.get("ADVAUG_CIFAR100", ROOT.parent / "shared/data/cifar-100-python"))


class CropFlipDataset(Dataset):
    """The per-sample baseline: pad 4 (reflect), random 32x32 crop, random flip, to float."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, pad: int = 4) -> None:
        self.x, self.y, self.pad = x, y, pad

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.x[i]
        h, w = img.shape[-2:]
        p = self.pad
        padded = F.pad(img[None], (p, p, p, p), mode="reflect")[0]
        dy, dx = torch.randint(0, 2 * p + 1, (2,)).tolist()
        out = padded[:, dy : dy + h, dx : dx + w]
        if torch.rand(()) < 0.5:
            out = out.flip(2)
        return out.float().div_(255.0), self.y[i]


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)


def load_images(quick: bool, n: int | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The CIFAR-100 training images if present, else random CIFAR-size data."""
    try:
        data = load_cifar("cifar100", CIFAR100_DIR, verify=False)
        x, y, source = data.train_x, data.train_y, f"CIFAR-100 train ({CIFAR100_DIR})"
    except DataError:
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (50_000, 3, 32, 32), generator=g, dtype=torch.uint8)
        y = torch.arange(50_000) % 100
        source = "synthetic uint8, CIFAR size"
    n = n or (4096 if quick else len(y))
    return x[:n].contiguous(), y[:n].contiguous(), source


def time_epoch(make_iter, device: torch.device) -> tuple[float, int]:
    """Seconds for one pass and the images it yielded."""
    t0 = time.perf_counter()
    seen = 0
    for xb, _yb in make_iter():
        seen += xb.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, seen


def bench(x: torch.Tensor, y: torch.Tensor, batch: int, repeats: int, device: torch.device):
    """Median images/s of each pipeline."""
    results: dict[str, dict[str, Any]] = {}
    loader = DeviceLoader(x, y, batch, crop_pad=4, flip=True, device=device, seed=0)
    pipelines = {"DeviceLoader": lambda: loader}
    ds = CropFlipDataset(x, y)
    for workers in (0, 1):
        pipelines[f"DataLoader(num_workers={workers})"] = lambda w=workers: DataLoader(
            ds,
            batch_size=batch,
            shuffle=True,
            drop_last=True,
            num_workers=w,
            worker_init_fn=_one_thread if w else None,
        )
    for name, make in pipelines.items():
        rates = []
        for _ in range(repeats):
            seconds, seen = time_epoch(
                make, device if name == "DeviceLoader" else torch.device("cpu")
            )
            rates.append(seen / seconds)
        results[name] = {
            "images_per_s_median": statistics.median(rates),
            "images_per_s": rates,
        }
    base = results["DeviceLoader"]["images_per_s_median"]
    for r in results.values():
        r["deviceloader_speedup"] = base / r["images_per_s_median"]
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4,096 images, 2 repeats")
    ap.add_argument("--repeats", type=int, default=None, help="epochs timed per pipeline (3)")
    ap.add_argument("--images", type=int, default=None, help="images per epoch (all)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the main process")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON path (default: results/loader-<device>.json for full runs, none for --quick)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 3)
    device = torch.device(args.device)

    x, y, source = load_images(args.quick, args.images)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results = bench(x, y, args.batch_size, repeats, device)
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    print(
        f"data: {source}, {len(y)} images, batch {args.batch_size}, {repeats} repeats, "
        f"{args.threads} thread(s), device {device}"
    )
    print(f"{'pipeline':<28} {'images/s (median)':>18} {'DeviceLoader x':>15}")
    for name, r in results.items():
        print(f"{name:<28} {r['images_per_s_median']:>18,.0f} {r['deviceloader_speedup']:>15.1f}")

    out = args.out or (
        None if args.quick else ROOT / f"benchmarks/results/loader-{device.type}.json"
    )
    if out is not None:
        report = {
            "benchmark": "loader",
            "workload": "random crop (pad 4, reflect) + horizontal flip, uint8 -> float [0, 1]",
            "data": source,
            "images_per_epoch": len(y),
            "batch_size": args.batch_size,
            "repeats": repeats,
            "device": str(device),
            "results": results,
            "machine": {
                "torch": torch.__version__,
                "python": platform.python_version(),
                "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
                "load_average_1min_before_after": [load_before, load_after],
                "cuda_device": torch.cuda.get_device_name(device)
                if device.type == "cuda"
                else None,
            },
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

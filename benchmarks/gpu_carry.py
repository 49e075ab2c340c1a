"""Build ``gpu-carry/``: the data a one-call GPU run takes with it (``benchmarks/gpu_plan.sh``).

A device machine receives only the repository and the ignored folders named in ``carry`` (64 MiB
in all), never ``../shared``. CIFAR-100 in full is about 131 MiB compressed; its first
``--train`` training and ``--test`` test images are class-balanced in the shared copy (image
``i = rank * 100 + class``), so a prefix is a fair subset: 15,000 and 3,000 images (150 and 30
per class) pack to about 40 MiB with xz.

    python benchmarks/gpu_carry.py                       # from ../shared/data/cifar-100-python
    python benchmarks/gpu_carry.py --train 1000 --test 200 --out /tmp/carry   # small, for tests

Writes ``cifar-100-subset.tar.xz`` (a ``cifar-100-python/`` folder in the official layout:
``meta``, ``train``, ``test``) and ``carry.json`` (sizes, sha256). The files are read with the
project's restricted unpickler and written with the same keys and types, so the loader reads
them with ``data.verify=false data.check_sizes=false``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import pickle
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))
from advaug.data.safe_pickle import safe_load  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "cifar-100-python"
ARCHIVE = "cifar-100-subset.tar.xz"
PER_IMAGE = ("data", "fine_labels", "coarse_labels", "filenames")


def _prefix(d: dict[Any, Any], n: int) -> dict[Any, Any]:
    """The first ``n`` images of an official-format split dict (keys and types kept)."""
    out = dict(d)
    found = 0
    for key, value in d.items():
        name = key.decode() if isinstance(key, bytes) else key
        if name in PER_IMAGE:
            if len(value) < n:
                raise SystemExit(f"gpu_carry: {name} has {len(value)} images, fewer than {n}")
            out[key] = value[:n].copy() if isinstance(value, np.ndarray) else value[:n]
            found += 1
    if found < 2:
        raise SystemExit("gpu_carry: not an official-format CIFAR-100 split (no data/labels)")
    return out


def _balanced(d: dict[Any, Any], n: int, k: int = 100) -> None:
    labels = next(v for key, v in d.items() if (key.decode() if isinstance(key, bytes) else key)
                  == "fine_labels")  # fmt: skip
    counts = np.bincount(np.asarray(labels), minlength=k)
    if counts.min() != counts.max():
        raise SystemExit(
            f"gpu_carry: the first {n} images are not class-balanced (per class "
            f"{counts.min()}..{counts.max()}); use the shared copy, whose prefixes are"
        )


def build(src: Path, out: Path, n_train: int, n_test: int) -> dict[str, Any]:
    """Write the subset archive and its description into ``out``; returns the description."""
    out.mkdir(parents=True, exist_ok=True)
    archive = out / ARCHIVE
    with tarfile.open(archive, "w:xz", preset=6) as tar:
        for name, n in (("train", n_train), ("test", n_test), ("meta", None)):
            with open(src / name, "rb") as f:
                d = safe_load(f)
            if n is not None:
                d = _prefix(d, n)
                _balanced(d, n)
            data = pickle.dumps(d, protocol=4)
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    desc = {
        "archive": ARCHIVE,
        "bytes": archive.stat().st_size,
        "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        "train": n_train,
        "test": n_test,
        "per_class": {"train": n_train // 100, "test": n_test // 100},
        "source": str(src),
        "read_with": ["data.name=cifar100", "data.verify=false", "data.check_sizes=false"],
    }
    (out / "carry.json").write_text(json.dumps(desc, indent=2) + "\n")
    return desc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=SHARED, help="a cifar-100-python folder")
    ap.add_argument("--out", type=Path, default=ROOT / "gpu-carry")
    ap.add_argument("--train", type=int, default=15_000, help="first N training images")
    ap.add_argument("--test", type=int, default=3_000, help="first N test images")
    a = ap.parse_args(argv)
    if a.train % 100 or a.test % 100 or a.train < 100 or a.test < 100:
        ap.error("--train and --test must be positive multiples of 100 (whole classes)")
    if not (a.src / "train").is_file():
        ap.error(f"no CIFAR-100 at {a.src}; pass --src DIR (the cifar-100-python folder)")
    desc = build(a.src, a.out, a.train, a.test)
    print(f"wrote {a.out / ARCHIVE}: {desc['bytes'] / 2**20:.1f} MiB, "
          f"{desc['train']} train / {desc['test']} test images")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

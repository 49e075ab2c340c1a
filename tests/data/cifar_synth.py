"""Tiny synthetic CIFAR files in the official python layout, for tests.

The official files are Python-2 pickles (protocol 2): keys and names are Python-2 ``str``
(``SHORT_BINSTRING``/``BINSTRING`` opcodes, read back as ``bytes`` with ``encoding="bytes"``) and
arrays reference ``numpy.core.multiarray._reconstruct``. :func:`dump_py2` writes exactly that, so
the real loader runs on these files as on the real ones.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch can be extended
    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes

    def save_str(self, obj: str) -> None:
        self.save_bytes(obj.encode("latin1"))  # numpy's dtype codes ('u1', '|') were py2 str

    dispatch[str] = save_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        name = name or obj.__name__
        module = obj.__module__
        if module.startswith("numpy._core") or module.startswith("numpy.core"):
            module = "numpy.core.multiarray"  # the path numpy 1 wrote into the official files
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)

    dispatch[type] = save_global


def dump_py2(obj: Any) -> bytes:
    """Pickle ``obj`` as Python 2 would have (protocol 2, byte strings as ``str``)."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def cifar_files(
    name: str, train_per_class: int = 2, test_per_class: int = 1, seed: int = 0
) -> dict[str, dict]:
    """The decoded contents ``{file name: dict}`` of a balanced synthetic copy.

    Images are random uint8 rows of 3072 values; labels cycle through the classes. CIFAR-100's
    fine class k belongs to superclass ``k % 20``.
    """
    rng = np.random.default_rng(seed)
    k = 10 if name == "cifar10" else 100

    def split(per_class: int, tag: bytes) -> tuple[np.ndarray, list[int], list[bytes]]:
        n = per_class * k
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [i % k for i in range(n)]
        names = [b"%s_%05d.png" % (tag, i) for i in range(n)]
        return data, labels, names

    if name == "cifar10":
        files: dict[str, dict] = {
            "batches.meta": {
                b"label_names": [b"class%d" % i for i in range(10)],
                b"num_cases_per_batch": train_per_class * 2,
                b"num_vis": 3072,
            }
        }
        data, labels, names = split(train_per_class, b"train")
        chunks = np.array_split(np.arange(len(labels)), 5)
        for b, idx in enumerate(chunks, start=1):
            files[f"data_batch_{b}"] = {
                b"batch_label": b"training batch %d of 5" % b,
                b"labels": [labels[i] for i in idx],
                b"data": data[idx],
                b"filenames": [names[i] for i in idx],
            }
        data, labels, names = split(test_per_class, b"test")
        files["test_batch"] = {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": labels,
            b"data": data,
            b"filenames": names,
        }
        return files

    files = {
        "meta": {
            b"fine_label_names": [b"fine%02d" % i for i in range(100)],
            b"coarse_label_names": [b"coarse%02d" % i for i in range(20)],
        }
    }
    for fname, per_class in (("train", train_per_class), ("test", test_per_class)):
        data, labels, names = split(per_class, fname.encode())
        files[fname] = {
            b"filenames": names,
            b"batch_label": fname.encode() + b"ing batch 1 of 1",
            b"fine_labels": labels,
            b"coarse_labels": [c % 20 for c in labels],
            b"data": data,
        }
    return files


def write_folder(root: Path, name: str, files: dict[str, Any]) -> Path:
    """Write ``files`` (dicts are pickled Python-2 style; bytes written as they are) into
    ``root/<official folder>``; return that folder."""
    folder = Path(root) / FOLDERS[name]
    folder.mkdir(parents=True, exist_ok=True)
    for fname, content in files.items():
        raw = content if isinstance(content, bytes) else dump_py2(content)
        (folder / fname).write_bytes(raw)
    return folder


def write_targz(path: Path, name: str, files: dict[str, Any]) -> Path:
    """Write ``files`` as an official-layout ``.tar.gz`` at ``path``; return ``path``."""
    with tarfile.open(path, "w:gz") as tar:
        for fname, content in files.items():
            raw = content if isinstance(content, bytes) else dump_py2(content)
            info = tarfile.TarInfo(f"{FOLDERS[name]}/{fname}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def md5s(folder: Path) -> dict[str, str]:
    """md5 of every file in ``folder``."""
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in Path(folder).iterdir()}

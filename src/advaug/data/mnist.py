"""MNIST and Fashion-MNIST from their official gzip IDX files, verified and checked.

``root`` may be the folder that holds the four files (``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``)
or a folder containing it under the dataset's name (``mnist/`` or ``fashion-mnist/``), so
``$ADVAUG_DATA`` can hold every dataset side by side.

Checks, in this order:

1. **md5** (``verify=True``): every file against the official md5, exactly; ``checksums``
   pins other values per file name and ``verify=False`` accepts a non-official copy, as for
   CIFAR (:mod:`advaug.data.fetch`).
2. **format** (always, :mod:`advaug.data.idx`): the magic numbers (0x803 images, 0x801 labels),
   28x28 images, header sizes that match the data exactly, no data beyond the declared size.
3. **labels** (always): one label per image, every label in [0, 10).
4. **sizes** (``check_sizes=True``): 60,000 train and 10,000 test images; ``check_sizes=False``
   accepts any size, e.g. tiny synthetic files in tests.

Images are returned as uint8 ``N x 1 x 28 x 28`` (one channel, kept at 28x28; see the README's
datasets section for why they are not padded to 32).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from advaug.data.fetch import (
    Opener,
    check_md5,
    default_opener,
    expected_md5,
    fetch,
    file_md5,
    make_root,
    missing,
    read_bytes,
)
from advaug.data.idx import MAGIC_IMAGES, MAGIC_LABELS, read_idx
from advaug.data.types import ImageData
from advaug.errors import ConfigError, DataError, DataMissingError, DownloadError
from advaug.log import get_logger

log = get_logger(__name__)

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
IMAGE_SIZE = 28


@dataclass(frozen=True)
class IdxSpec:
    """Where an IDX dataset comes from and what its files must contain."""

    name: str
    title: str
    folder: str
    base_url: str
    md5: dict[str, str]
    classes: tuple[str, ...]
    train_size: int = 60_000
    test_size: int = 10_000
    #: whether a random horizontal flip keeps the class (not for digits: a mirrored 2 or 7 is
    #: no digit; see :func:`advaug.data.datasets.flip_safe`)
    flip_safe: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def url(self, fname: str) -> str:
        return self.base_url + fname


MNIST = IdxSpec(
    name="mnist",
    title="MNIST",
    folder="mnist",
    # LeCun's own site refuses scripted downloads; PyTorch's S3 mirror serves the same bytes
    base_url="https://ossci-datasets.s3.amazonaws.com/mnist/",
    md5={
        TRAIN_IMAGES: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        TRAIN_LABELS: "d53e105ee54ea40749a09fcbcd1e9432",
        TEST_IMAGES: "9fb629c4189551a2d022fa330f9573f3",
        TEST_LABELS: "ec29112dd5afa0611ce80d1b7f02629c",
    },
    classes=tuple(str(k) for k in range(10)),
)

FASHION_MNIST = IdxSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    folder="fashion-mnist",
    base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    md5={
        TRAIN_IMAGES: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        TRAIN_LABELS: "25c81989df183df01b3e8a0aad5dffbe",
        TEST_IMAGES: "bef4ecab320f06d8554ea6380940ec79",
        TEST_LABELS: "bb300cfdad3c16e7a12a480ee83cd310",
    },
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    # clothes are left-right symmetric as classes (Xiao et al. do not flip, but may)
    flip_safe=True,
)

SPECS: dict[str, IdxSpec] = {"mnist": MNIST, "fashionmnist": FASHION_MNIST}


def get_spec(name: str) -> IdxSpec:
    """The :class:`IdxSpec` of ``"mnist"`` or ``"fashion-mnist"`` (case and dashes ignored)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in SPECS:
        names = ", ".join(s.name for s in SPECS.values())
        raise ConfigError(f"unknown IDX dataset {name!r}; choose one of: {names}")
    return SPECS[key]


def find_folder(spec: IdxSpec, root: Path) -> Path | None:
    """The folder holding the files: ``root`` itself or ``root/<folder>``; None if neither."""
    for candidate in (root, root / spec.folder):
        if any((candidate / f).is_file() for f in FILES):
            return candidate
    return None


def load_mnist(
    name: str,
    root: str | os.PathLike[str],
    *,
    download: bool = False,
    verify: bool = True,
    checksums: dict[str, str] | None = None,
    check_sizes: bool = True,
) -> ImageData:
    """Load MNIST or Fashion-MNIST from ``root`` (see the module docstring for the checks).

    ``download=True`` fetches the missing official files into ``root/<folder>`` first (see
    :func:`download_mnist`). Raises :class:`DataError` for a missing, corrupt or non-official
    copy, with a message that names the folder or file and the fix.
    """
    spec = get_spec(name)
    root = Path(root).expanduser()
    expected = expected_md5(spec.md5, spec.title, verify, checksums)
    folder = find_folder(spec, root)
    if folder is None or missing(folder, FILES):
        if download and folder in (None, root / spec.folder):
            folder = download_mnist(spec.name, root)
        else:
            where = (folder or root / spec.folder).resolve()
            lacking = missing(where, FILES)
            raise DataMissingError(
                f"{spec.title} not found: {where} lacks {', '.join(lacking)}; place the official "
                f"files there (from {spec.base_url}), or add data.download=true "
                "(download=True from Python)"
            )
    log.info("loading %s from %s", spec.title, folder)
    arrays = {}
    for fname in FILES:
        path = folder / fname
        data = read_bytes(path)
        check_md5(data, str(path), fname, expected, spec.md5)
        magic = MAGIC_IMAGES if "images" in fname else MAGIC_LABELS
        arrays[fname] = read_idx(path, magic=magic, data=data)
    train_x, train_y = _split(spec, folder, arrays, TRAIN_IMAGES, TRAIN_LABELS, check_sizes)
    test_x, test_y = _split(spec, folder, arrays, TEST_IMAGES, TEST_LABELS, check_sizes)
    return ImageData(spec.name, train_x, train_y, test_x, test_y, list(spec.classes))


def _split(
    spec: IdxSpec,
    folder: Path,
    arrays: dict[str, np.ndarray],
    images: str,
    labels: str,
    check_sizes: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split's images (uint8 N x 1 x 28 x 28) and labels, with their counts checked."""
    x, y = arrays[images], arrays[labels]
    if x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(
            f"{folder / images}: images are {x.shape[1]}x{x.shape[2]}, {spec.title} images are "
            f"{IMAGE_SIZE}x{IMAGE_SIZE}; replace the file"
        )
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"{folder}: {images} holds {x.shape[0]} images but {labels} holds {y.shape[0]} "
            "labels; the two files are from different copies: replace them"
        )
    if y.size and int(y.max()) >= spec.num_classes:
        raise DataError(
            f"{folder / labels}: label {int(y.max())} is outside [0, {spec.num_classes}); "
            "replace the file"
        )
    want = spec.train_size if images == TRAIN_IMAGES else spec.test_size
    if check_sizes and x.shape[0] != want:
        raise DataError(
            f"{folder / images} holds {x.shape[0]} images, expected {want}; the copy is "
            "incomplete: replace it (or set data.check_sizes=false for a smaller copy)"
        )
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


_default_opener = default_opener  # looked up at call time, so tests can replace it


def download_mnist(
    name: str,
    root: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    urlopen: Opener | None = None,
) -> Path:
    """Download the official files missing from ``root/<folder>``; return the folder.

    Each file is written to ``<file>.part``, its md5 checked against the official one, then
    renamed atomically; a failure removes the temp file and leaves the files already verified.
    A file already present must have its official md5. ``base_url`` (e.g. a ``file://``
    folder URL ending in ``/``) and ``urlopen`` exist for mirrors and tests.
    """
    spec = get_spec(name)
    folder = Path(root).expanduser() / spec.folder
    base = base_url or spec.base_url
    place = f"without network, place the official files in {folder.resolve()}"
    make_root(folder)
    for fname in FILES:
        dest = folder / fname
        want = spec.md5[fname]
        if dest.exists():
            got = file_md5(dest)
            if got != want:
                raise DownloadError(
                    f"{dest} exists but its md5 {got} is not {want}; delete it and download "
                    "again, or load it as it is with data.verify=false"
                )
            continue
        fetch(base + fname, dest, want, urlopen or _default_opener, f"{place} ({base}{fname})")
    return folder

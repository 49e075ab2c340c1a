"""CIFAR-10 and CIFAR-100 in the official python format, verified and loaded without trust.

``root`` may be the extracted folder (``cifar-100-python/`` or ``cifar-10-batches-py/``), a
folder containing it, a folder containing the official ``.tar.gz``, or that archive itself.
Archives are read member by member in memory, never extracted, unless downloaded.

Checks, in this order:

1. **md5** (``verify=True``): every file against the official per-file md5. ``checksums``
   (``{"train": "<md5>", ...}``) replaces the official value for the files it names, and those
   are checked even with ``verify=False``. ``verify=False`` accepts a well-formed copy that is not
   byte-identical to the official release (such as a re-pickled or re-ordered one).
2. **structure** (always): every file is a dict with the official keys, ``data`` is uint8 of shape
   (N, 3072), one label per image, labels in [0, K), class names from the meta file, and (for
   CIFAR-100) every fine class maps to one coarse class.
3. **counts** (always): every class appears equally often in each split, as in the official
   release. With ``check_sizes=True`` (default) the split sizes must also be the official ones,
   50,000 train / 10,000 test (CIFAR-100: 500/100 per class, CIFAR-10: 5,000/1,000);
   ``check_sizes=False`` accepts any balanced size, e.g. tiny synthetic files in tests.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

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
from advaug.data.safe_pickle import safe_loads
from advaug.data.types import ImageData
from advaug.errors import ConfigError, DataError, DataMissingError, DownloadError
from advaug.log import get_logger

log = get_logger(__name__)

_IMAGE_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class CifarSpec:
    """Where a CIFAR variant comes from and what its files must contain."""

    name: str
    title: str
    folder: str
    archive: str
    url: str
    archive_md5: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    md5: dict[str, str]
    label_key: str
    names_key: str
    num_classes: int
    train_size: int
    test_size: int
    coarse_label_key: str | None = None
    coarse_names_key: str | None = None
    num_coarse: int = 0

    @property
    def files(self) -> tuple[str, ...]:
        """Every file of the extracted folder."""
        return (self.meta_file, *self.train_files, *self.test_files)


CIFAR10 = CifarSpec(
    name="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    archive_md5="c58f30108f718f92721af3b95e74349a",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    md5={
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    label_key="labels",
    names_key="label_names",
    num_classes=10,
    train_size=50_000,
    test_size=10_000,
)

CIFAR100 = CifarSpec(
    name="cifar100",
    title="CIFAR-100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    md5={
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
    label_key="fine_labels",
    names_key="fine_label_names",
    num_classes=100,
    train_size=50_000,
    test_size=10_000,
    coarse_label_key="coarse_labels",
    coarse_names_key="coarse_label_names",
    num_coarse=20,
)

SPECS: dict[str, CifarSpec] = {"cifar10": CIFAR10, "cifar100": CIFAR100}

_Raw = dict[str, tuple[str, Any]]  # file name -> (where it was read from, unpickled object)


def get_spec(name: str) -> CifarSpec:
    """The :class:`CifarSpec` for ``"cifar10"`` or ``"cifar100"`` (case and dashes ignored)."""
    key = name.lower().replace("-", "")
    if key not in SPECS:
        raise ConfigError(f"unknown CIFAR variant {name!r}; choose one of: {', '.join(SPECS)}")
    return SPECS[key]


# ----------------------------------------------------------------------------- loading


def load_cifar(
    name: str,
    root: str | os.PathLike[str],
    *,
    download: bool = False,
    verify: bool = True,
    checksums: dict[str, str] | None = None,
    check_sizes: bool = True,
) -> ImageData:
    """Load CIFAR-10 or CIFAR-100 from ``root`` (see the module docstring for what is checked).

    ``download=True`` fetches and extracts the official archive into ``root`` when no copy is
    found there (see :func:`download_cifar`). Raises :class:`DataError` for a missing, corrupt
    or non-official copy, with a message that names the file and the fix.
    """
    spec = get_spec(name)
    root = Path(root).expanduser()
    expected = _expected_md5(spec, verify, checksums)
    source = _find_source(spec, root)
    if source is None:
        if not download:
            raise DataMissingError(
                f"{spec.title} not found under {root.resolve()}: place the extracted folder at "
                f"{(root / spec.folder).resolve()} or the archive at "
                f"{(root / spec.archive).resolve()} (from {spec.url}), or add data.download=true "
                "(download=True from Python)"
            )
        download_cifar(spec.name, root)
        source = root / spec.folder
    log.info("loading %s from %s", spec.title, source)
    raw = (
        _read_tar(spec, source, expected) if source.is_file() else _read_dir(spec, source, expected)
    )
    return _assemble(spec, raw, check_sizes)


def _expected_md5(spec: CifarSpec, verify: bool, checksums: dict[str, str] | None) -> dict:
    """The md5 each file must have: official ones (if ``verify``) overridden by ``checksums``."""
    return expected_md5(spec.md5, spec.title, verify, checksums)


def _find_source(spec: CifarSpec, root: Path) -> Path | None:
    """The folder or archive to read, or None when ``root`` holds no copy."""
    if root.is_file():
        return root
    if (root / spec.meta_file).exists():
        return root
    for candidate in (root / spec.folder, root / spec.archive):
        if candidate.exists():
            return candidate
    return None


def _check_md5(
    data: bytes, source: str, fname: str, expected: dict[str, str], spec: CifarSpec
) -> None:
    check_md5(data, source, fname, expected, spec.md5)


def _read_dir(spec: CifarSpec, folder: Path, expected: dict[str, str]) -> _Raw:
    """Read, verify and unpickle every file of an extracted folder."""
    lacking = missing(folder, spec.files)
    if lacking:
        raise DataError(
            f"{spec.title} folder {folder.resolve()} lacks {', '.join(lacking)}: place the "
            f"complete extracted folder there (from {spec.url}) or delete it and add "
            "data.download=true"
        )
    raw: _Raw = {}
    for fname in spec.files:
        path = folder / fname
        data = read_bytes(path)
        _check_md5(data, str(path), fname, expected, spec)
        raw[fname] = (str(path), safe_loads(data, str(path)))
    return raw


def _member_name(name: str) -> str:
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    return "/".join(parts)


def _read_tar(spec: CifarSpec, archive: Path, expected: dict[str, str]) -> _Raw:
    """Read the needed members straight from the archive (one sequential pass, no extraction).

    A gzip archive is read to its end so that its CRC-32 is checked even with ``verify=False``.
    """
    wanted = {f"{spec.folder}/{f}": f for f in spec.files}
    raw: _Raw = {}
    try:
        with open(archive, "rb") as fh:
            is_gzip = fh.read(2) == b"\x1f\x8b"
            fh.seek(0)
            stream: IO[bytes] = gzip.GzipFile(fileobj=fh) if is_gzip else fh
            with tarfile.open(fileobj=stream, mode="r|*") as tar:
                for member in tar:
                    fname = wanted.get(_member_name(member.name))
                    if fname is None or fname in raw:
                        continue
                    source = f"{archive}:{member.name}"
                    if not member.isfile():
                        raise DataError(
                            f"{source} is not a regular file (link or special member); the "
                            f"archive is not an official one: use the archive from {spec.url}"
                        )
                    f = tar.extractfile(member)
                    data = f.read() if f is not None else b""
                    _check_md5(data, source, fname, expected, spec)
                    raw[fname] = (source, safe_loads(data, source))
            while stream.read(1 << 20):  # to the end: gzip checks CRC-32 and length there
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(
            f"cannot read archive {archive} ({type(e).__name__}: {e}); it is truncated or not a "
            f"tar.gz: delete it and place a fresh copy from {spec.url}"
        ) from e
    missing = [f for f in spec.files if f not in raw]
    if missing:
        raise DataError(
            f"archive {archive} lacks {', '.join(f'{spec.folder}/{m}' for m in missing)}; "
            f"use the official archive from {spec.url}"
        )
    return raw


# ----------------------------------------------------------------------------- structure


def _strkeys(obj: Any, source: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataError(
            f"{source} holds a {type(obj).__name__}, not a dict; it is not a CIFAR python file"
        )
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _get(d: dict[str, Any], key: str, source: str) -> Any:
    if key not in d:
        raise DataError(
            f"{source} has no {key!r} entry (keys: {', '.join(sorted(d))}); it is not an "
            "official-format CIFAR file"
        )
    return d[key]


def _names(d: dict[str, Any], key: str, count: int, source: str) -> list[str]:
    names = _get(d, key, source)
    if not isinstance(names, (list, tuple)) or len(names) != count:
        n = len(names) if isinstance(names, (list, tuple)) else type(names).__name__
        raise DataError(f"{source}: {key!r} must list {count} names, found {n}; replace the file")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def _labels(value: Any, n: int, k: int, key: str, source: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as e:
        raise DataError(f"{source}: {key!r} is not a list of integers; replace the file") from e
    if arr.ndim != 1 or arr.shape[0] != n:
        raise DataError(
            f"{source}: {key!r} has {arr.shape[0] if arr.ndim == 1 else arr.shape} entries for "
            f"{n} images; every image needs one label: replace the file"
        )
    if n and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{source}: {key!r} holds {arr.dtype}, not integers; replace the file")
    arr = arr.astype(np.int64, copy=False)
    if n and (arr.min() < 0 or arr.max() >= k):
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise DataError(f"{source}: {key!r} contains {bad}, outside [0, {k}); replace the file")
    return arr


def _images(value: Any, source: str) -> np.ndarray:
    if (
        not isinstance(value, np.ndarray)
        or value.dtype != np.uint8
        or value.ndim != 2
        or (value.shape[1] != _IMAGE_BYTES)
    ):
        desc = (
            f"{value.dtype} {value.shape}"
            if isinstance(value, np.ndarray)
            else type(value).__name__
        )
        raise DataError(
            f"{source}: 'data' must be a uint8 array of shape (N, {_IMAGE_BYTES}), found {desc}; "
            "replace the file"
        )
    return value


def check_counts(
    labels: np.ndarray, spec: CifarSpec, split: str, expected_total: int | None, names: list[str]
) -> None:
    """Every class appears equally often; with ``expected_total`` also the official size."""
    k = spec.num_classes
    counts = np.bincount(labels, minlength=k)
    n = int(labels.shape[0])
    what = f"{spec.title} {split}"
    if expected_total is not None and n != expected_total:
        raise DataError(
            f"{what} has {n} images, expected {expected_total}; the copy is incomplete: replace "
            "it (or set data.check_sizes=false for a deliberately smaller balanced copy)"
        )
    per_class = (expected_total if expected_total is not None else n) // k
    if n == 0 or n % k:
        raise DataError(
            f"{what} has {n} images, not a positive multiple of {k} classes; replace the copy"
        )
    bad = np.nonzero(counts != per_class)[0]
    if bad.size:
        c = int(bad[0])
        raise DataError(
            f"{what}: class {c} ({names[c]!r}) has {int(counts[c])} images, expected {per_class} "
            f"like every class; the copy is incomplete or mislabelled: replace it"
        )


def _assemble(spec: CifarSpec, raw: _Raw, check_sizes: bool) -> ImageData:
    """Check the unpickled files' structure and counts; build the :class:`ImageData`."""
    meta_src, meta_obj = raw[spec.meta_file]
    meta = _strkeys(meta_obj, meta_src)
    classes = _names(meta, spec.names_key, spec.num_classes, meta_src)
    coarse_classes = None
    if spec.coarse_names_key:
        coarse_classes = _names(meta, spec.coarse_names_key, spec.num_coarse, meta_src)

    def split(
        files: tuple[str, ...], name: str, total: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        xs, ys, cs = [], [], []
        for fname in files:
            src, obj = raw[fname]
            d = _strkeys(obj, src)
            x = _images(_get(d, "data", src), src)
            xs.append(x)
            key = spec.label_key
            ys.append(_labels(_get(d, key, src), len(x), spec.num_classes, key, src))
            if spec.coarse_label_key:
                key = spec.coarse_label_key
                cs.append(_labels(_get(d, key, src), len(x), spec.num_coarse, key, src))
        x = np.concatenate(xs) if len(xs) > 1 else xs[0]
        y = np.concatenate(ys) if len(ys) > 1 else ys[0]
        check_counts(y, spec, name, total if check_sizes else None, classes)
        x = np.ascontiguousarray(x)
        if not x.flags.writeable:
            x = x.copy()
        xt = torch.from_numpy(x.reshape(-1, 3, 32, 32))
        coarse = None
        if cs:
            c = np.concatenate(cs) if len(cs) > 1 else cs[0]
            coarse = torch.from_numpy(c.copy())
        return xt, torch.from_numpy(y.copy()), coarse

    train_x, train_y, train_c = split(spec.train_files, "train", spec.train_size)
    test_x, test_y, test_c = split(spec.test_files, "test", spec.test_size)
    if train_c is not None and test_c is not None:
        _check_fine_to_coarse(
            torch.cat([train_y, test_y]).numpy(), torch.cat([train_c, test_c]).numpy(), spec
        )
    return ImageData(
        name=spec.name,
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        classes=classes,
        train_coarse=train_c,
        test_coarse=test_c,
        coarse_classes=coarse_classes,
    )


def _check_fine_to_coarse(fine: np.ndarray, coarse: np.ndarray, spec: CifarSpec) -> None:
    """Each fine class belongs to exactly one superclass, across train and test."""
    pairs = np.unique(fine * spec.num_coarse + coarse)
    fine_of_pair = pairs // spec.num_coarse
    values, counts = np.unique(fine_of_pair, return_counts=True)
    if (counts > 1).any():
        k = int(values[np.argmax(counts > 1)])
        supers = [int(p % spec.num_coarse) for p in pairs if p // spec.num_coarse == k]
        raise DataError(
            f"{spec.title}: fine class {k} has coarse labels {supers}, but every class belongs "
            "to one superclass; the labels are corrupt: replace the copy"
        )


# ----------------------------------------------------------------------------- download


_default_opener = default_opener  # looked up at call time, so tests can replace it


def download_cifar(
    name: str,
    root: str | os.PathLike[str],
    *,
    url: str | None = None,
    md5: str | None = None,
    urlopen: Opener | None = None,
) -> Path:
    """Download, verify and extract the official archive into ``root``; return the folder.

    The archive is written to ``<root>/<archive>.part``, its md5 checked (against ``md5`` or the
    official value), then renamed atomically; on any failure the temp file is removed. ``url``
    (e.g. a ``file://`` URL) and ``urlopen`` (a callable ``url -> binary file object``) exist for
    mirrors and tests. Extraction refuses links and paths outside the dataset folder.
    """
    spec = get_spec(name)
    root = Path(root).expanduser()
    url = url or spec.url
    want = (md5 or spec.archive_md5).lower()
    archive = root / spec.archive
    place = (
        f"without network, place {spec.archive} from {url} in {root.resolve()} or its extracted "
        f"folder at {(root / spec.folder).resolve()}"
    )
    make_root(root)
    if archive.exists():
        got = file_md5(archive)
        if got != want:
            raise DownloadError(
                f"{archive} exists but its md5 {got} is not {want}; delete it and download "
                "again, or load it as it is with data.verify=false"
            )
    else:
        fetch(url, archive, want, urlopen or _default_opener, place)
    folder = root / spec.folder
    if not folder.exists():
        _safe_extract(archive, root, spec)
    return folder


def _safe_extract(archive: Path, root: Path, spec: CifarSpec) -> None:
    """Extract the dataset folder of ``archive`` into ``root`` via a temp folder and a rename."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.", dir=root))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                parts = PurePosixPath(m.name).parts
                if (
                    m.name.startswith("/")
                    or ".." in parts
                    or _member_name(m.name).split("/")[0] != spec.folder
                    or not (m.isfile() or m.isdir())
                ):
                    raise DataError(
                        f"refusing to extract {archive}: member {m.name!r} is a link or lies "
                        f"outside {spec.folder}/; use the official archive from {spec.url}"
                    )
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **kwargs)  # noqa: S202 - members checked above
        os.replace(tmp / spec.folder, root / spec.folder)
        log.info("extracted %s to %s", archive.name, root / spec.folder)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(
            f"cannot extract {archive} ({type(e).__name__}: {e}); delete it and download again"
        ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

"""What every file-based dataset reader shares: md5 checks against official checksums (with a
user's pins), and downloads verified by md5 and renamed atomically.

The CIFAR reader (:mod:`advaug.data.cifar`) and the IDX reader of MNIST and Fashion-MNIST
(:mod:`advaug.data.mnist`) both use these, so a checksum error and a failed download read the
same whichever dataset caused them.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO

from advaug.errors import ConfigError, DataError, DownloadError
from advaug.log import get_logger, progress

log = get_logger(__name__)

Opener = Callable[[str], IO[bytes]]


def default_opener(url: str) -> IO[bytes]:
    """``urllib``'s opener with a 60 s timeout (https, or a user-given ``file://`` URL)."""
    return urllib.request.urlopen(url, timeout=60)  # noqa: S310 - https or user-given file://


def expected_md5(
    official: Mapping[str, str],
    title: str,
    verify: bool,
    checksums: Mapping[str, str] | None,
) -> dict[str, str]:
    """The md5 each file must have: the ``official`` ones (if ``verify``), overridden by the
    user's ``checksums`` (file name -> md5), which are checked even with ``verify=False``."""
    out = dict(official) if verify else {}
    for fname, md5 in (checksums or {}).items():
        if fname not in official:
            raise ConfigError(
                f"data.checksums names {fname!r}, which is not a {title} file; use keys from: "
                f"{', '.join(official)}"
            )
        if not (
            isinstance(md5, str)
            and len(md5) == 32
            and all(c in "0123456789abcdef" for c in md5.lower())
        ):
            raise ConfigError(
                f"invalid config value data.checksums.{fname}={md5!r}: not an md5; "
                "give 32 hex digits"
            )
        out[fname] = md5.lower()
    return out


def check_md5(
    data: bytes, source: str, fname: str, expected: Mapping[str, str], official: Mapping[str, str]
) -> None:
    """Raise :class:`DataError` unless ``data`` has the md5 ``expected[fname]`` (if any).

    The message says whether the official or a user-given value failed, and names both ways
    out: ``data.verify=false`` and the ``data.checksums`` line that pins this copy.
    """
    want = expected.get(fname)
    if want is None:
        return
    got = hashlib.md5(data).hexdigest()
    if got != want:
        kind = "official" if official.get(fname) == want else "given"
        raise DataError(
            f"{source}: md5 {got} does not match the {kind} {want}; add data.verify=false to "
            f"accept a well-formed non-official copy, or data.checksums.{fname}={got} to pin "
            "this one (verify=False or checksums={...} from Python)"
        )


def file_md5(path: Path) -> str:
    """The md5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_root(root: Path) -> None:
    """Create the download folder, or raise :class:`DownloadError` naming it."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(
            f"cannot create {root} ({e.strerror or e}); pick a writable root"
        ) from e


def fetch(url: str, dest: Path, md5: str, opener: Opener, place: str) -> None:
    """Download ``url`` to ``dest``: written to ``dest.part``, md5-checked, then renamed.

    On any failure (network, md5, interrupt) the temp file is removed and ``dest`` is untouched;
    the :class:`DownloadError` ends with ``place``, which says where to put the file by hand.
    """
    part = dest.with_name(dest.name + ".part")
    ok = False
    try:
        h = hashlib.md5()
        log.info("downloading %s to %s", url, dest)
        try:
            with opener(url) as resp, open(part, "wb") as out:
                headers = getattr(resp, "headers", None)
                length = headers.get("Content-Length") if headers is not None else None
                bar = progress(total=int(length) if length else None, desc=dest.name, unit="B")
                try:
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        out.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
                finally:
                    bar.close()
        except Exception as e:
            raise DownloadError(
                f"could not download {url} ({type(e).__name__}: {e}); {place}"
            ) from e
        got = h.hexdigest()
        if got != md5:
            raise DownloadError(
                f"download of {url} has md5 {got}, expected {md5}; the file was corrupted or "
                f"changed in transit: retry, or {place}"
            )
        os.replace(part, dest)
        ok = True
    finally:
        if not ok:
            part.unlink(missing_ok=True)


def read_bytes(path: Path) -> bytes:
    """A file's bytes, or a :class:`DataError` that names it."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}; check its permissions") from e


def missing(folder: Path, files: Iterable[str]) -> list[str]:
    """The names in ``files`` that are not regular files in ``folder``."""
    return [f for f in files if not (folder / f).is_file()]

"""One writer per run or study folder: a lock file that names its holder.

:class:`FolderLock` takes ``FOLDER/advaug.lock`` with ``fcntl.flock`` (exclusive, non-blocking)
and writes its holder into it: pid, host, start time and command. The kernel drops a flock when
the process that holds it ends in any way, SIGKILL included, so the lock of a dead holder is
taken over without guessing from PIDs (which the next process may reuse); the lock of a live
holder is refused with one line that names it. Releasing removes the file, so a finished folder
holds no lock file; a killed holder leaves its file behind, which only records who it was.

Why not the ``filelock`` package: on POSIX it is the same ``flock`` call, and it offers neither
holder information nor a refusal that names the holder. On a file system without ``flock``
support the folder is used unlocked, with a warning.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from advaug.errors import LockedError
from advaug.log import get_logger

log = get_logger(__name__)

#: The lock file's name inside the locked folder.
LOCK_NAME = "advaug.lock"


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
    }


def _read(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 1 << 16).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_holder(h: dict[str, Any]) -> str:
    if not h:
        return "another process (it has not written its name yet)"
    return (
        f"pid {h.get('pid', '?')} on {h.get('host', '?')} since {h.get('started', '?')}"
        f" ({h.get('command', '?')})"
    )


class FolderLock:
    """An exclusive lock on ``folder`` (which must exist), held from :meth:`acquire` (or
    ``with``) to :meth:`release`; ``what`` names the folder in the refusal ("run", "study")."""

    def __init__(self, folder: str | Path, what: str = "folder"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.what = what
        self.fd: int | None = None

    def acquire(self) -> FolderLock:
        while self.fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise LockedError(
                    f"{self.what} folder {self.folder} is in use by {describe_holder(holder)}; "
                    "wait for it to finish or stop it (a killed holder's lock is taken over), "
                    "or use another --out"
                ) from None
            except OSError as e:
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    os.close(fd)
                    raise
                os.close(fd)
                log.warning("cannot lock %s (%s); using it without a lock", self.folder, e)
                return self
            if self._still_linked(fd):
                self.fd = fd
            else:  # released (and removed) between our open and our flock: take the new file
                os.close(fd)
        previous = _read(self.fd)
        if previous and previous.get("pid") != os.getpid():
            log.warning(
                "%s: took over the lock of %s, which is gone",
                self.folder,
                describe_holder(previous),
            )
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, (json.dumps(_holder()) + "\n").encode())
        return self

    def _still_linked(self, fd: int) -> bool:
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: see _still_linked
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

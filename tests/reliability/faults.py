"""Fault injection into checkpoint writes, from the outside: the checkpoint module carries no
test hook, so this wraps the file operations it performs.

``install(monkeypatch, hook)`` calls ``hook(event, path)`` at the moments a kill would hurt most:

- ``"write-partial"``: half of a file's bytes are in its temporary file (flushed, not synced);
- ``"write-synced"``: all of them are, fsynced, before the rename;
- ``"write-renamed"``: right after the rename onto the final name;
- ``"prune"``: between the two unlinks of a pruned checkpoint (its manifest is gone, the
  ``.pt`` still there).

``path`` is the final name of the file being written (for ``prune``: the ``.pt`` file).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from advaug.runtime import checkpoint as ckpt

Hook = Callable[[str, Path], None]


def _final_name(tmp: Path) -> Path:
    """``.NAME.tmp-PID`` → ``NAME``, in the same folder."""
    return tmp.with_name(tmp.name[1:].rsplit(".tmp-", 1)[0])


class _HalfThenRest:
    """A binary file whose first ``write`` stops halfway for the hook, then finishes."""

    def __init__(self, f: Any, path: Path, hook: Hook) -> None:
        self._f, self._path, self._hook = f, path, hook

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self._f.write(view[: len(view) // 2])
        self._f.flush()
        self._hook("write-partial", self._path)
        return self._f.write(view[len(view) // 2 :])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _HalfThenRest:
        self._f.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._f.__exit__(*exc)


class _OS:
    """``os`` for the checkpoint module, with fsync and replace reporting to the hook."""

    def __init__(self, hook: Hook) -> None:
        self._hook = hook
        self._fsynced: dict[int, Path] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: Any, dst: Any) -> None:
        self._hook("write-synced", Path(dst))
        os.replace(src, dst)
        self._hook("write-renamed", Path(dst))


def install(monkeypatch: pytest.MonkeyPatch, hook: Hook) -> None:
    """Route the checkpoint module's writes, renames and prunes through ``hook``."""
    real_open = open
    real_unlink = pathlib.Path.unlink

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = real_open(file, mode, *args, **kwargs)
        if "w" in mode and "b" in mode and ".tmp-" in Path(file).name:
            return _HalfThenRest(f, _final_name(Path(file)), hook)
        return f

    def unlink(self: pathlib.Path, missing_ok: bool = False) -> None:
        real_unlink(self, missing_ok=missing_ok)
        if self.suffix == ".json" and ckpt._NAME.match(self.with_suffix(".pt").name):
            hook("prune", self.with_suffix(".pt"))

    monkeypatch.setattr(ckpt, "open", open_, raising=False)
    monkeypatch.setattr(ckpt, "os", _OS(hook))
    monkeypatch.setattr(pathlib.Path, "unlink", unlink)

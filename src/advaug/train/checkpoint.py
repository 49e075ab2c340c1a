"""Atomic, verified checkpoints with manifests, retention and fallback.

A checkpoint is ``checkpoints/step-00001234.pt`` plus ``step-00001234.json``, its manifest:
sha256 of the ``.pt`` bytes, step, config hash, architecture, library versions. Both files are
written to a temporary name, flushed, fsynced and renamed, the manifest last; a checkpoint counts
only when its manifest exists and the hash matches. Loading uses ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import time
from pathlib import Path
from typing import Any

import torch

from advaug.errors import CheckpointError
from advaug.log import get_logger

log = get_logger(__name__)
_NAME = re.compile(r"^step-(\d{8,})\.pt$")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers only ever see the old or the new whole file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - some filesystems refuse directory fsync
        pass


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def versions() -> dict[str, str]:
    import advaug

    return {
        "advaug": advaug.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def check_free_space(folder: Path, need_bytes: int) -> None:
    """Refuse a large write that would not fit, before starting it."""
    import shutil

    free = shutil.disk_usage(folder).free
    if free < need_bytes * 1.1 + 16 * 2**20:
        raise CheckpointError(
            f"not enough disk space in {folder}: {need_bytes / 2**20:.1f} MiB needed, "
            f"{free / 2**20:.1f} MiB free; free some space or choose another --out folder"
        )


class CheckpointManager:
    """Saves, lists, verifies and prunes the checkpoints of one run."""

    def __init__(self, folder: Path, keep_last: int = 2, meta: dict[str, Any] | None = None):
        self.folder = Path(folder)
        self.keep_last = keep_last
        self.meta = dict(meta or {})

    # -- writing ------------------------------------------------------------------------------
    def save(self, state: dict[str, Any], step: int, *, metric: float | None = None) -> Path:
        """Write ``state`` for ``step`` atomically, then prune old checkpoints."""
        self.folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
        check_free_space(self.folder, len(data))
        path = self.folder / f"step-{step:08d}.pt"
        atomic_write_bytes(path, data)
        manifest = {
            "file": path.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "step": step,
            "metric": metric,
            "time": time.time(),
            "versions": versions(),
            **self.meta,
        }
        atomic_write_text(path.with_suffix(".json"), json.dumps(manifest, indent=1))
        self._prune()
        return path

    def _prune(self) -> None:
        entries = self.entries()
        if len(entries) <= self.keep_last:
            return
        keep = {e["step"] for e in entries[-self.keep_last :]}
        scored = [e for e in entries if e.get("metric") is not None]
        if scored:
            keep.add(max(scored, key=lambda e: (e["metric"], e["step"]))["step"])
        for e in entries:
            if e["step"] not in keep:
                for p in (self.folder / e["file"], (self.folder / e["file"]).with_suffix(".json")):
                    p.unlink(missing_ok=True)

    # -- reading ------------------------------------------------------------------------------
    def entries(self) -> list[dict[str, Any]]:
        """Manifests of complete checkpoints, oldest first (unverified)."""
        out = []
        if not self.folder.is_dir():
            return out
        for p in self.folder.glob("step-*.json"):
            try:
                m = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(m, dict) and _NAME.match(str(m.get("file", ""))):
                out.append(m)
        return sorted(out, key=lambda m: m["step"])

    def load_latest(self, map_location: Any = "cpu") -> tuple[dict[str, Any], dict] | None:
        """The newest checkpoint whose bytes match its manifest, falling back to older ones."""
        for m in reversed(self.entries()):
            try:
                return load_file(self.folder / m["file"], m, map_location), m
            except CheckpointError as e:
                log.warning("%s; falling back to the previous checkpoint", e)
        return None

    def best(self) -> dict[str, Any] | None:
        scored = [e for e in self.entries() if e.get("metric") is not None]
        return max(scored, key=lambda e: (e["metric"], e["step"])) if scored else None


def save_final(path: Path, state: dict[str, Any]) -> None:
    """Write a run's final weights (``final.pt``) atomically, with a manifest beside it."""
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    check_free_space(Path(path).parent, len(data))
    atomic_write_bytes(Path(path), data)
    manifest = {"file": Path(path).name, "sha256": hashlib.sha256(data).hexdigest(), "final": True}
    atomic_write_text(
        Path(path).with_suffix(".json"), json.dumps({**manifest, "versions": versions()})
    )


def load_file(
    path: Path, manifest: dict[str, Any] | None = None, map_location: Any = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``, verifying it against its manifest."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path or the run folder")
    if manifest is None:
        mpath = path.with_suffix(".json")
        if mpath.is_file():
            try:
                manifest = json.loads(mpath.read_text())
            except ValueError as e:
                raise CheckpointError(f"checkpoint manifest {mpath} is corrupted ({e})") from e
    data = path.read_bytes()
    if manifest is not None and hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
        raise CheckpointError(
            f"checkpoint {path} is corrupted or truncated (sha256 does not match its manifest)"
        )
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded safely ({first[:200]}); "
            "it may be corrupted or not an advaug checkpoint"
        ) from e


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder, its checkpoints/ folder or a ``.pt`` file → the newest good ``.pt``."""
    p = Path(path)
    if p.is_file():
        return p
    for folder in (p / "checkpoints", p):
        if folder.is_dir():
            entries = CheckpointManager(folder).entries()
            if entries:
                final = folder / "final.pt"
                return final if final.is_file() else folder / entries[-1]["file"]
            if (folder / "final.pt").is_file():
                return folder / "final.pt"
    raise CheckpointError(f"no checkpoint found at {p}; give a run folder or a .pt file")


def check_arch(saved: dict[str, Any], expected_name: str, expected_kwargs: dict[str, Any]) -> None:
    """Fail with one line when a checkpoint was made for another architecture or class count."""
    name = saved.get("arch_name")
    kwargs = saved.get("arch_kwargs", {})
    if name != expected_name:
        raise CheckpointError(
            f"checkpoint is for architecture '{name}', not '{expected_name}'; "
            "pick the matching model or checkpoint"
        )
    for key in sorted(set(kwargs) | set(expected_kwargs)):
        if kwargs.get(key) != expected_kwargs.get(key):
            raise CheckpointError(
                f"checkpoint has {key}={kwargs.get(key)!r} but the model has "
                f"{key}={expected_kwargs.get(key)!r}; pick the matching model or checkpoint"
            )

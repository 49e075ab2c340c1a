"""Atomic, verified checkpoints with manifests, retention and fallback.

A checkpoint is ``checkpoints/step-00001234.pt`` plus ``step-00001234.json``, its manifest:
sha256 of the ``.pt`` bytes, step, config hash, architecture, library versions. Both files are
written to a temporary name, flushed, fsynced and renamed, the manifest last; a checkpoint counts
only when its manifest exists and the hash matches. Loading uses ``weights_only=True``.

What a kill or a bad file can leave behind, and what happens to it:

- a half-written temporary file (``.NAME.tmp-PID``): never counted; removed by the next write of
  the same file, or of any checkpoint, once its writer process is gone (:func:`remove_stale_temps`);
- a ``.pt`` without a manifest: never counted; pruned once a newer checkpoint exists;
- a ``.pt`` whose bytes do not match its manifest (corrupted, truncated): skipped by
  :meth:`CheckpointManager.load_latest` with a warning, which falls back to the previous one;
- a ``.pt`` that matches its manifest but cannot be loaded with ``weights_only=True`` (a
  tampered or foreign file): an error, never a silent restart that would overwrite it;
- a state holding NaN or inf: refused before it is written (:class:`NumericalError`), so the
  newest checkpoint on disk is always a good one.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import platform
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from advaug._version import __version__
from advaug.errors import CheckpointError, NumericalError
from advaug.log import get_logger

log = get_logger(__name__)
_NAME = re.compile(r"^step-(\d{8,})\.pt$")
_TEMP = re.compile(r"^\..+\.tmp-(\d+)$")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers only ever see the old or the new whole file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove_stale(path.parent.glob(f".{glob.escape(path.name)}.tmp-*"))
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _remove_stale(candidates: Iterable[Path]) -> list[Path]:
    removed: list[Path] = []
    for p in candidates:
        m = _TEMP.match(p.name)
        if m is None or not p.is_file():
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            p.unlink()
            removed.append(p)
        except OSError:  # pragma: no cover - vanished or not ours to delete
            pass
    return removed


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temporary files of :func:`atomic_write_bytes` left in ``folder`` by a killed writer.

    A temporary file is stale when the process that wrote it (the PID in its name) is gone; files
    of this process and of live processes stay. Returns the removed paths. (Each atomic write
    also removes the stale temporary files of its own target.)
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = _remove_stale(folder.iterdir())
    if removed:
        log.info("removed %d temporary file(s) left by a killed run in %s", len(removed), folder)
    return removed


def versions() -> dict[str, str]:
    return {
        "advaug": __version__,
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


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield prefix or "<state>", obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}[{i}]")


def first_nonfinite(state: Any) -> str | None:
    """The key path of the first floating tensor in ``state`` that holds NaN or inf, or None."""
    for key, t in _tensors(state):
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            return key
    return None


def _serialize(state: dict[str, Any], what: str, folder: Path) -> bytes:
    bad = first_nonfinite(state)
    if bad is not None:
        raise NumericalError(
            f"refused to write {what}: '{bad}' holds NaN or inf; the last good checkpoint is kept "
            f"in {folder}; lower the learning rate (or raise gan.gp_weight) and resume"
        )
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _write_error(path: Path, e: OSError) -> CheckpointError:
    return CheckpointError(
        f"cannot write checkpoint {path} ({e.strerror or e}); free disk space or fix the "
        f"permissions of {path.parent} (earlier checkpoints are kept)"
    )


class CheckpointManager:
    """Saves, lists, verifies and prunes the checkpoints of one run."""

    def __init__(self, folder: Path, keep_last: int = 2, meta: dict[str, Any] | None = None):
        self.folder = Path(folder)
        self.keep_last = keep_last
        self.meta = dict(meta or {})

    # -- writing ------------------------------------------------------------------------------
    def save(self, state: dict[str, Any], step: int, *, metric: float | None = None) -> Path:
        """Write ``state`` for ``step`` atomically, then prune old checkpoints.

        Raises :class:`NumericalError` (and writes nothing) when a tensor of ``state`` holds NaN
        or inf, and :class:`CheckpointError` when the disk is full or not writable.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"step-{step:08d}.pt"
        data = _serialize(state, f"checkpoint {path.name}", self.folder)
        remove_stale_temps(self.folder)
        check_free_space(self.folder, len(data))
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
        try:
            atomic_write_bytes(path, data)
            atomic_write_text(path.with_suffix(".json"), json.dumps(manifest, indent=1))
        except OSError as e:
            raise _write_error(path, e) from e
        self._prune()
        return path

    def _prune(self) -> None:
        entries = self.entries()
        keep = {e["step"] for e in entries[-self.keep_last :]}
        scored = [e for e in entries if e.get("metric") is not None]
        if scored:
            keep.add(max(scored, key=lambda e: (e["metric"], e["step"]))["step"])
        for e in entries:
            if e["step"] not in keep:
                pt = self.folder / e["file"]
                # manifest first: from that moment the checkpoint no longer counts
                pt.with_suffix(".json").unlink(missing_ok=True)
                pt.unlink(missing_ok=True)
        # .pt files without a manifest (a kill between the two writes or the two unlinks)
        newest = max((e["step"] for e in entries), default=None)
        if newest is None:
            return
        listed = {e["file"] for e in entries}
        for p in self.folder.glob("step-*.pt"):
            m = _NAME.match(p.name)
            if m and p.name not in listed and int(m.group(1)) < newest:
                p.unlink(missing_ok=True)

    # -- reading ------------------------------------------------------------------------------
    def entries(self) -> list[dict[str, Any]]:
        """Manifests of complete checkpoints, oldest first (unverified).

        A manifest counts only when it is a JSON object that names its own ``.pt`` file, with an
        integer step and a sha256; anything else in the folder is ignored.
        """
        out = []
        if not self.folder.is_dir():
            return out
        for p in self.folder.glob("step-*.json"):
            try:
                m = json.loads(p.read_text())
            except (OSError, ValueError):
                m = None
            if _valid_manifest(m, p):
                out.append(m)
            else:
                log.warning("ignoring %s: not a valid checkpoint manifest", p)
        return sorted(out, key=lambda m: m["step"])

    def load_latest(self, map_location: Any = "cpu") -> tuple[dict[str, Any], dict] | None:
        """The newest checkpoint whose bytes match its manifest, falling back to older ones.

        A corrupted, truncated or missing file is skipped with a warning. A file that matches its
        manifest but cannot be loaded safely raises :class:`CheckpointError`: it was not written
        by advaug, and silently starting over would overwrite the evidence.
        """
        for m in reversed(self.entries()):
            path = self.folder / m["file"]
            try:
                data = _verified_bytes(path, m)
            except CheckpointError as e:
                log.warning("%s; falling back to the previous checkpoint", e)
                continue
            return _torch_load(data, path, map_location, _RESUME_ADVICE), m
        return None

    def best(self) -> dict[str, Any] | None:
        scored = [e for e in self.entries() if e.get("metric") is not None]
        return max(scored, key=lambda e: (e["metric"], e["step"])) if scored else None


def _valid_manifest(m: Any, path: Path) -> bool:
    if not isinstance(m, dict):
        return False
    step, metric = m.get("step"), m.get("metric")
    return (
        m.get("file") == path.with_suffix(".pt").name
        and _NAME.match(m["file"]) is not None
        and isinstance(step, int)
        and not isinstance(step, bool)
        and step >= 0
        and isinstance(m.get("sha256"), str)
        and (metric is None or (isinstance(metric, int | float) and not isinstance(metric, bool)))
    )


def save_final(path: Path, state: dict[str, Any]) -> None:
    """Write a run's final weights (``final.pt``) atomically, with a manifest beside it."""
    path = Path(path)
    data = _serialize(state, f"final weights {path.name}", path.parent)
    check_free_space(path.parent, len(data))
    manifest = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "final": True}
    try:
        atomic_write_bytes(path, data)
        atomic_write_text(
            path.with_suffix(".json"), json.dumps({**manifest, "versions": versions()})
        )
    except OSError as e:
        raise _write_error(path, e) from e


def _verified_bytes(path: Path, manifest: dict[str, Any] | None) -> bytes:
    """The bytes of ``path``, checked against ``manifest``'s sha256 when one is given."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path or the run folder")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(
            f"cannot read checkpoint {path} ({e.strerror or e}); check its permissions"
        ) from e
    if manifest is not None and hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
        raise CheckpointError(
            f"checkpoint {path} is corrupted or truncated (sha256 does not match its manifest)"
        )
    return data


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _load_failure(e: Exception) -> str:
    """The one useful line of a ``torch.load`` failure (torch's own text spans many lines and
    suggests ``weights_only=False``, which must never be followed for an untrusted file)."""
    text = _ANSI.sub("", str(e))
    m = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if m:
        return f"it asks for the Python global {m.group(1)}, which weights_only loading refuses"
    m = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    if m:
        return f"weights_only loading refused it: {m.group(1).strip()[:200]}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(e).__name__)[:200]


_FOREIGN = "it matches its manifest, so it was not written by advaug or was tampered with"
_RESUME_ADVICE = f"{_FOREIGN}; move it out of the run folder to resume from the previous one"
_FINAL_ADVICE = f"{_FOREIGN}; never load it unsafely: delete it and train that run again"
_PLAIN_ADVICE = "it is corrupted or not an advaug checkpoint; give a checkpoint advaug wrote"


def _torch_load(data: bytes, path: Path, map_location: Any, advice: str) -> dict[str, Any]:
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded safely ({_load_failure(e)}); {advice}"
        ) from e
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(state).__name__}, not an advaug state dict"
        )
    return state


def load_file(
    path: Path, manifest: dict[str, Any] | None = None, map_location: Any = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``, verifying it against its manifest."""
    path = Path(path)
    if manifest is None:
        mpath = path.with_suffix(".json")
        if mpath.is_file():
            try:
                manifest = json.loads(mpath.read_text())
            except (OSError, ValueError) as e:
                raise CheckpointError(f"checkpoint manifest {mpath} is corrupted ({e})") from e
            if not isinstance(manifest, dict):
                raise CheckpointError(
                    f"checkpoint manifest {mpath} is corrupted (not a JSON object); delete it"
                )
    data = _verified_bytes(path, manifest)
    advice = _PLAIN_ADVICE if manifest is None else _FINAL_ADVICE
    return _torch_load(data, path, map_location, advice)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder, its checkpoints/ folder or a ``.pt`` file → the newest good ``.pt``."""
    if not str(path).strip():
        raise CheckpointError("no checkpoint path given; pass a run folder or a .pt file")
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


#: Architecture options added after checkpoints were written without them, with the value that
#: such an older checkpoint implies (every model then took 3-channel 32x32 images).
IMPLIED_ARCH_KWARGS: dict[str, Any] = {"in_channels": 3, "channels": 3, "image_size": 32}


def check_arch(saved: dict[str, Any], expected_name: str, expected_kwargs: dict[str, Any]) -> None:
    """Fail with one line when a checkpoint was made for another architecture or class count.

    An option missing from the checkpoint but named in :data:`IMPLIED_ARCH_KWARGS` counts as
    its implied value, so checkpoints from before that option existed still load.
    """
    name = saved.get("arch_name")
    kwargs = {**IMPLIED_ARCH_KWARGS, **saved.get("arch_kwargs", {})}
    expected_kwargs = {**IMPLIED_ARCH_KWARGS, **expected_kwargs}
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

"""A run is a folder: config.yaml, metrics.jsonl, TensorBoard events, checkpoints/, samples/,
and result.json once finished.

Only rank 0 writes. A run is *finished* exactly when ``result.json`` exists (it is written
atomically, last). On resume from a checkpoint at step S, ``metrics.jsonl`` is cut back to the
records with ``step <= S`` and TensorBoard purges events after S, so the resumed run logs every
later step exactly once. A run that finds no usable checkpoint starts over: the metrics of the
lost attempt are dropped (and TensorBoard purges from step 0), so a step is never logged twice.

A folder with a ``config.yaml`` but no checkpoint and no result (a run that failed before its
first checkpoint) holds nothing to resume, so a run with a corrected config may take it over;
a folder with checkpoints or a result is refused for any other config, with the keys that
differ. A ``config.yaml`` that is unreadable (cut, edited by hand) is rewritten when every
checkpoint and result in the folder was made with this config (their manifests hold its hash),
and refused otherwise, naming the file.

While a run is open its folder is locked (:class:`advaug.runtime.lock.FolderLock`: a second
process is refused with the holder's pid, host and start time) and the log lines go to its
``log.txt`` as well.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

from advaug.config import (
    config_diff,
    config_hash,
    dump_yaml,
    identity,
    read_stored,
    to_dict,
)
from advaug.errors import ConfigError
from advaug.log import get_logger, log_to_file
from advaug.runtime.checkpoint import CheckpointManager, atomic_write_text, remove_stale_temps
from advaug.runtime.lock import FolderLock
from advaug.train.trackers import Tracker, open_trackers

log = get_logger(__name__)


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "numel", lambda: 2)() == 1:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class _RunCheckpoints(CheckpointManager):
    """The checkpoints of a :class:`Run`: finding none to resume from resets the run's logs."""

    def __init__(self, run: Run, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._run = run

    def save(self, state: dict[str, Any], step: int, *, metric: float | None = None) -> Path:
        self.meta["metrics_records"] = self._run.record_count()
        return super().save(state, step, metric=metric)

    def load_latest(self, map_location: Any = "cpu") -> tuple[dict[str, Any], dict] | None:
        found = super().load_latest(map_location)
        if found is None:
            self._run.start_over()
        else:
            self._run._resume_records = found[1].get("metrics_records")
        return found


class Run:
    """The folder of one training run (classifier or GAN)."""

    def __init__(
        self,
        folder: str | Path,
        config: Any,
        *,
        kind: str,
        keep_last: int = 2,
        write: bool = True,
        tensorboard: bool = True,
    ):
        if not str(folder).strip():
            raise ConfigError("the run folder is empty; pass --out DIR (a folder to write into)")
        self.folder = Path(folder)
        self.config = config
        self.kind = kind
        self.write = write
        self.hash = config_hash(config)
        self._trackers: list[Tracker] | None = None
        self._tb_enabled = tensorboard
        self._n_records: int | None = None  # records in metrics.jsonl (None: count them)
        self._resume_records: int | None = None  # records the resumed checkpoint had seen
        self.checkpoints: CheckpointManager = _RunCheckpoints(
            self,
            self.folder / "checkpoints",
            keep_last,
            meta={"config_hash": self.hash, "kind": kind},
        )
        self._held = contextlib.ExitStack()  # the folder's lock and its log.txt, while open
        if write:
            try:
                self._open()
            except BaseException:
                self._held.close()
                raise

    def _open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "samples").mkdir(exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"cannot create run folder {self.folder} ({e.strerror}); choose a writable --out"
            ) from e
        self._held.enter_context(FolderLock(self.folder, "run"))
        self._held.enter_context(log_to_file(self.folder / "log.txt"))
        remove_stale_temps(self.folder)
        cfg_path = self.folder / "config.yaml"
        text = dump_yaml(self.config)
        status = stored_status(self.folder, self.config)
        if status == "same" and cfg_path.read_text() == text:
            return
        if status == "different":
            if self.finished or self.checkpoints.entries():
                raise ConfigError(
                    f"{self.folder} holds a run with a different config "
                    f"({config_diff(cfg_path.read_text(), self.config)}); "
                    "use another --out folder or delete that one"
                )
            log.warning("%s held a run that never checkpointed; replacing its config", self.folder)
        elif status == "repair":
            log.warning(
                "%s was unreadable; its checkpoints were made with this same config, "
                "so it was written again",
                cfg_path,
            )
        atomic_write_text(cfg_path, text)

    # -- state ------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return (self.folder / "result.json").is_file()

    def result(self) -> dict[str, Any]:
        return json.loads((self.folder / "result.json").read_text())

    def resume_from(self, step: int) -> None:
        """Cut metrics after ``step`` (they will be logged again) and purge TensorBoard.

        A record logged after the checkpoint but with the same step (such as the test record
        written after the last checkpoint) is cut too: the checkpoint's manifest holds how many
        records had been written when it was saved.
        """
        if not self.write:
            return
        path = self.folder / "metrics.jsonl"
        kept = []
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:  # a line cut by a kill
                    continue
                if isinstance(rec, dict) and rec.get("step", 0) <= step:
                    kept.append(line)
            if self._resume_records is not None:
                kept = kept[: self._resume_records]
            atomic_write_text(path, "".join(k + "\n" for k in kept))
        self._n_records = len(kept)
        self._tb_purge = step + 1

    def record_count(self) -> int:
        """How many records metrics.jsonl holds."""
        if self._n_records is None:
            self._n_records = len(self.metrics())
        return self._n_records

    def start_over(self) -> None:
        """Drop the logs of an attempt that left no usable checkpoint (the run restarts at 0)."""
        if not self.write:
            return
        path = self.folder / "metrics.jsonl"
        if path.is_file():
            log.info("no usable checkpoint in %s; starting over", self.folder)
            path.unlink()
        self._n_records = 0
        self._tb_purge = 0

    # -- logging ----------------------------------------------------------------------------
    @property
    def trackers(self) -> list[Tracker]:
        """TensorBoard, W&B, ... as ``runtime.loggers`` names them (see :mod:`.trackers`)."""
        if not (self.write and self._tb_enabled):
            return []
        if self._trackers is None:
            runtime = getattr(self.config, "runtime", None)
            names = getattr(runtime, "loggers", ["tensorboard"])
            purge = getattr(self, "_tb_purge", None)
            self._trackers = open_trackers(names, self.folder, to_dict(self.config), purge)
        return self._trackers

    def log_image(self, tag: str, image: Any, step: int) -> None:
        """A sample grid (``[C, H, W]`` in [0, 1]) to the trackers; PNGs are written apart."""
        for t in self.trackers:
            t.image(tag, image, step)

    def log(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl and to TensorBoard (``split/name``)."""
        if not self.write:
            return
        rec = {"step": step, "split": split, **{k: _jsonable(v) for k, v in metrics.items()}}
        with open(self.folder / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self._n_records is not None:
            self._n_records += 1
        numbers = {k: v for k, v in rec.items() if k not in ("step", "split")}
        numbers = {k: v for k, v in numbers.items() if isinstance(v, int | float)}
        for t in self.trackers:
            t.scalars(step, split, numbers)

    def metrics(self) -> list[dict[str, Any]]:
        path = self.folder / "metrics.jsonl"
        if not path.is_file():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def finish(self, result: dict[str, Any]) -> None:
        """Write result.json (atomically, last): the run is finished."""
        if not self.write:
            return
        payload = {"kind": self.kind, "config_hash": self.hash, **result}
        atomic_write_text(self.folder / "result.json", json.dumps(payload, indent=2, default=str))
        final = {k: v for k, v in result.items() if isinstance(v, int | float)}
        for t in self.trackers:
            t.hparams(to_dict(self.config), final)
        self.close()

    def close(self) -> None:
        """Close the trackers, then release the folder's lock and log file."""
        for t in self._trackers or []:
            t.close()
        self._trackers = None
        self._held.close()


def stored_status(folder: Path, config: Any) -> str:
    """How the ``config.yaml`` in ``folder`` relates to the run ``config`` (a job dataclass).

    ``"new"``: no config.yaml (a run that starts, or adopts checkpoints whose architecture its
    resume then checks); ``"same"`` / ``"different"``: by :func:`advaug.config.same_config`'s
    rule (its identity); ``"repair"``: config.yaml is unreadable (cut, badly edited), but every
    checkpoint and result in the folder was made with ``config``. Raises :class:`ConfigError`
    for an unreadable config.yaml beside checkpoints of another config, naming the file.
    """
    folder = Path(folder)
    path = folder / "config.yaml"
    if not path.is_file():
        return "new"
    try:
        stored = read_stored(path.read_text(), type(config))
    except (ConfigError, UnicodeDecodeError) as e:
        problem = str(e) if isinstance(e, ConfigError) else "is not text"
    else:
        return "same" if identity(stored) == identity(config) else "different"
    made_by = _made_with(folder)
    if not made_by or made_by == {config_hash(config)}:
        return "repair"
    raise ConfigError(
        f"{path} {problem}, and the checkpoints in {folder} were made with another config; "
        "restore that file, or use another --out folder"
    )


def _made_with(folder: Path) -> set[str]:
    """The config hashes recorded by the checkpoints and the result in a run folder."""
    hashes = {m.get("config_hash") for m in CheckpointManager(folder / "checkpoints").entries()}
    result = folder / "result.json"
    if result.is_file():
        try:
            hashes.add(json.loads(result.read_text()).get("config_hash"))
        except (OSError, ValueError, AttributeError):
            hashes.add("unreadable result.json")
    return {str(h) for h in hashes}

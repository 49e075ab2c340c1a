"""The one place through which library code logs and shows progress.

Library modules never print. They call ``get_logger(__name__)`` for messages and ``progress(...)``
for long loops. The CLI decides the verbosity with ``setup_logging``.

Progress is a tqdm bar when stderr is a terminal. When it is not (a batch job, a pipe), a bar
becomes a plain log line every :data:`PLAIN_EVERY_S` seconds (count, rate, ETA), so that job
logs hold no carriage-return bars. :func:`log_to_file` copies the log lines (not the progress
lines) into a file while a run or study is open: its ``log.txt``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_ROOT = "advaug"
_state = {"progress": True}
#: Seconds between two plain progress lines when stderr is not a terminal.
PLAIN_EVERY_S = 30.0
_PROGRESS = "advaug_progress"  # the attribute that marks a progress line's log record


def get_logger(name: str) -> logging.Logger:
    """A logger under the ``advaug`` namespace."""
    if not name.startswith(_ROOT):
        name = f"{_ROOT}.{name}"
    return logging.getLogger(name)


class _TqdmHandler(logging.Handler):
    """Writes log lines through tqdm so that they do not break a live progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def setup_logging(level: int | str = logging.INFO, show_progress: bool = True) -> None:
    """Configure the ``advaug`` logger once (called by the CLI and by scripts)."""
    root = logging.getLogger(_ROOT)
    root.handlers.clear()
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    _state["progress"] = show_progress


@contextlib.contextmanager
def log_to_file(path: str | Path) -> Iterator[None]:
    """Append the ``advaug`` log lines (INFO and above, without progress lines) to ``path`` while
    the block runs; the file is created at the first line. Blocks nest (a study's ``log.txt``
    and the current run's both get a run's lines)."""
    logger = logging.getLogger(_ROOT)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8", delay=True)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    handler.setLevel(logging.INFO)
    handler.addFilter(lambda record: not getattr(record, _PROGRESS, False))
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:  # a library caller that set up no logging
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(old_level)


def fmt_seconds(s: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``: durations in log lines."""
    if not math.isfinite(s):
        return "?"
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def set_progress(enabled: bool) -> None:
    """Turn progress bars on or off (a run config's ``runtime.progress``)."""
    _state["progress"] = enabled


def progress(
    iterable: Iterable[T] | None = None,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    leave: bool = False,
) -> Iterator[T] | tqdm:
    """A progress bar (rate and ETA) on stderr; silent when progress is turned off; periodic
    plain log lines instead when stderr is not a terminal."""
    if _state["progress"] and not _is_terminal(sys.stderr):
        return _PlainProgress(iterable, total, desc, unit, initial)
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        leave=leave,
        disable=not _state["progress"],
        dynamic_ncols=True,
        file=sys.stderr,
        smoothing=0.1,
    )


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _PlainProgress:
    """The part of tqdm's interface that advaug uses, as a log line every :data:`PLAIN_EVERY_S`
    seconds (and a last one at the end of a loop that took longer than that)."""

    def __init__(self, iterable, total, desc, unit, initial):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            self.total = len(iterable)
        self.n = self.start_n = initial
        self.postfix: dict[str, Any] = {}
        self.t0 = self.last = time.monotonic()
        self.emitted, self.closed = initial, False
        self.log = get_logger("progress")

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            yield item
            self.update(1)

    def __enter__(self) -> _PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= PLAIN_EVERY_S:
            self._emit()

    def set_postfix(self, **kwargs: Any) -> None:
        self.postfix = kwargs

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def close(self) -> None:
        long = time.monotonic() - self.t0 >= PLAIN_EVERY_S
        if long and not self.closed and self.n != self.emitted:
            self._emit()
        self.closed = True

    def _emit(self) -> None:
        now = time.monotonic()
        self.last, self.emitted = now, self.n
        rate = (self.n - self.start_n) / max(1e-9, now - self.t0)
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{self.desc}: {done} {self.unit}"]
        if self.total:
            parts[0] += f" ({self.n / self.total:.0%})"
        parts.append(f"{rate:.3g} {self.unit}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {fmt_seconds((self.total - self.n) / rate)}")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        self.log.info(", ".join(parts), extra={_PROGRESS: True})

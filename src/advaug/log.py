"""The one place through which library code logs and shows progress.

Library modules never print. They call ``get_logger(__name__)`` for messages and ``progress(...)``
for long loops. The CLI decides the verbosity with ``setup_logging``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_ROOT = "advaug"
_state = {"progress": True}


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
    """A progress bar (rate and ETA) on stderr; silent when progress is turned off."""
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

"""One labelling set = one SQLite file: the items (images as PNG, their kind, their true class,
the automatic proxy's prediction) and every answer that any rater gave.

- The set is written once, to a temporary file that is renamed into place, so that a build that
  is killed leaves nothing behind. Items never change afterwards.
- Answers are written one transaction each, as they are given. The file runs in WAL mode with a
  busy timeout, so several raters (threads of one server, or several processes) write at once.
- The schema is versioned with ``PRAGMA user_version``; a file from a newer advaug is refused.
- Each rater sees every item once, in an order seeded by the set's seed and the rater's name.
  Item ids are themselves a seeded shuffle, so an id says nothing about the item's kind.

Every method opens its own short-lived connection: a store is safe to share between threads.
"""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advaug.errors import ConfigError, DataError

SCHEMA_VERSION = 1
FORMAT = "advaug.labels"
KINDS = ("uae", "gan", "real")
NONE = -1  # the answer "none / cannot tell"
MAX_RATER = 40
RATER_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.:@-]{{0,{MAX_RATER - 1}}}")
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('uae', 'gan', 'real')),
    source INTEGER NOT NULL,
    target INTEGER NOT NULL DEFAULT -1,
    origin_index INTEGER NOT NULL,
    proxy_pred INTEGER,
    clf_pred INTEGER,
    png BLOB NOT NULL
);
CREATE TABLE answers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rater TEXT NOT NULL,
    item INTEGER NOT NULL REFERENCES items(id),
    choice INTEGER NOT NULL,
    origin TEXT NOT NULL DEFAULT 'web',
    answered_at REAL NOT NULL,
    UNIQUE (rater, item)
);
CREATE INDEX answers_by_rater ON answers (rater, seq);
"""


class LabelInputError(ConfigError):
    """A rater name, item id or answer that is out of range or malformed."""


class AlreadyAnswered(LabelInputError):
    """The rater has answered this item already (undo it first)."""


@dataclass(frozen=True)
class Item:
    """One image of the set. ``source`` is the class it should show (a UAE's and a clean
    sample's source class, a real image's label); ``proxy_pred`` is the automatic proxy's
    prediction (``None`` when the set has no proxy)."""

    id: int
    kind: str
    source: int
    target: int = -1
    origin_index: int = 0
    proxy_pred: int | None = None
    clf_pred: int | None = None


@dataclass(frozen=True)
class Answer:
    seq: int
    rater: str
    item: int
    choice: int
    origin: str
    answered_at: float


@dataclass
class State:
    """Where a rater stands: ``item`` is the next image to label (``None`` when done)."""

    rater: str
    done: int
    total: int
    item: int | None
    can_undo: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "rater": self.rater,
            "done": self.done,
            "total": self.total,
            "item": self.item,
            "can_undo": self.can_undo,
        }


def check_rater(name: Any) -> str:
    """The rater name, or ``LabelInputError``: 1–40 of letters, digits and ``_ . : @ -``."""
    if not isinstance(name, str) or not RATER_RE.fullmatch(name):
        raise LabelInputError(
            f"rater name must be 1-{MAX_RATER} characters of letters, digits and _ . : @ - "
            "starting with a letter or digit; pick another name"
        )
    return name


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class LabelStore:
    """An existing labelling set; ``LabelStore.create`` writes a new one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"no labelling set at {self.path}; run `advaug label SOURCE` first")
        try:
            with closing(_connect(self.path)) as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise DataError(
                        f"{self.path} has labelling schema version {version}, newer than this "
                        f"advaug reads ({SCHEMA_VERSION}); upgrade advaug"
                    )
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                conn.execute("PRAGMA journal_mode = WAL")
                self.num_items = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise DataError(f"{self.path} is not an advaug labelling set ({e})") from e
        if version != SCHEMA_VERSION or json.loads(meta.get("format", "null")) != FORMAT:
            raise DataError(
                f"{self.path} is not an advaug labelling set (schema {version}); "
                "point at the .sqlite file that `advaug label` wrote"
            )
        self.meta: dict[str, Any] = {k: json.loads(v) for k, v in meta.items()}
        self.classes: list[str] = [str(c) for c in self.meta["classes"]]
        self.seed = int(self.meta.get("seed", 0))

    # -- creation -----------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        items: Iterable[tuple[Item, bytes]],
        meta: dict[str, Any],
    ) -> LabelStore:
        """Write a new set atomically (temporary file, then rename); refuse to overwrite."""
        path = Path(path)
        if path.exists():
            raise ConfigError(f"{path} exists already; label it, or move it aside to rebuild it")
        if not meta.get("classes"):
            raise ConfigError("a labelling set needs its class names (meta 'classes')")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        try:
            with closing(_connect(tmp)) as conn:
                conn.executescript(_SCHEMA)
                conn.execute("BEGIN")
                full = {**meta, "format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in full.items()]
                )
                rows = (
                    (it.id, it.kind, it.source, it.target, it.origin_index, it.proxy_pred,
                     it.clf_pred, png)
                    for it, png in items
                )  # fmt: skip
                conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        store = cls(path)  # also switches the file to WAL
        if store.num_items == 0:
            raise ConfigError(f"{path} would hold no items; the UAE set has no successes")
        return store

    # -- reading ------------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with closing(_connect(self.path)) as conn:
            yield conn

    def items(self) -> list[Item]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, kind, source, target, origin_index, proxy_pred, clf_pred FROM items "
                "ORDER BY id"
            ).fetchall()
        return [Item(*r) for r in rows]

    def image(self, item: int) -> bytes | None:
        """The PNG of item ``item`` (an int), or ``None`` when there is no such item."""
        if not _is_int(item):
            return None
        with self._read() as conn:
            row = conn.execute("SELECT png FROM items WHERE id = ?", (item,)).fetchone()
        return bytes(row[0]) if row else None

    def answers(self, rater: str | None = None) -> list[Answer]:
        """Every answer (of one rater), in the order given."""
        sql = "SELECT seq, rater, item, choice, origin, answered_at FROM answers"
        args: tuple[Any, ...] = ()
        if rater is not None:
            sql, args = sql + " WHERE rater = ?", (rater,)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY seq", args).fetchall()
        return [Answer(*r) for r in rows]

    def raters(self) -> list[str]:
        with self._read() as conn:
            rows = conn.execute("SELECT DISTINCT rater FROM answers ORDER BY rater").fetchall()
        return [r[0] for r in rows]

    def order(self, rater: str) -> list[int]:
        """The rater's order of the item ids: seeded by the set's seed and the name."""
        ids = list(range(self.num_items))
        random.Random(f"{self.seed}:{rater}").shuffle(ids)
        return ids

    def state(self, rater: str) -> State:
        rater = check_rater(rater)
        with self._read() as conn:
            done = {
                r[0] for r in conn.execute("SELECT item FROM answers WHERE rater = ?", (rater,))
            }
        nxt = next((i for i in self.order(rater) if i not in done), None)
        return State(rater, len(done), self.num_items, nxt, bool(done))

    # -- writing ------------------------------------------------------------------------------

    def check_answer(self, item: Any, choice: Any) -> tuple[int, int]:
        """``(item, choice)`` when both are in range, else ``LabelInputError``."""
        if not _is_int(item) or not 0 <= item < self.num_items:
            raise LabelInputError(f"item must be an integer in [0, {self.num_items - 1}]")
        k = len(self.classes)
        if not _is_int(choice) or not NONE <= choice < k:
            raise LabelInputError(
                f"choice must be a class index in [0, {k - 1}] or {NONE} for none / cannot tell"
            )
        return item, choice

    def answer(self, rater: str, item: Any, choice: Any, origin: str = "web") -> State:
        """Store one answer (one transaction) and return the rater's new state."""
        rater = check_rater(rater)
        item, choice = self.check_answer(item, choice)
        with closing(_connect(self.path)) as conn:
            try:
                conn.execute(
                    "INSERT INTO answers (rater, item, choice, origin, answered_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (rater, item, choice, origin, time.time()),
                )
            except sqlite3.IntegrityError as e:
                raise AlreadyAnswered(
                    f"{rater} has answered item {item} already; undo it first"
                ) from e
        return self.state(rater)

    def undo(self, rater: str) -> tuple[int | None, State]:
        """Delete the rater's last answer; returns its item (``None`` if there was none)."""
        rater = check_rater(rater)
        with closing(_connect(self.path)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT seq, item FROM answers WHERE rater = ? ORDER BY seq DESC LIMIT 1", (rater,)
            ).fetchone()
            if row:
                conn.execute("DELETE FROM answers WHERE seq = ?", (row[0],))
            conn.execute("COMMIT")
        return (row[1] if row else None), self.state(rater)

    def add_answers(self, rows: list[tuple[str, int, int]], origin: str) -> tuple[int, int]:
        """Insert ``(rater, item, choice)`` rows in one transaction (all or none); rows that a
        rater has answered already with the same choice are skipped. Returns (added, skipped)."""
        checked = [(check_rater(r), *self.check_answer(i, c)) for r, i, c in rows]
        added = skipped = 0
        with closing(_connect(self.path)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for rater, item, choice in checked:
                    old = conn.execute(
                        "SELECT choice FROM answers WHERE rater = ? AND item = ?", (rater, item)
                    ).fetchone()
                    if old is not None:
                        if old[0] != choice:
                            raise DataError(
                                f"{rater} answered item {item} with {old[0]} before and {choice} "
                                "now; remove one of the two answers from the file"
                            )
                        skipped += 1
                        continue
                    conn.execute(
                        "INSERT INTO answers (rater, item, choice, origin, answered_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (rater, item, choice, origin, time.time()),
                    )
                    added += 1
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return added, skipped

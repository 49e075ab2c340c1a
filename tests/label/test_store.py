"""The SQLite labelling set: creation, validation, answers, undo, resume, concurrent writers and
schema versions. Answers are scripted."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from advaug.errors import ConfigError, DataError
from advaug.label.store import (
    NONE,
    SCHEMA_VERSION,
    AlreadyAnswered,
    Item,
    LabelInputError,
    LabelStore,
    check_rater,
)

ROOT = Path(__file__).resolve().parents[2]


def tiny(path: Path, n: int = 5, k: int = 3) -> LabelStore:
    items = [(Item(i, ("uae", "gan", "real")[i % 3], i % k), b"png%d" % i) for i in range(n)]
    return LabelStore.create(path, items, {"classes": [f"c{j}" for j in range(k)], "seed": 1})


def test_create_is_atomic_and_refuses_to_overwrite(tmp_path: Path):
    s = tiny(tmp_path / "a.sqlite")
    assert s.num_items == 5 and s.classes == ["c0", "c1", "c2"]
    assert s.image(3) == b"png3" and s.image(5) is None and s.image("3") is None  # type: ignore[arg-type]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(ConfigError, match="exists already"):
        tiny(tmp_path / "a.sqlite")
    with sqlite3.connect(s.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_newer_schema_and_foreign_files_are_refused_in_one_line(tmp_path: Path):
    s = tiny(tmp_path / "a.sqlite")
    with sqlite3.connect(s.path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(DataError, match="newer than this advaug reads") as e:
        LabelStore(s.path)
    assert "\n" not in str(e.value)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(DataError, match="not an advaug labelling set"):
        LabelStore(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(DataError, match="not an advaug labelling set"):
        LabelStore(junk)
    with pytest.raises(DataError, match="no labelling set"):
        LabelStore(tmp_path / "missing.sqlite")


def test_answers_are_stored_undone_and_resumed(tmp_path: Path):
    s = tiny(tmp_path / "a.sqlite")
    order = s.order("alice")
    assert sorted(order) == list(range(5))
    st0 = s.state("alice")
    assert (st0.done, st0.total, st0.item, st0.can_undo) == (0, 5, order[0], False)
    s.answer("alice", order[0], 2)
    s.answer("alice", order[1], NONE)
    with pytest.raises(AlreadyAnswered):
        s.answer("alice", order[0], 1)
    # a fresh handle on the same file (a restarted server) resumes at the same place
    again = LabelStore(s.path)
    st2 = again.state("alice")
    assert (st2.done, st2.item) == (2, order[2])
    undone, st3 = again.undo("alice")
    assert undone == order[1] and (st3.done, st3.item) == (1, order[1])
    assert [(a.item, a.choice) for a in again.answers("alice")] == [(order[0], 2)]
    assert again.undo("bob") == (None, again.state("bob"))  # nothing to undo


def test_orders_are_seeded_per_rater(tmp_path: Path):
    s = tiny(tmp_path / "a.sqlite", n=40)
    assert s.order("alice") == LabelStore(s.path).order("alice")
    assert s.order("alice") != s.order("bob")


@pytest.mark.parametrize(
    ("item", "choice"),
    [(-1, 0), (5, 0), (0, 3), (0, -2), ("1", 0), (1.0, 0), (True, 0), (0, False), (0, None)],
)
def test_out_of_range_values_are_refused(tmp_path: Path, item, choice):
    s = tiny(tmp_path / "a.sqlite")
    with pytest.raises(LabelInputError):
        s.answer("alice", item, choice)
    assert s.answers() == []


@given(st.text(max_size=60))
def test_rater_names(name: str):
    ok = (
        1 <= len(name) <= 40
        and name[0].isascii()
        and name[0].isalnum()
        and all(c.isascii() and (c.isalnum() or c in "_.:@-") for c in name)
    )
    if ok:
        assert check_rater(name) == name
    else:
        with pytest.raises(LabelInputError):
            check_rater(name)


def test_threads_write_at_once(tmp_path: Path):
    s = tiny(tmp_path / "a.sqlite", n=30)
    raters = [f"r{i}" for i in range(6)]
    errors: list[BaseException] = []

    def work(r: str) -> None:
        try:
            for _ in range(30):
                st_ = s.state(r)
                s.answer(r, st_.item, st_.item % 3)
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(r,)) for r in raters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    answers = s.answers()
    assert len(answers) == 6 * 30
    assert {(a.rater, a.item) for a in answers} == {(r, i) for r in raters for i in range(30)}


WRITER = """
import sys
from advaug.label.store import LabelStore
s = LabelStore(sys.argv[1])
for r in sys.argv[2:]:
    for i in range(s.num_items):
        s.answer(r, i, i % 3)
"""


def test_processes_write_at_once(tmp_path: Path):
    s = tiny(tmp_path / "a.sqlite", n=40)
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(s.path), f"p{i}a", f"p{i}b"], env=env)
        for i in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    answers = s.answers()
    assert len(answers) == 3 * 2 * 40
    assert len({(a.rater, a.item) for a in answers}) == len(answers)


def test_add_answers_is_all_or_nothing_and_idempotent(tmp_path: Path):
    s = tiny(tmp_path / "a.sqlite")
    assert s.add_answers([("w1", 0, 1), ("w1", 1, NONE), ("w2", 0, 2)], "import:x") == (3, 0)
    assert s.add_answers([("w1", 0, 1), ("w3", 4, 0)], "import:x") == (1, 1)
    with pytest.raises(DataError, match="answered item 0 with 1 before and 2 now"):
        s.add_answers([("w4", 2, 0), ("w1", 0, 2)], "import:y")
    with pytest.raises(LabelInputError):
        s.add_answers([("w5", 0, 0), ("w5", 9, 0)], "import:y")
    assert {a.rater for a in s.answers()} == {"w1", "w2", "w3"}  # nothing of the failed imports
    assert {a.origin for a in s.answers()} == {"import:x"}

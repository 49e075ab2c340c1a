"""Disk and memory: bounded checkpoint retention, leftovers of killed writers, free-space checks
before large writes, a disk that fills up mid-run, and the device loader's memory check."""

from __future__ import annotations

import errno
import math
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import advaug.data.loader as loader_mod
from advaug.config import build_config
from advaug.data.loader import DeviceLoader, ensure_fits
from advaug.data.splits import load_splits
from advaug.errors import CheckpointError, DataError
from advaug.runtime.checkpoint import (
    CheckpointManager,
    atomic_write_text,
    check_free_space,
    load_file,
    remove_stale_temps,
    save_final,
)
from advaug.train.classifier import ClassifierJob, train_classifier
from tests.reliability import faults
from tests.reliability.helpers import assert_states_equal, steps_by_split

MiB = 2**20
Usage = namedtuple("Usage", "total used free")


def _state(step: int) -> dict:
    return {"w": torch.full((4,), float(step))}


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ---------------------------------------------------------------------------------------------
# Retention: the last K and the best
# ---------------------------------------------------------------------------------------------


def _expected(saved: list[tuple[int, float | None]], keep_last: int) -> set[int]:
    """By hand: the last ``keep_last`` steps, plus the step of the best metric (latest on ties)
    among the checkpoints still on disk before each save."""
    kept: list[tuple[int, float | None]] = []
    for step, metric in saved:
        kept.append((step, metric))
        last = {s for s, _ in kept[-keep_last:]}
        scored = [(m, s) for s, m in kept if m is not None]
        best = {max(scored)[1]} if scored else set()
        kept = [(s, m) for s, m in kept if s in last | best]
    return {s for s, _ in kept}


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    keep_last=st.integers(1, 3),
    metrics=st.lists(st.none() | st.sampled_from([0.1, 0.5, 0.9]), min_size=1, max_size=7),
)
def test_retention_keeps_the_last_k_and_the_best(tmp_path_factory, keep_last, metrics):
    folder = tmp_path_factory.mktemp("ckpt")
    mgr = CheckpointManager(folder, keep_last=keep_last)
    saved = []
    for i, metric in enumerate(metrics):
        step = 10 * (i + 1)
        mgr.save(_state(step), step, metric=metric)
        saved.append((step, metric))
        want = _expected(saved, keep_last)
        assert {e["step"] for e in mgr.entries()} == want
        names = {f"step-{s:08d}.{ext}" for s in want for ext in ("pt", "json")}
        assert _files(folder) == names  # nothing else is left on disk
    scored = [(m, s) for s, m in saved if m is not None]
    if scored:
        assert mgr.best()["step"] == max(scored)[1]
    assert load_file(folder / f"step-{saved[-1][0]:08d}.pt")["w"][0] == saved[-1][0]


def test_retention_by_hand():
    # K=2; metrics 0.9 at step 10 (best), later ones worse: 10 stays while 20..40 roll off
    assert _expected([(10, 0.9), (20, 0.1), (30, None), (40, 0.5)], 2) == {10, 30, 40}
    assert _expected([(10, None), (20, None), (30, None)], 1) == {30}
    assert _expected([(10, 0.5), (20, 0.5)], 1) == {20}  # ties: the latest


# ---------------------------------------------------------------------------------------------
# What killed writers leave behind
# ---------------------------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    dead, live = _dead_pid(), os.getppid()
    stale = tmp_path / f".step-00000010.pt.tmp-{dead}"
    busy = tmp_path / f".step-00000010.pt.tmp-{live}"
    other = tmp_path / "notes.txt"
    for p in (stale, busy, other):
        p.write_bytes(b"x" * 100)
    assert remove_stale_temps(tmp_path) == [stale]
    assert _files(tmp_path) == {busy.name, other.name}


def test_an_atomic_write_removes_the_stale_temporaries_of_its_target(tmp_path):
    dead = _dead_pid()
    (tmp_path / f".result.json.tmp-{dead}").write_text("half")
    (tmp_path / f".other.json.tmp-{dead}").write_text("half")
    atomic_write_text(tmp_path / "result.json", "{}")
    assert _files(tmp_path) == {"result.json", f".other.json.tmp-{dead}"}


def test_save_cleans_orphans_and_temporaries(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=2)
    mgr.save(_state(1), 1)
    dead = _dead_pid()
    (tmp_path / f".step-00000002.pt.tmp-{dead}").write_bytes(b"half")  # killed mid-write
    (tmp_path / "step-00000002.pt").write_bytes(b"whole but no manifest")  # killed before .json
    mgr.save(_state(3), 3)
    assert _files(tmp_path) == {f"step-0000000{s}.{e}" for s in (1, 3) for e in ("pt", "json")}


def test_pruning_deletes_the_manifest_first(tmp_path, monkeypatch):
    """A kill between the two unlinks of a pruned checkpoint leaves a .pt without a manifest,
    which never counts (never a manifest whose .pt is gone)."""
    mgr = CheckpointManager(tmp_path, keep_last=1)
    mgr.save(_state(1), 1)

    def stop(event, path):
        if event == "prune":
            raise KeyboardInterrupt  # stands in for the kill

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        faults.install(patch, stop)
        mgr.save(_state(2), 2)
    assert "step-00000001.json" not in _files(tmp_path)
    assert [e["step"] for e in mgr.entries()] == [2]
    mgr.save(_state(3), 3)
    assert _files(tmp_path) == {"step-00000003.pt", "step-00000003.json"}


# ---------------------------------------------------------------------------------------------
# Free space
# ---------------------------------------------------------------------------------------------


def _disk(monkeypatch, free: int) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 10**12 - free, free))


def test_check_free_space_threshold(tmp_path, monkeypatch):
    need = 100 * MiB
    enough = math.ceil(need * 1.1 + 16 * MiB)  # 10 % headroom plus 16 MiB
    _disk(monkeypatch, enough)
    check_free_space(tmp_path, need)
    _disk(monkeypatch, enough - 1)
    with pytest.raises(CheckpointError) as e:
        check_free_space(tmp_path, need)
    msg = str(e.value)
    assert "100.0 MiB needed" in msg and "126.0 MiB free" in msg and "\n" not in msg


def test_a_full_disk_refuses_the_save_and_keeps_the_previous_checkpoints(tmp_path, monkeypatch):
    mgr = CheckpointManager(tmp_path / "c", keep_last=2)
    for s in (1, 2):
        mgr.save(_state(s), s)
    before = {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()}
    _disk(monkeypatch, 1 * MiB)
    with pytest.raises(CheckpointError, match="not enough disk space"):
        mgr.save(_state(3), 3)
    with pytest.raises(CheckpointError, match="not enough disk space"):
        save_final(tmp_path / "c" / "final.pt", _state(9))
    assert {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()} == before


@pytest.mark.parametrize("fails", ["write", "replace"])
def test_enospc_during_the_write_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch, fails):
    mgr = CheckpointManager(tmp_path, keep_last=2)
    mgr.save(_state(1), 1)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if fails == "replace":
        monkeypatch.setattr(os, "replace", no_space)
    else:

        def hook(event, path):
            if event == "write-partial":
                no_space()

        faults.install(monkeypatch, hook)
    with pytest.raises(CheckpointError) as e:
        mgr.save(_state(2), 2)
    assert "No space left on device" in str(e.value) and "\n" not in str(e.value)
    assert _files(tmp_path) == {"step-00000001.pt", "step-00000001.json"}


def test_disk_full_mid_run_stops_cleanly_and_the_run_resumes_bit_identical(tmp_path, monkeypatch):
    cfg = build_config("smoke", ["runtime.ckpt_every_min=1000"])
    job = ClassifierJob(
        data=cfg.data, runtime=cfg.runtime, classifier=cfg.classifier, seed=0, ckpt_every_steps=4
    )
    splits = load_splits(cfg.data)
    train_classifier(job, tmp_path / "full", splits=splits)
    real, calls = shutil.disk_usage, {"n": 0}

    def fills_up(path):
        calls["n"] += 1
        return real(path) if calls["n"] <= 3 else Usage(10**12, 10**12, 0)

    monkeypatch.setattr(shutil, "disk_usage", fills_up)  # saves at 4, 8, 9 fit; 12 does not
    with pytest.raises(CheckpointError, match="not enough disk space"):
        train_classifier(job, tmp_path / "r", splits=splits)
    assert [e["step"] for e in CheckpointManager(tmp_path / "r/checkpoints").entries()] == [8, 9]
    monkeypatch.undo()
    train_classifier(job, tmp_path / "r", splits=splits)
    assert_states_equal(
        load_file(tmp_path / "full/checkpoints/final.pt"),
        load_file(tmp_path / "r/checkpoints/final.pt"),
    )
    assert steps_by_split(tmp_path / "r") == steps_by_split(tmp_path / "full")


# ---------------------------------------------------------------------------------------------
# Device memory
# ---------------------------------------------------------------------------------------------


def test_ensure_fits_threshold(monkeypatch):
    monkeypatch.setattr(loader_mod, "available_bytes", lambda device: 1000 * MiB)
    ensure_fits(900 * MiB, "cpu")  # exactly 90 %
    with pytest.raises(DataError) as e:
        ensure_fits(900 * MiB + 1, "cpu")
    assert "1000.0 MiB are free" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setattr(loader_mod, "available_bytes", lambda device: None)
    ensure_fits(10**15, "cpu")  # unknown free memory: no refusal


def test_device_loader_refuses_a_dataset_that_does_not_fit(monkeypatch):
    x = torch.zeros(64, 3, 32, 32, dtype=torch.uint8)  # 196,608 bytes + 8 per label
    y = torch.zeros(64, dtype=torch.long)
    seen = []

    def tiny(device):
        seen.append(torch.device(device).type)
        return 100_000

    monkeypatch.setattr(loader_mod, "available_bytes", tiny)
    with pytest.raises(DataError, match="the dataset needs 0.2 MiB on meta"):
        DeviceLoader(x, y, 8, device="meta")  # "meta": another device than the data's
    assert seen == ["meta"]
    DeviceLoader(x, y, 8, device="cpu")  # already there: nothing to move, nothing checked
    assert seen == ["meta"]

"""The loops' shared resume machinery by hand, with a fake run and state: what a checkpoint
holds, what resuming restores, where the loader resumes for another world size, and when the
clock says to save. Whole runs that stop and resume bit-identically are in test_classifier.py,
test_gan_train.py and test_ddp.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from advaug.errors import ConfigError
from advaug.runtime import ddp
from advaug.runtime.checkpoint import CheckpointManager
from advaug.train import loop
from advaug.train.loop import (
    CheckpointClock,
    Stopwatch,
    check_batch_size,
    loader_position,
    resume,
    save,
)


class State:
    """A TrainState: one weight, its step, and a rank part."""

    def __init__(self, step: int = 0, seconds: float = 0.0) -> None:
        self.step = step
        self.watch = Stopwatch(seconds)
        self.loaded: tuple | None = None

    def state_dict(self) -> dict:
        return {"w": torch.full((2,), float(self.step)), "step": self.step}

    def rank_state(self) -> dict:
        return {"rng": torch.tensor([self.step, 7])}

    def load_state_dict(self, state: dict, rt) -> None:
        self.loaded = (state, rt)
        self.step = state["step"]


class Run:
    def __init__(self, folder) -> None:
        self.checkpoints = CheckpointManager(folder, keep_last=5)
        self.resumed: list[int] = []

    def resume_from(self, step: int) -> None:
        self.resumed.append(step)


def _rt(world_size: int = 1, rank: int = 0) -> SimpleNamespace:
    return SimpleNamespace(is_main=rank == 0, distributed=world_size > 1, world_size=world_size)


def test_save_then_resume_restores_the_state_and_the_training_seconds(tmp_path, monkeypatch):
    run, rt = Run(tmp_path), _rt()
    monkeypatch.setattr(loop.time, "perf_counter", lambda: 100.0)
    state = State(step=3, seconds=40.0)  # 40 s before this process, which started at t = 100
    monkeypatch.setattr(loop.time, "perf_counter", lambda: 125.0)
    save(run, state, rt, metric=0.25)
    (entry,) = run.checkpoints.entries()
    assert (entry["step"], entry["metric"], entry["train_seconds"]) == (3, 0.25, 65.0)
    fresh = State()
    assert resume(run, fresh, rt) is True
    saved, got_rt = fresh.loaded
    assert got_rt is rt and set(saved) == {"w", "step"}  # no world size, no ranks: one process
    assert torch.equal(saved["w"], torch.full((2,), 3.0)) and run.resumed == [3]
    assert fresh.watch.total() == 65.0  # the recorded seconds, and none since (t = 125 still)


def test_resume_without_a_checkpoint_changes_nothing(tmp_path):
    run, state = Run(tmp_path), State(step=0, seconds=5.0)
    assert resume(run, state, _rt()) is False
    assert state.loaded is None and run.resumed == [] and state.watch.before == 5.0


def test_resume_loads_onto_the_cpu_and_reads_missing_seconds_as_zero():
    """RNG states must be CPU tensors, so the checkpoint loads there whatever the device."""
    calls = []

    def load_latest(**kwargs):
        calls.append(kwargs)
        return {"step": 4}, {"step": 4}  # a manifest of a checkpoint without train_seconds

    run = SimpleNamespace(checkpoints=SimpleNamespace(load_latest=load_latest))
    run.resume_from = lambda step: None
    state = State(seconds=9.0)
    assert resume(run, state, _rt()) is True
    assert calls == [{"map_location": "cpu"}] and state.step == 4
    assert state.watch.before == 0.0


def test_save_under_torchrun_adds_the_world_and_every_ranks_part(tmp_path, monkeypatch):
    monkeypatch.setattr(ddp, "gather_to_main", lambda obj: [obj, {"rng": torch.tensor([9])}])
    run = Run(tmp_path)
    save(run, State(step=2), _rt(world_size=2))
    data, _ = run.checkpoints.load_latest()
    assert data["world_size"] == 2 and data["step"] == 2
    assert [r["rng"].tolist() for r in data["ranks"]] == [[2, 7], [9]]
    assert json.loads((tmp_path / "step-00000002.json").read_text())["metric"] is None
    other = Run(tmp_path / "rank1")
    save(other, State(step=2), _rt(world_size=2, rank=1))  # only rank 0 writes
    assert other.checkpoints.entries() == []


@pytest.mark.parametrize(
    "saved, world, batch, batches, expected",
    [(None, 1, 5, 50, 5), (1, 1, 5, 50, 5), (2, 1, 5, 50, 10), (1, 2, 5, 50, 2),
     (4, 3, 5, 50, 6), (4, 1, 20, 50, 50)],
)  # fmt: skip
def test_loader_position_for_another_world_size(saved, world, batch, batches, expected):
    """Batch b of W ranks ends after b·W per-rank batches; another W' resumes at ⌊b·W/W'⌋
    (capped at the epoch's batches); the rest of the position is kept."""
    state = {"loader": {"epoch": 3, "batch": batch}}
    if saved is not None:
        state["world_size"] = saved
    pos = loader_position(state, world, batches)
    assert pos == {"epoch": 3, "batch": expected}
    assert state["loader"] == {"epoch": 3, "batch": batch}  # the checkpoint is not changed


def test_checkpoint_clock_by_steps_and_by_minutes(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(loop.time, "monotonic", lambda: now[0])
    by_steps = CheckpointClock(every_min=10.0, every_steps=3)
    assert [s for s in range(1, 10) if by_steps.due(s)] == [3, 6, 9]
    every = CheckpointClock(every_min=10.0, every_steps=1)
    assert all(every.due(s) for s in range(1, 5))
    never = CheckpointClock(every_min=10.0)  # every_steps defaults to 0: never by steps
    assert not any(never.due(s) for s in range(1, 10))
    now[0] = 1000.0 + 600.0
    assert not never.due(1)  # exactly 10 minutes: not yet
    now[0] = 1000.0 + 601.0
    assert never.due(1)
    never.reset()
    assert not never.due(1) and never.last == 1601.0


def test_checkpoint_clock_under_torchrun_agrees_every_few_steps(monkeypatch):
    """Ranks compare clocks only every AGREE_EVERY steps (a collective), then all save."""
    now = [0.0]
    monkeypatch.setattr(loop.time, "monotonic", lambda: now[0])
    clock = CheckpointClock(every_min=1.0, distributed=True)
    now[0] = 120.0
    assert [s for s in range(1, 3 * ddp.AGREE_EVERY + 1) if clock.due(s)] == [
        ddp.AGREE_EVERY, 2 * ddp.AGREE_EVERY, 3 * ddp.AGREE_EVERY]  # fmt: skip
    assert CheckpointClock(1.0).distributed is False


def test_stopwatch_adds_the_seconds_before_this_process(monkeypatch):
    t = [50.0]
    monkeypatch.setattr(loop.time, "perf_counter", lambda: t[0])
    watch = Stopwatch(30.0)
    t[0] = 52.5
    assert watch.total() == 32.5
    t[0] = 60.0
    watch.start()  # e.g. after the data is loaded: the time before does not count
    t[0] = 61.0
    assert watch.total() == 31.0 and Stopwatch().total() == 0.0


def test_check_batch_size_names_the_key():
    check_batch_size(100, 100, "classifier.batch_size")  # the whole split is fine
    with pytest.raises(ConfigError) as e:
        check_batch_size(101, 100, "classifier.batch_size")
    assert str(e.value) == (
        "invalid config value classifier.batch_size=101: larger than the 100 training images; "
        "lower it"
    )

"""What both training loops share: opening the run, the checkpoint clock, saving and resuming.

A trainer keeps everything it checkpoints in one state object (:class:`TrainState`): its
``state_dict`` is the checkpoint that rank 0 writes, ``rank_state`` the part each rank owns (RNG
streams, technique state) that is gathered under torchrun, and ``load_state_dict`` restores
both. The loops then read as::

    run, splits = open_run(job, out, rt, kind=..., splits=..., batch_size=..., key=...)
    state = build(...)                 # models, optimisers, EMA, loader, RNG
    resume(run, state, rt)             # from the newest good checkpoint, if any
    clock = CheckpointClock(...)
    while not done:
        ...one step...
        if clock.due(state.step): save(run, state, rt)
        if on_step: on_step(state, lambda: save(run, state, rt))

``on_step`` is the loops' only extension point: tests and tools pass a callback to stop a run
(simulating a kill after a checkpoint), to watch it, or to inject faults; the production loops
carry no test hooks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from advaug.data.splits import Splits, load_splits
from advaug.errors import ConfigError
from advaug.log import get_logger
from advaug.runtime import Runtime, ddp
from advaug.train.run import Run

log = get_logger(__name__)


class Stopwatch:
    """Training seconds of a run over all its processes: what its checkpoint recorded when this
    process resumed, plus the time since (:meth:`start`).

    The seconds go into each checkpoint's manifest, not into the state dict, which must stay
    bit-identical between an interrupted run and an uninterrupted one. Work done after the
    last checkpoint of a killed process is lost and counted again when it is redone.
    """

    def __init__(self, before: float = 0.0):
        self.before = before
        self.since = time.perf_counter()

    def start(self) -> None:
        self.since = time.perf_counter()

    def total(self) -> float:
        return self.before + time.perf_counter() - self.since


class TrainState(Protocol):
    """The checkpointed state of one training run."""

    step: int
    watch: Stopwatch  # training seconds, kept in the checkpoint manifests

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint (rank 0's view; rank states are added by :func:`save`)."""

    def rank_state(self) -> dict[str, Any]:
        """This rank's own part: RNG streams and the like (gathered to rank 0 under torchrun)."""

    def load_state_dict(self, state: dict[str, Any], rt: Runtime) -> None:
        """Restore from a checkpoint (for any world size)."""


#: ``on_step(state, save)``: called after every step; ``save()`` checkpoints the run now.
OnStep = Callable[[Any, Callable[[], None]], None]


def check_batch_size(batch_size: int, n_train: int, key: str) -> None:
    """Refuse a batch larger than the training split (``key`` names the config value)."""
    if batch_size > n_train:
        raise ConfigError(
            f"invalid config value {key}={batch_size}: larger than the {n_train} training "
            "images; lower it"
        )


def open_run(
    job: Any,
    out: str | Path,
    rt: Runtime,
    *,
    kind: str,
    splits: Splits | None,
    batch_size: int,
    key: str,
) -> tuple[Run, Splits | None]:
    """The run folder of ``job``, and its data splits; ``None`` splits when already finished."""
    run = Run(out, job, kind=kind, keep_last=job.runtime.keep_last, write=rt.is_main)
    if run.finished:
        log.info("%s is finished; nothing to do", out)
        return run, None
    try:
        splits = splits or load_splits(job.data, seed=job.seed)
        check_batch_size(batch_size, len(splits.train), key)
    except BaseException:
        run.close()  # the lock and the log file
        raise
    return run, splits


class CheckpointClock:
    """When to checkpoint between epoch ends: every ``every_steps`` steps (0 = never) and every
    ``every_min`` minutes. Under torchrun the ranks' clocks differ, so they agree (a collective)
    every :data:`advaug.runtime.ddp.AGREE_EVERY` steps: saving is collective too."""

    def __init__(self, every_min: float, every_steps: int = 0, *, distributed: bool = False):
        self.every_min = every_min
        self.every_steps = every_steps
        self.distributed = distributed
        self.last = time.monotonic()

    def due(self, step: int) -> bool:
        by_time = time.monotonic() - self.last > 60 * self.every_min
        if self.distributed:
            by_time = step % ddp.AGREE_EVERY == 0 and ddp.agree(by_time)
        by_steps = self.every_steps > 0 and step % self.every_steps == 0
        return bool(by_steps or by_time)

    def reset(self) -> None:
        """Restart the minutes (call after every save)."""
        self.last = time.monotonic()


def save(run: Run, state: TrainState, rt: Runtime, metric: float | None = None) -> None:
    """Checkpoint ``state``: every rank hands over its own part, rank 0 writes (collective)."""
    ranks = ddp.gather_to_main(state.rank_state())
    if rt.is_main:
        full = state.state_dict()
        if rt.distributed:
            full.update(world_size=rt.world_size, ranks=ranks)
        run.checkpoints.meta["train_seconds"] = state.watch.total()
        run.checkpoints.save(full, state.step, metric=metric)


def resume(run: Run, state: TrainState, rt: Runtime) -> bool:
    """Restore ``state`` from the run's newest good checkpoint; False when there is none.

    Checkpoints load onto the CPU first (RNG states must be CPU tensors); the state object
    copies weights onto the device.
    """
    found = run.checkpoints.load_latest(map_location="cpu")
    if found is None:
        return False
    state.load_state_dict(found[0], rt)
    state.watch = Stopwatch(float(found[1].get("train_seconds") or 0.0))
    run.resume_from(state.step)
    return True


def loader_position(state: dict[str, Any], world_size: int, batches: int) -> dict[str, int]:
    """The checkpoint's loader position for ``world_size`` ranks.

    Batch b of world size W ends after ``b * W`` per-rank batches of the shared permutation; a
    different world size resumes at the batch that ends there or just before (at most one global
    batch is seen twice).
    """
    pos = dict(state["loader"])
    saved = int(state.get("world_size", 1))
    if saved != world_size:
        pos["batch"] = min(batches, pos["batch"] * saved // world_size)
    return pos


def world_info(result: dict[str, Any], rt: Runtime, batch_size: int, *nets: Any) -> None:
    """Add the global batch and the largest replica difference to a torchrun run's result."""
    diff = max(ddp.replica_difference(n) for n in nets)
    if rt.distributed:
        result["global_batch"] = batch_size * rt.world_size
        result["replica_max_abs_diff"] = diff

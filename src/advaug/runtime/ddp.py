"""Data-parallel training under ``torchrun``: wrapping, global sums, agreement, a clean exit.

Launch a training entry point with ``torchrun --standalone --nproc_per_node=N ...``; the
training functions bring the process group up themselves (:func:`advaug.runtime.
distributed`: NCCL on CUDA, gloo on the CPU), and the entry point ends the process with
:func:`run_worker` or :func:`exit_process` (see below). Per rank:

- the model is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` (:func:`wrap`);
  attacks, EMA, evaluation and checkpoints use the plain module (:func:`unwrap`);
- the :class:`~advaug.data.loader.DeviceLoader` yields a distinct shard of the same epoch
  permutation, so the global batch is ``batch_size × world_size``; learning rates are used as
  configured, i.e. they are the learning rates for that global batch;
- only rank 0 writes (logs, checkpoints, samples, results); the epoch statistics are summed over
  the ranks first (:func:`all_sum`), so rank 0 logs global numbers;
- decisions that depend on the clock (time-based checkpoints) are agreed on by all ranks
  (:func:`agree`) on a CPU (gloo) group, every :data:`AGREE_EVERY` steps.

Why a torchrun worker must end with :func:`exit_process`. On a 2-core machine about one
2-process gloo run in 10 aborted *after* finishing (3 of 30 launches of a bare DDP script, 2 of
20 of the test worker), with ``terminate called without an active exception`` (SIGABRT), whether
or not the process group had been destroyed; ending with :func:`exit_process`: 0 of 30 and 0
of 20. A core dump
shows the cause: a gloo worker thread (``ProcessGroupGloo::runLoop``) destroys each finished
work object *after* signalling its completion; the work holds Python objects (its captured
``at::ThreadLocalState``, the tensors of the collective), and releasing them takes the GIL. When
the main thread has meanwhile reached interpreter teardown (``Py_FinalizeEx``), CPython ends any
thread that asks for the GIL with ``pthread_exit``; its forced unwinding runs into the
``noexcept`` destructor ``~AsyncWork`` and calls ``std::terminate``. Destroying the process
group does not help, because DDP keeps a C++ reference to it (after a DDP wrapper has existed,
``destroy_process_group`` leaves the gloo threads running, torch 2.13), so the threads live until
teardown. :func:`exit_process` flushes everything and ends the process with ``os._exit``, which
skips interpreter teardown: no thread can race it any more.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from advaug.data.loader import mix_seed
from advaug.log import get_logger

if TYPE_CHECKING:
    from advaug.runtime import Runtime

log = get_logger(__name__)

#: Steps between two rank agreements on clock-based decisions (one tiny CPU all-reduce each).
AGREE_EVERY = 20

_control: dict[str, Any] = {"world": None, "group": None}


def initialized() -> bool:
    """True inside an initialised default process group."""
    return dist.is_available() and dist.is_initialized()


def rank_seed(seed: int, rank: int) -> int:
    """A seed for ``rank``'s own random stream: ``seed`` itself on rank 0 (so a one-process run
    and rank 0 draw the same numbers), a well-mixed different one on every other rank."""
    return seed if rank == 0 else mix_seed(seed, rank, 0xDD9)


def wrap(module: nn.Module, rt: Runtime, *, sync_bn: bool = False) -> nn.Module:
    """``module`` in DistributedDataParallel when ``rt`` is distributed, else ``module`` itself.

    ``sync_bn`` first converts BatchNorm layers to SyncBatchNorm (batch statistics over the
    global batch); torch supports that on CUDA only, so on the CPU it is ignored with a warning.
    The conversion keeps the parameter and buffer objects, so optimisers and state-dict keys
    stay valid.
    """
    if not rt.distributed:
        return module
    if sync_bn:
        if rt.device.type == "cuda":
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        else:
            log.warning("runtime.sync_bn needs CUDA; using per-rank batch norm on %s", rt.device)
    ids = [rt.device.index] if rt.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (or ``module`` itself)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def _control_group() -> Any:
    """A gloo group for small CPU messages (the default group itself when it is gloo)."""
    world = dist.group.WORLD
    if dist.get_backend() == "gloo":
        return None
    if _control["world"] != id(world) or _control["group"] is None:
        _control["group"] = dist.new_group(backend="gloo")  # collective: all ranks get here
        _control["world"] = id(world)
    return _control["group"]


def all_sum(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Every value summed over the ranks (one collective), as Python floats (one host sync).

    Values are summed in float64, which is exact for counts and for float32 sums.
    """
    if not values:
        return {}
    keys = list(values)
    device = values[keys[0]].device
    flat = torch.stack([values[k].detach().to(device, torch.float64).reshape(()) for k in keys])
    if initialized():
        dist.all_reduce(flat)
    return dict(zip(keys, flat.tolist(), strict=True))


def agree(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (a CPU all-reduce; no GPU sync)."""
    if not initialized():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control_group())
    return bool(t.item())


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` (tensors moved to the CPU) as a list on rank 0; None elsewhere.

    Collective: every rank must call it. Without a process group: ``[obj]``.
    """
    if not initialized():
        return [obj]
    out: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(_to_cpu(obj), out, dst=0, group=_control_group())
    return out


@torch.no_grad()
def replica_difference(module: nn.Module) -> float:
    """The largest absolute difference between any rank's parameters and rank 0's (0.0 when
    DDP keeps the replicas identical, as it should). Collective; 0.0 without a process group."""
    if not initialized():
        return 0.0
    params = [p.detach().reshape(-1).double() for p in unwrap(module).parameters()]
    if not params:
        return 0.0
    flat = torch.cat(params)
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())


def shutdown() -> None:
    """Destroy the process group (and our CPU group) if one is initialised."""
    _control["world"] = _control["group"] = None
    if initialized():
        dist.destroy_process_group()


def exit_process(code: int = 0) -> NoReturn:
    """End this process now with ``code``: flush logs and standard streams, then ``os._exit``.

    This skips interpreter teardown, where lingering gloo threads abort the process (see the
    module docstring). Call it last in a torchrun worker, after every file is closed: atexit
    handlers do not run.
    """
    with contextlib.suppress(Exception):
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed stream
            stream.flush()
    os._exit(int(code))


def run_worker(main: Callable[[], int | None]) -> NoReturn:
    """Run a torchrun worker's ``main`` and end the process cleanly with its exit code.

    ``main`` returns an exit code (None = 0) or raises: ``SystemExit`` keeps its code, any other
    exception prints its traceback and exits with 1. The process group is destroyed if still up,
    then :func:`exit_process` ends the process.
    """
    try:
        result = main()
        code = 0 if result is None else int(result)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        shutdown()
    except Exception:  # pragma: no cover - a broken group must not hide the exit code
        traceback.print_exc()
    exit_process(code)

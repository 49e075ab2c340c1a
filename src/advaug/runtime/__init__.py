"""One place that chooses the device, the precision, the memory format, seeds and processes.

Training loops ask a :class:`Runtime` for autocast contexts and for how to lay out tensors, so
the fast paths (bf16 autocast, channels_last, torch.compile, fused optimisers) are the defaults
on CUDA and the CPU path stays exact (fp32, contiguous) for bit-identical resume tests.

Host-device synchronisation: nothing in a training step may wait for the GPU. Statistics stay on
the device and are read once per epoch or log interval; :func:`update_ema` replaces
``AveragedModel.update_parameters``, whose per-call ``n_averaged.to(device)`` copy from the CPU
synchronises the stream on every step.

Under ``torchrun`` (``WORLD_SIZE`` > 1) :func:`distributed` brings the process group up around a
training function (once per process); :mod:`advaug.runtime.ddp` has the rest (wrapping,
reductions, agreement, the clean exit).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel

from advaug.config import RuntimeConfig
from advaug.errors import ConfigError
from advaug.log import get_logger, set_progress

log = get_logger(__name__)


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # None = full fp32
    channels_last: bool
    compile: bool
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def prepare(self, module: nn.Module) -> nn.Module:
        """Move a module to the device in the chosen memory format."""
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module

    def maybe_compile(self, fn: Callable) -> Callable:
        """``torch.compile`` when asked; eager fallback (with a warning) if compiling fails."""
        if not self.compile:
            return fn
        try:
            _fail_loudly_on_recompile_limit()
            compiled = torch.compile(fn)
        except Exception as e:  # pragma: no cover - depends on the toolchain
            log.warning("torch.compile unavailable (%s); running eager", str(e).splitlines()[0])
            return fn
        state = {"fn": compiled}

        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return state["fn"](*args, **kwargs)
            except Exception as e:  # pragma: no cover - depends on the toolchain
                if state["fn"] is fn:
                    raise
                log.warning("torch.compile failed (%s); falling back to eager", str(e)[:200])
                state["fn"] = fn
                return fn(*args, **kwargs)

        return run

    def describe(self) -> dict[str, Any]:
        name = str(self.device)
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
        return {
            "device": name,
            "precision": "fp32" if self.amp_dtype is None else str(self.amp_dtype).split(".")[-1],
            "channels_last": self.channels_last,
            "compile": self.compile,
            "world_size": self.world_size,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }


def _fail_loudly_on_recompile_limit() -> None:
    """Make dynamo raise when a compiled function hits its recompile limit (by default it falls
    back to eager silently); :meth:`Runtime.maybe_compile` then logs it and runs eager."""
    import torch._dynamo.config as dynamo_config

    for name in ("fail_on_recompile_limit_hit", "fail_on_cache_limit_hit"):
        if name in dynamo_config._config:
            setattr(dynamo_config, name, True)
            return


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device for ``runtime.device``: ``auto`` and a bare ``cuda`` mean this rank's card
    (``cuda:LOCAL_RANK``), so ``torch.cuda.set_device`` always gets an index."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"runtime.device={name} but CUDA is not available; use runtime.device=cpu"
        )
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"runtime.device={name} is not a device name ({e})") from e
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def make_runtime(cfg: RuntimeConfig) -> Runtime:
    """Resolve a :class:`RuntimeConfig` (and the torchrun environment) into a :class:`Runtime`."""
    rank, world, local = dist_env()
    if not cfg.progress or rank != 0:
        set_progress(False)  # never turns bars back on that the CLI's --quiet turned off
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if cfg.deterministic:
        set_deterministic()
    cuda = device.type == "cuda"
    if cfg.precision == "auto":
        amp = torch.bfloat16 if cuda else None
    else:
        amp = torch.bfloat16 if cfg.precision == "bf16" else None
    cl = cuda if cfg.channels_last == "auto" else cfg.channels_last == "on"
    return Runtime(device, amp, cl, cfg.compile, rank, world, local)


def set_deterministic() -> None:
    """``runtime.deterministic=true``: every op picks a deterministic algorithm (an op without
    one raises instead of running), cudnn uses deterministic kernels and no autotuning, and
    cuBLAS a fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, read when CUDA starts: set it in the
    environment before the first CUDA call if another library starts CUDA earlier). This is
    process-wide, as torch's own switches are. CPU kernels are deterministic already."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


# ---------------------------------------------------------------------------------------------
# Seeds and RNG state
# ---------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, torch (CPU and CUDA). advaug draws all its randomness from torch."""
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states a checkpoint needs (weights_only-loadable)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (the states may have been loaded onto any device)."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda = [s.cpu() for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:  # another machine: restore the devices both have
            for i, s in enumerate(cuda[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(s, i)


def restore_generator(gen: torch.Generator, state: torch.Tensor, fallback_seed: int) -> bool:
    """Load a saved :class:`torch.Generator` state into ``gen``; True when it was restored.

    A state saved on another device type (a CUDA generator's 16-byte Philox state resumed on the
    CPU, or the reverse) does not fit: ``gen`` is then seeded with ``fallback_seed`` and a
    warning says that this stream restarts, so a run moved between a GPU and a CPU resumes
    (not bit-identically) instead of failing.
    """
    try:
        gen.set_state(state.cpu())
        return True
    except RuntimeError as e:
        log.warning(
            "a random stream was saved on another device type (%s); it restarts from seed %d "
            "on %s, so this resume is not bit-identical",
            str(e).splitlines()[0],
            fallback_seed,
            gen.device,
        )
        gen.manual_seed(fallback_seed)
        return False


@torch.no_grad()
def update_ema(ema: AveragedModel, model: nn.Module, decay: float) -> None:
    """``ema.update_parameters(model)`` for an EMA made with ``get_ema_multi_avg_fn(decay)``,
    without host-device synchronisation.

    Same arithmetic and state as torch's (the first call copies, later calls lerp by
    ``1 - decay``; with ``use_buffers`` the buffers are averaged too, else copied), but the
    ``n_averaged`` counter, a CPU tensor, is never copied to the device.
    """
    use_buffers = ema.use_buffers
    mine = list(ema.module.parameters()) + (list(ema.module.buffers()) if use_buffers else [])
    theirs = list(model.parameters()) + (list(model.buffers()) if use_buffers else [])
    first = int(ema.n_averaged) == 0 if ema.n_averaged.device.type == "cpu" else None
    if first is None:  # a counter on the device: one sync, as torch's own update would cost
        first = bool(ema.n_averaged == 0)
    floats_a, floats_b = [], []
    for a, b in zip(mine, theirs, strict=True):
        b = b.detach().to(a.device)
        if first:
            a.detach().copy_(b)
        elif a.is_floating_point() or a.is_complex():
            floats_a.append(a.detach())
            floats_b.append(b)
        else:
            a.detach().copy_(a * decay + b * (1 - decay))
    if floats_a:
        torch._foreach_lerp_(floats_a, floats_b, 1 - decay)
    if not use_buffers:
        for a, b in zip(ema.module.buffers(), model.buffers(), strict=True):
            a.detach().copy_(b.detach().to(a.device))
    ema.n_averaged += 1


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the torchrun environment (0, 1, 0 without it)."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


@contextlib.contextmanager
def distributed(rt: Runtime) -> Iterator[None]:
    """Make sure the process group is up for a run under torchrun; the ranks leave together.

    The group (NCCL on CUDA, bound to this rank's device; gloo on the CPU) is created on first
    use and kept for the rest of the process, so that the stages of one process (a GAN, then
    classifiers) share it: destroying and re-creating the default group within one process can
    hang, because the new group's rendezvous finds the old group's keys in torchrun's store. A
    run that ends normally ends with a barrier, so rank 0 has written its files (``final.pt``,
    ``result.json``) before any rank goes on; after an exception there is no barrier (the other
    ranks may never reach it; torchrun stops them once this rank exits with an error).

    The entry point destroys the group at the very end and must not end the process normally:
    see :func:`advaug.runtime.ddp.run_worker` and :func:`advaug.runtime.ddp.exit_process`.
    """
    if rt.distributed and not dist.is_initialized():
        kwargs: dict[str, Any] = {}
        if rt.device.type == "cuda":
            kwargs["device_id"] = rt.device
        backend = "nccl" if rt.device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rt.rank, world_size=rt.world_size, **kwargs)
    yield
    if rt.distributed:
        barrier()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()

"""One place that chooses the device, the precision, the memory format, seeds and processes.

Training loops ask a :class:`Runtime` for autocast contexts and for how to lay out tensors, so
the fast paths (bf16 autocast, channels_last, torch.compile) are the defaults on CUDA and the
CPU path stays exact (fp32, contiguous) for bit-identical resume tests.
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


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"runtime.device={name} but CUDA is not available; use runtime.device=cpu"
        )
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"runtime.device={name} is not a device name ({e})") from e


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
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cuda = device.type == "cuda"
    if cfg.precision == "auto":
        amp = torch.bfloat16 if cuda else None
    else:
        amp = torch.bfloat16 if cfg.precision == "bf16" else None
    cl = cuda if cfg.channels_last == "auto" else cfg.channels_last == "on"
    return Runtime(device, amp, cl, cfg.compile, rank, world, local)


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
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


# ---------------------------------------------------------------------------------------------
# torch.distributed
# ---------------------------------------------------------------------------------------------


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the torchrun environment (0, 1, 0 without it)."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


@contextlib.contextmanager
def distributed(rt: Runtime) -> Iterator[None]:
    """Initialise the process group for the duration of a run under torchrun."""
    if not rt.distributed or dist.is_initialized():
        yield
        return
    backend = "nccl" if rt.device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=rt.rank, world_size=rt.world_size)
    try:
        yield
    finally:
        barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()

"""Device-resident batching with on-device random crop and flip.

:class:`DeviceLoader` moves a whole split to the device once, as one uint8 tensor, and builds
every batch there with a handful of batched tensor ops: an ``index_select`` of the batch, then
one ``gather`` whose indices fold in the crop offset, the reflect or zero padding and the flip.
There is no per-sample Python loop, no padded copy, and no worker process.

Randomness is a pure function of ``(seed, epoch)``: the epoch's permutation comes from one CPU
:class:`torch.Generator` seeded by ``(seed, epoch)``, and the crop offsets and flip decisions of
all the rank's samples from another seeded by ``(seed, epoch, rank)``. Epoch ``e`` is therefore
the same whatever came before, on any device, and a run resumed mid-epoch from
:meth:`DeviceLoader.state_dict` yields exactly the batches the interrupted run would have.

With ``world_size`` W (DDP), every rank draws the same global permutation, drops its last
``N mod W`` entries and takes every W-th entry starting at its rank: shards are disjoint, equal
in size, and the union of the ranks' b-th batches is the b-th batch of size ``W * batch_size``
of the shared permutation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from advaug.errors import ConfigError, DataError

_MiB = 1 << 20


def mix_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from non-negative integers (numpy's SeedSequence)."""
    state = np.random.SeedSequence([int(v) & 0xFFFFFFFFFFFFFFFF for v in values])
    lo, hi = state.generate_state(2, dtype=np.uint32)
    return (int(hi) << 32 | int(lo)) & 0x7FFFFFFFFFFFFFFF


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` in bytes, or None when it cannot be measured."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def ensure_fits(nbytes: int, device: torch.device | str, max_fraction: float = 0.9) -> None:
    """Raise DataError when ``nbytes`` exceed ``max_fraction`` of the free memory of ``device``."""
    device = torch.device(device)
    free = available_bytes(device)
    if free is not None and nbytes > max_fraction * free:
        raise DataError(
            f"the dataset needs {nbytes / _MiB:.1f} MiB on {device} but only {free / _MiB:.1f} MiB"
            " are free; train on a smaller subset, free memory, or keep the data on another "
            "device (e.g. device='cpu')"
        )


@dataclass
class _Plan:
    """One epoch of one rank: sample indices and augmentation parameters, on the device."""

    idx: torch.Tensor
    offsets: torch.Tensor | None
    flips: torch.Tensor | None


class DeviceLoader:
    """Batches of ``(x float32 [0, 1] NCHW, y int64)`` built on ``device`` from uint8 data.

    ``crop_pad`` > 0 pads each image by that many pixels (``pad_mode`` ``"reflect"`` or
    ``"zeros"``) and takes a random ``H x W`` window; ``flip`` mirrors half the images
    horizontally. ``len(loader)`` is the number of batches per epoch (per rank). Iterating
    continues from the stored position (:meth:`state_dict`), and a completed pass moves to the
    next epoch, so ``for x, y in loader`` once per epoch gives a fresh permutation each time.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        crop_pad: int = 0,
        pad_mode: str = "reflect",
        flip: bool = False,
        drop_last: bool = True,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise DataError(
                f"DeviceLoader needs uint8 images N x C x H x W, got {x.dtype} {tuple(x.shape)}; "
                "pass the dataset's uint8 tensor, not a float one"
            )
        if y.dim() != 1 or y.shape[0] != x.shape[0] or y.is_floating_point():
            raise DataError(
                f"DeviceLoader needs one integer label per image, got {y.dtype} {tuple(y.shape)} "
                f"for {x.shape[0]} images; pass y.long()"
            )
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if pad_mode not in ("reflect", "zeros"):
            raise ConfigError(f"pad_mode must be 'reflect' or 'zeros', got {pad_mode!r}")
        h, w = int(x.shape[2]), int(x.shape[3])
        if crop_pad < 0 or (pad_mode == "reflect" and crop_pad >= min(h, w)):
            allowed = (
                f"in [0, {min(h, w) - 1}] for {h}x{w} images (reflect padding)"
                if pad_mode == "reflect"
                else ">= 0 (zero padding)"
            )
            raise ConfigError(f"crop_pad={crop_pad} must be {allowed}; 4 is typical for 32x32")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank={rank} must be in [0, world_size={world_size})")
        if seed < 0:
            raise ConfigError(f"seed must be >= 0, got {seed}")

        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None and torch.cuda.is_available():
            self.device = torch.device("cuda", torch.cuda.current_device())
        if x.device != self.device:
            ensure_fits(x.numel() + 8 * y.numel(), self.device)
        self.x = x.to(self.device).contiguous()
        self.y = y.to(self.device, torch.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.crop_pad = int(crop_pad)
        self.pad_mode = pad_mode
        self.flip = flip
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.rank = int(rank)
        self.world_size = int(world_size)

        self.num_samples = int(x.shape[0]) // self.world_size
        full, rest = divmod(self.num_samples, self.batch_size)
        self._len = full if drop_last else full + (rest > 0)
        if self._len == 0:
            raise ConfigError(
                f"no batch: {self.num_samples} images per rank with batch_size={batch_size} and "
                f"drop_last={drop_last}; lower the batch size or pass drop_last=False"
            )
        self._epoch = 0
        self._batch = 0
        self._plan: tuple[int, _Plan] | None = None

    # ------------------------------------------------------------------ position

    def __len__(self) -> int:
        return self._len

    @property
    def epoch(self) -> int:
        """The epoch being (or next to be) iterated."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Move to the start of ``epoch``; keeps the position if it is already the current one
        (so ``load_state_dict`` then ``set_epoch(same)`` resumes mid-epoch)."""
        if epoch < 0:
            raise ConfigError(f"epoch must be >= 0, got {epoch}")
        if epoch != self._epoch:
            self._epoch, self._batch = int(epoch), 0

    def state_dict(self) -> dict[str, int]:
        """``{"epoch": e, "batch": b}``: the next batch to yield is batch ``b`` of epoch ``e``."""
        return {"epoch": self._epoch, "batch": self._batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore a position saved by :meth:`state_dict`."""
        try:
            epoch, batch = int(state["epoch"]), int(state["batch"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(
                f"bad loader state {state!r}; expected {{'epoch': int, 'batch': int}} from "
                "DeviceLoader.state_dict()"
            ) from e
        if epoch < 0 or not 0 <= batch <= self._len:
            raise DataError(
                f"loader state {state!r} is out of range (epoch >= 0, 0 <= batch <= {self._len});"
                " the checkpoint was made with another dataset size or batch size"
            )
        self._epoch, self._batch = epoch, batch

    # ------------------------------------------------------------------ batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._epoch
        plan = self._epoch_plan(epoch)
        while self._epoch == epoch and self._batch < self._len:
            b = self._batch
            self._batch = b + 1
            yield self._make_batch(plan, b)
        if self._epoch == epoch and self._batch >= self._len:
            self._epoch, self._batch = epoch + 1, 0

    def _epoch_plan(self, epoch: int) -> _Plan:
        if self._plan is not None and self._plan[0] == epoch:
            return self._plan[1]
        n_all = int(self.x.shape[0])
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 0))
            perm = torch.randperm(n_all, generator=g)
        else:
            perm = torch.arange(n_all)
        idx = perm[: self.num_samples * self.world_size][self.rank :: self.world_size]
        g_aug = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 1, self.rank))
        offsets = flips = None
        if self.crop_pad:
            offsets = torch.randint(
                0, 2 * self.crop_pad + 1, (self.num_samples, 2), generator=g_aug
            )
            offsets = offsets.to(self.device)
        if self.flip:
            flips = (torch.rand(self.num_samples, generator=g_aug) < 0.5).to(self.device)
        plan = _Plan(idx.to(self.device), offsets, flips)
        self._plan = (epoch, plan)
        return plan

    def _make_batch(self, plan: _Plan, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        sl = slice(b * self.batch_size, min((b + 1) * self.batch_size, self.num_samples))
        idx = plan.idx[sl]
        u8 = self.x.index_select(0, idx)
        offsets = plan.offsets[sl] if plan.offsets is not None else None
        flips = plan.flips[sl] if plan.flips is not None else None
        if offsets is not None or flips is not None:
            u8 = crop_flip(u8, offsets, flips, self.crop_pad, self.pad_mode)
        if self.channels_last:
            u8 = u8.contiguous(memory_format=torch.channels_last)
        return u8.to(torch.float32).div_(255.0), self.y.index_select(0, idx)


def _reflect(t: torch.Tensor, n: int) -> torch.Tensor:
    """Map coordinates in [-(n-1), 2(n-1)] into [0, n) by mirroring at the edges (no repeat)."""
    t = torch.where(t < 0, -t, t)
    return torch.where(t > n - 1, 2 * (n - 1) - t, t)


def crop_flip(
    x: torch.Tensor,
    offsets: torch.Tensor | None,
    flips: torch.Tensor | None,
    pad: int = 0,
    pad_mode: str = "reflect",
) -> torch.Tensor:
    """Random-crop and/or mirror a batch in one gather, without padding it in memory.

    Image i becomes the ``H x W`` window whose top-left corner in the image padded by ``pad``
    (``"reflect"`` or ``"zeros"``) is ``offsets[i] = (row, col)``, each in ``[0, 2 * pad]``
    (``offsets=None``: no crop), mirrored left-right where ``flips[i]`` is true (``None``: none).
    """
    n, c, h, w = x.shape
    rows = torch.arange(h, device=x.device).expand(n, h)
    cols = torch.arange(w, device=x.device).expand(n, w)
    valid = None
    if offsets is not None and pad:
        rows = rows + (offsets[:, :1] - pad)
        cols = cols + (offsets[:, 1:] - pad)
        if pad_mode == "reflect":
            rows, cols = _reflect(rows, h), _reflect(cols, w)
        else:
            valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
            rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    if flips is not None:
        cols = torch.where(flips[:, None], cols.flip(1), cols)
        if valid is not None:
            valid = torch.where(flips[:, None, None], valid.flip(2), valid)
    lin = (rows[:, :, None] * w + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
    out = torch.gather(x.reshape(n, c, h * w), 2, lin).view(n, c, h, w)
    if valid is not None:
        out = out * valid[:, None].to(out.dtype)
    return out

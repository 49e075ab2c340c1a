"""The outcome of an unrestricted attack: one row per requested sample, saved as safetensors.

Rows hold the returned image x̂ (pixel noise included), the final and initial codes z and z⁰, the
source s and target t (−1 when untargeted), the success flag, the steps behind the image and
what f and the AC head C predict for x̂ and for the clean G(z⁰, s) before any update (−1 where
unknown: files written before version 2). The file format is safetensors (no pickle) with the
``meta`` dict as JSON in its metadata, under the header ``FORMAT`` / ``FORMAT_VERSION``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advaug.attacks.base import AttackInputError
from advaug.errors import DataError

FORMAT = "advaug.UnrestrictedResult"
FORMAT_VERSION = 2
#: Columns that files of version 1 lack; they read back as −1 (unknown).
_OPTIONAL = ("clf_pred0", "ac_pred0")


@dataclass
class UnrestrictedResult:
    """Outcome of an unrestricted attack, one row per requested sample.

    ``images`` include any pixel noise; ``steps`` is the number of updates behind each image (for
    successes, the step at which it first succeeded); ``target`` is −1 when untargeted.
    ``clf_pred0`` and ``ac_pred0`` are f's and C's predictions for the clean G(z⁰, s), before
    any update (−1 = unknown).
    """

    images: Tensor
    z: Tensor
    z0: Tensor
    source: Tensor
    target: Tensor
    success: Tensor
    steps: Tensor
    clf_pred: Tensor
    ac_pred: Tensor
    meta: dict[str, Any] = field(default_factory=dict)
    clf_pred0: Tensor | None = None
    ac_pred0: Tensor | None = None

    _TENSORS = (
        "images",
        "z",
        "z0",
        "source",
        "target",
        "success",
        "steps",
        "clf_pred",
        "ac_pred",
        "clf_pred0",
        "ac_pred0",
    )

    def __post_init__(self) -> None:
        for name in _OPTIONAL:
            if getattr(self, name) is None:
                setattr(self, name, torch.full_like(self.source, -1))

    def __len__(self) -> int:
        return int(self.source.shape[0])

    def _tensors(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in self._TENSORS}

    def select(self, index: Tensor) -> UnrestrictedResult:
        """The rows picked by a bool mask or an index tensor."""
        return UnrestrictedResult(
            **{k: v[index.to(v.device)] for k, v in self._tensors().items()}, meta=dict(self.meta)
        )

    def successes(self) -> UnrestrictedResult:
        """Only the successful rows."""
        return self.select(self.success)

    def failures(self) -> UnrestrictedResult:
        """Only the failed rows."""
        return self.select(~self.success)

    def to(self, device: torch.device | str) -> UnrestrictedResult:
        """A copy with every tensor on ``device``."""
        return UnrestrictedResult(
            **{k: v.to(device) for k, v in self._tensors().items()}, meta=dict(self.meta)
        )

    @property
    def success_rate(self) -> float:
        """Share of successful rows (nan when empty)."""
        return float(self.success.float().mean()) if len(self) else math.nan

    def steps_percentiles(
        self, q: Sequence[float] = (50, 90, 99), successes_only: bool = True
    ) -> dict[float, float]:
        """Percentiles (in %) of the steps taken, over successes by default; nan when none."""
        steps = self.steps[self.success] if successes_only else self.steps
        if steps.numel() == 0:
            return {p: math.nan for p in q}
        qs = torch.tensor([p / 100 for p in q], dtype=torch.float64)
        vals = torch.quantile(steps.double().cpu(), qs)
        return {p: float(v) for p, v in zip(q, vals)}

    def latent_distance(self) -> tuple[Tensor, Tensor]:
        """Per row, the RMS and the max over coordinates of |z − z⁰| (float [N] each)."""
        d = (self.z.double() - self.z0.double()).abs().cpu()
        if d.shape[1] == 0:
            zero = torch.zeros(len(self), dtype=torch.float64)
            return zero, zero.clone()
        return d.square().mean(dim=1).sqrt(), d.amax(dim=1)

    def latent_percentiles(
        self, q: Sequence[float] = (50, 90, 99), successes_only: bool = True
    ) -> dict[str, dict[float, float]]:
        """Percentiles (in %) of the RMS and of the max |z − z⁰| per row, over successes by
        default: ``{"rms": {50: ..}, "max": {50: ..}}``; nan when there are no rows."""
        rms, mx = self.latent_distance()
        keep = self.success.cpu() if successes_only else torch.ones(len(self), dtype=torch.bool)
        out = {}
        for name, vals in (("rms", rms), ("max", mx)):
            v = vals[keep].double()
            if v.numel() == 0:
                out[name] = {p: math.nan for p in q}
                continue
            qs = torch.quantile(v, torch.tensor([p / 100 for p in q], dtype=torch.float64))
            out[name] = {p: float(x) for p, x in zip(q, qs)}
        return out

    def decomposed_success(self) -> dict[str, Any]:
        """Success split by f's verdict on the clean G(z⁰, s), each share with its count.

        ``correct_at_z0``: codes f classified as their source before any update; their success
        rate is the attack's own success (``success_given_correct``). ``wrong_at_z0``: codes f
        already misclassified (the model's error on clean GAN samples; ``share_wrong_at_z0``).
        Every value is None when the z⁰ predictions are unknown (files before version 2).
        """
        pred0, src, ok = self.clf_pred0.cpu(), self.source.cpu(), self.success.cpu()
        n = len(self)
        if n == 0 or bool((pred0 < 0).any()):
            return {
                "n": n, "correct_at_z0": None, "success_given_correct": None,
                "wrong_at_z0": None, "share_wrong_at_z0": None, "success_given_wrong": None,
            }  # fmt: skip
        correct = pred0 == src
        n_ok, n_wrong = int(correct.sum()), int((~correct).sum())
        return {
            "n": n,
            "correct_at_z0": n_ok,
            "success_given_correct": float(ok[correct].double().mean()) if n_ok else math.nan,
            "successes_given_correct": int(ok[correct].sum()),
            "wrong_at_z0": n_wrong,
            "share_wrong_at_z0": n_wrong / n,
            "success_given_wrong": float(ok[~correct].double().mean()) if n_wrong else math.nan,
        }

    def per_class_success(self, num_classes: int) -> Tensor:
        """Success rate per source class, a float [num_classes] tensor; nan for absent classes."""
        src = self.source.cpu()
        total = torch.bincount(src, minlength=num_classes).double()
        hits = torch.bincount(src[self.success.cpu()], minlength=num_classes).double()
        rate = hits / total
        return torch.where(total > 0, rate, torch.full_like(rate, math.nan))

    @classmethod
    def cat(cls, results: Sequence[UnrestrictedResult]) -> UnrestrictedResult:
        """Rows of several results, in order (meta of the first)."""
        if not results:
            raise AttackInputError("cat needs at least one UnrestrictedResult")
        names = cls._TENSORS
        cols = {n: torch.cat([getattr(r, n) for r in results]) for n in names}
        return cls(**cols, meta=dict(results[0].meta))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a safetensors file (no pickle) atomically; ``meta`` goes into its metadata."""
        from safetensors.torch import save

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._tensors().items()}
        header = {"format": FORMAT, "version": FORMAT_VERSION, "meta": self.meta}
        data = save(tensors, metadata={"advaug": json.dumps(header)})
        # written by a plain open, so the file's mode follows the umask like every other file
        # (safetensors' save_file makes it private, 0600)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], device: torch.device | str = "cpu"
    ) -> UnrestrictedResult:
        """Read a file written by :meth:`save` (safetensors only; nothing is unpickled)."""
        from safetensors import SafetensorError
        from safetensors.torch import safe_open

        path = Path(path)
        if not path.is_file():
            raise DataError(f"no unrestricted-attack result at {path}; check the path or rerun")
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as f:
                header = json.loads((f.metadata() or {}).get("advaug", "{}"))
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as exc:
            raise DataError(
                f"{path} is not a readable safetensors file ({exc}); rerun the attack"
            ) from exc
        missing = [n for n in cls._TENSORS if n not in tensors and n not in _OPTIONAL]
        if header.get("format") != FORMAT or missing:
            raise DataError(
                f"{path} is not an advaug UnrestrictedResult file (missing {missing or 'header'})"
            )
        cols = {n: tensors[n] for n in cls._TENSORS if n in tensors}
        return cls(**cols, meta=header.get("meta", {}))


__all__ = ["FORMAT", "FORMAT_VERSION", "UnrestrictedResult"]

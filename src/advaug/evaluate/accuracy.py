"""Clean accuracy: top-1, top-5 and per class, over uint8 or float image tensors; and the
compact per-image record of a rate (``pack_outcomes``) that the report's paired intervals use."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import torch
from torch import nn


def pack_outcomes(outcomes: torch.Tensor) -> dict[str, Any]:
    """One rate's per-image outcomes (a bool per image, in a fixed image order) as
    ``{"n": N, "bits": base64 of numpy.packbits(..., bitorder="little")}``: 10,000 test images
    take 1,668 characters. ``advaug.report.stats.unpack_outcomes`` reads it back."""
    flags = outcomes.detach().reshape(-1).bool().cpu().numpy()
    bits = np.packbits(flags, bitorder="little").tobytes()
    return {"n": int(flags.shape[0]), "bits": base64.b64encode(bits).decode("ascii")}


def to_float(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """uint8 (or float) NCHW → float32 [0, 1] on ``device``."""
    x = x.to(device, non_blocking=True)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict(
    model: nn.Module, x: torch.Tensor, batch_size: int = 256, rt: Any = None
) -> torch.Tensor:
    """Logits for every image (eval mode, restored afterwards), on the CPU as float32."""
    device = rt.device if rt is not None else next(model.parameters()).device
    cl = bool(rt is not None and rt.channels_last)
    was = model.training
    model.eval()
    out = []
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = to_float(x[i : i + batch_size], device, cl)
            if rt is not None:
                with rt.autocast():
                    logits = model(xb)
            else:
                logits = model(xb)
            out.append(logits.float().cpu())
    finally:
        model.train(was)
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out)


def accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256, rt: Any = None
) -> dict[str, Any]:
    """Top-1/top-5 accuracy and per-class top-1 of ``model`` on (x, y)."""
    logits = predict(model, x, batch_size, rt)
    return accuracy_from_logits(logits, y.cpu())


def accuracy_from_logits(logits: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    n, k = logits.shape
    if n == 0:
        empty = torch.zeros(0, dtype=torch.bool)
        return {"top1": float("nan"), "top5": float("nan"), "per_class": [], "n": 0,
                "hits1": empty, "hits5": empty}  # fmt: skip
    top = logits.topk(min(5, k), dim=1).indices
    hit1 = top[:, 0] == y
    hit5 = (top == y[:, None]).any(1)
    counts = torch.bincount(y, minlength=k).clamp_min(1)
    per_class = torch.bincount(y, weights=hit1.double(), minlength=k) / counts
    return {
        "top1": hit1.double().mean().item(),
        "top5": hit5.double().mean().item(),
        "per_class": per_class.tolist(),
        "n": n,
        "hits1": hit1,  # per image, in the order of y
        "hits5": hit5,
    }

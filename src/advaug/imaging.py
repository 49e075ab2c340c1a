"""Image grids as PNG files (PIL; torchvision is not needed)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image


def make_grid(images: torch.Tensor, nrow: int, pad: int = 2, value: float = 1.0) -> torch.Tensor:
    """[N, C, H, W] in [0, 1] → one [C, rows·(H+pad)+pad, nrow·(W+pad)+pad] image."""
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError("make_grid needs a non-empty [N, C, H, W] tensor")
    n, c, h, w = images.shape
    if c == 1:
        images, c = images.expand(n, 3, h, w), 3
    ncol = max(1, min(nrow, n))
    rows = (n + ncol - 1) // ncol
    grid = torch.full((c, rows * (h + pad) + pad, ncol * (w + pad) + pad), value)
    for i in range(n):
        r, k = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[:, top : top + h, left : left + w] = images[i].detach().float().cpu()
    return grid


def to_pil(image: torch.Tensor, scale: int = 1) -> Image.Image:
    arr = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    img = Image.fromarray(arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 10, scale: int = 2) -> Path:
    """Save a grid PNG (written to a temporary name, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    to_pil(make_grid(images, nrow), scale).save(tmp)
    tmp.replace(path)
    return path

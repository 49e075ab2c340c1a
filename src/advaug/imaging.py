"""Image grids as PNG files (PIL; torchvision is not needed)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont


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


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1)
    except TypeError:  # pragma: no cover - older Pillow: the small bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """``text``, cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def labelled_grid(
    images: torch.Tensor,
    nrow: int,
    *,
    row_labels: list[str] | None = None,
    captions: list[str] | None = None,
    scale: int = 2,
) -> Image.Image:
    """A grid (``make_grid`` layout, enlarged ``scale`` times) with a name left of each row
    (e.g. the class of a row of samples) and/or a caption under each image (e.g. a model's
    prediction), in black on white."""
    grid = to_pil(make_grid(images, nrow), scale)
    n, _, h, w = images.shape
    ncol = max(1, min(nrow, n))
    rows = (n + ncol - 1) // ncol
    cell_h, cell_w, pad = (h + 2) * scale, (w + 2) * scale, 2 * scale
    font = _font(max(10, 5 * scale))
    probe = ImageDraw.Draw(grid)
    left = 0
    if row_labels:
        longest = max(probe.textlength(t, font=font) for t in row_labels)
        left = int(min(longest, 14 * font.size)) + 8
    line = font.size + 4
    below = line * (max(len(c.split("\n")) for c in captions) if captions else 0)
    out = Image.new("RGB", (left + grid.width, grid.height + rows * below), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    for r in range(rows):
        top = r * (cell_h + below)
        band = grid.crop((0, r * cell_h, grid.width, r * cell_h + cell_h + pad))
        out.paste(band, (left, top))
        if row_labels and r < len(row_labels):
            text = _fit(draw, row_labels[r], font, left - 8)
            draw.text((4, top + pad + (cell_h - pad) // 2), text, fill=(0, 0, 0), font=font,
                      anchor="lm")  # fmt: skip
        for c in range(ncol):
            i = r * ncol + c
            if not captions or i >= n:
                continue
            for j, part in enumerate(captions[i].split("\n")):
                text = _fit(draw, part, font, cell_w - 2)
                x = left + pad + c * cell_w + (cell_w - pad) // 2
                draw.text((x, top + cell_h + pad + j * line), text, fill=(0, 0, 0), font=font,
                          anchor="mt")  # fmt: skip
    return out


def save_labelled_grid(
    images: torch.Tensor,
    path: str | Path,
    nrow: int = 10,
    *,
    row_labels: list[str] | None = None,
    captions: list[str] | None = None,
    scale: int = 2,
) -> Path:
    """Save :func:`labelled_grid` as a PNG (written to a temporary name, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    labelled_grid(images, nrow, row_labels=row_labels, captions=captions, scale=scale).save(tmp)
    tmp.replace(path)
    return path

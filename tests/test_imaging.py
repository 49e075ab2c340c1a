"""Sample grids with class names and captions."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from advaug.imaging import labelled_grid, make_grid, save_labelled_grid, to_pil


def _ink(img: Image.Image, box: tuple[int, int, int, int]) -> int:
    """Non-white pixels in ``box``."""
    return int((np.asarray(img.crop(box).convert("L")) < 200).sum())


def test_row_labels_are_written_left_of_their_rows():
    x = torch.zeros(6, 3, 8, 8) + 0.5
    plain = to_pil(make_grid(x, 3), 2)
    img = labelled_grid(x, 3, row_labels=["cat", "a rather long class name"], scale=2)
    left = img.width - plain.width
    assert left > 0 and img.height == plain.height
    row_h = plain.height // 2
    assert _ink(img, (0, 0, left, row_h)) > 0 and _ink(img, (0, row_h, left, img.height)) > 0
    # the images themselves are unchanged, right of the labels
    assert np.array_equal(np.asarray(img.crop((left, 0, img.width, img.height))),
                          np.asarray(plain))  # fmt: skip
    # without labels, nothing is added
    assert labelled_grid(x, 3).size == plain.size


def test_captions_go_under_each_image():
    x = torch.zeros(4, 3, 8, 8) + 0.5
    plain = to_pil(make_grid(x, 4), 3)
    img = labelled_grid(x, 4, captions=["cat\nf: dog", "", "", ""], scale=3)
    assert img.width == plain.width and img.height > plain.height
    cell = plain.width // 4
    band = (0, plain.height, img.width, img.height)
    assert _ink(img, band) > 0
    assert _ink(img, (cell, plain.height, img.width, img.height)) == 0  # empty captions


def test_save_labelled_grid_writes_a_png(tmp_path):
    path = save_labelled_grid(torch.rand(4, 3, 8, 8), tmp_path / "g" / "x.png", 2,
                              row_labels=["a", "b"])  # fmt: skip
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 2 * 10 * 2
    assert not list((tmp_path / "g").glob(".*tmp*"))

"""The embedded demo dataset: 1,797 real 8x8 handwritten digits, as 3x32x32 uint8.

The images ship inside advaug as ``digits.npz`` (45 KB: ``images`` uint8 1797x8x8 with values
0..16, ``labels`` uint8), so the demo needs no download and no scikit-learn (which, with scipy,
joblib and threadpoolctl, added 202 MB and 46 s to a measured install for this file alone).
They are the test set of the UCI "Optical Recognition of Handwritten Digits" data (E. Alpaydin
and C. Kaynak, 1998), byte for byte the copy scikit-learn ships as ``load_digits()``
(BSD-3-Clause; ``tests/data/test_digits.py`` checks the file's sha256 and, where scikit-learn is
installed, equality with its copy).

Pixel values 0..16 map linearly to 0..255; images are upsampled 4x with **bilinear**
interpolation (``align_corners=False``). Bilinear is chosen over nearest because nearest turns
every source pixel into a hard 4x4 block on a fixed grid, an artificial high-frequency pattern
that classifiers and GAN critics latch on to; bilinear weights are convex, so values stay in
[0, 255] without clipping. The grey image is replicated to 3 channels.

The split is stratified and seeded (:func:`advaug.data.types.train_val_split`, seed 0):
**1,438 train / 359 test** images (20 % test, each class contributing its proportional share).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from advaug.data.types import ImageData, train_val_split

#: Test share of the fixed digits split (359 of 1,797 images).
TEST_FRACTION = 0.2
#: Seed of the fixed digits split.
SPLIT_SEED = 0
#: The packaged images and labels.
DIGITS_FILE = Path(__file__).resolve().parent / "digits.npz"


def digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 source images (uint8 ``N x 8 x 8``, values 0..16) and labels, as shipped."""
    with np.load(DIGITS_FILE, allow_pickle=False) as f:
        return f["images"], f["labels"]


def digits_images(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 ``N x 3 x size x size`` and their int64 labels (fresh copies)."""
    x, y = _digits_cached(size)
    return x.clone(), y.clone()


@lru_cache(maxsize=2)
def _digits_cached(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = digits_raw()
    grey = torch.from_numpy(images).to(torch.float32).unsqueeze(1) * (255.0 / 16.0)
    big = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False)
    x = big.round().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return x, torch.from_numpy(labels).to(torch.int64)


def load_digits(seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION) -> ImageData:
    """The digits dataset (name ``"digits"``) with a seeded, stratified train/test split."""
    x, y = digits_images()
    train, test = train_val_split(x, y, test_fraction, seed)
    return ImageData(
        name="digits",
        train_x=train.x,
        train_y=train.y,
        test_x=test.x,
        test_y=test.y,
        classes=[str(k) for k in range(10)],
    )

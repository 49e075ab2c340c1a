"""The embedded demo dataset: scikit-learn's bundled 8x8 handwritten digits, as 3x32x32 uint8.

1,797 real images of 10 classes (0-9) ship inside scikit-learn, so this needs no download. Pixel
values 0..16 map linearly to 0..255; images are upsampled 4x with **bilinear** interpolation
(``align_corners=False``). Bilinear is chosen over nearest because nearest turns every source
pixel into a hard 4x4 block on a fixed grid, an artificial high-frequency pattern that classifiers
and GAN critics latch on to; bilinear weights are convex, so values stay in [0, 255] without
clipping. The grey image is replicated to 3 channels.

The split is stratified and seeded (:func:`advaug.data.types.train_val_split`, seed 0):
**1,438 train / 359 test** images (20 % test, each class contributing its proportional share).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from advaug.data.types import ImageData, train_val_split

#: Test share of the fixed digits split (359 of 1,797 images).
TEST_FRACTION = 0.2
#: Seed of the fixed digits split.
SPLIT_SEED = 0


def digits_images(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 ``N x 3 x size x size`` and their int64 labels (fresh copies)."""
    x, y = _digits_cached(size)
    return x.clone(), y.clone()


@lru_cache(maxsize=2)
def _digits_cached(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    grey = torch.from_numpy(bunch.images).to(torch.float32).unsqueeze(1) * (255.0 / 16.0)
    big = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False)
    x = big.round().clamp_(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return x, torch.from_numpy(bunch.target).to(torch.int64)


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

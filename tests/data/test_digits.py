"""The embedded digits dataset: sizes, value mapping, upsampling and the fixed split."""

from __future__ import annotations

import hashlib
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from advaug.data.digits import digits_images, digits_raw, load_digits

#: sha256 of the packaged images' and labels' bytes (uint8), as taken from scikit-learn 1.9.1.
DIGITS_SHA256 = "87ff0c9e40dc7e2c0e34e7257799c2e3f3aec1a016363bb11cad869ec428a826"


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def raw():
    images, labels = digits_raw()
    return SimpleNamespace(images=images.astype(np.float64), target=labels.astype(np.int64))


def test_packaged_file_is_the_recorded_one():
    images, labels = digits_raw()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert images.dtype == np.uint8 and int(images.max()) == 16 and int(labels.max()) == 9
    assert hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest() == DIGITS_SHA256


def test_packaged_images_equal_scikit_learns():
    """The real-data check: where scikit-learn is installed, its copy is the packaged one."""
    datasets = pytest.importorskip("sklearn.datasets")
    bunch = datasets.load_digits()
    images, labels = digits_raw()
    np.testing.assert_array_equal(bunch.images, images)
    np.testing.assert_array_equal(bunch.target, labels)


def test_shapes_types_and_classes(digits):
    assert digits.name == "digits"
    assert len(digits.train_y) + len(digits.test_y) == 1797
    assert digits.train_x.shape == (1438, 3, 32, 32) and digits.test_x.shape == (359, 3, 32, 32)
    assert digits.train_x.dtype == torch.uint8 and digits.train_y.dtype == torch.int64
    assert digits.num_classes == 10 and digits.classes == [str(k) for k in range(10)]
    assert sorted(torch.cat([digits.train_y, digits.test_y]).unique().tolist()) == list(range(10))
    assert int(digits.train_x.min()) == 0 and int(digits.train_x.max()) == 255
    # grey replicated to three channels
    assert torch.equal(digits.train_x[:, 0], digits.train_x[:, 1])
    assert torch.equal(digits.train_x[:, 0], digits.train_x[:, 2])


def test_split_is_stratified_complete_and_fixed(digits, raw):
    counts = np.bincount(raw.target)
    test_counts = torch.bincount(digits.test_y, minlength=10).tolist()
    for c, t in zip(counts, test_counts):
        assert math.floor(359 * c / 1797) <= t <= math.ceil(359 * c / 1797)
    # train + test is a partition of all images (as a multiset of (image, label) rows)
    x_all, y_all = digits_images()
    both = torch.cat([digits.train_x, digits.test_x]).flatten(1)
    labels = torch.cat([digits.train_y, digits.test_y])
    rows = sorted(zip(map(bytes, both.numpy()), labels.tolist()))
    ref = sorted(zip(map(bytes, x_all.flatten(1).numpy()), y_all.tolist()))
    assert rows == ref
    again = load_digits()
    assert torch.equal(again.train_x, digits.train_x) and torch.equal(again.test_y, digits.test_y)


def test_pixel_mapping_by_hand(raw):
    x, y = digits_images()
    img = raw.images[0] * 255.0 / 16.0  # the first digit, 0..16 -> 0..255
    assert int(y[0]) == raw.target[0]
    # corner: the source coordinate (0 + 0.5) / 4 - 0.5 < 0 clamps to pixel (0, 0)
    assert int(x[0, 0, 0, 0]) == round(img[0, 0])
    # output (13, 17) sits at source (2.875, 3.875): weights 1/8, 7/8 on rows 2, 3 and cols 3, 4
    wr, wc = {2: 0.125, 3: 0.875}, {3: 0.125, 4: 0.875}
    v = sum(wr[r] * wc[c] * img[r, c] for r in wr for c in wc)
    assert abs(int(x[0, 0, 13, 17]) - v) <= 0.5 + 1e-4
    # a 4x4 block of output averages to about its source pixel (bilinear keeps the mean)
    big = x[:, 0].double().mean((1, 2))
    small = torch.from_numpy(raw.images).double().mean((1, 2)) * 255 / 16
    assert torch.allclose(big, small, atol=3.0)


def test_digits_images_returns_fresh_copies():
    a, _ = digits_images()
    a.zero_()
    b, _ = digits_images()
    assert int(b.max()) == 255

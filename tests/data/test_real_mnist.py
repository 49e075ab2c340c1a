"""The real MNIST and Fashion-MNIST files in ../shared/data (skipped, with the reason, where
absent): official md5s verified exactly, shapes, label histograms, and the normalisation
statistics the 1-channel models use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from advaug.data import load_dataset
from advaug.data.mnist import FILES, SPECS
from advaug.models.normalize import NORMALIZE_PRESETS

pytestmark = pytest.mark.data

SHARED = Path(
    os.environ.get("ADVAUG_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared/data")
)
# published class counts (LeCun et al.; Xiao et al.: 6,000 / 1,000 per class)
MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
_cache: dict = {}


def _load(name: str):
    folder = SHARED / SPECS[name.replace("-", "")].folder
    if not all((folder / f).is_file() for f in FILES):
        pytest.skip(f"real {name} files not found in {folder} (set ADVAUG_SHARED_DATA)")
    if name not in _cache:
        _cache[name] = load_dataset(name, SHARED)  # verify=True: the official md5s, exactly
    return _cache[name]


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_official_files_load_verified_with_their_shapes(name):
    data = _load(name)
    assert data.train_x.shape == (60_000, 1, 28, 28) and data.test_x.shape == (10_000, 1, 28, 28)
    assert data.train_x.dtype == torch.uint8 and int(data.train_x.max()) == 255
    assert data.num_classes == 10


def test_mnist_label_histograms():
    data = _load("mnist")
    assert torch.bincount(data.train_y).tolist() == MNIST_TRAIN
    assert torch.bincount(data.test_y).tolist() == MNIST_TEST


def test_fashion_mnist_label_histograms_and_names():
    data = _load("fashion-mnist")
    assert torch.bincount(data.train_y).tolist() == [6000] * 10
    assert torch.bincount(data.test_y).tolist() == [1000] * 10
    assert data.classes[6] == "Shirt" and data.classes[9] == "Ankle boot"


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_normalize_presets_are_the_training_statistics(name):
    x = _load(name).train_x.double() / 255
    (mean,), (std,) = NORMALIZE_PRESETS[name]
    assert abs(x.mean().item() - mean) < 5e-5
    assert abs(x.std(unbiased=False).item() - std) < 5e-5

"""The real CIFAR-100 copy in ../shared/data (skipped, with its reason, where it is absent).

Its train/test md5s differ from the official ones on purpose (see its README), so
``verify=True`` must reject it and ``verify=False`` must accept it with every structural check.
The 186 MB are loaded once per module.
"""

from __future__ import annotations

import pytest
import torch

from advaug.data import load_dataset, train_val_split
from advaug.data.cifar import CIFAR100
from advaug.errors import DataError

pytestmark = pytest.mark.data

_cache: dict = {}

# md5s of the shared copy, from /work/shared/data/README.md
LOCAL_MD5 = {
    "train": "03cf2f65a67deaabe19b3f0ced4a6e54",
    "test": "cc1f59e4d7036ca2b5c85dcff61a23fb",
}


def _load(root):
    if root not in _cache:
        _cache[root] = load_dataset("cifar100", root, verify=False)
    return _cache[root]


def test_unverified_load_has_the_official_structure(cifar100_root):
    data = _load(cifar100_root)
    assert data.train_x.shape == (50_000, 3, 32, 32) and data.test_x.shape == (10_000, 3, 32, 32)
    assert data.train_x.dtype == torch.uint8
    assert data.num_classes == 100
    assert torch.bincount(data.train_y).tolist() == [500] * 100
    assert torch.bincount(data.test_y).tolist() == [100] * 100
    assert data.classes[:3] == ["apple", "aquarium_fish", "baby"] and data.classes[-1] == "worm"
    assert len(data.coarse_classes) == 20 and data.coarse_classes[0] == "aquatic_mammals"
    assert torch.bincount(data.train_coarse).tolist() == [2500] * 20
    # the README's order: image i has class i % 100
    assert torch.equal(data.train_y[:200], torch.arange(200) % 100)


def test_verified_load_rejects_the_non_official_md5(cifar100_root):
    with pytest.raises(DataError) as info:
        load_dataset("cifar100", cifar100_root, verify=True)
    msg = str(info.value)
    assert "train" in msg and CIFAR100.md5["train"] in msg and LOCAL_MD5["train"] in msg
    assert "verify=False" in msg


def test_pinned_local_checksums_accept_the_copy(cifar100_root):
    data = load_dataset("cifar100", cifar100_root, verify=True, checksums=LOCAL_MD5)
    assert torch.equal(data.test_y, _load(cifar100_root).test_y)


def test_default_validation_split_is_450_50_per_class(cifar100_root):
    data = _load(cifar100_root)
    train, val = train_val_split(data.train_x, data.train_y, 5000, seed=0)
    assert torch.bincount(train.y).tolist() == [450] * 100
    assert torch.bincount(val.y).tolist() == [50] * 100

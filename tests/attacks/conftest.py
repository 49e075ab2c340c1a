"""Fixtures for the attack tests (the stand-in models live in ``toys.py``)."""

from __future__ import annotations

import pytest
from torch import Tensor

from .toys import ToyNet, toy_batch, train_toy


@pytest.fixture(scope="module")
def trained() -> ToyNet:
    """The toy classifier (train mode); tests must not change it (that is what we test)."""
    return train_toy()


@pytest.fixture(scope="module")
def test_batch() -> tuple[Tensor, Tensor]:
    """Held-out toy images and labels."""
    return toy_batch(256, seed=2)

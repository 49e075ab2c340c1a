"""The learning-rate schedules against hand computations."""

from __future__ import annotations

import pytest

from advaug.config import GANConfig
from advaug.train.schedule import gan_lr_scale


def test_gan_lr_decays_linearly_to_zero_or_stays_constant() -> None:
    linear = GANConfig(iters=4, lr_decay="linear")
    assert [gan_lr_scale(linear, it) for it in range(4)] == pytest.approx([1.0, 0.75, 0.5, 0.25])
    constant = GANConfig(iters=4, lr_decay="constant")
    assert [gan_lr_scale(constant, it) for it in range(4)] == [1.0] * 4

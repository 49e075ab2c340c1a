from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advaug.attacks import UnrestrictedResult
from advaug.evaluate.uae import (
    balanced_sources,
    legitimacy,
    nearest_neighbours,
    summarize,
    within_class_spread,
)


def _result(n: int, success: list[bool], source: list[int]) -> UnrestrictedResult:
    return UnrestrictedResult(
        images=torch.rand(n, 3, 32, 32),
        z=torch.zeros(n, 4),
        z0=torch.zeros(n, 4),
        source=torch.tensor(source),
        target=torch.full((n,), -1),
        success=torch.tensor(success),
        steps=torch.tensor([3] * n),
        clf_pred=torch.zeros(n, dtype=torch.long),
        ac_pred=torch.tensor(source),
    )


class _Const(nn.Module):
    """Predicts a fixed class for every input."""

    def __init__(self, k: int, c: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.k, self.c = k, c

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.k) + self.w
        out[:, self.c] = 1
        return out


def test_legitimacy_counts_successes_kept_in_source_class():
    res = _result(4, [True, True, False, True], [2, 1, 2, 2])
    # the reference always says class 2: successes have sources 2, 1, 2 -> 2 of 3 legitimate
    assert legitimacy(res, _Const(3, 2)) == pytest.approx(2 / 3)
    assert math.isnan(legitimacy(_result(2, [False, False], [0, 1]), _Const(3, 2)))


def test_nearest_neighbours_in_pixel_space_by_hand():
    train = torch.zeros(5, 3, 2, 2, dtype=torch.uint8)
    for i in range(5):
        train[i] = i * 50
    q = torch.full((2, 3, 2, 2), 101 / 255)  # closest to image 2 (100/255)
    q[1] = 1.0  # closest to image 4 (200/255)
    idx, dist = nearest_neighbours(q, train, k=2, chunk=2)
    assert idx[:, 0].tolist() == [2, 4]
    assert idx[0, 1].item() in (1, 3)
    assert dist[0, 0].item() == pytest.approx(math.sqrt(12) * 1 / 255, rel=1e-4)


def test_within_class_spread_by_hand():
    feats = torch.tensor([[0.0, 0], [3, 4], [0, 0], [0, 0]])
    labels = torch.tensor([0, 0, 1, 1])
    # class 0: distance 5; class 1: distance 0 -> mean 2.5
    assert within_class_spread(feats, labels) == pytest.approx(2.5)


def test_balanced_sources_and_summary():
    src = balanced_sources(20, 10, seed=0, device=torch.device("cpu"))
    assert torch.bincount(src, minlength=10).tolist() == [2] * 10
    res = _result(4, [True, False, True, True], [0, 0, 1, 1])
    s = summarize(res, 2, ["a", "b"])
    assert s["success_rate"] == 0.75
    assert s["per_class_success"] == {"a": 0.5, "b": 1.0}
    assert s["steps_p50"] == 3

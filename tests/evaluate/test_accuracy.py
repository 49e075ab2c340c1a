"""Clean accuracy (evaluate/accuracy.py): the packed per-image outcomes, the uint8 → float
conversion, top-1/top-5/per-class by hand, and the batches and runtime that reach the model."""

from __future__ import annotations

import base64
import contextlib
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from advaug.evaluate.accuracy import accuracy, accuracy_from_logits, pack_outcomes, to_float
from advaug.report.stats import unpack_outcomes

CPU = torch.device("cpu")


def test_pack_outcomes_is_little_endian_packbits_in_base64():
    flags = torch.tensor([True] + [False] * 7 + [True, True])
    packed = pack_outcomes(flags)
    # bit i of byte j is image 8j + i: 0b00000001, 0b00000011
    assert packed == {"n": 10, "bits": base64.b64encode(bytes([1, 3])).decode("ascii")}
    assert isinstance(packed["n"], int) and isinstance(packed["bits"], str)


@given(st.lists(st.booleans(), max_size=40))
def test_pack_outcomes_round_trips_through_the_reports_reader(flags):
    t = torch.tensor(flags, dtype=torch.bool).reshape(-1)
    as_float = t.float().reshape(-1, 1) if flags else t  # any shape and dtype: flattened, bool
    out = unpack_outcomes(pack_outcomes(as_float))
    assert out is not None and out.tolist() == flags


def test_to_float_scales_uint8_and_keeps_floats():
    u8 = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    f = to_float(u8, CPU)
    assert f.dtype == torch.float32 and f.flatten().tolist() == pytest.approx([0, 0.2, 1])
    x64 = torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64).view(1, 3, 1, 1)
    f = to_float(x64, CPU)
    assert f.dtype == torch.float32 and f.flatten().tolist() == [0.25, 0.5, 1.0]  # not / 255
    x = torch.rand(2, 3, 4, 4)
    assert to_float(x, CPU).is_contiguous()
    cl = to_float(x, CPU, channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last) and not cl.is_contiguous()
    assert torch.equal(cl, x)


def test_to_float_moves_the_images_to_the_device():
    """The "meta" device stands in for a GPU on a CPU-only machine."""
    meta = torch.device("meta")
    for x in (torch.zeros(1, 3, 2, 2, dtype=torch.uint8), torch.rand(1, 3, 2, 2)):
        out = to_float(x, meta)
        assert out.device == meta and out.dtype == torch.float32


def test_accuracy_batches_256_images_by_default():
    model = _Recorder()
    x, y = torch.zeros(300, 3, 2, 2, dtype=torch.uint8), torch.zeros(300, dtype=torch.long)
    assert accuracy(model, x, y)["n"] == 300
    assert [b for b, _, _ in model.seen] == [256, 44]


def test_accuracy_from_logits_with_more_than_five_classes():
    # y ranks: 1st, 5th (still top-5), 6th (not top-5), 1st
    logits = torch.tensor(
        [[9.0, 1, 2, 3, 4, 5, 6], [1, 9, 8, 7, 6, 5, 4], [1, 9, 8, 7, 6, 5, 4],
         [0, 0, 9, 0, 0, 0, 0]]
    )  # fmt: skip
    y = torch.tensor([0, 5, 6, 2])
    acc = accuracy_from_logits(logits, y)
    assert acc["top1"] == 0.5 and acc["top5"] == 0.75 and acc["n"] == 4
    assert acc["hits1"].tolist() == [True, False, False, True]
    assert acc["hits5"].tolist() == [True, True, False, True]
    # per class over all 7 classes; absent classes score 0 (not nan)
    assert acc["per_class"] == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert isinstance(acc["top1"], float) and isinstance(acc["per_class"], list)


def test_accuracy_from_logits_with_fewer_than_five_classes_is_top_k():
    logits = torch.tensor([[3.0, 2, 1], [1, 2, 3]])
    acc = accuracy_from_logits(logits, torch.tensor([2, 0]))
    assert acc["top1"] == 0.0 and acc["top5"] == 1.0  # top-3 of 3 classes holds every label


def test_per_class_is_the_mean_over_that_class():
    logits = torch.eye(3)[[0, 1, 1, 2, 0]] * 5
    acc = accuracy_from_logits(logits, torch.tensor([0, 0, 1, 2, 2]))
    assert acc["per_class"] == pytest.approx([0.5, 1.0, 0.5])


def test_accuracy_of_no_images_is_nan_with_empty_outcomes():
    acc = accuracy_from_logits(torch.empty(0, 4), torch.empty(0, dtype=torch.long))
    assert math.isnan(acc["top1"]) and math.isnan(acc["top5"])
    assert acc["per_class"] == [] and acc["n"] == 0
    for key in ("hits1", "hits5"):
        assert acc[key].dtype == torch.bool and acc[key].shape == (0,)


class _Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.seen: list[tuple[int, bool, bool]] = []

    def forward(self, x):
        cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        self.seen.append((x.shape[0], cl, _Rt.inside))
        return self.lin(x.mean((2, 3)))


class _Rt:
    """A runtime: its device, channels_last, and an autocast context that marks the forward."""

    inside = False

    def __init__(self, channels_last: bool) -> None:
        self.device, self.channels_last = CPU, channels_last

    @contextlib.contextmanager
    def autocast(self):
        _Rt.inside = True
        try:
            yield
        finally:
            _Rt.inside = False


def test_accuracy_runs_in_the_given_batches_under_the_runtime():
    torch.manual_seed(0)
    model = _Recorder().train()
    x = torch.randint(0, 256, (7, 3, 2, 2), dtype=torch.uint8)
    y = torch.arange(7) % 4
    acc = accuracy(model, x, y, batch_size=3, rt=_Rt(channels_last=True))
    assert model.seen == [(3, True, True), (3, True, True), (1, True, True)]
    assert model.training  # eval mode only for the forward
    with torch.no_grad():
        ref = model(x.float() / 255).argmax(1) == y
    assert acc["hits1"].tolist() == ref.tolist() and acc["n"] == 7
    model.seen.clear()
    accuracy(model, x, y)  # no runtime: the model's device, one batch, no autocast
    assert model.seen == [(7, False, False)]


def test_per_image_outcomes_are_in_the_order_of_y():
    logits = torch.tensor([[1.0, 0], [0, 1], [1, 0]])
    acc = accuracy_from_logits(logits, torch.tensor([0, 0, 0]))
    assert np.array_equal(acc["hits1"].numpy(), [True, False, True])

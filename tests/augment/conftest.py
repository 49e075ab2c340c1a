"""Fixtures shared by the augmentation techniques' tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def generator_devices(monkeypatch) -> list[torch.device | None]:
    """The devices that ``torch.Generator`` is asked for, in order, while the test runs.

    The meta device stands in for a GPU on a CPU-only machine: a technique built on it must
    allocate its buffers there. ``torch.Generator`` refuses the meta device, so it is replaced
    by a stand-in that only records the device it was asked for (and accepts a seed)."""
    asked: list[torch.device | None] = []

    class _Recorder:
        def __init__(self, device=None):
            asked.append(torch.device(device) if device is not None else None)

        def manual_seed(self, seed: int) -> _Recorder:
            return self

    monkeypatch.setattr(torch, "Generator", _Recorder)
    return asked

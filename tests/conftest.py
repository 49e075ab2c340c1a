"""Test-wide settings: one torch thread per process (two busy 2-thread processes on a 2-core
machine run 10x slower), deterministic algorithms, and the real-data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import Phase, settings

torch.set_num_threads(1)
torch.set_num_interop_threads(1)

# `make mutation` runs each mutant's tests under this profile (--hypothesis-profile=mutation):
# few examples, derandomised, no example database and no shrinking (a mutant needs only a
# failure, not the smallest one), so a mutant costs seconds and the committed report is
# reproducible. Tests that set max_examples themselves keep their own number.
settings.register_profile(
    "mutation",
    max_examples=10,
    derandomize=True,
    database=None,
    deadline=None,
    phases=(Phase.explicit, Phase.generate),
)

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR100 = Path(
    os.environ.get("ADVAUG_CIFAR100", ROOT.parent / "shared/data/cifar-100-python")
)


@pytest.fixture
def cifar100_root() -> Path:
    """The real CIFAR-100 folder, or a skip that says why."""
    if not (SHARED_CIFAR100 / "train").is_file():
        pytest.skip(f"real CIFAR-100 not found at {SHARED_CIFAR100} (set ADVAUG_CIFAR100)")
    return SHARED_CIFAR100


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

"""The ``Examples::`` blocks of the model registry and the GAN run as doctests."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from advaug.models import gan, registry


@pytest.mark.parametrize("module", [registry, gan], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0

"""The docstring examples of the unrestricted attack and its settings run as written."""

from __future__ import annotations

import doctest

import pytest

import advaug.attacks.unrestricted
import advaug.config

MODULES = [advaug.attacks.unrestricted, advaug.config]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples_run(module) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{module.__name__} has no examples"
    assert result.failed == 0, f"{result.failed} example(s) of {module.__name__} failed"

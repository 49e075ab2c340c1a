"""Fixtures of the report tests: a synthetic study folder (see ``synth.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .synth import make_study


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    """2 techniques (none, fgsm) × 2 seeds, with evals, curves and grids."""
    return make_study(tmp_path / "study")

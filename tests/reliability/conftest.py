"""Fixtures of the reliability tests."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture
def advaug_logs(caplog):
    """caplog that also sees the ``advaug`` logger after the CLI set ``propagate=False``."""
    logger = logging.getLogger("advaug")
    old = logger.propagate, logger.level
    logger.propagate = True
    logger.setLevel(logging.INFO)
    caplog.set_level(logging.INFO, logger="advaug")
    yield caplog
    logger.propagate, _ = old
    logger.setLevel(old[1])

"""Callbacks the tests pass to the training loops (``on_step``), and fault injection by
monkeypatching: the production loops carry no test hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from advaug.train import steps


class Interrupted(Exception):
    """Raised by :func:`stop_after` after it checkpointed the run (simulates a kill)."""


def stop_after(n: int) -> Callable[[Any, Callable[[], None]], None]:
    """``on_step`` that checkpoints the run at step (or GAN iteration) ``n`` and stops it."""

    def on_step(state: Any, save: Callable[[], None]) -> None:
        if state.step >= n:
            save()
            raise Interrupted(f"stopped after step {state.step}")

    return on_step


def nan_in_critic_at(monkeypatch: pytest.MonkeyPatch, iteration: int, n_critic: int) -> None:
    """Make every critic loss of GAN iteration ``iteration`` (0-based) NaN, through its
    gradient-penalty term, as a numerical fault in training would."""
    real = steps.critic_loss
    calls = {"n": 0}

    def critic_loss(*args: Any, **kwargs: Any):
        loss, parts = real(*args, **kwargs)
        if calls["n"] // n_critic == iteration:
            loss = loss * float("nan")
            parts = {**parts, "gp": parts["gp"] * float("nan")}
        calls["n"] += 1
        return loss, parts

    monkeypatch.setattr(steps, "critic_loss", critic_loss)

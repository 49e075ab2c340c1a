"""From a checkpoint on disk to a model in memory: trained classifiers and AC-GAN pairs.

This is the one place that turns a run folder (or a ``final.pt``) into modules. It sits above
:mod:`advaug.models` and :mod:`advaug.runtime.checkpoint` and below :mod:`advaug.train` and
:mod:`advaug.evaluate`, so evaluation never imports the training code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advaug.errors import CheckpointError
from advaug.models import build_model
from advaug.models.gan import Critic, Generator
from advaug.runtime.checkpoint import check_arch, load_file, resolve_checkpoint


@dataclass
class GANPair:
    """A trained generator (EMA weights, standing statistics) and its critic, in eval mode."""

    generator: Generator
    critic: Critic
    classes: list[str]
    path: str = ""
    sha256: str = ""  # of the checkpoint file: what the GAN is, wherever it lies


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """A trained classifier (eval mode) from a run folder or checkpoint file."""
    ckpt = resolve_checkpoint(path)
    state = load_file(ckpt, map_location=device)
    if "arch_name" not in state or "model" not in state:
        raise CheckpointError(f"{ckpt} is not an advaug classifier checkpoint")
    model = build_model(state["arch_name"], state["num_classes"], **_kw(state))
    check_arch(state, model.arch_name, model.arch_kwargs)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(
            f"{ckpt} does not fit architecture {state['arch_name']}: {str(e).splitlines()[0]}"
        ) from e
    model.classes = state.get("classes")
    return model.to(device).eval()


def _kw(state: dict[str, Any]) -> dict[str, Any]:
    kw = dict(state.get("arch_kwargs", {}))
    kw.pop("num_classes", None)
    return kw


def load_gan(path: str | Path, device: torch.device | str = "cpu") -> GANPair:
    """The final generator (EMA + standing stats) and critic of a GAN run, in eval mode."""
    ckpt = resolve_checkpoint(path)
    state = load_file(ckpt, map_location=device)
    if "g_arch" not in state or "generator" not in state:
        raise CheckpointError(f"{ckpt} is not an advaug GAN checkpoint; pass a train-gan run")
    gk, dk = dict(state["g_arch"]["arch_kwargs"]), dict(state["d_arch"]["arch_kwargs"])
    g, d = Generator(**gk), Critic(**dk)
    try:
        g.load_state_dict(state["generator"])
        d.load_state_dict(state["critic"])
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt} does not fit its recorded architecture: {e}") from e
    g, d = g.to(device).eval(), d.to(device).eval()
    for p in (*g.parameters(), *d.parameters()):
        p.requires_grad_(False)
    return GANPair(g, d, list(state.get("classes") or []), str(ckpt), checkpoint_sha256(ckpt))


def checkpoint_sha256(path: str | Path) -> str:
    """The sha256 of the checkpoint a run folder or file resolves to: from its manifest when it
    has one (loading verifies the bytes against it), else from its bytes."""
    ckpt = resolve_checkpoint(path)
    manifest = ckpt.with_suffix(".json")
    if manifest.is_file():
        try:
            sha = json.loads(manifest.read_text()).get("sha256")
        except (OSError, ValueError, AttributeError):
            sha = None
        if isinstance(sha, str) and sha:
            return sha
    return hashlib.sha256(ckpt.read_bytes()).hexdigest()


def check_same_classes(
    a: str, a_classes: list[str] | int | None, b: str, b_classes: list[str] | int | None, fix: str
) -> None:
    """Refuse, in one line, two things made for different class sets (another dataset).

    A class set is a list of class names or, where only the count is known, an int; ``None``
    (unknown) passes.
    """
    if a_classes is None or b_classes is None:
        return
    na = a_classes if isinstance(a_classes, int) else len(a_classes)
    nb = b_classes if isinstance(b_classes, int) else len(b_classes)
    if na != nb:
        raise CheckpointError(f"{a} has {na} classes but {b} has {nb}; {fix}")
    named = isinstance(a_classes, list) and isinstance(b_classes, list) and a_classes and b_classes
    if named and [str(c) for c in a_classes] != [str(c) for c in b_classes]:
        raise CheckpointError(
            f"{a} was trained on classes {_names(a_classes)} but {b} has {_names(b_classes)}; {fix}"
        )


def _names(classes: list[str]) -> str:
    shown = ", ".join(str(c) for c in classes[:4])
    return f"{shown}, ..." if len(classes) > 4 else shown

"""From a checkpoint on disk to a model in memory: trained classifiers and AC-GAN pairs.

This is the one place that turns a run folder (or a ``final.pt``, or an exported folder) into
modules, and the one place that writes a classifier for other tools (:func:`export_classifier`).

An exported classifier is a folder of two files:

- ``model.safetensors``: the weights (EMA weights where the run kept an EMA), no pickle;
- ``config.json``: ``format`` (``advaug-classifier``), ``arch_name`` and ``arch_kwargs`` (how to
  rebuild the module), ``num_classes``, ``classes``, ``input`` (NCHW float in [0, 1]; the model
  normalises inside its first layer), the advaug version, the source checkpoint and the
  weights file's sha256, which :func:`load_classifier` checks.

The module is a plain ``nn.Module`` that maps [0, 1] images to logits, so torchattacks, ART or
AutoAttack attack it as they attack any model. It sits above
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

from advaug._version import __version__
from advaug.errors import CheckpointError, ConfigError
from advaug.models import build_model
from advaug.models.gan import Critic, Generator
from advaug.runtime.checkpoint import (
    atomic_write_bytes,
    atomic_write_text,
    check_arch,
    load_file,
    resolve_checkpoint,
)

#: The ``format`` of an exported classifier's config.json, and the formats ``export`` writes.
EXPORT_FORMAT = "advaug-classifier"
EXPORT_FORMATS = ("safetensors",)
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"


@dataclass
class GANPair:
    """A trained generator (EMA weights, standing statistics) and its critic, in eval mode."""

    generator: Generator
    critic: Critic
    classes: list[str]
    path: str = ""
    sha256: str = ""  # of the checkpoint file: what the GAN is, wherever it lies


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """A trained classifier (eval mode) from a run folder, a checkpoint file or a folder that
    :func:`export_classifier` wrote."""
    exported = _exported_folder(path)
    if exported is not None:
        return _load_exported(exported, device)
    ckpt = resolve_checkpoint(path)
    state = load_file(ckpt, map_location=device)
    if "arch_name" not in state or "model" not in state:
        raise CheckpointError(f"{ckpt} is not an advaug classifier checkpoint")
    model = _build(state, state["model"], ckpt)
    model.classes = state.get("classes")
    return model.to(device).eval()


def _build(meta: dict[str, Any], weights: dict[str, torch.Tensor], where: Path) -> nn.Module:
    model = build_model(meta["arch_name"], meta["num_classes"], **_kw(meta))
    check_arch(meta, model.arch_name, model.arch_kwargs)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(
            f"{where} does not fit architecture {meta['arch_name']}: {str(e).splitlines()[0]}"
        ) from e
    return model


def _exported_folder(path: str | Path) -> Path | None:
    """The folder when ``path`` is an exported classifier (the folder or one of its files)."""
    p = Path(path)
    folder = p.parent if p.name in (WEIGHTS_FILE, CONFIG_FILE) else p
    is_run = (folder / "checkpoints").is_dir() or (folder / "final.pt").is_file()
    return folder if (folder / CONFIG_FILE).is_file() and not is_run else None


def _load_exported(folder: Path, device: torch.device | str) -> nn.Module:
    from safetensors import SafetensorError
    from safetensors.torch import load_file as load_safetensors

    try:
        meta = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder / CONFIG_FILE} is not readable JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise CheckpointError(
            f"{folder / CONFIG_FILE} is not an exported advaug classifier "
            f"(its format is not '{EXPORT_FORMAT}'); export one with `advaug export RUN`"
        )
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing; export the run again")
    if _sha256(weights) != meta.get("sha256"):
        raise CheckpointError(
            f"{weights} does not match the sha256 in {CONFIG_FILE} (changed or truncated); "
            "export the run again"
        )
    try:
        state = load_safetensors(str(weights), device=str(device))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({e})") from e
    model = _build(meta, state, weights)
    model.classes = meta.get("classes")
    return model.to(device).eval()


def export_classifier(path: str | Path, out: str | Path, format: str = "safetensors") -> Path:
    """Write the classifier of run (or checkpoint) ``path`` to folder ``out`` for other tools:
    ``model.safetensors`` and ``config.json`` (see the module docstring); returns ``out``.

    Examples::

        >>> import tempfile, torch
        >>> from advaug.models import build_model
        >>> from advaug.runtime.checkpoint import save_final
        >>> tmp = Path(tempfile.mkdtemp())
        >>> net = build_model("tiny-cnn", 10, width=4)
        >>> (tmp / "run").mkdir()
        >>> save_final(tmp / "run" / "final.pt", {"model": net.state_dict(),
        ...     "arch_name": net.arch_name, "arch_kwargs": net.arch_kwargs, "num_classes": 10})
        >>> folder = export_classifier(tmp / "run", tmp / "exported")
        >>> sorted(p.name for p in folder.iterdir())
        ['config.json', 'model.safetensors']
        >>> again = load_classifier(folder)
        >>> x = torch.rand(2, 3, 32, 32)
        >>> torch.equal(again(x), net.eval()(x))
        True
    """
    from safetensors.torch import save as save_safetensors

    if format not in EXPORT_FORMATS:
        raise ConfigError(
            f"unknown export format '{format}'; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    model = load_classifier(path)
    source = _exported_folder(path) or resolve_checkpoint(path)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {out} ({e.strerror}); choose a writable --out") from e
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(out / WEIGHTS_FILE, save_safetensors(tensors, metadata={"format": "pt"}))
    meta = {
        "format": EXPORT_FORMAT,
        "format_version": 1,
        "arch_name": model.arch_name,
        "arch_kwargs": model.arch_kwargs,
        "num_classes": model.num_classes,
        "classes": getattr(model, "classes", None),
        "input": {
            "layout": "NCHW",
            "dtype": "float32",
            "range": [0.0, 1.0],
            "normalization": "inside the model (its first layer); pass raw [0, 1] images",
        },
        "output": "logits",
        "advaug_version": __version__,
        "source": str(source),
        "sha256": _sha256(out / WEIGHTS_FILE),
    }
    atomic_write_text(out / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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

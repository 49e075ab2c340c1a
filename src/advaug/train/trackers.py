"""Where a run's numbers and pictures go besides ``metrics.jsonl``: one small hook, two trackers.

A tracker receives what :class:`advaug.train.run.Run` logs:

- ``scalars(step, split, metrics)``: every record of ``metrics.jsonl`` (``split/name`` tags);
- ``image(tag, image, step)``: sample grids, ``[C, H, W]`` floats in [0, 1];
- ``hparams(config, metrics)``: once, when the run finishes: the flattened config and the final
  numbers, so runs can be compared by their settings;
- ``close()``.

``runtime.loggers`` names the trackers of a run: ``tensorboard`` (the default; needs
``pip install 'advaug[tensorboard]'``, and is skipped with one log line where it is missing) and
``wandb`` (``pip install 'advaug[wandb]'``; W&B's own ``WANDB_MODE=offline`` and
``WANDB_PROJECT`` environment variables apply; a missing package is an error, since it was asked
for). A new tracker is a class with these four methods, added to :data:`TRACKERS`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from advaug.errors import ConfigError
from advaug.log import get_logger

log = get_logger(__name__)


class Tracker(Protocol):
    def scalars(self, step: int, split: str, metrics: dict[str, float]) -> None: ...
    def image(self, tag: str, image: torch.Tensor, step: int) -> None: ...
    def hparams(self, config: dict[str, Any], metrics: dict[str, float]) -> None: ...
    def close(self) -> None: ...


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` → ``{"a.b": 1, "c": "[1, 2]"}``: scalars stay, lists and
    None become strings (what TensorBoard's hparams and W&B's config accept).

    Examples::

        >>> flatten({"classifier": {"optim": {"lr": 0.1}}, "seeds": [0, 1], "gan": None})
        {'classifier.optim.lr': 0.1, 'seeds': '[0, 1]', 'gan': 'None'}
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            out[name] = str(value)
    return out


class TensorBoardTracker:
    """Event files in ``RUN/tb``: scalars, images and one hparams record."""

    def __init__(self, folder: Path, purge_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder / "tb"), purge_step=purge_step)

    def scalars(self, step: int, split: str, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(f"{split}/{k}", v, step)

    def image(self, tag: str, image: torch.Tensor, step: int) -> None:
        self.writer.add_image(tag, image.clamp(0, 1), step, dataformats="CHW")

    def hparams(self, config: dict[str, Any], metrics: dict[str, float]) -> None:
        """One hparams record in the run's own event file (``SummaryWriter.add_hparams`` would
        open a second writer, and a second event file, for it)."""
        from torch.utils.tensorboard.summary import hparams

        final = {f"final/{k}": v for k, v in metrics.items()}
        for summary in hparams(flatten(config), final):
            self.writer.file_writer.add_summary(summary)
        for k, v in final.items():
            self.writer.add_scalar(k, v)

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A Weights & Biases run for the run folder (resumed with the same id when it resumes)."""

    def __init__(self, folder: Path, config: dict[str, Any]) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise ConfigError(
                "runtime.loggers has wandb, which is not installed; run "
                "`pip install 'advaug[wandb]'` or remove wandb from runtime.loggers"
            ) from exc
        self.wandb = wandb
        run_id = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "advaug"),
            name=folder.name,
            id=run_id,
            resume="allow",
            dir=str(folder),
            config=flatten(config),
        )

    def scalars(self, step: int, split: str, metrics: dict[str, float]) -> None:
        self.run.log({f"{split}/{k}": v for k, v in metrics.items()}, step=step)

    def image(self, tag: str, image: torch.Tensor, step: int) -> None:
        arr = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        self.run.log({tag: self.wandb.Image(arr)}, step=step)

    def hparams(self, config: dict[str, Any], metrics: dict[str, float]) -> None:
        self.run.summary.update({f"final/{k}": v for k, v in metrics.items()})

    def close(self) -> None:
        self.run.finish()


def _tensorboard(folder: Path, config: dict[str, Any], purge_step: int | None) -> Tracker | None:
    try:
        return TensorBoardTracker(folder, purge_step)
    except ImportError:
        log.info("tensorboard is not installed: %s logs to metrics.jsonl only "
                 "(pip install 'advaug[tensorboard]')", folder)  # fmt: skip
        return None


def _wandb(folder: Path, config: dict[str, Any], purge_step: int | None) -> Tracker:
    return WandbTracker(folder, config)


#: Tracker factories by the names ``runtime.loggers`` takes.
TRACKERS: dict[str, Callable[[Path, dict[str, Any], int | None], Tracker | None]] = {
    "tensorboard": _tensorboard,
    "wandb": _wandb,
}


def open_trackers(
    names: Sequence[str], folder: Path, config: dict[str, Any], purge_step: int | None
) -> list[Tracker]:
    """The trackers ``names`` for run folder ``folder`` (those that are available)."""
    out = []
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"unknown logger '{name}'; choose from {', '.join(TRACKERS)}")
        tracker = TRACKERS[name](folder, config, purge_step)
        if tracker is not None:
            out.append(tracker)
    return out

"""The dataset registry: load a dataset by name (official-format CIFAR-10/100, MNIST and
Fashion-MNIST from their IDX files, embedded digits).

The shared types (:class:`ImageData`, :class:`Split`) and splitting live in
:mod:`advaug.data.types`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from advaug.data.cifar import load_cifar
from advaug.data.digits import load_digits
from advaug.data.mnist import load_mnist
from advaug.data.types import ImageData
from advaug.errors import ConfigError, DataMissingError, DownloadError
from advaug.log import get_logger

if TYPE_CHECKING:
    from advaug.config import DataConfig

log = get_logger(__name__)

#: Names accepted by :func:`load_dataset` (case, dashes and underscores are ignored).
DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "digits", "mnist", "fashion-mnist")


@dataclass(frozen=True)
class DatasetInfo:
    """What is known of a dataset without reading it (for plans and cost estimates)."""

    num_classes: int
    image_shape: tuple[int, int, int]  # C, H, W
    train_size: int
    test_size: int
    #: whether a horizontal mirror keeps an image's class, so that ``data.flip`` may apply
    #: (not for MNIST: a mirrored 2, 3 or 7 is no digit)
    flip_safe: bool = True


#: The published sizes of each dataset (digits: the embedded split of :mod:`advaug.data.digits`).
#: The embedded digits stay ``flip_safe`` as they have always been trained (``smoke`` flips
#: them; ``demo`` turns the flip off in its preset).
DATASET_INFO: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(10, (3, 32, 32), 50_000, 10_000),
    "cifar100": DatasetInfo(100, (3, 32, 32), 50_000, 10_000),
    "digits": DatasetInfo(10, (3, 32, 32), 1_438, 359),
    "mnist": DatasetInfo(10, (1, 28, 28), 60_000, 10_000, flip_safe=False),
    "fashion-mnist": DatasetInfo(10, (1, 28, 28), 60_000, 10_000),
}


def canonical_name(name: str) -> str:
    """The registry's spelling of dataset ``name`` (``"Fashion_MNIST"`` -> ``"fashion-mnist"``)."""
    key = name.lower().replace("-", "").replace("_", "")
    for known in DATASETS:
        if known.replace("-", "") == key:
            return known
    raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of dataset ``name``."""
    return DATASET_INFO[canonical_name(name)]


def effective_flip(name: str, flip: bool) -> bool:
    """Whether to flip images of dataset ``name`` when the config asks for ``flip``: only where
    a mirror keeps the class (:attr:`DatasetInfo.flip_safe`); the refusal is logged."""
    info = dataset_info(name)
    if flip and not info.flip_safe:
        log.info("not flipping %s images: a mirrored image changes its class", name)
    return flip and info.flip_safe


def default_root() -> Path:
    """Where datasets are looked for when no root is given: ``$ADVAUG_DATA`` or ``./data``."""
    return Path(os.environ.get("ADVAUG_DATA", "data"))


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    verify: bool = True,
    checksums: dict[str, str] | None = None,
    check_sizes: bool = True,
) -> ImageData:
    """Load a dataset by name: one of :data:`DATASETS`.

    ``root`` (default :func:`default_root`) and the keyword arguments apply to the file-based
    datasets and are documented in :func:`advaug.data.cifar.load_cifar` and
    :func:`advaug.data.mnist.load_mnist`; ``digits`` is embedded and ignores them. A root that
    holds several datasets side by side works for all of them: each reader also looks in its
    own sub-folder (``cifar-100-python/``, ``mnist/``, ``fashion-mnist/``).
    """
    key = canonical_name(name)
    if key == "digits":
        return load_digits()
    loader = load_mnist if key in ("mnist", "fashion-mnist") else load_cifar
    return loader(
        key,
        default_root() if root is None else root,
        download=download,
        verify=verify,
        checksums=checksums,
        check_sizes=check_sizes,
    )


@dataclass(frozen=True)
class Fallback:
    """A study that runs on its second-choice dataset: which one it wanted, and why not."""

    wanted: str
    used: str
    reason: str

    def describe(self) -> str:
        return f"{self.used}, the fallback: {self.wanted} was not available ({self.reason})"


def resolve_fallback(cfg: DataConfig) -> tuple[DataConfig, Fallback | None]:
    """``cfg`` with its ``fallback`` decided: the same dataset when its files load (downloaded
    first where ``cfg.download`` asks), else the fallback dataset, with the reason.

    Only absent files (and a failed download) lead to the fallback. Files that are present but
    damaged or not the official ones still raise their :class:`DataError`, so that a broken copy
    is never silently replaced. The returned config has ``fallback=None``, so it names the
    dataset that the study really runs on (its stage hashes too).
    """
    if cfg.fallback is None:
        return cfg, None
    fallback = canonical_name(cfg.fallback)
    try:
        load_dataset(
            cfg.name,
            cfg.root,
            download=cfg.download,
            verify=cfg.verify,
            checksums=cfg.checksums,
            check_sizes=cfg.check_sizes,
        )
    except (DataMissingError, DownloadError) as e:
        used = dataclasses.replace(cfg, name=fallback, fallback=None, root=None, checksums={})
        record = Fallback(canonical_name(cfg.name), fallback, str(e))
        log.warning("running on %s", record.describe())
        return used, record
    return dataclasses.replace(cfg, fallback=None), None

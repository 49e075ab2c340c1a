"""The dataset registry: load a dataset by name (official-format CIFAR-10/100, embedded digits).

The shared types (:class:`ImageData`, :class:`Split`) and splitting live in
:mod:`advaug.data.types`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from advaug.data.cifar import load_cifar
from advaug.data.digits import load_digits
from advaug.data.types import ImageData
from advaug.errors import ConfigError

#: Names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "digits")


@dataclass(frozen=True)
class DatasetInfo:
    """What is known of a dataset without reading it (for plans and cost estimates)."""

    num_classes: int
    image_shape: tuple[int, int, int]  # C, H, W
    train_size: int
    test_size: int


#: The published sizes of each dataset (digits: the embedded split of :mod:`advaug.data.digits`).
DATASET_INFO: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(10, (3, 32, 32), 50_000, 10_000),
    "cifar100": DatasetInfo(100, (3, 32, 32), 50_000, 10_000),
    "digits": DatasetInfo(10, (3, 32, 32), 1_438, 359),
}


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of dataset ``name``."""
    key = name.lower().replace("-", "")
    if key not in DATASET_INFO:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASET_INFO[key]


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
    """Load a dataset by name: ``"cifar10"``, ``"cifar100"`` or ``"digits"``.

    ``root`` (default :func:`default_root`) and the keyword arguments apply to CIFAR and are
    documented in :func:`advaug.data.cifar.load_cifar`; ``digits`` is embedded and ignores them.
    """
    key = name.lower().replace("-", "")
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if key == "digits":
        return load_digits()
    return load_cifar(
        key,
        default_root() if root is None else root,
        download=download,
        verify=verify,
        checksums=checksums,
        check_sizes=check_sizes,
    )

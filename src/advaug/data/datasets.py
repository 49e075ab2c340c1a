"""The dataset registry: load a dataset by name (official-format CIFAR-10/100, embedded digits).

The shared types (:class:`ImageData`, :class:`Split`) and splitting live in
:mod:`advaug.data.types`.
"""

from __future__ import annotations

import os
from pathlib import Path

from advaug.data.cifar import load_cifar
from advaug.data.digits import load_digits
from advaug.data.types import ImageData
from advaug.errors import ConfigError

#: Names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "digits")


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

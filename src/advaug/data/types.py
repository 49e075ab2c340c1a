"""The data types every dataset shares, and seeded stratified splitting.

Every dataset is held as uint8 tensors ``N x C x H x W`` with int64 labels; conversion to float
[0, 1] happens on the device, in :class:`advaug.data.loader.DeviceLoader`.

Splitting is seeded and stratified, and uses a CPU :class:`torch.Generator`, so a split depends
only on the labels, the size and the seed. Indices inside every returned split keep the
dataset's original order.

This module imports nothing else from :mod:`advaug.data`, so every reader can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advaug.errors import ConfigError, DataError


def _check_xy(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    """Raise DataError unless ``x`` is uint8 N x C x H x W and ``y`` int64 of length N."""
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise DataError(
            f"{what} images must be a uint8 tensor N x C x H x W, got {x.dtype} with shape "
            f"{tuple(x.shape)}; convert with (x * 255).round().to(torch.uint8)"
        )
    if y.dtype != torch.int64 or y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise DataError(
            f"{what} labels must be an int64 vector of length {x.shape[0]}, got {y.dtype} with "
            f"shape {tuple(y.shape)}; pass y.long() with one label per image"
        )


@dataclass
class Split:
    """One split of a dataset: uint8 images ``x`` (N x 3 x H x W) and int64 labels ``y``."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        _check_xy(self.x, self.y, "split")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, n: int, seed: int) -> Split:
        """A seeded, class-balanced subset of ``n`` images (see :func:`class_balanced_subset`)."""
        return class_balanced_subset(self.x, self.y, n, seed)


@dataclass
class ImageData:
    """A whole dataset: train and test images (uint8 N x 3 x H x W), labels and class names.

    ``train_coarse``/``test_coarse``/``coarse_classes`` hold CIFAR-100's superclasses and are
    ``None`` for datasets without them.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    train_coarse: torch.Tensor | None = None
    test_coarse: torch.Tensor | None = None
    coarse_classes: list[str] | None = None

    def __post_init__(self) -> None:
        _check_xy(self.train_x, self.train_y, f"{self.name} train")
        _check_xy(self.test_x, self.test_y, f"{self.name} test")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise DataError(
                f"{self.name}: train images are {tuple(self.train_x.shape[1:])} but test images "
                f"are {tuple(self.test_x.shape[1:])}; both splits must share one image shape"
            )

    @property
    def num_classes(self) -> int:
        """Number of (fine) classes."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        c, h, w = self.train_x.shape[1:]
        return (int(c), int(h), int(w))

    def train_split(self) -> Split:
        """The training images as a :class:`Split`."""
        return Split(self.train_x, self.train_y)

    def test_split(self) -> Split:
        """The test images as a :class:`Split`."""
        return Split(self.test_x, self.test_y)


# ----------------------------------------------------------------------------- splitting


def _class_counts(y: torch.Tensor) -> torch.Tensor:
    if y.numel() and int(y.min()) < 0:
        raise DataError(f"labels must be >= 0, found {int(y.min())}; relabel classes as 0..K-1")
    return torch.bincount(y.cpu())


def proportional_counts(class_counts: list[int], n: int) -> list[int]:
    """Split ``n`` over classes in proportion to ``class_counts`` (largest remainder).

    Each class gets ``floor(n * c_k / N)`` or one more; the leftover units go to the largest
    fractional parts, ties to the lower class index. Exact integer arithmetic, no floats.
    """
    total = sum(class_counts)
    base = [n * c // total for c in class_counts]
    rema = [n * c % total for c in class_counts]
    order = sorted(range(len(class_counts)), key=lambda k: (-rema[k], k))
    for k in order[: n - sum(base)]:
        base[k] += 1
    return base


def balanced_counts(class_counts: list[int], n: int) -> list[int]:
    """Split ``n`` over classes as equally as their sizes allow (water-filling).

    Every class gets ``min(c_k, L)`` for the largest level ``L`` that fits in ``n``; the leftover
    units go, one each, to the lowest-index classes that still have images. ``n`` must not exceed
    ``sum(class_counts)``.
    """
    lo, hi = 0, max(class_counts, default=0)
    while lo < hi:  # largest L with sum(min(c, L)) <= n
        mid = (lo + hi + 1) // 2
        if sum(min(c, mid) for c in class_counts) <= n:
            lo = mid
        else:
            hi = mid - 1
    out = [min(c, lo) for c in class_counts]
    left = n - sum(out)
    for k, c in enumerate(class_counts):
        if left == 0:
            break
        if c > lo:
            out[k] += 1
            left -= 1
    return out


def _select(y: torch.Tensor, per_class: list[int], seed: int) -> torch.Tensor:
    """Sorted indices holding ``per_class[k]`` random images of each class ``k``."""
    g = torch.Generator().manual_seed(int(seed))
    y_cpu = y.cpu()
    chosen = []
    for k, m in enumerate(per_class):
        idx = torch.nonzero(y_cpu == k, as_tuple=True)[0]
        perm = torch.randperm(idx.numel(), generator=g)
        chosen.append(idx[perm[:m]])
    return torch.sort(torch.cat(chosen)).values if chosen else torch.zeros(0, dtype=torch.long)


def _resolve_size(size: int | float, n: int, what: str) -> int:
    if isinstance(size, float):
        if not 0.0 < size < 1.0:
            raise ConfigError(f"{what} as a fraction must be in (0, 1), got {size}")
        return round(size * n)
    if not 0 <= size <= n:
        raise ConfigError(f"{what}={size} is out of range for {n} images; use 0..{n}")
    return int(size)


def train_val_split(
    x: torch.Tensor, y: torch.Tensor, val_size: int | float, seed: int
) -> tuple[Split, Split]:
    """Seeded, stratified train/validation split.

    ``val_size`` is a count or a fraction in (0, 1). Each class gives the validation split its
    proportional share (:func:`proportional_counts`), so CIFAR-100's 50,000 training images with
    ``val_size=5000`` give exactly 450 train / 50 validation images per class.
    """
    _check_xy(x, y, "train_val_split")
    n_val = _resolve_size(val_size, len(y), "val_size")
    counts = _class_counts(y).tolist()
    val_idx = _select(y, proportional_counts(counts, n_val), seed)
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[val_idx] = False
    train_idx = torch.nonzero(mask, as_tuple=True)[0]
    return _take(x, y, train_idx), _take(x, y, val_idx)


def class_balanced_subset(x: torch.Tensor, y: torch.Tensor, n: int, seed: int) -> Split:
    """A seeded subset of ``n`` images with classes as equal as possible
    (:func:`balanced_counts`); e.g. 10,000 CIFAR-100 images give exactly 100 per class."""
    _check_xy(x, y, "class_balanced_subset")
    n = _resolve_size(int(n), len(y), "subset size")
    idx = _select(y, balanced_counts(_class_counts(y).tolist(), n), seed)
    return _take(x, y, idx)


def _take(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> Split:
    idx = idx.to(x.device)
    return Split(x.index_select(0, idx), y.index_select(0, idx.to(y.device)))

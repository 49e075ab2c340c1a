"""Tiny synthetic MNIST-format datasets, written as official-layout gzip IDX files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from advaug.data.idx import encode_idx
from advaug.data.mnist import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS


def class_images(labels: np.ndarray, seed: int = 0, size: int = 28) -> np.ndarray:
    """uint8 N x size x size images a tiny CNN can tell apart: class k is a bright bar at row
    band k (of 10) on a noisy dark background."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 40, (len(labels), size, size), dtype=np.uint8)
    band = size // 10
    for i, k in enumerate(labels):
        x[i, 1 + k * band : 1 + k * band + band, 3:-3] = 230
    return x


def write_gz(path: Path, raw: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(raw)
    return path


def write_mnist(folder: Path, train_per_class: int = 6, test_per_class: int = 2) -> Path:
    """The four files of a tiny balanced 10-class dataset in ``folder``; returns the folder."""
    for images, labels, n, seed in (
        (TRAIN_IMAGES, TRAIN_LABELS, train_per_class, 0),
        (TEST_IMAGES, TEST_LABELS, test_per_class, 1),
    ):
        y = np.tile(np.arange(10, dtype=np.uint8), n)
        write_gz(folder / images, encode_idx(class_images(y, seed)))
        write_gz(folder / labels, encode_idx(y))
    return folder

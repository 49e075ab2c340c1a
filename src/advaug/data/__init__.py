"""Datasets (official-format CIFAR-10/100, embedded digits), safe unpickling, stratified splits
and device-resident batching with on-device crop and flip."""

from advaug.data.cifar import CIFAR10, CIFAR100, CifarSpec, download_cifar, load_cifar
from advaug.data.datasets import (
    DATASETS,
    ImageData,
    Split,
    class_balanced_subset,
    default_root,
    load_dataset,
    train_val_split,
)
from advaug.data.digits import load_digits
from advaug.data.loader import DeviceLoader, crop_flip, ensure_fits
from advaug.data.safe_pickle import safe_load, safe_loads

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "DATASETS",
    "CifarSpec",
    "DeviceLoader",
    "ImageData",
    "Split",
    "class_balanced_subset",
    "crop_flip",
    "default_root",
    "download_cifar",
    "ensure_fits",
    "load_cifar",
    "load_dataset",
    "load_digits",
    "safe_load",
    "safe_loads",
    "train_val_split",
]

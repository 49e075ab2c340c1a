"""Datasets (official-format CIFAR-10/100, embedded digits), safe unpickling, stratified splits
and device-resident batching with on-device crop and flip."""

from advaug.data.cifar import CIFAR10, CIFAR100, CifarSpec, download_cifar, load_cifar
from advaug.data.datasets import DATASETS, default_root, load_dataset
from advaug.data.digits import load_digits
from advaug.data.loader import DeviceLoader, crop_flip, ensure_fits
from advaug.data.safe_pickle import safe_load, safe_loads
from advaug.data.splits import Splits, load_splits
from advaug.data.types import ImageData, Split, class_balanced_subset, train_val_split

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "DATASETS",
    "CifarSpec",
    "DeviceLoader",
    "ImageData",
    "Split",
    "Splits",
    "class_balanced_subset",
    "crop_flip",
    "default_root",
    "download_cifar",
    "ensure_fits",
    "load_cifar",
    "load_dataset",
    "load_digits",
    "load_splits",
    "safe_load",
    "safe_loads",
    "train_val_split",
]

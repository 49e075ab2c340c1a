"""Classifiers (DenseNet-BC, Wide/PreAct ResNets, a tiny CNN) and the model registry.

Every classifier takes NCHW images in [0, 1] (its first layer is a :class:`Normalize`) and has
``forward(x) -> logits``, ``features(x) -> penultimate features``, ``num_features`` and
``num_classes``. Build them by name with :func:`build_model`. Each model module registers its own
variants; importing this package imports them all, so every registered name is known.
"""

from advaug.models.densenet import DENSENET_SEED_SETTINGS, BatchNorm2dNoScale, DenseNet
from advaug.models.normalize import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    SEED_MEAN,
    SEED_STD,
    Normalize,
    make_normalize,
)
from advaug.models.registry import build_model, list_models, register_model
from advaug.models.resnet import PreActResNet18, WideResNet
from advaug.models.tiny import TinyCNN

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DENSENET_SEED_SETTINGS",
    "SEED_MEAN",
    "SEED_STD",
    "BatchNorm2dNoScale",
    "DenseNet",
    "Normalize",
    "PreActResNet18",
    "TinyCNN",
    "WideResNet",
    "build_model",
    "list_models",
    "make_normalize",
    "register_model",
]

"""Classifiers (DenseNet-BC, Wide/PreAct ResNets, a tiny CNN, Madry et al.'s MNIST CNN, a LeNet-5
with batch norm), the AC-GAN, and their registries.

Every classifier takes NCHW images in [0, 1] (its first layer is a :class:`Normalize`) and has
``forward(x) -> logits``, ``features(x) -> penultimate features``, ``num_features`` and
``num_classes``. Build them by name with :func:`build_model`, and a GAN's generator and critic
with :func:`build_gan`. Each model module registers its own variants; importing this package
imports them all, so every registered name is known.
"""

from advaug.models.densenet import DENSENET_SEED_SETTINGS, BatchNorm2dNoScale, DenseNet
from advaug.models.gan import Critic, Generator
from advaug.models.lenet import LeNet5BN
from advaug.models.madry import MadryCNN
from advaug.models.normalize import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    MNIST_MEAN,
    MNIST_STD,
    SEED_MEAN,
    SEED_STD,
    Normalize,
    make_normalize,
)
from advaug.models.registry import (
    build_gan,
    build_model,
    list_gans,
    list_models,
    register_gan,
    register_model,
)
from advaug.models.resnet import PreActResNet18, WideResNet
from advaug.models.tiny import TinyCNN

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "DENSENET_SEED_SETTINGS",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "MNIST_MEAN",
    "MNIST_STD",
    "SEED_MEAN",
    "SEED_STD",
    "BatchNorm2dNoScale",
    "Critic",
    "DenseNet",
    "Generator",
    "LeNet5BN",
    "MadryCNN",
    "Normalize",
    "PreActResNet18",
    "TinyCNN",
    "WideResNet",
    "build_gan",
    "build_model",
    "list_gans",
    "list_models",
    "make_normalize",
    "register_gan",
    "register_model",
]

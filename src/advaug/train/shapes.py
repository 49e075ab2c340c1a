"""The model options a dataset decides: its images' channels and size.

Like ``num_classes``, a network's input channels (and a generator's output size) come from the
dataset, not from the model's config: CIFAR is 3x32x32, MNIST and Fashion-MNIST 1x28x28
(:data:`advaug.data.datasets.DATASET_INFO`). These helpers return the overrides to pass to
``build_model`` / ``build_gan``, limited to the options the named variant takes, so a variant
built for one shape only (no such option) is left as it is.
"""

from __future__ import annotations

from typing import Any

from advaug.errors import ConfigError
from advaug.models.normalize import NORMALIZE_PRESETS
from advaug.models.registry import CLASSIFIERS, GANS


def classifier_shape_kwargs(
    model: str, image_shape: tuple[int, int, int], dataset: str, given: dict[str, Any]
) -> dict[str, Any]:
    """``in_channels`` (and ``image_size``, for a model that takes it) for classifier ``model``
    on images of ``image_shape``, and for one-channel data the dataset's own ``normalize``
    statistics (the models' default, CIFAR's 3-channel statistics, cannot apply), unless
    ``given`` (the config's kwargs) sets it."""
    channels, side = image_shape[0], image_shape[1]
    options = CLASSIFIERS.options(model)
    for name in ("in_channels", "image_size"):
        if name in given:
            raise ConfigError(
                f"classifier.model.kwargs.{name} is set by the dataset; remove it from the kwargs"
            )
    out: dict[str, Any] = {}
    if "in_channels" in options:
        out["in_channels"] = channels
    if "image_size" in options:
        out["image_size"] = side
    if (
        channels != 3
        and "normalize" in options
        and "normalize" not in given
        and dataset in NORMALIZE_PRESETS
    ):
        out["normalize"] = dataset
    return out


def gan_shape_kwargs(gan: str, image_shape: tuple[int, int, int]) -> dict[str, Any]:
    """``channels`` and ``image_size`` for GAN variant ``gan`` on images of ``image_shape``."""
    channels, height, width = image_shape
    if height != width:
        raise ConfigError(
            f"the AC-GAN makes square images, but the dataset's are {height}x{width}; use a "
            "dataset of square images"
        )
    options = GANS.options(gan)
    wanted = {"channels": channels, "image_size": height}
    return {k: v for k, v in wanted.items() if k in options}

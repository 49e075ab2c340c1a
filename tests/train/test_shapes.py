"""The model options a dataset decides (input channels, image size, 1-channel statistics)."""

from __future__ import annotations

import pytest
import torch

from advaug.errors import ConfigError
from advaug.train.shapes import classifier_shape_kwargs, gan_shape_kwargs


def test_classifier_options_follow_the_images():
    assert classifier_shape_kwargs("tiny-cnn", (1, 28, 28), "mnist", {}) == {
        "in_channels": 1,
        "normalize": "mnist",
    }
    # 3-channel data keep the models' own normalize default, as before
    assert classifier_shape_kwargs("tiny-cnn", (3, 32, 32), "cifar10", {}) == {"in_channels": 3}
    # a normalize the config sets wins
    given = {"normalize": "seed"}
    assert classifier_shape_kwargs("tiny-cnn", (1, 28, 28), "mnist", given) == {"in_channels": 1}
    # a dataset without a preset of its name keeps the model's default (which then must fit)
    assert classifier_shape_kwargs("tiny-cnn", (1, 28, 28), "mine", {}) == {"in_channels": 1}
    with pytest.raises(ConfigError, match="in_channels is set by the dataset"):
        classifier_shape_kwargs("tiny-cnn", (1, 28, 28), "mnist", {"in_channels": 3})


def test_models_with_a_fixed_input_side_get_the_datas():
    """LeNet-5 and Madry et al.'s CNN size their first FC layer from the side: MNIST's 28, or
    the embedded digits' 32 (the demo's fallback)."""
    from advaug.models import build_model

    assert classifier_shape_kwargs("lenet5-bn", (3, 32, 32), "digits", {}) == {
        "in_channels": 3,
        "image_size": 32,
    }
    assert classifier_shape_kwargs("madry-mnist", (1, 28, 28), "mnist", {}) == {
        "in_channels": 1,
        "image_size": 28,
        "normalize": "mnist",
    }
    net = build_model("lenet5-bn", 10, **classifier_shape_kwargs("lenet5-bn", (3, 32, 32), "d", {}))
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="image_size is set by the dataset"):
        classifier_shape_kwargs("lenet5-bn", (1, 28, 28), "mnist", {"image_size": 32})


def test_gan_options_follow_the_images():
    assert gan_shape_kwargs("acgan", (1, 28, 28)) == {"channels": 1, "image_size": 28}
    assert gan_shape_kwargs("acgan", (3, 32, 32)) == {"channels": 3, "image_size": 32}
    with pytest.raises(ConfigError, match="square images"):
        gan_shape_kwargs("acgan", (1, 28, 32))


def test_variants_without_the_options_get_none(monkeypatch):
    """A variant built for one shape only (no such option) is left as it is."""
    import advaug.train.shapes as shapes

    monkeypatch.setattr(shapes.CLASSIFIERS, "options", lambda name: ["width"])
    monkeypatch.setattr(shapes.GANS, "options", lambda name: ["width"])
    assert classifier_shape_kwargs("fixed", (1, 28, 28), "mnist", {}) == {}
    assert gan_shape_kwargs("fixed", (1, 28, 28)) == {}

"""The 28x28 classifiers: Madry et al.'s MNIST CNN and the LeNet-5 reference, their parameter
counts against the published figures (computed by hand from the layer shapes), the classifier
interface on 1x28x28 inputs, and one-line errors."""

from __future__ import annotations

import doctest

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advaug.errors import ConfigError
from advaug.models import LeNet5BN, MadryCNN, Normalize, build_model, lenet, madry, make_normalize

NAMES = ["madry-mnist", "lenet5-bn"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_madry_cnn_has_the_published_parameter_count():
    """conv1 5·5·1·32 + 32; conv2 5·5·32·64 + 64; FC 7·7·64·1024 + 1024 (two 2x2 pools of a
    same-padded 28x28 leave 7x7); FC 1024·10 + 10."""
    conv1 = 5 * 5 * 1 * 32 + 32
    conv2 = 5 * 5 * 32 * 64 + 64
    fc1 = 7 * 7 * 64 * 1024 + 1024
    fc2 = 1024 * 10 + 10
    assert (conv1, conv2, fc1, fc2) == (832, 51_264, 3_212_288, 10_250)
    assert n_params(build_model("madry-mnist", num_classes=10)) == 3_274_634
    assert conv1 + conv2 + fc1 + fc2 == 3_274_634


def test_madry_cnn_layers_are_the_papers():
    net = build_model("madry-mnist", num_classes=10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 32, (5, 5), (2, 2)),
        (32, 64, (5, 5), (2, 2)),
    ]
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 2
    assert net.num_features == 1024
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    # raw [0, 1] pixels, as Madry et al. feed them
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(net.normalize(x), x)


def test_lenet_parameter_count():
    """Fully connected LeNet-5 with biases: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706 (LeCun
    et al. 1998 report about 60,000 for the sparsely wired original). Batch norm replaces the
    6 + 16 + 120 + 84 = 226 hidden biases by 2 · 226 affine parameters."""
    plain = (25 * 6 + 6) + (6 * 25 * 16 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert plain == 61_706
    assert n_params(build_model("lenet5-bn", num_classes=10)) == plain + 226 == 61_932


@pytest.mark.parametrize("name", NAMES)
def test_classifier_interface_on_grey_28x28(name: str):
    torch.manual_seed(0)
    model = build_model(name, num_classes=7).eval()
    assert isinstance(next(iter(model.children())), Normalize)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        feats, logits = model.features(x), model(x)
    assert feats.shape == (3, model.num_features) and logits.shape == (3, 7)
    torch.testing.assert_close(logits, model.fc(feats))
    again = build_model(model.arch_name, **model.arch_kwargs)
    assert again.arch_kwargs == model.arch_kwargs


@pytest.mark.parametrize("name", NAMES)
def test_the_wrong_image_shape_is_one_line(name: str):
    model = build_model(name, num_classes=10)
    with pytest.raises(ConfigError, match=r"built for images \(1, 28, 28\), got \(3, 32, 32\)"):
        model(torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=6, deadline=None)
@given(channels=st.integers(1, 3), side=st.sampled_from([28, 32]), k=st.integers(2, 12))
def test_other_channels_and_sizes_build_and_run(name: str, channels: int, side: int, k: int):
    model = build_model(name, num_classes=k, in_channels=channels, image_size=side).eval()
    with torch.no_grad():
        assert model(torch.rand(2, channels, side, side)).shape == (2, k)


@pytest.mark.parametrize(
    ("name", "bad"),
    [("madry-mnist", {"image_size": 30}), ("madry-mnist", {"in_channels": 0}),
     ("lenet5-bn", {"width": 0}), ("lenet5-bn", {"image_size": 8})],
)  # fmt: skip
def test_bad_options_are_one_line_config_errors(name: str, bad: dict):
    with pytest.raises(ConfigError) as info:
        build_model(name, num_classes=10, **bad)
    assert "\n" not in str(info.value)


def test_lenet_trains_on_a_tiny_separable_problem():
    """A few SGD steps fit 64 grey images whose class is the bright quadrant."""
    torch.manual_seed(0)
    y = torch.arange(64) % 4
    x = torch.zeros(64, 1, 28, 28)
    for i, c in enumerate(y.tolist()):
        r, q = divmod(c, 2)
        x[i, 0, 14 * r : 14 * r + 14, 14 * q : 14 * q + 14] = 1.0
    x = (x + 0.2 * torch.rand_like(x)).clamp(0, 1)
    net = LeNet5BN(num_classes=4)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        assert (net(x).argmax(1) == y).float().mean() == 1.0


def test_mnist_normalize_presets_are_one_channel():
    for spec, mean, std in (("mnist", 0.1307, 0.3081), ("fashion-mnist", 0.2860, 0.3530)):
        norm = make_normalize(spec)
        assert norm.mean.shape == (1, 1, 1, 1)
        assert norm.mean.item() == pytest.approx(mean) and norm.std.item() == pytest.approx(std)
    x = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(make_normalize("identity")(x), x)


@pytest.mark.parametrize("module", [madry, lenet], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_classes_are_exported():
    assert MadryCNN is madry.MadryCNN and LeNet5BN is lenet.LeNet5BN

"""Wide ResNet and PreAct ResNet-18: exact parameter counts, block semantics, layouts, learning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advaug.errors import ConfigError
from advaug.models.normalize import Normalize
from advaug.models.resnet import PreActBlock, PreActResNet18, WideResNet


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def block_params(cin: int, cout: int, projection: bool) -> int:
    """BN(cin) + 3x3 conv + BN(cout) + 3x3 conv (+ 1x1 projection shortcut)."""
    return 2 * cin + 9 * cin * cout + 2 * cout + 9 * cout * cout + (cin * cout if projection else 0)


def expected_wrn(depth: int, w: int, classes: int) -> int:
    n = (depth - 4) // 6
    total, cin = 3 * 16 * 9, 16
    for cout in (16 * w, 32 * w, 64 * w):
        for i in range(n):
            total += block_params(cin, cout, projection=(i == 0 and (cin != cout or cout > 16 * w)))
            cin = cout
    return total + 2 * cin + cin * classes + classes


def test_wrn_16_4_parameter_count() -> None:
    """WRN-16-4, 100 classes: 2,772,020 parameters (published ~2.7M).

    n = 2 blocks per stage; block(cin, cout) = 2cin + 9 cin cout + 2cout + 9 cout^2 [+ cin cout].
    - stem 3x3 3 -> 16: 432
    - stage 1 (64): block(16, 64) + proj = 32 + 9216 + 128 + 36864 + 1024 = 47,264;
      block(64, 64) = 128 + 36864 + 128 + 36864 = 73,984
    - stage 2 (128): block(64, 128) + proj = 128 + 73728 + 256 + 147456 + 8192 = 229,760;
      block(128, 128) = 256 + 147456 + 256 + 147456 = 295,424
    - stage 3 (256): block(128, 256) + proj = 256 + 294912 + 512 + 589824 + 32768 = 918,272;
      block(256, 256) = 512 + 589824 + 512 + 589824 = 1,180,672
    - head: BN(256) 512 + Linear 256 * 100 + 100 = 25,700 -> 26,212
    Total 432 + 47,264 + 73,984 + 229,760 + 295,424 + 918,272 + 1,180,672 + 26,212 = 2,772,020.
    """
    model = WideResNet(depth=16, widen_factor=4, num_classes=100)
    assert n_params(model) == 2_772_020 == expected_wrn(16, 4, 100)
    assert model.num_features == 256


def test_wrn_28_10_parameter_count() -> None:
    """WRN-28-10: 36,536,884 parameters for 100 classes (36,479,194 for 10; published 36.5M)."""
    model = WideResNet(depth=28, widen_factor=10, num_classes=100)
    assert n_params(model) == 36_536_884 == expected_wrn(28, 10, 100)
    # Only the head depends on the class count: 90 fewer classes remove 90 * (640 + 1) params.
    assert 36_536_884 - 90 * 641 == 36_479_194
    assert model.num_features == 640


def test_preact_resnet18_parameter_count() -> None:
    """PreAct ResNet-18, 100 classes: 11,218,340 parameters (published ~11.2M).

    stem 3x3 3 -> 64: 1,728. Stages (64, 128, 256, 512), two blocks each, the first block of
    stages 2-4 with stride 2 and a 1x1 projection:
    - stage 1: 2 * block(64, 64) = 2 * 73,984 = 147,968
    - stage 2: block(64, 128) + proj 229,760 + block(128, 128) 295,424 = 525,184
    - stage 3: block(128, 256) + proj 918,272 + block(256, 256) 1,180,672 = 2,098,944
    - stage 4: block(256, 512) = 512 + 1,179,648 + 1,024 + 2,359,296 + 131,072 = 3,671,552;
      block(512, 512) = 1,024 + 2,359,296 + 1,024 + 2,359,296 = 4,720,640
    - head: BN(512) 1,024 + Linear 512 * 100 + 100 = 51,300 -> 52,324
    Total 11,218,340.
    """
    model = PreActResNet18(num_classes=100)
    assert n_params(model) == 11_218_340
    assert model.num_features == 512


@settings(max_examples=15, deadline=None)
@given(
    blocks=st.integers(1, 3), w=st.integers(1, 3), classes=st.integers(1, 20), drop=st.booleans()
)
def test_wrn_parameter_count_matches_the_layout_formula(
    blocks: int, w: int, classes: int, drop: bool
) -> None:
    depth = 4 + 6 * blocks
    model = WideResNet(depth=depth, widen_factor=w, num_classes=classes, dropout=0.3 * drop)
    assert n_params(model) == expected_wrn(depth, w, classes)


def test_identity_block_is_exact_identity_when_its_residual_is_zero() -> None:
    torch.manual_seed(0)
    block = PreActBlock(4, 4).eval()
    assert block.shortcut is None
    nn.init.zeros_(block.conv2.weight)
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(block(x), x)


def test_projection_block_projects_the_preactivated_input() -> None:
    torch.manual_seed(0)
    block = PreActBlock(4, 6, stride=2).eval()
    assert isinstance(block.shortcut, nn.Conv2d) and block.shortcut.stride == (2, 2)
    nn.init.zeros_(block.conv2.weight)
    with torch.no_grad():
        block.norm1.running_mean.uniform_(-1, 1)
        block.norm1.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 4, 6, 6)
    pre = F.relu(
        (x - block.norm1.running_mean.view(1, 4, 1, 1))
        / torch.sqrt(block.norm1.running_var.view(1, 4, 1, 1) + block.norm1.eps)
    )
    hand = F.conv2d(pre, block.shortcut.weight, stride=2)
    out = block(x)
    assert out.shape == (2, 6, 3, 3)
    torch.testing.assert_close(out, hand, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["wrn", "preact"])
def test_shapes_features_and_first_layer(arch: str) -> None:
    torch.manual_seed(0)
    if arch == "wrn":
        model = WideResNet(depth=10, widen_factor=2, num_classes=7).eval()
    else:
        model = PreActResNet18(num_classes=7).eval()
    assert isinstance(next(iter(model.children())), Normalize)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        feats = model.features(x)
        logits = model(x)
    assert feats.shape == (2, model.num_features)
    assert logits.shape == (2, 7) and model.num_classes == 7
    torch.testing.assert_close(logits, model.fc(feats))
    assert (feats >= 0).all()


def test_wrn_dropout_only_in_train_mode() -> None:
    torch.manual_seed(0)
    model = WideResNet(depth=10, widen_factor=1, dropout=0.5, num_classes=3)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 3
    x = torch.rand(4, 3, 8, 8)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


def test_channels_last_forward_equals_contiguous() -> None:
    torch.manual_seed(0)
    model = WideResNet(depth=10, widen_factor=2, num_classes=5).eval()
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"depth": 20}, "depth 20"),
        ({"widen_factor": 0}, "widen_factor"),
        ({"dropout": -0.1}, "dropout"),
        ({"num_classes": 0}, "num_classes"),
        ({"normalize": "imagenet"}, "imagenet"),
    ],
)
def test_invalid_settings_raise_config_error(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        WideResNet(**{"depth": 10, "widen_factor": 1, **kwargs})

"""DenseNet-BC: exact parameter counts, layer semantics, seed options, layouts, learning."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advaug.errors import ConfigError
from advaug.models.densenet import BatchNorm2dNoScale, DenseNet


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bn_gammas(model: nn.Module) -> int:
    return sum(
        m.weight.numel()
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d) and m.weight is not None
    )


def expected_count(
    depth: int, k: int, theta: float, bottleneck: bool, classes: int, scale: bool = True
) -> tuple[int, int]:
    """Independent count from the paper's layout: (parameters, BN channels)."""
    n = (depth - 4) // (6 if bottleneck else 3)
    c = 2 * k if bottleneck and theta < 1 else 16
    g = 2 if scale else 1  # BN parameters per channel: gamma + beta, or beta only
    params, bn = 3 * c * 9, 0
    for block in range(3):
        for _ in range(n):
            if bottleneck:
                params += g * c + c * 4 * k + g * 4 * k + 4 * k * k * 9
                bn += c + 4 * k
            else:
                params += g * c + c * k * 9
                bn += c
            c += k
        if block < 2:
            out = math.floor(theta * c)
            params += g * c + c * out
            bn += c
            c = out
    params += g * c + c * classes + classes
    return params, bn + c


def test_densenet_bc100_k12_has_the_published_800k_parameters() -> None:
    """DenseNet-BC-100, k = 12, 100 classes: 800,032 parameters (published "0.8M").

    N = (100 - 4) / 6 = 16 bottleneck layers per block. A dense layer with c input channels has
    BN(c) 2c + 1x1 conv c*48 + BN(48) 96 + 3x3 conv 48*12*9 = 5184, i.e. 50c + 5280.
    Over one block c = c0, c0 + 12, ..., c0 + 180, so sum(c) = 16 c0 + 12 * 120 = 16 c0 + 1440.
    - stem: 3x3 conv 3 -> 24: 3 * 24 * 9 = 648
    - block 1 (c0 = 24): 50 * (384 + 1440) + 16 * 5280 = 91,200 + 84,480 = 175,680; ends at 216
    - transition 1: BN(216) 432 + conv 216 * 108 = 23,328 -> 23,760
    - block 2 (c0 = 108): 50 * (1728 + 1440) + 84,480 = 242,880; ends at 300
    - transition 2: BN(300) 600 + conv 300 * 150 = 45,000 -> 45,600
    - block 3 (c0 = 150): 50 * (2400 + 1440) + 84,480 = 276,480; ends at 342
    - head: BN(342) 684 + Linear 342 * 100 + 100 = 34,300 -> 34,984
    Total 648 + 175,680 + 23,760 + 242,880 + 45,600 + 276,480 + 34,984 = 800,032.
    BN channels (one gamma each): blocks (1824 + 768) + (3168 + 768) + (3840 + 768) + 216 + 300
    + 342 = 11,994, so the seed variant without gamma has 800,032 - 11,994 = 788,038.
    """
    modern = DenseNet(depth=100, growth_rate=12, num_classes=100)
    assert n_params(modern) == 800_032
    assert bn_gammas(modern) == 11_994
    assert modern.num_features == 342
    seed = DenseNet(depth=100, growth_rate=12, num_classes=100, bn_scale=False)
    assert n_params(seed) == 800_032 - 11_994 == 788_038
    assert bn_gammas(seed) == 0


def test_densenet_bc40_k12_parameter_count() -> None:
    """DenseNet-BC-40, k = 12, 100 classes: 188,092 parameters.

    N = 6, a layer is 50c + 5280 as above, sum(c) over a block = 6 c0 + 12 * 15 = 6 c0 + 180.
    stem 648; block 1 (c0 24) 50 * 324 + 31,680 = 47,880 -> 96; transition 192 + 96 * 48 = 4,800;
    block 2 (c0 48) 50 * 468 + 31,680 = 55,080 -> 120; transition 240 + 120 * 60 = 7,440;
    block 3 (c0 60) 50 * 540 + 31,680 = 58,680 -> 132; head 264 + 132 * 100 + 100 = 13,564.
    Total 188,092.
    """
    model = DenseNet(depth=40, growth_rate=12, num_classes=100)
    assert n_params(model) == 188_092 == expected_count(40, 12, 0.5, True, 100)[0]
    assert model.num_features == 132


def test_densenet_bc190_k40_parameter_count() -> None:
    """DenseNet-BC-190, k = 40: 25,821,620 parameters by the same bookkeeping.

    The DenseNet paper rounds its count to "25.6M"; the exact count of the layout it describes
    (stem 80 channels, 31 bottleneck layers per block, floor(0.5 C) transitions, 2190 final
    channels) is 25.82M, as ANCHORS.md section C also derives.
    """
    model = DenseNet(depth=190, growth_rate=40, num_classes=100)
    assert n_params(model) == 25_821_620 == expected_count(190, 40, 0.5, True, 100)[0]
    assert model.num_features == 2190


@settings(max_examples=25, deadline=None)
@given(
    blocks=st.integers(1, 3),
    k=st.integers(3, 12),
    theta=st.sampled_from([0.5, 0.3, 1.0]),
    bottleneck=st.booleans(),
    classes=st.integers(1, 20),
    scale=st.booleans(),
)
def test_parameter_count_matches_the_layout_formula(
    blocks: int, k: int, theta: float, bottleneck: bool, classes: int, scale: bool
) -> None:
    depth = 4 + blocks * (6 if bottleneck else 3)
    model = DenseNet(
        depth=depth,
        growth_rate=k,
        compression=theta,
        bottleneck=bottleneck,
        num_classes=classes,
        bn_scale=scale,
    )
    params, bn_channels = expected_count(depth, k, theta, bottleneck, classes, scale)
    assert n_params(model) == params
    assert bn_gammas(model) == (bn_channels if scale else 0)


def test_stem_width_is_2k_for_bc_and_16_otherwise() -> None:
    assert DenseNet(depth=10, growth_rate=5).stem.out_channels == 10
    assert DenseNet(depth=10, growth_rate=5, bottleneck=False).stem.out_channels == 16
    assert DenseNet(depth=10, growth_rate=5, compression=1.0).stem.out_channels == 16
    # N = (10 - 4) / 3 = 2 plain layers per block without bottleneck, 1 with it.
    assert len(DenseNet(depth=10, growth_rate=5, bottleneck=False).block1) == 2
    assert len(DenseNet(depth=10, growth_rate=5).block1) == 1


def test_shapes_and_features_feed_the_linear_head() -> None:
    torch.manual_seed(0)
    # depth 10, k 4: stem 8 -> block 12 -> trans 6 -> block 10 -> trans 5 -> block 9.
    model = DenseNet(depth=10, growth_rate=4, num_classes=7).eval()
    assert model.num_features == 9 and model.num_classes == 7
    x = torch.rand(3, 3, 8, 8)
    feats = model.features(x)
    logits = model(x)
    assert feats.shape == (3, 9)
    assert logits.shape == (3, 7)
    torch.testing.assert_close(logits, model.fc(feats))
    assert (feats >= 0).all()  # pooled after the final ReLU


def test_normalize_is_the_first_layer() -> None:
    modern = DenseNet(depth=10, growth_rate=4)
    seed = DenseNet(depth=10, growth_rate=4, normalize="seed")
    assert next(iter(modern.children())) is modern.normalize
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    torch.testing.assert_close(seed.normalize(x)[0, :, 0, 0], torch.tensor([-1.0, 0.0, 1.0]))


def test_no_scale_batchnorm_matches_hand_computation_and_tf_momentum() -> None:
    torch.manual_seed(0)
    bn = BatchNorm2dNoScale(3, eps=1e-3, momentum=0.01)
    assert bn.weight is None
    assert [name for name, _ in bn.named_parameters()] == ["bias"]
    assert set(bn.state_dict()) == {"bias", "running_mean", "running_var", "num_batches_tracked"}
    with torch.no_grad():
        bn.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.randn(4, 3, 5, 5) * 3 + 1
    out = bn(x)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    hand = (x - mean) / torch.sqrt(var + 1e-3) + bn.bias.view(1, 3, 1, 1)
    torch.testing.assert_close(out, hand, rtol=1e-4, atol=1e-4)
    # TF decay 0.99 == PyTorch momentum 0.01: running = 0.99 * old + 0.01 * batch (unbiased var).
    torch.testing.assert_close(bn.running_mean, 0.01 * mean.flatten())
    unbiased = x.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(bn.running_var, 0.99 * torch.ones(3) + 0.01 * unbiased)
    out.sum().backward()
    assert bn.bias.grad is not None


def test_seed_options_have_no_gamma_and_tf_batchnorm_settings() -> None:
    model = DenseNet(depth=10, growth_rate=4, bn_scale=False, bn_momentum=0.01, bn_eps=1e-3)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(isinstance(m, BatchNorm2dNoScale) for m in bns)
    assert all(m.momentum == 0.01 and m.eps == 1e-3 for m in bns)
    assert not any(key.endswith("norm1.weight") for key in model.state_dict())
    modern = DenseNet(depth=10, growth_rate=4)
    assert not any(isinstance(m, BatchNorm2dNoScale) for m in modern.modules())


def _transition_outputs(transition_relu: bool) -> torch.Tensor:
    torch.manual_seed(0)
    model = DenseNet(depth=10, growth_rate=4, transition_relu=transition_relu).eval()
    seen: list[torch.Tensor] = []
    model.trans1.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        model(torch.rand(4, 3, 8, 8))
    return seen[0]


def test_transition_relu_only_when_asked() -> None:
    # The pooled transition output is non-negative iff a ReLU follows the transition conv.
    assert (_transition_outputs(True) >= 0).all()
    assert (_transition_outputs(False) < 0).any()
    assert not any(name.endswith("relu_after") for name, _ in DenseNet(depth=10).named_modules())


def test_dropout_is_active_only_in_train_mode() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 3, 8, 8)
    model = DenseNet(depth=10, growth_rate=4, dropout=0.5)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 3 * 2 + 2  # two per bottleneck layer (1 per block) + one per transition
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))
    plain = DenseNet(depth=10, growth_rate=4, dropout=0.0).train()
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    torch.testing.assert_close(plain(x), plain(x))  # batch statistics are deterministic


def test_channels_last_forward_equals_contiguous() -> None:
    torch.manual_seed(0)
    model = DenseNet(depth=16, growth_rate=6, num_classes=5).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last))
        feats = model_cl.features(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    assert feats.shape == (2, model.num_features)
    model_cl.train()
    model_cl(x.contiguous(memory_format=torch.channels_last)).sum().backward()


def test_glorot_and_kaiming_init_follow_their_formulas() -> None:
    torch.manual_seed(0)
    glorot = DenseNet(depth=40, growth_rate=12, init="glorot", normalize="seed")
    conv = glorot.block3[0].conv2  # 3x3, 48 -> 12: fan_in 432, fan_out 108
    bound = math.sqrt(6.0 / (48 * 9 + 12 * 9))
    assert conv.weight.abs().max() <= bound
    assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    fc_bound = math.sqrt(6.0 / (132 + 100))
    assert glorot.fc.weight.abs().max() <= fc_bound
    assert (glorot.fc.bias == 0).all()

    kaiming = DenseNet(depth=40, growth_rate=12)
    w = kaiming.block3[0].conv2.weight  # He normal, fan_out = 12 * 9
    assert w.std().item() == pytest.approx(math.sqrt(2.0 / 108), rel=0.1)
    assert (kaiming.norm_final.weight == 1).all() and (kaiming.norm_final.bias == 0).all()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"depth": 101}, "depth 101"),
        ({"depth": 12, "bottleneck": False}, "multiple of 3"),
        ({"depth": 10, "growth_rate": 1, "compression": 0.1}, "no channels"),
        ({"growth_rate": 0}, "growth_rate"),
        ({"compression": 0.0}, "compression"),
        ({"dropout": 1.0}, "dropout"),
        ({"init": "xavier"}, "xavier"),
        ({"normalize": "imagenet"}, "imagenet"),
        ({"bn_momentum": 0.0}, "bn_momentum"),
    ],
)
def test_invalid_settings_raise_config_error(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        DenseNet(**kwargs)

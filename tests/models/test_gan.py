"""AC-GAN generator and critic: shapes, ranges, conditioning, BN statistics, init, presets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advaug.errors import ConfigError
from advaug.models.gan import (
    SEED_GAN,
    SONG_GAN,
    Critic,
    Generator,
    make_gan,
    recompute_standing_stats,
    sample,
)

K = 5
Z = 8
W = 8


def tiny_g(**kw) -> Generator:
    torch.manual_seed(0)
    return Generator(**{"z_dim": Z, "width": W, "num_classes": K, **kw})


def tiny_d(**kw) -> Critic:
    torch.manual_seed(0)
    return Critic(**{"width": W, "num_classes": K, **kw})


def randomise_cbn(g: Generator) -> None:
    """Give the per-class γ/β tables distinct values so the class matters."""
    torch.manual_seed(1)
    for name, p in g.named_parameters():
        if "gamma" in name or "beta" in name:
            with torch.no_grad():
                p.add_(torch.randn_like(p) * 0.5)


def test_generator_shape_range_and_tanh_mapping():
    g = tiny_g()
    seen = {}
    g.conv_out.register_forward_hook(lambda m, i, o: seen.setdefault("pre", o))
    z, y = torch.randn(6, Z), torch.arange(6) % K
    x = g(z, y).detach()
    assert x.shape == (6, 3, 32, 32)
    assert x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    torch.testing.assert_close(x, (torch.tanh(seen["pre"]) + 1) / 2)


def test_class_enters_only_through_cbn_at_init_then_changes_output():
    g = tiny_g().eval()
    z = torch.randn(1, Z).repeat(2, 1)
    y = torch.tensor([0, 3])
    x = g(z, y)
    # γ = 1, β = 0 for every class at init and no one-hot concat: the label cannot matter yet
    torch.testing.assert_close(x[0], x[1])
    randomise_cbn(g)
    x = g(z, y)
    assert (x[0] - x[1]).abs().max() > 1e-3


def test_concat_onehot_conditions_from_init():
    g = tiny_g(concat_onehot=True).eval()
    assert g.linear.in_features == Z + K
    z = torch.randn(1, Z).repeat(2, 1)
    x = g(z, torch.tensor([0, 3]))
    assert (x[0] - x[1]).abs().max() > 1e-4


def test_running_stats_make_eval_samples_independent_of_companions():
    g = tiny_g(bn_stats="running")
    randomise_cbn(g)
    g.train()
    for _ in range(3):  # put some non-trivial running statistics in place
        g(torch.randn(16, Z), torch.randint(K, (16,)))
    g.eval()
    z, y = torch.randn(8, Z), torch.randint(K, (8,))
    together = g(z, y)
    alone = torch.cat([g(z[i : i + 1], y[i : i + 1]) for i in range(8)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    # through sample() with any batch size, too
    torch.testing.assert_close(sample(g, y, z=z, batch_size=3), together, atol=1e-5, rtol=1e-4)


def test_batch_stats_make_samples_depend_on_companions_and_leave_running_stats():
    g = tiny_g(bn_stats="batch")
    randomise_cbn(g)
    g.eval()
    before = g.bn_out.running_mean.clone()
    z, y = torch.randn(8, Z), torch.randint(K, (8,))
    together = g(z, y)
    other = g(torch.cat([z[:1], torch.randn(7, Z) * 3]), torch.cat([y[:1], y[1:]]))
    assert (together[0] - other[0]).abs().max() > 1e-3
    torch.testing.assert_close(g.bn_out.running_mean, before)  # eval never updates running stats


def test_train_mode_updates_running_stats_in_both_modes():
    for mode in ("running", "batch"):
        g = tiny_g(bn_stats=mode).train()
        g(torch.randn(16, Z), torch.randint(K, (16,)))
        assert int(g.bn_out.num_batches_tracked) == 1
        assert g.bn_out.running_mean.abs().sum() > 0


def test_bn_stats_switch_after_construction():
    g = tiny_g(bn_stats="batch")
    g.bn_stats = "running"
    assert g.arch_kwargs["bn_stats"] == "running"
    g.eval()
    z, y = torch.randn(4, Z), torch.randint(K, (4,))
    torch.testing.assert_close(g(z, y)[:1], g(z[:1], y[:1]), atol=1e-5, rtol=1e-4)
    with pytest.raises(ConfigError):
        g.bn_stats = "bogus"  # type: ignore[assignment]


def test_standing_stats_are_cumulative_average_of_batch_stats():
    g = tiny_g()
    g.train()
    g(torch.randn(16, Z) * 5, torch.randint(K, (16,)))  # stale statistics to be replaced
    bn = g.blocks[1].bn1.bn  # an inner CBN: its input depends on z, y and the earlier layers
    seen: list[torch.Tensor] = []
    bn.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach().clone()))
    g.eval()
    momentum = bn.momentum
    recompute_standing_stats(
        g, num_batches=4, batch_size=6, generator_rng=torch.Generator().manual_seed(3)
    )
    assert not g.training and bn.momentum == momentum
    assert len(seen) == 4
    means = torch.stack([s.mean(dim=(0, 2, 3)) for s in seen])
    vars_ = torch.stack([s.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for s in seen])
    torch.testing.assert_close(bn.running_mean, means.mean(0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(bn.running_var, vars_.mean(0), atol=1e-5, rtol=1e-4)
    assert int(bn.num_batches_tracked) == 4


def test_standing_stats_reproducible_with_rng():
    g = tiny_g()
    recompute_standing_stats(g, 2, 4, generator_rng=torch.Generator().manual_seed(0))
    a = g.bn_out.running_var.clone()
    recompute_standing_stats(g, 2, 4, generator_rng=torch.Generator().manual_seed(0))
    torch.testing.assert_close(g.bn_out.running_var, a)


def _check_uniform_init(layer: nn.Module, c: float) -> None:
    w = layer.weight.detach()
    if isinstance(layer, nn.Conv2d):
        area = layer.kernel_size[0] * layer.kernel_size[1]
        fan_in, fan_out = layer.in_channels * area, layer.out_channels * area
    else:
        fan_in, fan_out = layer.in_features, layer.out_features
    sigma = math.sqrt(c / (fan_in + fan_out))
    assert float(w.abs().max()) <= math.sqrt(3) * sigma + 1e-7
    # uniform(±√3σ) has standard deviation σ; big layers pin it down to a few percent
    assert abs(float(w.std()) / sigma - 1) < 0.1
    assert float(layer.bias.detach().abs().max()) == 0.0


def test_init_ranges_match_tflib():
    torch.manual_seed(0)
    g = Generator(z_dim=32, width=32, num_classes=K)
    for block in g.blocks:
        _check_uniform_init(block.conv1, 4.0)
        _check_uniform_init(block.conv2, 4.0)
        _check_uniform_init(block.shortcut, 2.0)
        assert torch.equal(block.bn1.gamma.weight, torch.ones(K, 32))
        assert torch.equal(block.bn1.beta.weight, torch.zeros(K, 32))
    _check_uniform_init(g.conv_out, 2.0)
    _check_uniform_init(g.linear, 2.0)
    d = Critic(width=32, num_classes=K)
    first = d.blocks[0]
    _check_uniform_init(first.conv1, 4.0)
    _check_uniform_init(first.conv2, 4.0)
    _check_uniform_init(d.blocks[1].conv1, 4.0)
    _check_uniform_init(d.blocks[1].shortcut, 2.0)
    _check_uniform_init(d.ac_head, 2.0)


def test_critic_shapes_input_mapping_and_no_norm_layers():
    d = tiny_d()
    seen = {}
    d.blocks[0].conv1.register_forward_pre_hook(lambda m, inp: seen.setdefault("x", inp[0]))
    x = torch.rand(3, 3, 32, 32)
    score, logits = d(x)
    assert score.shape == (3,) and logits.shape == (3, K)
    torch.testing.assert_close(seen["x"], 2 * x - 1)
    norms = (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)
    assert not any(isinstance(m, norms) for m in d.modules())
    assert d.features(x).shape == (3, W)


def test_critic_is_per_sample():
    d = tiny_d().eval()
    x = torch.rand(4, 3, 32, 32)
    s_all, l_all = d(x)
    s_one, l_one = d(x[2:3])
    torch.testing.assert_close(s_all[2:3], s_one, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(l_all[2:3], l_one, atol=1e-5, rtol=1e-4)


def test_ac_dropout_only_on_ac_head_and_only_in_train_mode():
    d = tiny_d(ac_dropout=0.5).train()
    x = torch.rand(4, 3, 32, 32)
    torch.manual_seed(0)
    s1, l1 = d(x)
    torch.manual_seed(1)
    s2, l2 = d(x)
    torch.testing.assert_close(s1, s2)
    assert (l1 - l2).abs().max() > 1e-4
    d.eval()
    torch.testing.assert_close(d(x)[1], d(x)[1])


def test_spectral_norm_wraps_every_layer_and_normalises():
    d = tiny_d(spectral_norm=True).train()
    layers = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 12  # 3 + 3 + 2 + 2 convs (shortcuts included) and 2 heads
    assert all(hasattr(m, "parametrizations") for m in layers)
    x = torch.rand(2, 3, 32, 32)
    for _ in range(30):  # power iterations run on each train-mode forward
        d(x)
    d.eval()
    w = d.ac_head.weight.detach()
    assert abs(float(torch.linalg.matrix_norm(w, ord=2)) - 1) < 1e-2


def test_arch_kwargs_rebuild_same_state_dict():
    for cls, kw in (
        (Generator, SONG_GAN["generator"]),
        (Critic, {"width": 8, "spectral_norm": True}),
    ):
        kw = {**kw, "width": 8} if cls is Generator else kw
        a = cls(**kw)
        b = cls(**a.arch_kwargs)
        assert a.arch_name == b.arch_name
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(sa[k].shape == sb[k].shape for k in sa)


def test_presets():
    g_kw, d_kw = SEED_GAN["generator"], SEED_GAN["critic"]
    assert (g_kw["z_dim"], g_kw["width"], g_kw["concat_onehot"], g_kw["bn_stats"]) == (
        256,
        256,
        False,
        "batch",
    )
    assert d_kw["ac_dropout"] == 0.5
    assert SONG_GAN["generator"]["z_dim"] == 128 and SONG_GAN["generator"]["concat_onehot"]
    g, d = make_gan(SONG_GAN, width=8, num_classes=K, ac_dropout=0.25)
    assert g.z_dim == 128 and g.num_classes == K and d.num_classes == K
    assert g.width == 8 and d.width == 8 and d.arch_kwargs["ac_dropout"] == 0.25
    assert g.linear.in_features == 128 + K
    with pytest.raises(ConfigError):
        make_gan(SEED_GAN, depth=3)


def test_sample_restores_mode_is_reproducible_and_checks_z():
    g = tiny_g()
    g.train()
    y = torch.arange(7) % K
    a = sample(g, y, batch_size=3, rng=torch.Generator().manual_seed(5))
    b = sample(g, y, batch_size=3, rng=torch.Generator().manual_seed(5))
    assert g.training
    assert a.shape == (7, 3, 32, 32) and not a.requires_grad
    torch.testing.assert_close(a, b)
    with pytest.raises(ConfigError):
        sample(g, y, z=torch.randn(6, Z))


def test_invalid_arguments_raise_config_error():
    with pytest.raises(ConfigError):
        Generator(bn_stats="moving")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Critic(ac_dropout=1.0)

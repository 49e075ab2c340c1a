"""AC-GAN generator and critic: shapes, ranges, conditioning, BN statistics, init, and the
registered variants built by name."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from advaug.config import GANConfig
from advaug.errors import ConfigError
from advaug.models import build_gan, list_gans, registry
from advaug.models.gan import Critic, Generator, recompute_standing_stats, sample
from advaug.runtime.checkpoint import check_arch

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


def _same_shapes(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(sa[k].shape == sb[k].shape for k in sa)


def test_arch_kwargs_rebuild_same_state_dict():
    """A checkpoint rebuilds each model from its arch_kwargs alone (``loading.load_gan``)."""
    for cls, kw in (
        (Generator, {"z_dim": 16, "width": 8, "concat_onehot": True, "bn_stats": "batch"}),
        (Critic, {"width": 8, "spectral_norm": True}),
    ):
        a = cls(**kw)
        b = cls(**a.arch_kwargs)
        assert a.arch_name == b.arch_name and a.arch_kwargs == b.arch_kwargs
        _same_shapes(a, b)


# --- the registered variants ---------------------------------------------------------------


def test_the_variants_are_registered():
    assert list_gans() == ["acgan", "acgan-mnist", "acgan-seed", "acgan-song", "acgan-song-mnist"]
    assert list_gans("*-mnist") == ["acgan-mnist", "acgan-song-mnist"]


@pytest.mark.parametrize("name", list_gans())
def test_every_registered_gan_builds_works_and_rebuilds(name: str):
    torch.manual_seed(0)
    g, d = build_gan(name, num_classes=K, width=W)
    assert isinstance(g, Generator) and isinstance(d, Critic)
    assert g.num_classes == d.num_classes == K and g.width == d.width == W
    y = torch.arange(4) % K
    x = g(torch.randn(4, g.z_dim), y).detach()
    assert x.shape == (4, g.channels, g.image_size, g.image_size)
    assert d.channels == g.channels
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    score, logits = d(x)
    assert score.shape == (4,) and logits.shape == (4, K)
    # what a checkpoint stores: arch_name and arch_kwargs of each model, as plain data
    for m in (g, d):
        assert json.loads(json.dumps(m.arch_kwargs)) == m.arch_kwargs
        assert m.arch_kwargs == type(m)(**m.arch_kwargs).arch_kwargs
    g2, d2 = build_gan(name, **{**g.arch_kwargs, **d.arch_kwargs})
    assert (g2.arch_kwargs, d2.arch_kwargs) == (g.arch_kwargs, d.arch_kwargs)
    _same_shapes(g, g2)
    _same_shapes(d, d2)


def test_default_variant_is_what_the_config_defaults_build():
    cfg = GANConfig()
    g, d = build_gan("acgan", num_classes=10)
    g_cfg, d_cfg = build_gan("acgan", num_classes=10, **cfg.arch_kwargs())
    assert (g.arch_kwargs, d.arch_kwargs) == (g_cfg.arch_kwargs, d_cfg.arch_kwargs)
    assert (g.z_dim, g.width, g.concat_onehot, g.bn_stats) == (128, 128, False, "running")
    assert d.arch_kwargs == {
        "width": 128,
        "num_classes": 10,
        "ac_dropout": 0.0,
        "spectral_norm": False,
        "channels": 3,
    }
    assert g.linear.in_features == 128


def test_config_arch_kwargs_are_exactly_the_architecture_fields():
    cfg = GANConfig(z_dim=64, width=32, bn_stats="batch", ac_dropout=0.25, iters=7)
    assert cfg.arch_kwargs() == {
        "z_dim": 64,
        "width": 32,
        "concat_onehot": False,
        "bn_stats": "batch",
        "ac_dropout": 0.25,
        "spectral_norm": False,
    }
    g, d = build_gan("acgan", num_classes=K, **cfg.arch_kwargs())
    assert (g.z_dim, g.width, g.bn_stats, d.width) == (64, 32, "batch", 32)
    assert d.arch_kwargs["ac_dropout"] == 0.25


def test_seed_variant():
    """The seed (SEED-SPEC §3.1-3.3): z 256, width 256, labels only through CBN, batch
    statistics in eval mode, dropout 0.5 before the AC head."""
    g, d = build_gan("acgan-seed", num_classes=100)
    assert (g.z_dim, g.width, d.width) == (256, 256, 256)
    assert not g.concat_onehot and g.linear.in_features == 256
    assert g.bn_stats == "batch"
    assert d.arch_kwargs["ac_dropout"] == 0.5 and d.ac_dropout.p == 0.5
    assert not d.arch_kwargs["spectral_norm"]


def test_seed_variant_parameter_counts():
    """K = 100, width 256. G: linear 256·4096 + 4096 = 1,052,672; each of 3 up-blocks has two CBN
    tables 2·(2·100·256), two 3x3 convs 2·(256·256·9 + 256) and a 1x1 shortcut 256·256 + 256,
    1,348,352 in all; output BN 512; output conv 256·3·9 + 3 = 6,915. D: first block
    3·256·9 + 256 + 590,080 + 3·256 + 256 = 598,272; down block 2·590,080 + 65,792; two plain
    blocks 4·590,080; critic head 257; AC head 25,700."""
    g, d = build_gan("acgan-seed", num_classes=100)
    n_g, n_d = (sum(p.numel() for p in m.parameters()) for m in (g, d))
    assert n_g == 1_052_672 + 3 * 1_348_352 + 512 + 6_915 == 5_105_155
    assert n_d == 598_272 + 1_245_952 + 2_360_320 + 257 + 25_700 == 4_230_501


def test_song_variant():
    """Song et al. (SEED-SPEC §3.8): z 128 concatenated with one-hot(y) plus CBN, width 128,
    no AC dropout."""
    g, d = build_gan("acgan-song", num_classes=100)
    assert (g.z_dim, g.width, d.width) == (128, 128, 128)
    assert g.concat_onehot and g.linear.in_features == 128 + 100
    assert g.bn_stats == "batch"
    assert d.arch_kwargs["ac_dropout"] == 0.0 and not d.arch_kwargs["spectral_norm"]


@pytest.mark.parametrize("name", ["acgan-mnist", "acgan-song-mnist"])
def test_mnist_variants_follow_song_et_al_mnist_acgan(name: str):
    """Song et al.'s MNIST AC-GAN: z 128 + one-hot(y), width 32 in G and D, G 7 → 14 → 28 with
    two up-blocks and one output channel; D takes 1x28x28 and pools 7x7."""
    g, d = build_gan(name, num_classes=10)
    assert (g.z_dim, g.width, d.width, g.channels, d.channels) == (128, 32, 32, 1, 1)
    assert g.concat_onehot and g.linear.out_features == 7 * 7 * 32 and len(g.blocks) == 2
    assert g.bn_stats == ("batch" if "song" in name else "running")
    assert sample(g, torch.tensor([], dtype=torch.long)).shape == (0, 1, 28, 28)
    assert d.blocks(torch.rand(2, 1, 28, 28)).shape == (2, 32, 7, 7)


def test_mnist_variant_parameter_counts():
    """K = 10, width 32. G: linear (128 + 10)·1568 + 1568 = 217,952; each of 2 up-blocks has two
    CBN tables 2·(2·10·32), two 3x3 convs 2·(32·32·9 + 32) and a 1x1 shortcut 32·32 + 32,
    20,832 in all; output BN 64; output conv 32·1·9 + 1 = 289. D: first block 1·32·9 + 32 +
    9,248 + 1·32 + 32 = 9,632; down block 2·9,248 + 1,056; two plain blocks 4·9,248; critic
    head 33; AC head 330."""
    g, d = build_gan("acgan-mnist", num_classes=10)
    n_g, n_d = (sum(p.numel() for p in m.parameters()) for m in (g, d))
    assert n_g == 217_952 + 2 * 20_832 + 64 + 289 == 259_969
    assert n_d == 9_632 + 19_552 + 36_992 + 33 + 330 == 66_539


def test_the_mnist_variants_record_their_shape_and_rebuild_from_it():
    g, d = build_gan("acgan-mnist", num_classes=K, width=W)
    assert (g.arch_kwargs["channels"], g.arch_kwargs["image_size"]) == (1, 28)
    assert d.arch_kwargs["channels"] == 1
    g2, d2 = Generator(**g.arch_kwargs), Critic(**d.arch_kwargs)
    _same_shapes(g, g2)
    _same_shapes(d, d2)


@pytest.mark.parametrize(("size", "start", "blocks"), [(32, 4, 3), (28, 7, 2), (64, 8, 3)])
def test_generator_image_size_sets_start_and_up_blocks(size: int, start: int, blocks: int):
    g = tiny_g(channels=2, image_size=size)
    assert (g.start, len(g.blocks)) == (start, blocks)
    out = g(torch.randn(3, Z), torch.arange(3))
    assert out.shape == (3, 2, size, size)


def test_bad_channels_or_image_size_is_one_line():
    with pytest.raises(ConfigError, match="image_size 7 cannot be reached"):
        build_gan("acgan-mnist", num_classes=K, image_size=7)
    with pytest.raises(ConfigError, match="channels must be positive"):
        build_gan("acgan-mnist", num_classes=K, channels=0)


def test_overrides_go_to_every_model_that_takes_them():
    g, d = build_gan("acgan-song", num_classes=K, width=8, ac_dropout=0.25)
    assert g.z_dim == 128 and g.num_classes == K and d.num_classes == K
    assert g.width == 8 and d.width == 8 and d.arch_kwargs["ac_dropout"] == 0.25
    assert g.linear.in_features == 128 + K


def test_unknown_override_is_one_line_naming_the_allowed_keys():
    with pytest.raises(ConfigError, match="'depth'") as info:
        build_gan("acgan-seed", num_classes=K, depth=3)
    message = str(info.value)
    assert "\n" not in message
    for key in ("z_dim", "width", "concat_onehot", "bn_stats", "ac_dropout", "spectral_norm"):
        assert key in message
    with pytest.raises(ConfigError, match="did you mean 'z_dim'"):
        build_gan("acgan", num_classes=K, zdim=64)


def test_unknown_gan_and_bad_values_raise_config_error():
    with pytest.raises(ConfigError, match="unknown GAN 'acgan-sed'.*'acgan-seed'") as info:
        build_gan("acgan-sed", num_classes=K)
    assert "known GANs: acgan, acgan-mnist, acgan-seed, acgan-song" in str(info.value)
    with pytest.raises(ConfigError, match="num_classes"):
        build_gan("acgan", num_classes=0)
    with pytest.raises(ConfigError, match="bn_stats"):
        build_gan("acgan", num_classes=K, bn_stats="moving")


def test_checkpoints_written_before_the_registry_still_fit():
    """The arch records a GAN checkpoint already holds (written by the trainer from Generator
    and Critic built directly) match the models the registry builds, and rebuild them."""
    g_arch = {
        "arch_name": "acgan-generator",
        "arch_kwargs": {
            "z_dim": 128,
            "width": 128,
            "num_classes": 10,
            "concat_onehot": False,
            "bn_stats": "running",
            "out_range": "01",
        },
    }
    d_arch = {
        "arch_name": "acgan-critic",
        "arch_kwargs": {"width": 128, "num_classes": 10, "ac_dropout": 0.0, "spectral_norm": False},
    }
    g, d = build_gan("acgan", num_classes=10, **GANConfig().arch_kwargs())
    check_arch(g_arch, g.arch_name, g.arch_kwargs)
    check_arch(d_arch, d.arch_name, d.arch_kwargs)
    g2, d2 = build_gan("acgan-seed", **{**g_arch["arch_kwargs"], **d_arch["arch_kwargs"]})
    g2.load_state_dict(g.state_dict())
    d2.load_state_dict(d.state_dict())


def test_register_gan_checks_its_factories(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(registry.GANS, "_entries", dict(registry.GANS._entries))
    with pytest.raises(ValueError, match="GAN name 'acgan' is already registered"):
        registry.register_gan("acgan")(Generator, Critic)
    with pytest.raises(ValueError, match="depth"):
        registry.register_gan("acgan-deep", depth=3)(Generator, Critic)
    with pytest.raises(ValueError, match="num_classes"):
        registry.register_gan("acgan-bad")(Generator, lambda width=1: nn.Identity())
    registry.register_gan("acgan-narrow", width=8, z_dim=16)(Generator, Critic)
    g, d = build_gan("acgan-narrow", num_classes=K)
    assert (g.width, d.width, g.z_dim) == (8, 8, 16)


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


# --- one-channel 28x28 images (MNIST, Fashion-MNIST) -------------------------------------------


@pytest.mark.parametrize("variant", ["acgan", "acgan-seed", "acgan-song"])
def test_variants_draw_and_judge_one_channel_28px_images(variant: str) -> None:
    g, d = build_gan(variant, num_classes=10, width=8, z_dim=8, channels=1, image_size=28)
    y = torch.arange(4)
    with torch.no_grad():
        x = g(torch.randn(4, 8), y)
    assert x.shape == (4, 1, 28, 28) and 0 <= float(x.min()) <= float(x.max()) <= 1
    score, logits = d(x)
    assert score.shape == (4,) and logits.shape == (4, 10)
    assert len(g.blocks) == 2 and g.linear.out_features == 7 * 7 * 8  # 7 -> 14 -> 28
    assert sample(g, torch.zeros(0, dtype=torch.long)).shape == (0, 1, 28, 28)


def test_up_plan_and_bad_image_sizes() -> None:
    from advaug.models.gan import up_plan

    assert [up_plan(s) for s in (28, 32, 64, 16)] == [(7, 2), (4, 3), (8, 3), (4, 2)]
    for bad in (30, 7, 0):
        with pytest.raises(ConfigError, match=f"image_size {bad} cannot be reached"):
            Generator(image_size=bad)

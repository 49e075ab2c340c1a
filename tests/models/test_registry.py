"""The model registry, the shared classifier interface, input normalisation and the tiny CNN."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advaug.errors import ConfigError
from advaug.models import (
    CIFAR100_MEAN,
    CIFAR100_STD,
    DENSENET_SEED_SETTINGS,
    BatchNorm2dNoScale,
    DenseNet,
    Normalize,
    TinyCNN,
    build_model,
    list_models,
    make_normalize,
    register_model,
    registry,
)

REQUIRED = {
    "densenet-bc-100",
    "densenet-bc-40",
    "densenet-bc-22",
    "densenet-bc-100-seed",
    "densenet-bc-40-seed",
    "wrn-16-4",
    "wrn-28-10",
    "preact-resnet18",
    "tiny-cnn",
}
SMALL = ["densenet-bc-22", "densenet-bc-40", "densenet-bc-40-seed", "wrn-16-4", "tiny-cnn"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test stay inside that test."""
    entries = registry.CLASSIFIERS._entries
    monkeypatch.setattr(registry.CLASSIFIERS, "_entries", dict(entries))


# --- registry ----------------------------------------------------------------------------------


def test_required_models_are_registered_and_sorted() -> None:
    names = list_models()
    assert set(names) >= REQUIRED
    assert names == sorted(names)
    assert list_models("*-seed") == ["densenet-bc-100-seed", "densenet-bc-40-seed"]


@pytest.mark.parametrize("name", SMALL)
def test_every_small_model_has_the_classifier_interface(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=6).eval()
    assert isinstance(next(iter(model.children())), Normalize)
    assert model.num_classes == 6
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        feats = model.features(x)
        logits = model(x)
    assert feats.shape == (2, model.num_features)
    assert logits.shape == (2, 6)
    torch.testing.assert_close(logits, model.fc(feats))


@pytest.mark.parametrize("name", list_models())
def test_arch_kwargs_rebuild_the_same_model_and_survive_json(name: str) -> None:
    """Every registered classifier builds, and its recorded arch_kwargs rebuild it."""
    model = build_model(name, num_classes=10)
    assert model.num_classes == 10
    assert model.arch_name == name
    kwargs = json.loads(json.dumps(model.arch_kwargs))
    assert kwargs == model.arch_kwargs and kwargs["num_classes"] == 10
    again = build_model(model.arch_name, **kwargs)
    assert again.arch_kwargs == model.arch_kwargs
    assert [(k, v.shape) for k, v in again.state_dict().items()] == [
        (k, v.shape) for k, v in model.state_dict().items()
    ]


def test_overrides_replace_defaults_and_are_recorded() -> None:
    model = build_model("densenet-bc-22", 10, dropout=0.2, normalize=[[0.1] * 3, [0.2] * 3])
    assert model.arch_kwargs["dropout"] == 0.2
    assert model.arch_kwargs["normalize"] == [[0.1] * 3, [0.2] * 3]
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(m.p == 0.2 for m in drops)
    torch.testing.assert_close(model.normalize.std.flatten(), torch.full((3,), 0.2))
    assert model.arch_kwargs["depth"] == 22 and model.arch_kwargs["growth_rate"] == 12


def test_seed_variant_uses_every_seed_setting() -> None:
    model = build_model("densenet-bc-40-seed", 100)
    for key, value in DENSENET_SEED_SETTINGS.items():
        assert model.arch_kwargs[key] == value
    assert all(
        isinstance(m, BatchNorm2dNoScale) for m in model.modules() if isinstance(m, nn.BatchNorm2d)
    )
    assert any(name.endswith("relu_after") for name, _ in model.named_modules())
    # 188,092 (BC-40, see test_densenet) minus 2,544 BN gammas.
    assert n_params(model) == 188_092 - 2_544
    x = torch.zeros(1, 3, 2, 2)
    torch.testing.assert_close(model.normalize(x), -torch.ones(1, 3, 2, 2))


def test_registered_parameter_counts() -> None:
    assert n_params(build_model("densenet-bc-100", 100)) == 800_032
    assert n_params(build_model("densenet-bc-100-seed", 100)) == 788_038
    assert n_params(build_model("densenet-bc-22", 100)) == 77_986


def test_unknown_model_name_lists_known_names() -> None:
    with pytest.raises(ConfigError, match="densenet-bc-100") as info:
        build_model("densenet-bc-1000", 100)
    message = str(info.value)
    assert "\n" not in message
    assert "unknown model 'densenet-bc-1000'" in message
    assert all(name in message for name in REQUIRED)


def test_unknown_override_names_the_key() -> None:
    with pytest.raises(ConfigError, match="'dropuot'") as info:
        build_model("densenet-bc-22", 10, dropuot=0.2)
    assert "did you mean 'dropout'" in str(info.value)
    with pytest.raises(ConfigError, match="'widen_factor'"):
        build_model("densenet-bc-22", 10, widen_factor=2)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_bad_num_classes_raise_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("tiny-cnn", bad)  # type: ignore[arg-type]


def test_invalid_override_value_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="depth 23"):
        build_model("densenet-bc-22", 10, depth=23)


def test_register_model_decorator(scratch_registry: None) -> None:
    @register_model("test-linear", width=5)
    def make(num_classes: int, width: int = 3) -> nn.Module:
        return nn.Linear(width, num_classes)

    assert "test-linear" in list_models()
    model = build_model("test-linear", 4)
    assert model.in_features == 5 and model.out_features == 4
    assert model.arch_kwargs == {"num_classes": 4, "width": 5}
    assert build_model("test-linear", 4, width=7).in_features == 7
    with pytest.raises(ValueError, match="already registered"):
        register_model("test-linear")(make)
    with pytest.raises(ValueError, match="name all"):
        register_model("test-kwargs")(lambda num_classes, **kw: nn.Identity())
    with pytest.raises(ValueError, match="num_classes"):
        register_model("test-nocls")(lambda width=1: nn.Identity())
    with pytest.raises(ValueError, match="depth"):
        register_model("test-baddefault", depth=3)(make)


def test_registration_does_not_leak_between_tests() -> None:
    assert "test-linear" not in list_models()


def test_registry_imports_no_model_module() -> None:
    """The model modules import the registry to register beside their definitions, so the
    registry must not import them back (no import cycle)."""
    tree = ast.parse(Path(registry.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m.startswith("advaug.models")}


# --- normalisation -----------------------------------------------------------------------------


def test_cifar_normalize_maps_the_mean_image_to_zero_and_one_std_to_one() -> None:
    norm = make_normalize("cifar")
    mean = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    std = torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(mean), torch.zeros(2, 3, 4, 4))
    torch.testing.assert_close(norm(mean + std), torch.ones(2, 3, 4, 4))
    assert make_normalize("cifar100").mean.flatten().tolist() == norm.mean.flatten().tolist()


def test_seed_normalize_is_two_x_minus_one() -> None:
    x = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(make_normalize("seed")(x), 2 * x - 1)


def test_model_first_layer_normalises_its_input() -> None:
    """A DenseNet whose stem sees the CIFAR mean image as zeros: stem output must be 0."""
    model = DenseNet(depth=10, growth_rate=4).eval()
    mean = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    with torch.no_grad():
        out = model.stem(model.normalize(mean))
    torch.testing.assert_close(out, torch.zeros_like(out))


@settings(max_examples=30, deadline=None)
@given(
    mean=st.lists(st.floats(-1, 1), min_size=3, max_size=3),
    std=st.lists(st.floats(0.05, 3), min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_normalize_matches_formula_and_inverts(mean: list, std: list, seed: int) -> None:
    x = torch.rand(2, 3, 3, 3, generator=torch.Generator().manual_seed(seed))
    norm = Normalize(mean, std)
    out = norm(x)
    for c in range(3):
        torch.testing.assert_close(out[:, c], (x[:, c] - mean[c]) / std[c], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(norm.inverse(out), x, rtol=1e-5, atol=1e-5)


def test_normalize_buffers_follow_the_module_and_are_saved() -> None:
    norm = Normalize([0.5] * 3, [0.25] * 3)
    assert set(norm.state_dict()) == {"mean", "std"}
    assert n_params(norm) == 0
    half = norm.to(torch.float64)
    assert half.mean.dtype == torch.float64


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("imagenet", "unknown normalize preset"),
        ([[0.5, 0.5], [0.5, 0.5, 0.5]], "equal-length"),
        ([[0.5] * 3, [0.5, 0.0, 0.5]], "<= 0"),
        ([0.5, 0.5], "mean, std"),
        (3, "mean, std"),
    ],
)
def test_bad_normalize_specs_raise_config_error(spec: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        make_normalize(spec)  # type: ignore[arg-type]


# --- tiny CNN ----------------------------------------------------------------------------------


def test_tiny_cnn_parameter_count() -> None:
    """width 8, 10 classes: convs 3*8*9 = 216, 8*8*9 = 576, 8*16*9 = 1152; BN 2*(8+8+16) = 64;
    Linear 16*10 + 10 = 170. Total 2,178."""
    model = TinyCNN(num_classes=10)
    assert n_params(model) == 216 + 576 + 1152 + 64 + 170 == 2_178
    assert model.num_features == 16


@pytest.mark.parametrize(
    "name, kwargs, steps, lr, ratio",
    [
        ("densenet-bc-22", {"depth": 10, "growth_rate": 8}, 40, 1e-2, 0.1),
        ("wrn-16-4", {"depth": 10, "widen_factor": 1}, 40, 1e-2, 0.1),
        ("tiny-cnn", {"width": 16}, 60, 2e-2, 0.2),
    ],
)
def test_each_family_overfits_a_tiny_batch(name, kwargs, steps, lr, ratio) -> None:
    """Learning sanity for every family: a tiny batch is fitted exactly."""
    torch.manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    y = torch.arange(16) % 4
    model = build_model(name, 4, **kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    first = None
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first == pytest.approx(math.log(4), abs=0.5)
    with torch.no_grad():
        logits = model(x)
    assert F.cross_entropy(logits, y).item() < ratio * first
    assert (logits.argmax(1) == y).all()


# --- one-channel images (MNIST, Fashion-MNIST) -------------------------------------------------


@pytest.mark.parametrize("name", ["tiny-cnn", "densenet-bc-22", "wrn-16-4", "preact-resnet18"])
def test_families_take_one_channel_28px_images(name: str) -> None:
    kwargs = {"widen_factor": 1} if name == "wrn-16-4" else {}
    model = build_model(name, 10, in_channels=1, normalize="mnist", **kwargs).eval()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert model.arch_kwargs["in_channels"] == 1


def test_tiny_cnn_one_channel_parameter_count() -> None:
    """in_channels 1: the first conv has 1*8*9 = 72 weights instead of 216; 2,034 in all."""
    assert n_params(TinyCNN(num_classes=10, in_channels=1, normalize="mnist")) == 2_178 - 144


def test_three_channel_normalize_on_one_channel_images_names_the_fix() -> None:
    with pytest.raises(ConfigError) as info:
        TinyCNN(in_channels=1)  # the default normalize is CIFAR's 3-channel one
    msg = str(info.value)
    assert "'cifar' has 3 channels but the images have 1" in msg
    assert "'mnist'" in msg and "'fashion-mnist'" in msg and "\n" not in msg
    with pytest.raises(
        ConfigError, match=r"'cifar10', 'cifar100', 'seed', 'none'\] or .* 3 values"
    ):
        make_normalize("mnist", 3)  # the other way round
    for preset in ("seed", "none"):  # channel-free presets fit any count
        assert make_normalize(preset, 1).mean.shape == (1, 1, 1, 1)
    torch.testing.assert_close(
        make_normalize("mnist", 1)(torch.full((1, 1, 2, 2), 0.1307)), torch.zeros(1, 1, 2, 2)
    )

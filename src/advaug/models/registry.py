"""Build classifiers by name with keyword overrides (in the spirit of timm's registry).

``build_model("densenet-bc-100", num_classes=100, dropout=0.2)`` returns a model whose
``arch_name`` and ``arch_kwargs`` record exactly how it was built, so a checkpoint can store them
and check them on load. New architectures register with ``@register_model(name, **defaults)``.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import Tensor, nn

from advaug.errors import ConfigError
from advaug.models.densenet import DenseNet
from advaug.models.normalize import NormalizeSpec, make_normalize
from advaug.models.resnet import PreActResNet18, WideResNet

F = TypeVar("F", bound=Callable[..., nn.Module])

# The seed's DenseNet settings (SEED-SPEC section 2): TF1 batch-norm defaults without gamma, the
# extra transition ReLU, dropout 0.5, Glorot-uniform init and inputs mapped to [-1, 1].
DENSENET_SEED_SETTINGS: dict[str, Any] = {
    "bn_scale": False,
    "transition_relu": True,
    "dropout": 0.5,
    "bn_momentum": 0.01,
    "bn_eps": 1e-3,
    "init": "glorot",
    "normalize": "seed",
}


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., nn.Module]
    signature: inspect.Signature
    defaults: dict[str, Any]


_REGISTRY: dict[str, _Entry] = {}


def register_model(name: str, **defaults: Any) -> Callable[[F], F]:
    """Register a model class or factory under ``name``, with default keyword arguments.

    The factory must take ``num_classes`` and list every option as a named parameter (no
    ``**kwargs``), so that unknown overrides can be rejected by name. Works as a decorator, or
    called directly to register variants of one class:
    ``register_model("densenet-bc-40", depth=40, growth_rate=12)(DenseNet)``.
    """

    def decorator(factory: F) -> F:
        signature = inspect.signature(factory)
        params = signature.parameters
        if any(
            p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY) for p in params.values()
        ):
            raise ValueError(f"model factory for {name!r} must name all its keyword arguments")
        if "num_classes" not in params:
            raise ValueError(f"model factory for {name!r} must take num_classes")
        unknown = sorted(set(defaults) - set(params))
        if unknown:
            raise ValueError(f"defaults {unknown} of model {name!r} are not factory arguments")
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = _Entry(factory, signature, dict(defaults))
        return factory

    return decorator


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally filtered by a glob ``pattern``."""
    names = sorted(_REGISTRY)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def _plain(value: Any) -> Any:
    """Tuples become lists (recursively) so the kwargs survive YAML/JSON round trips."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def build_model(name: str, num_classes: int, **overrides: Any) -> nn.Module:
    """Build the registered model ``name`` for ``num_classes`` classes.

    ``overrides`` replace the variant's defaults (e.g. ``dropout=0.2``). The returned model has
    ``arch_name`` (= ``name``) and ``arch_kwargs`` (every constructor argument, defaults
    included, as plain data), so ``build_model(m.arch_name, **m.arch_kwargs)`` rebuilds it.
    """
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ConfigError(
            f"unknown model {name!r}{_suggest(name, list(_REGISTRY))}; "
            f"known models: {', '.join(list_models())}"
        )
    options = sorted(p for p in entry.signature.parameters if p != "num_classes")
    unknown = sorted(set(overrides) - set(options))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option {unknown[0]!r}{_suggest(unknown[0], options)}; "
            f"its options are: {', '.join(options)}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    bound = entry.signature.bind(**{**entry.defaults, **overrides, "num_classes": num_classes})
    bound.apply_defaults()
    kwargs = dict(bound.arguments)
    try:
        model = entry.factory(**kwargs)
    except (TypeError, ValueError) as e:  # e.g. width="abc": a usage error, not a crash
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(overrides.items()))
        raise ConfigError(
            f"model {name!r} cannot be built with {shown or 'its defaults'} "
            f"({' '.join(str(e).split())}); fix the model options"
        ) from e
    model.arch_name = name
    model.arch_kwargs = _plain(kwargs)
    return model


class TinyCNN(nn.Module):
    """A ~2k-parameter CNN for fast tests: three 3x3 conv-BN-ReLU layers, pool, Linear.

    Same interface as the big classifiers: a Normalize first layer, ``features``,
    ``num_features`` and ``num_classes``. Widths ``width, width, 2 * width``; the last two
    convs have stride 2.
    """

    def __init__(
        self, num_classes: int = 10, width: int = 8, normalize: NormalizeSpec = "cifar"
    ) -> None:
        super().__init__()
        if width < 1 or num_classes < 1:
            raise ConfigError(
                f"tiny-cnn needs width >= 1 and num_classes >= 1, got {width}, {num_classes}"
            )
        self.num_classes = num_classes
        self.normalize = make_normalize(normalize)
        layers: list[nn.Module] = []
        cin = 3
        for cout, stride in ((width, 1), (width, 2), (2 * width, 2)):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
            cin = cout
        self.body = nn.Sequential(*layers)
        self.num_features = cin
        self.fc = nn.Linear(cin, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (N, num_features): after the global pool, before ``fc``."""
        return self.body(self.normalize(x)).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) for images (N, 3, H, W) in [0, 1]."""
        return self.fc(self.features(x))


register_model("densenet-bc-22", depth=22, growth_rate=12)(DenseNet)
register_model("densenet-bc-40", depth=40, growth_rate=12)(DenseNet)
register_model("densenet-bc-100", depth=100, growth_rate=12)(DenseNet)
register_model("densenet-bc-190", depth=190, growth_rate=40)(DenseNet)
register_model("densenet-bc-250", depth=250, growth_rate=24)(DenseNet)
register_model("densenet-bc-40-seed", depth=40, growth_rate=12, **DENSENET_SEED_SETTINGS)(DenseNet)
register_model("densenet-bc-100-seed", depth=100, growth_rate=12, **DENSENET_SEED_SETTINGS)(
    DenseNet
)
register_model("wrn-16-4", depth=16, widen_factor=4)(WideResNet)
register_model("wrn-28-10", depth=28, widen_factor=10)(WideResNet)
register_model("preact-resnet18")(PreActResNet18)
register_model("tiny-cnn")(TinyCNN)

"""Build models by name with keyword overrides (in the spirit of timm's registry).

A :class:`Registry` maps names to one factory (a classifier) or a pair of factories (a GAN's
generator and critic) with default keyword arguments. Each model registers beside its own
definition: the DenseNets in ``densenet.py``, the ResNets in ``resnet.py``, the tiny CNN in
``tiny.py``, the 28x28 classifiers in ``madry.py`` and ``lenet.py`` and the AC-GAN variants in
``gan.py``; importing :mod:`advaug.models` imports them all.
This module holds only the machinery and imports no model module.

``build_model("densenet-bc-100", num_classes=100, dropout=0.2)`` returns a model whose
``arch_name`` and ``arch_kwargs`` record exactly how it was built, so a checkpoint can store them
and check them on load. New architectures register with ``@register_model(name, **defaults)``.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from advaug.errors import ConfigError

F = TypeVar("F", bound=Callable[..., nn.Module])

__all__ = [
    "CLASSIFIERS",
    "GANS",
    "Registry",
    "build_gan",
    "build_model",
    "list_gans",
    "list_models",
    "register_gan",
    "register_model",
]


@dataclass(frozen=True)
class _Entry:
    factories: tuple[Callable[..., nn.Module], ...]
    signatures: tuple[inspect.Signature, ...]
    defaults: dict[str, Any]

    @property
    def options(self) -> list[str]:
        """Every keyword some factory takes, except ``num_classes``."""
        names = {p for sig in self.signatures for p in sig.parameters}
        return sorted(names - {"num_classes"})


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


class Registry:
    """Named variants of a model: factories plus default keyword arguments.

    ``kind`` names the models in messages ("model", "GAN"). A variant has one factory (it builds
    one module) or several that are built together (a GAN's generator and critic); every factory
    takes ``num_classes``, and each option goes to every factory that names it.

    Examples::

        >>> from torch import nn
        >>> probes = Registry("probe")
        >>> @probes.register("linear-probe", width=5)
        ... def linear_probe(num_classes: int, width: int = 3) -> nn.Module:
        ...     return nn.Linear(width, num_classes)
        >>> (probe,) = probes.build("linear-probe", num_classes=4)
        >>> probe.in_features, probe.arch_kwargs
        (5, {'num_classes': 4, 'width': 5})
        >>> probes.names("linear-*")
        ['linear-probe']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, _Entry] = {}

    def register(self, name: str, **defaults: Any) -> Callable[..., Any]:
        """Decorator: register ``factory`` (and any further factories given) under ``name``.

        Returns the first factory, so it stacks on a class. Each factory must take
        ``num_classes`` and list every option as a named parameter (no ``**kwargs``), so
        unknown overrides can be rejected by name.
        """

        def decorator(factory: F, *more: Callable[..., nn.Module]) -> F:
            self._add(name, (factory, *more), defaults)
            return factory

        return decorator

    def _add(
        self,
        name: str,
        factories: tuple[Callable[..., nn.Module], ...],
        defaults: Mapping[str, Any],
    ) -> None:
        signatures = tuple(inspect.signature(f) for f in factories)
        for params in (sig.parameters for sig in signatures):
            if any(
                p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY)
                for p in params.values()
            ):
                raise ValueError(
                    f"{self.kind} factory for {name!r} must name all its keyword arguments"
                )
            if "num_classes" not in params:
                raise ValueError(f"{self.kind} factory for {name!r} must take num_classes")
        known = {p for sig in signatures for p in sig.parameters}
        unknown = sorted(set(defaults) - known)
        if unknown:
            raise ValueError(
                f"defaults {unknown} of {self.kind} {name!r} are not factory arguments"
            )
        if name in self._entries:
            raise ValueError(f"{self.kind} name {name!r} is already registered")
        self._entries[name] = _Entry(tuple(factories), signatures, dict(defaults))

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted registered names, optionally filtered by a glob ``pattern``."""
        names = sorted(self._entries)
        if pattern is not None:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        return names

    def options(self, name: str) -> list[str]:
        """The keyword options variant ``name`` takes (besides ``num_classes``); [] if unknown."""
        entry = self._entries.get(name)
        return entry.options if entry is not None else []

    def build(self, name: str, num_classes: int, **overrides: Any) -> tuple[nn.Module, ...]:
        """Build variant ``name``: one module per factory, each with ``arch_kwargs`` recorded.

        ``overrides`` replace the variant's defaults and go to every factory that takes them;
        ``arch_kwargs`` holds each factory's full arguments (defaults included) as plain data.
        Every usage error (unknown name or option, bad value) is a one-line ConfigError.
        """
        entry = self._entries.get(name)
        if entry is None:
            raise ConfigError(
                f"unknown {self.kind} {name!r}{_suggest(name, list(self._entries))}; "
                f"known {self.kind}s: {', '.join(self.names())}"
            )
        unknown = sorted(set(overrides) - set(entry.options))
        if unknown:
            raise ConfigError(
                f"{self.kind} {name!r} has no option {unknown[0]!r}"
                f"{_suggest(unknown[0], entry.options)}; "
                f"its options are: {', '.join(entry.options)}"
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
        given = {**entry.defaults, **overrides, "num_classes": num_classes}
        modules = []
        for factory, sig in zip(entry.factories, entry.signatures):
            bound = sig.bind(**{k: v for k, v in given.items() if k in sig.parameters})
            bound.apply_defaults()
            kwargs = dict(bound.arguments)
            try:
                module = factory(**kwargs)
            except (TypeError, ValueError) as e:  # e.g. width="abc": a usage error, not a crash
                shown = ", ".join(f"{k}={v!r}" for k, v in sorted(overrides.items()))
                raise ConfigError(
                    f"{self.kind} {name!r} cannot be built with {shown or 'its defaults'} "
                    f"({' '.join(str(e).split())}); fix the {self.kind} options"
                ) from e
            module.arch_kwargs = _plain(kwargs)
            modules.append(module)
        return tuple(modules)


CLASSIFIERS = Registry("model")
"""The classifiers: one factory per name, each takes ``num_classes`` and returns logits."""

GANS = Registry("GAN")
"""The GANs: a (generator, critic) pair of factories per name; see :mod:`advaug.models.gan`."""


# ----------------------------------------------------------------------------------------------
# classifiers


def register_model(name: str, **defaults: Any) -> Callable[[F], F]:
    """Register a classifier class or factory under ``name``, with default keyword arguments.

    The factory must take ``num_classes`` and list every option as a named parameter (no
    ``**kwargs``), so that unknown overrides can be rejected by name. Works as a decorator beside
    the model's definition, or called directly to register variants of one class:
    ``register_model("densenet-bc-40", depth=40, growth_rate=12)(DenseNet)``.

    Examples::

        >>> # tiny.py registers its class with @register_model("tiny-cnn") above `class TinyCNN`
        >>> build_model("tiny-cnn", num_classes=10, width=4).arch_kwargs
        {'num_classes': 10, 'width': 4, 'normalize': 'cifar', 'in_channels': 3}

    :class:`Registry` shows the decorator at work on a registry of its own.
    """
    return CLASSIFIERS.register(name, **defaults)


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered classifiers, optionally filtered by a glob ``pattern``.

    Examples::

        >>> list_models("*-seed")
        ['densenet-bc-100-seed', 'densenet-bc-40-seed']
        >>> list_models("wrn-*")
        ['wrn-16-4', 'wrn-28-10']
    """
    return CLASSIFIERS.names(pattern)


def build_model(name: str, num_classes: int, **overrides: Any) -> nn.Module:
    """Build the registered classifier ``name`` for ``num_classes`` classes.

    ``overrides`` replace the variant's defaults (e.g. ``dropout=0.2``). The returned model has
    ``arch_name`` (= ``name``) and ``arch_kwargs`` (every constructor argument, defaults
    included, as plain data), so ``build_model(m.arch_name, **m.arch_kwargs)`` rebuilds it.

    Examples::

        >>> model = build_model("densenet-bc-22", num_classes=10, dropout=0.2)
        >>> model.arch_name, model.arch_kwargs["depth"], model.arch_kwargs["dropout"]
        ('densenet-bc-22', 22, 0.2)
        >>> again = build_model(model.arch_name, **model.arch_kwargs)
        >>> again.arch_kwargs == model.arch_kwargs
        True
    """
    (model,) = CLASSIFIERS.build(name, num_classes, **overrides)
    model.arch_name = name
    return model


# ----------------------------------------------------------------------------------------------
# GANs


def register_gan(name: str, **defaults: Any) -> Callable[..., Any]:
    """Register a GAN variant: ``register_gan(name, **defaults)(generator, critic)``.

    Both factories take ``num_classes`` and name all their options; ``defaults`` may set any
    option of either (an option both take, such as ``width``, goes to both). ``models/gan.py``
    registers the AC-GAN variants this way, beside :class:`~advaug.models.gan.Generator`.

    Examples::

        >>> list_gans()  # registered in gan.py, e.g. register_gan("acgan")(Generator, Critic)
        ['acgan', 'acgan-mnist', 'acgan-seed', 'acgan-song', 'acgan-song-mnist']
    """
    return GANS.register(name, **defaults)


def list_gans(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered GAN variants, optionally filtered by a glob ``pattern``.

    Examples::

        >>> list_gans("acgan-s*")
        ['acgan-seed', 'acgan-song', 'acgan-song-mnist']
    """
    return GANS.names(pattern)


def build_gan(name: str, num_classes: int, **overrides: Any) -> tuple[nn.Module, nn.Module]:
    """Build the registered GAN ``name`` for ``num_classes`` classes: (generator, critic).

    Each override replaces the variant's default in every model that takes it (``width`` goes
    to both); an unknown key is a one-line ConfigError that lists the allowed ones. Each model's
    ``arch_kwargs`` holds its constructor arguments (a checkpoint made before ``channels``
    and ``image_size`` existed loads as 3x32x32), and its ``arch_name`` names the model
    (``"acgan-generator"``, ``"acgan-critic"``), as checkpoints store them;
    ``build_gan(name, **{**g.arch_kwargs, **d.arch_kwargs})`` rebuilds the pair.

    Examples::

        >>> g, d = build_gan("acgan-song", num_classes=10, width=8)
        >>> g.z_dim, g.concat_onehot, g.bn_stats, d.arch_kwargs["ac_dropout"]
        (128, True, 'batch', 0.0)
        >>> g.arch_name, g.arch_kwargs["width"], d.arch_kwargs["width"]
        ('acgan-generator', 8, 8)
        >>> g2, d2 = build_gan("acgan", **{**g.arch_kwargs, **d.arch_kwargs})
        >>> g2.arch_kwargs == g.arch_kwargs and d2.arch_kwargs == d.arch_kwargs
        True
    """
    generator, critic = GANS.build(name, num_classes, **overrides)
    return generator, critic

"""advaug: data augmentation with generative models under adversarial training.

The library surface (see :mod:`advaug.api`), imported on first use so that ``import advaug``
stays fast::

    import advaug

    cfg = advaug.make_config("smoke", classifier={"epochs": 3})
    advaug.train_classifier(cfg, "runs/fgsm", technique="fgsm")
    model = advaug.load_classifier("runs/fgsm")          # an nn.Module on [0, 1] images
    x_adv = advaug.attacks.PGD(model, eps=8 / 255)(x, y)
    print(advaug.evaluate_classifier(model, cfg)["metrics"]["clean_top1"])

``advaug.attacks``, ``advaug.models``, ``advaug.config``, ``advaug.data`` and ``advaug.evaluate``
are the subpackages behind it. (They own the names ``config`` and ``evaluate``: a function of the
same name would be replaced by the subpackage as soon as anything imports it, hence
``make_config`` and ``evaluate_classifier``.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from advaug._version import __version__

if TYPE_CHECKING:  # what the lazy names resolve to, for type checkers and IDEs
    from advaug import attacks, config, data, evaluate, models
    from advaug.api import (
        evaluate_classifier,
        export,
        load_classifier,
        load_gan,
        make_config,
        run_study,
        train_classifier,
        train_gan,
    )

_API = (
    "evaluate_classifier",
    "export",
    "load_classifier",
    "load_gan",
    "make_config",
    "run_study",
    "train_classifier",
    "train_gan",
)
_SUBPACKAGES = ("attacks", "config", "data", "evaluate", "models")

__all__ = [
    "__version__",
    "attacks",
    "config",
    "data",
    "evaluate",
    "evaluate_classifier",
    "export",
    "load_classifier",
    "load_gan",
    "make_config",
    "models",
    "run_study",
    "train_classifier",
    "train_gan",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        from advaug import api

        value = getattr(api, name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"advaug.{name}")
    else:
        raise AttributeError(f"module 'advaug' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

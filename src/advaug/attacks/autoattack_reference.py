"""AutoAttack (Croce & Hein, ICML 2020) through its reference implementation, behind our Attack API.

The reference code is on PyPI as ``pyautoattack`` with no declared dependencies, so it installs
cleanly next to any torch: ``pip install advaug[autoattack]``. It is the code RobustBench's
leaderboards run, so only this backend can give a leaderboard-comparable number (see
:func:`advaug.evaluate.suite.robustbench_comparability`). torchattacks' re-implementation
(:class:`advaug.attacks.AutoAttack`) stays available; ``benchmarks/bench_autoattack.py`` measured
both on the same model and images (``benchmarks/results/autoattack-cpu.json``).

The adapter adds what the reference code lacks as a library: the model's modes and parameter
flags restored exactly (:class:`~advaug.attacks.base.Attack`), the global RNG unchanged (every
sub-attack reseeds it), and input checks. The class count is read from the logits by the
reference code itself (APGD-T and FAB-T take the 9 most likely other classes; the adapter lowers
that to K - 1 for models with fewer than 10 classes, where the reference code would fail).

Examples::

    >>> import torch
    >>> from advaug.attacks import ReferenceAutoAttack
    >>> from advaug.models import build_model
    >>> model = build_model("tiny-cnn", 10, width=4).eval()
    >>> x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    >>> adv = ReferenceAutoAttack(model, eps=8 / 255, version="standard", seed=0)(x, y)
    >>> bool((adv - x).abs().max() <= 8 / 255 + 1e-6), adv.shape
    (True, torch.Size([4, 3, 32, 32]))
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import Tensor, nn

from advaug.attacks.autoattack import INSTALL_HINT as TORCHATTACKS_HINT
from advaug.attacks.autoattack import AutoAttack, MissingDependencyError, torchattacks_available
from advaug.attacks.base import Attack, AttackInputError, check_nonneg

INSTALL_HINT = "pip install 'advaug[autoattack]'  (or: pip install pyautoattack)"
NORMS = ("Linf", "L2", "L1")
VERSIONS = ("standard", "plus", "rand")
BACKENDS = ("auto", "reference", "torchattacks")


def _pyautoattack() -> Any:
    try:
        return importlib.import_module("pyautoattack")
    except ImportError as exc:
        raise MissingDependencyError(
            f"the reference AutoAttack is not installed; run `{INSTALL_HINT}`"
        ) from exc


def reference_available() -> bool:
    """Whether the reference AutoAttack (``pyautoattack``) can be imported."""
    try:
        _pyautoattack()
    except MissingDependencyError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """``auto`` → ``reference`` where it is installed, else ``torchattacks`` where that is;
    the named backend otherwise. Raises :class:`MissingDependencyError` when neither exists."""
    if backend not in BACKENDS:
        raise AttackInputError(f"AutoAttack backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    if reference_available():
        return "reference"
    if torchattacks_available():
        return "torchattacks"
    raise MissingDependencyError(f"AutoAttack needs a backend; run `{INSTALL_HINT}`")


def make_autoattack(
    model: nn.Module,
    eps: float = 8 / 255,
    *,
    backend: str = "auto",
    norm: str = "Linf",
    version: str = "standard",
    seed: int = 0,
    num_classes: int | None = None,
) -> Attack:
    """An AutoAttack of the chosen backend (see :func:`resolve_backend`)."""
    if resolve_backend(backend) == "reference":
        return ReferenceAutoAttack(model, eps=eps, norm=norm, version=version, seed=seed)
    try:
        return AutoAttack(
            model, eps=eps, norm=norm, version=version, seed=seed, num_classes=num_classes
        )
    except MissingDependencyError as exc:
        raise MissingDependencyError(
            f"the torchattacks AutoAttack backend is not installed; run `{TORCHATTACKS_HINT}`, "
            f"or use the reference one: `{INSTALL_HINT}`"
        ) from exc


class ReferenceAutoAttack(Attack):
    """AutoAttack by its authors' code, untargeted; ``version`` standard, plus or rand.

    Arguments:
        model: a classifier on [0, 1] images.
        eps: the budget in [0, 1] units (8/255 is RobustBench's L∞ CIFAR budget).
        norm: ``Linf``, ``L2`` or ``L1``.
        version: ``standard`` (APGD-CE, APGD-T, FAB-T, Square 5000), ``plus`` or ``rand``.
        seed: the seed every sub-attack starts from.

    Shape:
        images ``[N, C, H, W]`` in [0, 1], labels ``[N]``; returns the adversarial images.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        norm: str = "Linf",
        version: str = "standard",
        seed: int = 0,
    ) -> None:
        super().__init__(model)
        if isinstance(eps, Tensor):
            raise AttackInputError("AutoAttack takes one float eps, not a tensor; pass float(eps)")
        check_nonneg(eps, "eps")
        if norm not in NORMS:
            raise AttackInputError(f"norm must be one of {NORMS}, got {norm!r}")
        if version not in VERSIONS:
            raise AttackInputError(f"version must be one of {VERSIONS}, got {version!r}")
        self._aa = _pyautoattack()
        self.eps = float(eps)
        self.norm = norm
        self.version = version
        self.seed = int(seed)

    def perturb(self, images: Tensor, labels: Tensor | None) -> Tensor:
        """Run the reference AutoAttack with the global RNG state saved and restored."""
        assert labels is not None
        if images.shape[0] == 0:
            return images.clone()
        impl = self._aa.AutoAttack(
            self.model,
            eps=self.eps,
            norm=self.norm,
            version=self.version,
            seed=self.seed,
            device=images.device,
        )
        with torch.no_grad():
            k = int(self.model(images[:1]).shape[1])
        for sub in (impl.apgd_targeted, impl.fab):  # the targeted attacks take the 9 most
            sub.n_target_classes = min(sub.n_target_classes, k - 1)  # likely others, or fewer
        devices: list[int] = []
        if images.device.type == "cuda":
            index = images.device.index
            devices = [torch.cuda.current_device() if index is None else index]
        with torch.random.fork_rng(devices=devices):
            adv, _ = impl.run_standard_evaluation(images, labels, batch_size=images.shape[0])
        return adv.to(images.device)

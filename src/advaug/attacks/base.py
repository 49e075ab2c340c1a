"""The attack base class and the guard that keeps attacked models unchanged.

Every attack runs its models inside :func:`frozen`: each module in eval mode, every parameter with
``requires_grad=False``, and both restored afterwards, exceptions included. Gradients are taken
with ``torch.autograd.grad`` on the inputs only, so no parameter's ``.grad`` is ever touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advaug.errors import ConfigError, NumericalError

EpsLike = float | Tensor


class AttackInputError(ConfigError, ValueError):
    """An attack got an invalid setting or input (a usage error: fix the call)."""


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a (Distributed)DataParallel wrapper, else ``model`` itself.

    Attacks run the bare module: DDP's reducer expects every forward in grad mode to be followed
    by a backward into the parameters, which an attack never does.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
        return model.module
    return model


@contextmanager
def frozen(*models: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for ``models``; the exact previous state afterwards.

    The train/eval flag of every submodule and the ``requires_grad`` flag of every parameter are
    recorded one by one, so mixed states (a frozen BN inside a training model) come back intact.
    """
    mods: dict[int, nn.Module] = {}
    for model in models:
        for m in model.modules():
            mods.setdefault(id(m), m)
    params: dict[int, nn.Parameter] = {}
    for m in mods.values():
        for p in m.parameters(recurse=False):
            params.setdefault(id(p), p)
    modes = [(m, m.training) for m in mods.values()]
    flags = [(p, p.requires_grad) for p in params.values()]
    try:
        for model in models:
            model.eval()
        for p in params.values():
            p.requires_grad_(False)
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


def check_images(images: Tensor, name: str = "images", values: bool = True) -> None:
    """Raise :class:`AttackInputError` unless ``images`` is a float NCHW tensor in [0, 1]
    (``values=False`` skips the range check, which waits for the device)."""
    if not isinstance(images, Tensor) or not images.is_floating_point():
        kind = images.dtype if isinstance(images, Tensor) else type(images).__name__
        raise AttackInputError(
            f"{name} must be a float tensor in [0, 1], got {kind}; "
            "convert uint8 images with x.float() / 255"
        )
    if images.dim() != 4:
        raise AttackInputError(
            f"{name} must be NCHW (4 dims), got shape {tuple(images.shape)}; add a batch dimension"
        )
    if values and images.numel() and not bool(((images >= 0) & (images <= 1)).all()):
        lo, hi = images.min().item(), images.max().item()
        raise AttackInputError(
            f"{name} must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
            "pass un-normalised pixels (the model normalises internally)"
        )


def check_labels(labels: Tensor, n: int, name: str = "labels") -> Tensor:
    """Raise unless ``labels`` is an integer tensor of shape [n]; return it."""
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise AttackInputError(f"{name} must be an integer tensor of class indices of shape [{n}]")
    if labels.shape != (n,):
        raise AttackInputError(
            f"{name} must have shape [{n}] (one per image), got {tuple(labels.shape)}"
        )
    return labels


def check_nonneg(value: EpsLike, name: str) -> None:
    """Raise unless ``value`` (a float or a tensor) is finite and >= 0 everywhere."""
    t = torch.as_tensor(value, dtype=torch.float64)
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise AttackInputError(f"{name} must be finite and >= 0, got {value!r}")


def check_steps(steps: int, name: str = "steps", minimum: int = 1) -> None:
    """Raise unless ``steps`` is an int >= ``minimum``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < minimum:
        raise AttackInputError(f"{name} must be an integer >= {minimum}, got {steps!r}")


def per_sample(value: EpsLike, images: Tensor, name: str = "eps") -> Tensor:
    """A float or a [B] tensor as a [B, 1, 1, 1] tensor on ``images``' device and dtype."""
    b = images.shape[0]
    if isinstance(value, int | float):  # a fill on the device: no host-to-device copy (sync)
        t = torch.full((), float(value), dtype=images.dtype, device=images.device)
    else:
        t = torch.as_tensor(value, dtype=images.dtype, device=images.device)
    if t.dim() == 0:
        t = t.expand(b)
    elif t.shape != (b,):
        raise AttackInputError(
            f"{name} must be a float or a tensor of shape [{b}] (one per image), "
            f"got shape {tuple(t.shape)}"
        )
    return t.view(b, *([1] * (images.dim() - 1)))


@contextmanager
def fixed_cudnn_algorithms() -> Iterator[None]:
    """``torch.backends.cudnn.benchmark`` off inside, restored after.

    With benchmarking on, every new input shape re-times every convolution. An attack that
    compacts finished samples out of its batch (the unrestricted attack) sees a new shape at
    almost every step, so it runs on cuDNN's heuristics instead.
    """
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def uniform_like(images: Tensor, rng: torch.Generator | None) -> Tensor:
    """U(-1, 1) noise shaped like ``images``, drawn from ``rng`` (on its own device) if given."""
    if rng is None:
        u = torch.rand(images.shape, device=images.device, dtype=images.dtype)
    else:
        u = torch.rand(images.shape, generator=rng, device=rng.device, dtype=images.dtype)
        u = u.to(images.device)
    return u * 2 - 1


def project(adv: Tensor, images: Tensor, eps: Tensor) -> Tensor:
    """Clip ``adv`` to the L∞ ball of radius ``eps`` around ``images`` and to [0, 1]."""
    return torch.clamp(torch.minimum(torch.maximum(adv, images - eps), images + eps), 0.0, 1.0)


def input_grad(
    model: nn.Module, images: Tensor, labels: Tensor, check: bool = True
) -> tuple[Tensor, Tensor]:
    """Gradient of the summed cross-entropy w.r.t. ``images``, and the logits (detached).

    The sum (not the mean) makes each sample's gradient independent of the batch size.
    """
    x = images.detach().requires_grad_(True)
    logits = model(x)
    loss = F.cross_entropy(logits.float(), labels, reduction="sum")
    if check:
        check_finite(loss, "attack loss (the model's logits)")
    (grad,) = torch.autograd.grad(loss, x)
    return grad, logits.detach()


def check_finite(value: Tensor, what: str) -> None:
    """Stop with a one-line NumericalError when ``value`` holds NaN or inf.

    Without it a NaN model silently yields sign(NaN) = 0 steps, i.e. clean images reported as
    adversarial ones, and robust accuracy becomes meaningless.
    """
    if not bool(torch.isfinite(value).all()):
        raise NumericalError(
            f"{what} is NaN or infinite; the model is broken (check its checkpoint or training)"
        )


class Attack:
    """Base class: ``atk = SomeAttack(model, ...); x_adv = atk(images, labels)``.

    In targeted mode (``targeted=True``) the ``labels`` passed to the call are the *target*
    classes, and the attack moves the prediction toward them. Subclasses implement
    :meth:`perturb`, which runs with validated inputs and frozen models.
    """

    def __init__(
        self, model: nn.Module, *, targeted: bool = False, rng: torch.Generator | None = None
    ) -> None:
        if not isinstance(model, nn.Module):
            raise AttackInputError(
                f"model must be an nn.Module returning logits, got {type(model).__name__}"
            )
        self.model = unwrap(model)
        self.targeted = bool(targeted)
        self.rng = rng

    def models(self) -> tuple[nn.Module, ...]:
        """The modules this attack runs (all are frozen during a call)."""
        return (self.model,)

    #: Check pixel ranges and NaN losses. Each check waits for the device; a training loop that
    #: attacks every step (FGSM augmentation) turns them off to keep the step free of host syncs.
    validate: bool = True

    def __call__(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Adversarial versions of ``images`` (same shape, in [0, 1], detached)."""
        check_images(images, values=self.validate)
        if labels is None:
            if self.needs_labels:
                raise AttackInputError(
                    f"{type(self).__name__} needs labels (targets in targeted mode): "
                    "call atk(images, labels)"
                )
        else:
            labels = check_labels(labels, images.shape[0]).to(images.device)
        with frozen(*self.models()):
            adv = self.perturb(images.detach(), labels)
        return adv.detach()

    needs_labels: bool = True

    def perturb(self, images: Tensor, labels: Tensor | None) -> Tensor:
        """The attack itself; models are already frozen here."""
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k not in ("model", "rng"))
        return f"{type(self).__name__}({fields})"

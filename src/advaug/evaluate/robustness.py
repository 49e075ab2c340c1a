"""Accuracy under norm-bounded attacks, batched, with the protocol line of every number."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from advaug.attacks import FGSM, PGD, make_autoattack
from advaug.attacks.autoattack_reference import resolve_backend
from advaug.evaluate.accuracy import to_float
from advaug.log import progress


def eps_label(eps: float) -> str:
    """A decimal for budgets of at most two decimals (MNIST's 0.1, 0.2, 0.3), else 8/255 for
    budgets on the 1/255 grid (CIFAR's), else a decimal."""
    k = eps * 255
    if abs(eps * 100 - round(eps * 100)) < 1e-6 or abs(k - round(k)) >= 1e-3:
        return f"{eps:.4g}"
    return f"{round(k)}/255"


def attacked_correct(
    model: nn.Module,
    make_attack: Callable[[nn.Module], Any],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    device: torch.device,
    desc: str = "attack",
) -> torch.Tensor:
    """Per image (bool, on the CPU, in the order of x): whether ``model`` is still right on
    ``make_attack(model)(x, y)``; batch by batch, with a progress bar named ``desc``."""
    atk = make_attack(model)
    correct = []
    for i in progress(range(0, x.shape[0], batch_size), desc=desc, unit="batch"):
        xb = to_float(x[i : i + batch_size], device)
        yb = y[i : i + batch_size].to(device)
        adv = atk(xb, yb)
        with torch.no_grad():
            correct.append((model(adv).argmax(1) == yb).cpu())
    return torch.cat(correct) if correct else torch.zeros(0, dtype=torch.bool)


def attacked_accuracy(
    model: nn.Module,
    make_attack: Callable[[nn.Module], Any],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    device: torch.device,
    desc: str = "attack",
) -> float:
    """Top-1 accuracy of ``model`` on ``make_attack(model)(x, y)`` (see ``attacked_correct``)."""
    correct = attacked_correct(model, make_attack, x, y, batch_size, device, desc)
    return correct.sum().item() / max(1, x.shape[0])


def robustness(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    fgsm_eps: list[float],
    pgd_eps: float,
    pgd_alpha: float,
    pgd_steps: int,
    pgd_restarts: int,
    autoattack: bool,
    batch_size: int,
    device: torch.device,
    split: str,
    seed: int = 0,
    autoattack_backend: str = "auto",
    outcomes: dict[str, torch.Tensor] | None = None,
) -> dict[str, dict[str, Any]]:
    """FGSM at each ε, PGD-k, and (optionally) AutoAttack; each with its protocol line and its
    image count ``n``. With ``outcomes``, each metric's per-image correctness (bool) is put
    there under its key."""
    n = x.shape[0]
    out: dict[str, dict[str, Any]] = {}
    found = outcomes if outcomes is not None else {}
    for eps in fgsm_eps:
        key = f"fgsm@{eps_label(eps)}"
        found[key] = attacked_correct(
            model, lambda m, e=eps: FGSM(m, eps=e), x, y, batch_size, device,
            desc=f"FGSM {eps_label(eps)}",
        )  # fmt: skip
        out[key] = {
            "value": _rate(found[key]),
            "protocol": f"FGSM L∞ ε={eps_label(eps)}, {n} {split} images",
            "n": n,
        }
    rng = torch.Generator(device=device).manual_seed(seed)
    key = f"pgd{pgd_steps}@{eps_label(pgd_eps)}"
    found[key] = attacked_correct(
        model,
        lambda m: PGD(
            m,
            eps=pgd_eps,
            alpha=pgd_alpha,
            steps=pgd_steps,
            random_start=True,
            restarts=pgd_restarts,
            rng=rng,
        ),
        x,
        y,
        batch_size,
        device,
        desc=f"PGD-{pgd_steps} {eps_label(pgd_eps)}",
    )
    out[key] = {
        "value": _rate(found[key]),
        "protocol": f"PGD-{pgd_steps} L∞ ε={eps_label(pgd_eps)} α={eps_label(pgd_alpha)}, "
        f"random start, {pgd_restarts} restart(s), {n} {split} images, seed {seed}",
        "n": n,
    }
    if autoattack:
        backend = resolve_backend(autoattack_backend)
        key = f"autoattack@{eps_label(pgd_eps)}"
        found[key] = attacked_correct(
            model,
            lambda m: make_autoattack(
                m,
                eps=pgd_eps,
                backend=backend,
                seed=seed,
                num_classes=getattr(m, "num_classes", None),
            ),
            x,
            y,
            batch_size,
            device,
            desc="AutoAttack",
        )
        impl = "reference code, pyautoattack" if backend == "reference" else "torchattacks"
        out[key] = {
            "value": _rate(found[key]),
            "protocol": f"AutoAttack standard ({impl}) L∞ ε={eps_label(pgd_eps)}, "
            f"{n} {split} images, seed {seed}",
            "n": n,
        }
    return out


def _rate(correct: torch.Tensor) -> float:
    return correct.sum().item() / max(1, correct.shape[0])

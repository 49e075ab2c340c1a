"""Unrestricted adversarial examples: search the AC-GAN's latent space (Song et al. 2018).

For source classes s (and targets t when targeted) the attack optimises latent codes z, starting
from fresh z⁰ ~ N(0, I), so that the classifier f gets x̂ = G(z, s) wrong while the AC-GAN's
auxiliary classifier C still sees s. The per-sample objective (SEED-SPEC §5.1) is

    ℓ = L_adv + λ1·L_z + λ2·L_ac
    L_adv = min_{k≠s} CE(f(x̂), k)          (untargeted; the source entry is masked with +inf)
          = CE(f(x̂), t)                    (targeted)
    L_z   = mean_j max((z_j − z⁰_j)² − z_eps², 0)      ("hinge": the seed's per-coordinate box)
          = max(mean_j (z_j − z⁰_j)² − z_eps², 0)      ("l2ball": RMS change ≤ z_eps)
    L_ac  = CE(C(G(z, s)), s)               (on the noise-free generator output)

with optional pixel noise x̂ = clip(G(z, s) + noise_eps·tanh(n), 0, 1). The reported batch loss is
the mean of ℓ over the active samples; each sample is updated with the gradient of its own ℓ, so
(for a generator whose samples are independent in eval mode) samples never interact, and finished
samples leave the working batch (per-sample early stopping with compaction).

Fixes over the seed (SEED-SPEC §7.10–16): fresh z and z⁰ := z on every call; returned images
include the pixel noise; success is judged on the final image with both f and C (f wrong, or f = t
when targeted, and argmax C(x̂) = s); all results are returned with a success mask; no image dumps.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advaug.attacks.base import (
    AttackInputError,
    check_finite,
    frozen,
    unwrap,
)
from advaug.attacks.unrestricted_result import UnrestrictedResult
from advaug.config import (
    UNRESTRICTED_PRESETS,
    LatentOptimizer,
    UnrestrictedConfig,
    ZProximity,
    unrestricted_preset,
)
from advaug.errors import ConfigError
from advaug.log import get_logger, progress

log = get_logger(__name__)

OPTIMIZERS = get_args(LatentOptimizer)
PROXIMITIES = get_args(ZProximity)

#: The presets as settings: the seed's (SEED-SPEC §4.4/§5.1), Song et al.'s code defaults
#: (SEED-SPEC §5.2) and the fast one for augmentation; their numbers and reasons are in
#: :data:`advaug.config.UNRESTRICTED_PRESETS`.
PRESETS: dict[str, UnrestrictedConfig] = UNRESTRICTED_PRESETS
SEED = PRESETS["seed"]
SONG = PRESETS["song"]
FAST = PRESETS["fast"]


# --------------------------------------------------------------------------- objective terms


def untargeted_loss(logits: Tensor, source: Tensor) -> Tensor:
    """min over k ≠ s of CE(logits, k), per sample: the source entry is masked with +inf."""
    ce = torch.logsumexp(logits, dim=1, keepdim=True) - logits
    mask = F.one_hot(source, logits.shape[1]).bool()
    return ce.masked_fill(mask, math.inf).amin(dim=1)


def targeted_loss(logits: Tensor, target: Tensor) -> Tensor:
    """CE(logits, t), per sample."""
    return F.cross_entropy(logits, target, reduction="none")


def proximity_loss(z: Tensor, z0: Tensor, z_eps: float, kind: str = "hinge") -> Tensor:
    """Soft latent constraint, per sample (see the module docstring for both kinds)."""
    sq = (z - z0).square()
    if kind == "hinge":
        return torch.clamp(sq - z_eps**2, min=0).mean(dim=1)
    if kind == "l2ball":
        return torch.clamp(sq.mean(dim=1) - z_eps**2, min=0)
    raise AttackInputError(f"z_proximity must be one of {PROXIMITIES}, got {kind!r}")


def ac_loss(ac_logits: Tensor, source: Tensor) -> Tensor:
    """CE(C(G(z, s)), s), per sample."""
    return F.cross_entropy(ac_logits, source, reduction="none")


# --------------------------------------------------------------------------- attack


def _checked(cfg: UnrestrictedConfig, **changes: Any) -> UnrestrictedConfig:
    """``cfg`` with ``changes``, validated; a bad value is an :class:`AttackInputError`."""
    try:
        cfg = cfg.replace(**changes)
        cfg.validate()
    except ConfigError as exc:
        raise AttackInputError(str(exc)) from exc
    return cfg


class _Setting:
    """``atk.<name>``: reads ``atk.cfg.<name>``; assigning replaces the config (validated)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, atk: Any, owner: type | None = None) -> Any:
        return self if atk is None else getattr(atk.cfg, self.name)

    def __set__(self, atk: Any, value: Any) -> None:
        atk.cfg = _checked(atk.cfg, **{self.name: value})


class _NullBar:
    """Stands in for a progress bar when progress is off."""

    def __enter__(self) -> _NullBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        """Do nothing."""


def _device_of(module: nn.Module) -> torch.device:
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def _labels(value: Any, name: str, n: int | None, k: int, device: torch.device) -> Tensor:
    t = torch.as_tensor(value)
    if t.is_floating_point() or t.dtype == torch.bool or t.dim() != 1:
        raise AttackInputError(f"{name} must be a 1-D integer tensor of class indices")
    if n is not None and t.shape[0] != n:
        raise AttackInputError(f"{name} must have {n} entries (one per source), got {t.shape[0]}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= k):
        raise AttackInputError(f"{name} must hold classes in [0, {k}), got {t.min()}..{t.max()}")
    return t.to(device=device, dtype=torch.long)


class UnrestrictedAttack:
    """Latent-space attack: ``result = UnrestrictedAttack(G, D, f)(source, target=None, z=None)``.

    Settings come as one :class:`~advaug.config.UnrestrictedConfig` (:meth:`from_config`); the
    keyword form ``UnrestrictedAttack(G, D, f, steps=20)`` replaces fields of ``cfg`` (default:
    the ``fast`` preset).

    ``G(z, y)`` returns [0, 1] images and has ``z_dim`` and ``num_classes``; ``D(x)`` returns
    ``(score, ac_logits)``; ``f(x)`` returns logits. All three run in eval mode with frozen
    parameters during a call. Optimisers:

    - ``"adam"``: Adam on z (and n), moments kept per sample.
    - ``"sgd-noise"``: the seed's rule, z ← z − lr·(∇ℓ/grad_div + ξ_t), ξ_t ~ N(0, σ_t² I),
      σ_t² = eta0/(1+t)^gamma; and n ← n − noise_lr·g/√(Σg² + 1e-12) per sample.

    ``steps=0`` just evaluates fresh generator samples (the seed's "Original_acc").

    With ``early_stop`` a sample stops at its first success. ``compact`` (default: auto) also
    drops finished samples from the forward batch, which is only exact when G's samples do not
    depend on each other; auto turns it off for a generator with ``bn_stats == "batch"`` (the
    seed's batch-statistics BN), where finished samples stay in the batch, frozen.
    """

    # every setting reads as an attribute (atk.steps is atk.cfg.steps); assigning one re-validates
    targeted = _Setting()
    steps = _Setting()
    lr = _Setting()
    optimizer = _Setting()
    lambda1 = _Setting()
    lambda2 = _Setting()
    z_eps = _Setting()
    z_proximity = _Setting()
    noise_eps = _Setting()
    noise_lr = _Setting()
    eta0 = _Setting()
    gamma = _Setting()
    grad_div = _Setting()
    betas = _Setting()
    early_stop = _Setting()
    compact = _Setting()
    batch_size = _Setting()

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module,
        classifier: nn.Module,
        cfg: UnrestrictedConfig | None = None,
        *,
        rng: torch.Generator | None = None,
        show_progress: bool = True,
        **overrides: Any,
    ) -> None:
        for name, mod in (("generator", generator), ("critic", critic), ("classifier", classifier)):
            if not isinstance(mod, nn.Module):
                raise AttackInputError(f"{name} must be an nn.Module, got {type(mod).__name__}")
        for attr in ("z_dim", "num_classes"):
            if not isinstance(getattr(generator, attr, None), int):
                raise AttackInputError(
                    f"the generator needs an int attribute {attr!r} (G(z, y) with z [N, z_dim])"
                )
        self.cfg = _checked(FAST if cfg is None else cfg, **overrides)
        if generator.num_classes < 2:
            raise AttackInputError("the generator must have at least 2 classes")
        self.generator = unwrap(generator)
        self.critic = unwrap(critic)
        self.classifier = unwrap(classifier)
        self.rng = rng
        self.show_progress = show_progress

    @classmethod
    def from_config(
        cls,
        generator: nn.Module,
        critic: nn.Module,
        classifier: nn.Module,
        cfg: UnrestrictedConfig,
        *,
        rng: torch.Generator | None = None,
        show_progress: bool = True,
    ) -> UnrestrictedAttack:
        """The attack with settings ``cfg`` (validated)."""
        return cls(generator, critic, classifier, cfg, rng=rng, show_progress=show_progress)

    @classmethod
    def from_preset(
        cls,
        preset: str | Mapping[str, Any],
        generator: nn.Module,
        critic: nn.Module,
        classifier: nn.Module,
        *,
        rng: torch.Generator | None = None,
        show_progress: bool = True,
        **overrides: Any,
    ) -> UnrestrictedAttack:
        """Build from ``"seed"``, ``"song"``, ``"fast"`` (or a dict of settings) plus overrides."""
        if isinstance(preset, str):
            try:
                base = unrestricted_preset(preset)
            except ConfigError as exc:
                raise AttackInputError(str(exc)) from exc
            changes = overrides
        else:
            base, changes = FAST, {**preset, **overrides}
        return cls(
            generator, critic, classifier, base, rng=rng, show_progress=show_progress, **changes
        )

    @property
    def num_classes(self) -> int:
        """Number of classes of the generator."""
        return int(self.generator.num_classes)

    def settings(self) -> dict[str, Any]:
        """The attack's settings (stored in every result's ``meta``), ``noise_lr`` resolved."""
        out = dataclasses.asdict(self.cfg)
        out["noise_lr"] = self.cfg.effective_noise_lr
        out["betas"] = list(self.cfg.betas)
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ objective

    def objective(
        self,
        logits: Tensor,
        ac_logits: Tensor,
        z: Tensor,
        z0: Tensor,
        source: Tensor,
        target: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Per-sample terms ``adv``, ``z``, ``ac`` and their weighted sum ``total`` (all [B])."""
        logits, ac_logits = logits.float(), ac_logits.float()
        if self.targeted:
            assert target is not None
            adv = targeted_loss(logits, target)
        else:
            adv = untargeted_loss(logits, source)
        prox = proximity_loss(z, z0, self.z_eps, self.z_proximity)
        ac = ac_loss(ac_logits, source)
        total = adv + self.lambda1 * prox + self.lambda2 * ac
        return {"adv": adv, "z": prox, "ac": ac, "total": total}

    def _ac_logits(self, x: Tensor) -> Tensor:
        out = self.critic(x)
        if not isinstance(out, tuple | list) or len(out) != 2:
            raise AttackInputError("the critic must return (score, ac_logits)")
        return out[1]

    def _randn(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        if self.rng is None:
            return torch.randn(shape, device=device)
        return torch.randn(shape, generator=self.rng, device=self.rng.device).to(device)

    # ------------------------------------------------------------------ main loop

    def __call__(
        self,
        source: Tensor | Sequence[int],
        target: Tensor | Sequence[int] | None = None,
        z: Tensor | None = None,
    ) -> UnrestrictedResult:
        """Attack one sample per entry of ``source`` (any N; processed ``batch_size`` at a time)."""
        device = _device_of(self.generator)
        k = self.num_classes
        src = _labels(source, "source", None, k, device)
        n = src.shape[0]
        if n == 0:
            raise AttackInputError("source is empty; pass at least one source class")
        if self.targeted:
            if target is None:
                raise AttackInputError(
                    "a targeted attack needs target classes: call atk(source, target)"
                )
            tgt = _labels(target, "target", n, k, device)
            if bool((tgt == src).any()):
                raise AttackInputError("target must differ from source for every sample")
        else:
            if target is not None:
                raise AttackInputError("target given to an untargeted attack; set targeted=True")
            tgt = torch.full_like(src, -1)
        d = int(self.generator.z_dim)
        if z is None:
            z0 = self._randn((n, d), device)
        else:
            if not isinstance(z, Tensor) or z.shape != (n, d) or not z.is_floating_point():
                raise AttackInputError(f"z must be a float tensor of shape [{n}, {d}]")
            if not bool(torch.isfinite(z).all()):
                raise AttackInputError("z must be finite")
            z0 = z.detach().to(device=device, dtype=torch.float32).clone()

        chunks = range(0, n, self.batch_size)
        results = []
        total = len(chunks) * (self.steps + 1)
        bar: Any = _NullBar()
        if self.show_progress:
            bar = progress(total=total, desc="unrestricted", unit="step")
        with frozen(self.generator, self.critic, self.classifier), bar:
            for start in chunks:
                sl = slice(start, start + self.batch_size)
                results.append(self._attack_chunk(z0[sl], src[sl], tgt[sl], bar))
        result = UnrestrictedResult.cat(results)
        result.meta = {"attack": "unrestricted", **self.settings()}
        log.debug(
            "unrestricted attack: %d samples, success %.3f, median steps %s",
            n,
            result.success_rate,
            result.steps_percentiles((50,))[50],
        )
        return result

    def _compacts(self) -> bool:
        """Whether finished samples leave the forward batch (see ``compact``)."""
        if self.compact is not None:
            return self.compact
        return getattr(self.generator, "bn_stats", "running") != "batch"

    def _attack_chunk(self, z0: Tensor, src: Tensor, tgt: Tensor, bar: Any) -> UnrestrictedResult:
        """Optimise one chunk; a sample stops when it succeeds (and leaves the batch if compact)."""
        b = z0.shape[0]
        device = z0.device
        compact = self._compacts()
        z = z0.clone()
        use_noise = self.noise_eps > 0
        noise: Tensor | None = None
        state: dict[str, Tensor] = {}
        out: dict[str, Tensor] = {}
        work = torch.arange(b, device=device)  # rows of the chunk in the forward batch
        live = torch.ones(b, dtype=torch.bool, device=device)  # per row of work: still optimising
        for t in range(self.steps + 1):
            last = t == self.steps
            za = z[work].detach().requires_grad_(True)
            sa, ta = src[work], tgt[work]
            na: Tensor | None = None
            with torch.enable_grad():
                clean = self.generator(za, sa)
                x_hat = clean
                if use_noise:
                    if noise is None:
                        noise = torch.zeros((b, *clean.shape[1:]), device=device)
                    na = noise[work].detach().requires_grad_(True)
                    x_hat = torch.clamp(clean + self.noise_eps * torch.tanh(na), 0.0, 1.0)
                logits = self.classifier(x_hat)
                ac_logits = self._ac_logits(clean)
            if not out:
                if logits.dim() != 2 or logits.shape[1] < self.num_classes:
                    raise AttackInputError(
                        f"the classifier must return [B, {self.num_classes}] logits, "
                        f"got {tuple(logits.shape)}"
                    )
                out = {
                    "images": torch.empty((b, *x_hat.shape[1:]), device=device),
                    "z": torch.empty_like(z0),
                    "success": torch.zeros(b, dtype=torch.bool, device=device),
                    "steps": torch.zeros(b, dtype=torch.long, device=device),
                    "clf_pred": torch.zeros(b, dtype=torch.long, device=device),
                    "ac_pred": torch.zeros(b, dtype=torch.long, device=device),
                }
            if self.early_stop or last:
                with torch.no_grad():
                    clf_pred = logits.argmax(dim=1)
                    ac_src = self._ac_logits(x_hat) if na is not None else ac_logits
                    ac_pred = ac_src.argmax(dim=1)
                    fooled = clf_pred == ta if self.targeted else clf_pred != sa
                    success = fooled & (ac_pred == sa)
                    done = live if last else live & success
                    if bool(done.any()):
                        rows = work[done]
                        out["images"][rows] = x_hat[done].detach().float()
                        out["z"][rows] = za[done].detach()
                        out["success"][rows] = success[done]
                        out["steps"][rows] = t
                        out["clf_pred"][rows] = clf_pred[done]
                        out["ac_pred"][rows] = ac_pred[done]
                    live = live & ~done
            bar.update(1)
            if last or not bool(live.any()):
                bar.update(self.steps - t)
                break
            with torch.enable_grad():
                terms = self.objective(logits, ac_logits, za, z0[work], sa, ta)
                wrt = [za] if na is None else [za, na]
                total = terms["total"][live].sum()
                check_finite(total, "unrestricted-attack objective (classifier, G or D output)")
                grads = torch.autograd.grad(total, wrt)
            rows = work[live]
            gz = grads[0][live]
            gn = grads[1][live] if na is not None else None
            self._update(t, rows, z, gz, noise, gn, state)
            if compact:
                work = rows
                live = torch.ones(rows.shape[0], dtype=torch.bool, device=device)
        return UnrestrictedResult(
            images=out["images"],
            z=out["z"],
            z0=z0,
            source=src,
            target=tgt,
            success=out["success"],
            steps=out["steps"],
            clf_pred=out["clf_pred"],
            ac_pred=out["ac_pred"],
        )

    @torch.no_grad()
    def _update(
        self,
        t: int,
        rows: Tensor,
        z: Tensor,
        gz: Tensor,
        noise: Tensor | None,
        gn: Tensor | None,
        state: dict[str, Tensor],
    ) -> None:
        """One optimiser step on rows ``rows`` of the full-size z (and noise) tensors."""
        if self.optimizer == "sgd-noise":
            sigma = math.sqrt(self.eta0 / (1 + t) ** self.gamma)
            xi = self._randn(tuple(gz.shape), gz.device) * sigma
            z[rows] = z[rows] - self.lr * (gz / self.grad_div + xi)
            if noise is not None and gn is not None:
                norm = gn.flatten(1).square().sum(dim=1).add(1e-12).sqrt()
                gn_unit = gn / norm.view(-1, *([1] * (gn.dim() - 1)))
                noise[rows] = noise[rows] - self.cfg.effective_noise_lr * gn_unit
            return
        b1, b2 = self.betas
        params = [("z", z, gz, self.lr)]
        if noise is not None and gn is not None:
            params.append(("n", noise, gn, self.cfg.effective_noise_lr))
        for name, p, g, lr in params:
            m = state.setdefault(f"m_{name}", torch.zeros_like(p))
            v = state.setdefault(f"v_{name}", torch.zeros_like(p))
            m_r = m[rows].mul_(b1).add_(g, alpha=1 - b1)
            v_r = v[rows].mul_(b2).addcmul_(g, g, value=1 - b2)
            m[rows], v[rows] = m_r, v_r
            m_hat = m_r / (1 - b1 ** (t + 1))
            v_hat = v_r / (1 - b2 ** (t + 1))
            p[rows] = p[rows] - lr * m_hat / (v_hat.sqrt() + 1e-8)


__all__ = [
    "FAST",
    "PRESETS",
    "SEED",
    "SONG",
    "UnrestrictedConfig",
    "UnrestrictedAttack",
    "UnrestrictedResult",
    "ac_loss",
    "proximity_loss",
    "targeted_loss",
    "untargeted_loss",
]

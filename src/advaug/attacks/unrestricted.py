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

with optional pixel noise x̂ = clip(G(z, s) + noise_eps·tanh(n), 0, 1). L_z is a soft constraint:
with Adam at lr 0.05 the first step alone moves every coordinate by 0.05, and z can end far
outside z_eps. ``z_project`` makes the bound hard, as PGD does in pixel space: after every
optimiser step z is projected onto {|z_j − z⁰_j| ≤ z_eps} (``linf``) or
{sqrt(mean_j (z_j − z⁰_j)²) ≤ z_eps} (``l2``, the RMS ball of ``l2ball``); the default ``none``
keeps the seed's and Song et al.'s soft constraint only. The search differentiates
the sum of ℓ over the active samples, so each sample is updated with the gradient of its own ℓ:
for a generator whose samples are independent in eval mode, samples never interact, and finished
samples leave the working batch (per-sample early stopping with compaction).

Each step of the search on a chunk of ``batch_size`` samples (``_attack_chunk``) is ``_forward``
(x̂, f(x̂), C(G(z, s))), ``_retire`` (judge success, record the finished rows), ``_descend`` (the
gradient of ℓ, then ``_adam_step`` or ``_sgd_noise_step``) and ``_Chunk.compact``.

Fixes over the seed (SEED-SPEC §7.10–16): fresh z and z⁰ := z on every call; returned images
include the pixel noise; success is judged on the final image with both f and C (f wrong, or f = t
when targeted, and argmax C(x̂) = s); all results are returned with a success mask; no image dumps.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advaug.attacks.base import (
    AttackInputError,
    check_finite,
    fixed_cudnn_algorithms,
    frozen,
    unwrap,
)
from advaug.attacks.unrestricted_result import UnrestrictedResult
from advaug.config import (
    UNRESTRICTED_PRESETS,
    LatentOptimizer,
    UnrestrictedConfig,
    ZProject,
    ZProximity,
    unrestricted_preset,
)
from advaug.errors import ConfigError
from advaug.log import get_logger, progress

log = get_logger(__name__)

OPTIMIZERS = get_args(LatentOptimizer)
PROXIMITIES = get_args(ZProximity)
PROJECTIONS = get_args(ZProject)

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


def project_z(z: Tensor, z0: Tensor, z_eps: float, kind: str) -> Tensor:
    """z projected onto the z_eps ball around z⁰, per row: ``linf`` clamps each coordinate of
    z − z⁰ to [−z_eps, z_eps]; ``l2`` scales z − z⁰ down to RMS z_eps (L2 norm z_eps·√d) when
    it is longer; ``none`` returns z."""
    if kind == "none":
        return z
    d = z - z0
    if kind == "linf":
        return z0 + d.clamp(-z_eps, z_eps)
    if kind == "l2":
        rms = d.square().mean(dim=1, keepdim=True).sqrt()
        return z0 + d * (z_eps / rms.clamp(min=_NORM_EPS)).clamp(max=1.0)
    raise AttackInputError(f"z_project must be one of {PROJECTIONS}, got {kind!r}")


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


#: Keeps the pixel-noise gradient's norm away from 0 (a sample whose noise gradient vanishes).
_NORM_EPS = 1e-12
#: Adam's ε: the denominator's floor, as in torch.optim.Adam.
_ADAM_EPS = 1e-8


class _Forward(NamedTuple):
    """One forward pass over the batch rows: the leaves z (and noise n) that gradients are taken
    for, the rows' sources and targets, the image x̂ and the logits of f(x̂) and C(G(z, s))."""

    z: Tensor
    noise: Tensor | None
    source: Tensor
    target: Tensor
    x_hat: Tensor
    logits: Tensor
    ac_logits: Tensor


@dataclass
class _Chunk:
    """The search state of one chunk of rows.

    ``z`` (and ``noise``) hold every row; ``work`` lists the rows in the forward batch (all of
    them, or the unfinished ones when compacting) and ``live`` marks, per entry of ``work``, the
    rows still being optimised.
    """

    z0: Tensor
    src: Tensor
    tgt: Tensor
    z: Tensor
    work: Tensor
    live: Tensor
    noise: Tensor | None = None  # pre-tanh pixel noise, created at the first forward pass
    moments: dict[str, Tensor] = field(default_factory=dict)  # Adam's m and v per parameter
    out: dict[str, Tensor] = field(default_factory=dict)  # the result rows, once shaped

    @classmethod
    def start(cls, z0: Tensor, src: Tensor, tgt: Tensor) -> _Chunk:
        """z = z⁰; every row in the batch and live."""
        b, device = z0.shape[0], z0.device
        work = torch.arange(b, device=device)
        live = torch.ones(b, dtype=torch.bool, device=device)
        return cls(z0, src, tgt, z=z0.clone(), work=work, live=live)

    def compact(self) -> None:
        """Drop the finished rows from the forward batch."""
        self.work = self.work[self.live]
        self.live = torch.ones(self.work.shape[0], dtype=torch.bool, device=self.work.device)

    def result(self) -> UnrestrictedResult:
        """The chunk's rows as a result."""
        out = self.out
        return UnrestrictedResult(
            images=out["images"],
            z=out["z"],
            z0=self.z0,
            source=self.src,
            target=self.tgt,
            success=out["success"],
            steps=out["steps"],
            clf_pred=out["clf_pred"],
            ac_pred=out["ac_pred"],
            clf_pred0=out["clf_pred0"],
            ac_pred0=out["ac_pred0"],
        )


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

    Arguments:
        generator (nn.Module): G(z, y), images in [0, 1], with int ``z_dim`` and ``num_classes``.
        critic (nn.Module): D(x) = (critic score, AC-head logits over the K classes).
        classifier (nn.Module): the attacked model f(x), logits over at least K classes.
        cfg (UnrestrictedConfig): the settings (default: the ``fast`` preset).
        rng (torch.Generator): draws z⁰ and the sgd-noise ξ (default: torch's global one).
        show_progress (bool): a progress bar over the steps (default: True).
        **overrides: fields of ``cfg`` to replace, e.g. ``steps=20``.

    Shape:
        - source: ``(N)`` class indices in [0, K), one search per entry.
        - target: ``(N)`` classes t ≠ s, only when ``targeted``.
        - z: ``(N, z_dim)`` initial codes z⁰ (default: fresh draws from N(0, I)).
        - output: :class:`UnrestrictedResult` with N rows: ``images`` ``(N, C, H, W)`` as G
          makes them; ``z``, ``z0`` ``(N, z_dim)``; ``source``, ``target``, ``success``,
          ``steps``, ``clf_pred``, ``ac_pred``, ``clf_pred0``, ``ac_pred0`` ``(N)`` (the
          last two: f's and C's predictions for the clean G(z⁰, s), before any update).

    Examples::

        >>> import torch
        >>> from torch import nn
        >>> from advaug.attacks import UnrestrictedAttack
        >>> from advaug.models.gan import Critic, Generator
        >>> _ = torch.manual_seed(0)
        >>> G = Generator(z_dim=16, width=8, num_classes=4)  # G(z, y): images in [0, 1]
        >>> D = Critic(width=8, num_classes=4)  # D(x) = (critic score, AC logits)
        >>> f = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))  # any logits model
        >>> atk = UnrestrictedAttack(G, D, f, steps=5, show_progress=False)  # fast preset, 5 steps
        >>> result = atk(torch.tensor([0, 1, 2, 3]))  # one search per source class
        >>> result.images.shape, result.z.shape, result.success.shape
        (torch.Size([4, 3, 32, 32]), torch.Size([4, 16]), torch.Size([4]))
        >>> bool((result.steps <= 5).all()), result.meta["optimizer"]
        (True, 'adam')
        >>> x_uae = result.successes().images  # the unrestricted adversarial examples
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
    z_project = _Setting()
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
        """The attack with settings ``cfg`` (validated): the way settings enter the attack.

        Shape:
            - source: ``(N)``; target: ``(N)`` when ``cfg.targeted``; z: ``(N, z_dim)``.
            - output: :class:`UnrestrictedResult` with N rows, images ``(N, C, H, W)``.

        Examples::

            >>> import torch
            >>> from torch import nn
            >>> from advaug.attacks import SEED, UnrestrictedAttack
            >>> from advaug.models.gan import Critic, Generator
            >>> _ = torch.manual_seed(0)
            >>> G, D = Generator(z_dim=16, width=8, num_classes=4), Critic(width=8, num_classes=4)
            >>> f = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))
            >>> cfg = SEED.replace(steps=3, targeted=True)  # the seed's optimiser, aimed at t
            >>> atk = UnrestrictedAttack.from_config(G, D, f, cfg, show_progress=False)
            >>> source = torch.tensor([0, 1, 2])
            >>> result = atk(source, (source + 1) % 4)
            >>> result.target.tolist(), result.steps.tolist()  # no early stop in the seed preset
            ([1, 2, 3], [3, 3, 3])
            >>> result.images.shape
            torch.Size([3, 3, 32, 32])
        """
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
        src, tgt, z0 = self._inputs(source, target, z)
        chunks = range(0, src.shape[0], self.batch_size)
        results = []
        bar: Any = _NullBar()
        if self.show_progress:
            bar = progress(total=len(chunks) * (self.steps + 1), desc="unrestricted", unit="step")
        # finished samples leave the batch: a new shape at almost every step, no cuDNN autotuning
        with frozen(self.generator, self.critic, self.classifier), fixed_cudnn_algorithms(), bar:
            for start in chunks:
                sl = slice(start, start + self.batch_size)
                results.append(self._attack_chunk(z0[sl], src[sl], tgt[sl], bar))
        result = UnrestrictedResult.cat(results)
        result.meta = {"attack": "unrestricted", **self.settings()}
        log.debug(
            "unrestricted attack: %d samples, success %.3f, median steps %s",
            len(result),
            result.success_rate,
            result.steps_percentiles((50,))[50],
        )
        return result

    def _inputs(self, source: Any, target: Any, z: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Checked sources, targets (−1 when untargeted) and initial codes z⁰ (drawn if None)."""
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
            return src, tgt, self._randn((n, d), device)
        if not isinstance(z, Tensor) or z.shape != (n, d) or not z.is_floating_point():
            raise AttackInputError(f"z must be a float tensor of shape [{n}, {d}]")
        if not bool(torch.isfinite(z).all()):
            raise AttackInputError("z must be finite")
        return src, tgt, z.detach().to(device=device, dtype=torch.float32).clone()

    def _compacts(self) -> bool:
        """Whether finished samples leave the forward batch (see ``compact``)."""
        if self.compact is not None:
            return self.compact
        return getattr(self.generator, "bn_stats", "running") != "batch"

    def _attack_chunk(self, z0: Tensor, src: Tensor, tgt: Tensor, bar: Any) -> UnrestrictedResult:
        """Search one chunk: at each step t = 0..steps, judge the images, retire the rows that
        are done, and move the others by one optimiser step.

        A row is done when it succeeds (with ``early_stop``) or at t = ``steps``; its recorded
        image, code and predictions are those of the step at which it finished.
        """
        run = _Chunk.start(z0, src, tgt)
        compact = self._compacts()
        for t in range(self.steps + 1):
            last = t == self.steps
            fwd = self._forward(run)
            if not run.out:
                run.out = self._outputs(run, fwd)
            if self.early_stop or last:
                self._retire(run, fwd, t, last)
            bar.update(1)
            if last or not bool(run.live.any()):
                bar.update(self.steps - t)
                break
            self._descend(run, fwd, t)
            if compact:
                run.compact()
        return run.result()

    def _forward(self, run: _Chunk) -> _Forward:
        """The batch rows' images and logits, in grad mode w.r.t. z (and the pixel noise n).

        x̂ = clip(G(z, s) + noise_eps·tanh(n), 0, 1) (x̂ = G(z, s) without noise); the classifier
        sees x̂, the AC head the noise-free G(z, s). n starts at 0 on the first step.
        """
        b = run.z0.shape[0]
        z = run.z[run.work].detach().requires_grad_(True)
        source, target = run.src[run.work], run.tgt[run.work]
        noise: Tensor | None = None
        with torch.enable_grad():
            clean = self.generator(z, source)
            x_hat = clean
            if self.noise_eps > 0:
                if run.noise is None:
                    run.noise = torch.zeros((b, *clean.shape[1:]), device=run.z0.device)
                noise = run.noise[run.work].detach().requires_grad_(True)
                x_hat = torch.clamp(clean + self.noise_eps * torch.tanh(noise), 0.0, 1.0)
            logits = self.classifier(x_hat)
            ac_logits = self._ac_logits(clean)
        return _Forward(z, noise, source, target, x_hat, logits, ac_logits)

    def _outputs(self, run: _Chunk, fwd: _Forward) -> dict[str, Tensor]:
        """Empty result rows for the whole chunk, shaped after the first forward pass."""
        logits, b, device = fwd.logits, run.z0.shape[0], run.z0.device
        if logits.dim() != 2 or logits.shape[1] < self.num_classes:
            raise AttackInputError(
                f"the classifier must return [B, {self.num_classes}] logits, "
                f"got {tuple(logits.shape)}"
            )
        _, clf_pred0, ac_pred0 = self._judge(fwd)  # step 0: every row, at z = z⁰, n = 0
        return {
            "clf_pred0": clf_pred0.detach().clone(),
            "ac_pred0": ac_pred0.detach().clone(),
            "images": torch.empty((b, *fwd.x_hat.shape[1:]), device=device),
            "z": torch.empty_like(run.z0),
            "success": torch.zeros(b, dtype=torch.bool, device=device),
            "steps": torch.zeros(b, dtype=torch.long, device=device),
            "clf_pred": torch.zeros(b, dtype=torch.long, device=device),
            "ac_pred": torch.zeros(b, dtype=torch.long, device=device),
        }

    @torch.no_grad()
    def _judge(self, fwd: _Forward) -> tuple[Tensor, Tensor, Tensor]:
        """Per batch row: success, f's prediction and C's prediction, all on the final image x̂.

        Success = f fooled (argmax f(x̂) ≠ s; = t when targeted) and argmax C(x̂) = s.
        """
        clf_pred = fwd.logits.argmax(dim=1)
        ac_logits = self._ac_logits(fwd.x_hat) if fwd.noise is not None else fwd.ac_logits
        ac_pred = ac_logits.argmax(dim=1)
        fooled = clf_pred == fwd.target if self.targeted else clf_pred != fwd.source
        return fooled & (ac_pred == fwd.source), clf_pred, ac_pred

    @torch.no_grad()
    def _retire(self, run: _Chunk, fwd: _Forward, t: int, last: bool) -> None:
        """Record the live rows that are done at step t (the successful ones; all at the last
        step) in the result, and stop optimising them."""
        success, clf_pred, ac_pred = self._judge(fwd)
        done = run.live if last else run.live & success
        if bool(done.any()):
            rows = run.work[done]
            run.out["images"][rows] = fwd.x_hat[done].detach().float()
            run.out["z"][rows] = fwd.z[done].detach()
            run.out["success"][rows] = success[done]
            run.out["steps"][rows] = t
            run.out["clf_pred"][rows] = clf_pred[done]
            run.out["ac_pred"][rows] = ac_pred[done]
        run.live = run.live & ~done

    def _descend(self, run: _Chunk, fwd: _Forward, t: int) -> None:
        """One optimiser step for the live rows, each along the gradient of its own ℓ.

        The gradient is that of Σ_live ℓ_i, a sum and not a mean, so that no row's step depends
        on how many rows are still live (the seed's batch mean is what ``grad_div`` emulates).
        """
        with torch.enable_grad():
            z0 = run.z0[run.work]
            terms = self.objective(fwd.logits, fwd.ac_logits, fwd.z, z0, fwd.source, fwd.target)
            wrt = [fwd.z] if fwd.noise is None else [fwd.z, fwd.noise]
            total = terms["total"][run.live].sum()
            check_finite(total, "unrestricted-attack objective (classifier, G or D output)")
            grads = torch.autograd.grad(total, wrt)
        rows = run.work[run.live]
        gz = grads[0][run.live]
        gn = grads[1][run.live] if fwd.noise is not None else None
        if self.optimizer == "sgd-noise":
            self._sgd_noise_step(t, rows, run, gz, gn)
        else:
            self._adam_step(t, rows, run, gz, gn)
        if self.z_project != "none":
            with torch.no_grad():
                run.z[rows] = project_z(run.z[rows], run.z0[rows], self.z_eps, self.z_project)

    @torch.no_grad()
    def _sgd_noise_step(
        self, t: int, rows: Tensor, run: _Chunk, gz: Tensor, gn: Tensor | None
    ) -> None:
        """The seed's rule on rows ``rows``: z ← z − lr·(∇_z ℓ / grad_div + ξ_t) with
        ξ_t ~ N(0, σ_t² I), σ_t² = eta0 / (1 + t)^gamma; the pixel noise takes a step of
        length noise_lr along its normalised gradient, n ← n − noise_lr·g / ‖g‖."""
        sigma = math.sqrt(self.eta0 / (1 + t) ** self.gamma)
        xi = self._randn(tuple(gz.shape), gz.device) * sigma
        run.z[rows] = run.z[rows] - self.lr * (gz / self.grad_div + xi)
        if run.noise is not None and gn is not None:
            norm = gn.flatten(1).square().sum(dim=1).add(_NORM_EPS).sqrt()
            gn_unit = gn / norm.view(-1, *([1] * (gn.dim() - 1)))
            run.noise[rows] = run.noise[rows] - self.cfg.effective_noise_lr * gn_unit

    @torch.no_grad()
    def _adam_step(self, t: int, rows: Tensor, run: _Chunk, gz: Tensor, gn: Tensor | None) -> None:
        """Adam on rows ``rows`` of z (and n), moments kept per row: m ← β1·m + (1−β1)·g,
        v ← β2·v + (1−β2)·g², p ← p − lr·m̂ / (√v̂ + ε) with m̂, v̂ bias-corrected for step t+1."""
        b1, b2 = self.betas
        params = [("z", run.z, gz, self.lr)]
        if run.noise is not None and gn is not None:
            params.append(("n", run.noise, gn, self.cfg.effective_noise_lr))
        for name, p, g, lr in params:
            m = run.moments.setdefault(f"m_{name}", torch.zeros_like(p))
            v = run.moments.setdefault(f"v_{name}", torch.zeros_like(p))
            m_r = m[rows].mul_(b1).add_(g, alpha=1 - b1)
            v_r = v[rows].mul_(b2).addcmul_(g, g, value=1 - b2)
            m[rows], v[rows] = m_r, v_r
            m_hat = m_r / (1 - b1 ** (t + 1))
            v_hat = v_r / (1 - b2 ** (t + 1))
            p[rows] = p[rows] - lr * m_hat / (v_hat.sqrt() + _ADAM_EPS)


__all__ = [
    "FAST",
    "PRESETS",
    "SEED",
    "SONG",
    "UnrestrictedConfig",
    "UnrestrictedAttack",
    "UnrestrictedResult",
    "ac_loss",
    "project_z",
    "proximity_loss",
    "targeted_loss",
    "untargeted_loss",
]

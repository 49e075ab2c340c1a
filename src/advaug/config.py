"""Typed configs: dataclasses, YAML presets and ``key=value`` overrides.

Every choice the system makes is a field here with a default. A preset (``configs/NAME.yaml``
inside the package) is a partial dict over :class:`StudyConfig`; command-line overrides such as
``classifier.optim.lr=0.05`` are applied on top. Unknown keys and invalid values raise a
:class:`~advaug.errors.ConfigError` whose one line names the key and what is allowed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from advaug.errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent / "configs"
#: Field metadata of a setting that says where something is or how a run is watched, not what
#: it computes: it is left out of :func:`identity`, so of :func:`config_hash` and
#: :func:`same_config` (a run folder whose copy differs only there is the same run).
NOT_IDENTITY = {"identity": False}
TECHNIQUES = ("none", "fgsm", "pgd", "gan", "unrestricted")
#: The seed's four techniques: what a study compares unless its config lists others.
SEED_TECHNIQUES = ("none", "fgsm", "gan", "unrestricted")
#: A GAN class whose within-class sample spread is below this multiple of the real images'
#: spread counts as collapsed (the study's evaluation and the GAN's training monitor).
COLLAPSE_THRESHOLD = 0.3


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"invalid config value {key}: {msg}")


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Which images, and how they are split and augmented."""

    name: str = "digits"  # digits | cifar10 | cifar100 | mnist | fashion-mnist
    root: str | None = None  # folder or .tar.gz; None = ./data/<name>
    download: bool = False  # fetch the official archive (md5-verified) if absent
    verify: bool = True  # check official md5s; false accepts a well-formed non-official copy
    check_sizes: bool = True  # official split sizes; false accepts a class-balanced subset
    val_size: int = 0  # images held out of train for validation (stratified, seeded)
    train_limit: int = 0  # >0: class-balanced subset of the training split
    test_limit: int = 0  # >0: class-balanced subset of the test split
    crop_pad: int = 4  # random-crop padding in pixels (0 = off)
    pad_mode: Literal["reflect", "zeros"] = "reflect"
    flip: bool = True  # random horizontal flip, where it keeps the class (never for mnist)
    # official file name -> md5 that pins a copy (checked even with verify=false); CIFAR only,
    # e.g. data.checksums.train=0123...: the error for a non-official copy names the line to add
    checksums: dict[str, str] = field(default_factory=dict)
    # a study's second choice: the dataset it runs on instead when this one's files are absent
    # and cannot be downloaded (the demo: MNIST, else the embedded digits); the report says so.
    # A study resolves it first (name = the dataset used, fallback None), so it is no identity
    fallback: str | None = field(default=None, metadata=NOT_IDENTITY)

    def validate(self, key: str) -> None:
        _check(self.root is None or self.root.strip() != "", f"{key}.root", "is empty; give a path")
        _check(
            self.fallback is None or self.fallback != self.name,
            f"{key}.fallback",
            f"is the dataset itself ({self.name}); name another one, or remove it",
        )
        for name in ("val_size", "train_limit", "test_limit", "crop_pad"):
            _check(getattr(self, name) >= 0, f"{key}.{name}", "must be >= 0")


@dataclass
class RuntimeConfig:
    """Where and how the computation runs."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto = bf16 autocast on CUDA
    channels_last: Literal["auto", "on", "off"] = "auto"  # auto = on for CUDA
    compile: bool = False  # torch.compile the training step (falls back to eager on failure)
    # deterministic algorithms (torch.use_deterministic_algorithms), cudnn.deterministic, no
    # cudnn.benchmark, CUBLAS_WORKSPACE_CONFIG: bit-reproducible CUDA runs, at a cost (README)
    deterministic: bool = False
    # where metrics, sample grids and hparams go besides metrics.jsonl (always written):
    # tensorboard (pip install 'advaug[tensorboard]'), wandb (pip install 'advaug[wandb]';
    # WANDB_MODE=offline and WANDB_PROJECT are read from the environment)
    loggers: list[Literal["tensorboard", "wandb"]] = field(default_factory=lambda: ["tensorboard"])
    sync_bn: bool = False  # SyncBatchNorm for the classifier under torchrun (CUDA)
    threads: int = 0  # torch CPU threads (0 = leave torch's default)
    # when to checkpoint, what to keep and what to show change no result: not part of a run's
    # identity (changing them resumes a run instead of redoing it)
    ckpt_every_min: float = field(default=10.0, metadata=NOT_IDENTITY)  # checkpoint every N min
    keep_last: int = field(default=2, metadata=NOT_IDENTITY)  # checkpoints kept (+ the best)
    progress: bool = field(default=True, metadata=NOT_IDENTITY)  # progress bars

    def validate(self, key: str) -> None:
        _check(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            f"{key}.device",
            f"'{self.device}' is not auto, cpu, cuda or cuda:N",
        )
        _check(self.threads >= 0, f"{key}.threads", "must be >= 0")
        _check(self.ckpt_every_min > 0, f"{key}.ckpt_every_min", "must be > 0")
        _check(self.keep_last >= 1, f"{key}.keep_last", "must be >= 1")


@dataclass
class ModelConfig:
    name: str = "densenet-bc-40"  # any name from `advaug models`
    kwargs: dict[str, Any] = field(default_factory=dict)  # constructor overrides


@dataclass
class OptimConfig:
    """SGD with Nesterov momentum, a schedule, label smoothing and EMA."""

    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # step: fractions
    gamma: float = 0.1  # step: factor at each milestone
    label_smoothing: float = 0.0
    ema_decay: float = 0.0  # 0 = no EMA; else evaluate with the EMA weights

    def validate(self, key: str) -> None:
        _check(self.lr > 0, f"{key}.lr", "must be > 0")
        _check(0 <= self.momentum < 1, f"{key}.momentum", "must be in [0, 1)")
        _check(self.weight_decay >= 0, f"{key}.weight_decay", "must be >= 0")
        _check(self.warmup_epochs >= 0, f"{key}.warmup_epochs", "must be >= 0")
        _check(all(0 < m < 1 for m in self.milestones), f"{key}.milestones", "fractions in (0,1)")
        _check(0 <= self.label_smoothing < 1, f"{key}.label_smoothing", "must be in [0, 1)")
        _check(0 <= self.ema_decay < 1, f"{key}.ema_decay", "must be in [0, 1)")


@dataclass
class FGSMAugConfig:
    """FGSM augmentation: the seed draws one eps ~ U(eps_min, eps_max) per batch."""

    kind: Literal["step-ll", "fgsm", "ffgsm"] = "fgsm"
    eps_min: float = 8 / 255
    eps_max: float = 8 / 255

    def validate(self, key: str) -> None:
        _check(self.eps_min >= 0, f"{key}.eps_min", "must be >= 0")
        _check(self.eps_max >= self.eps_min, f"{key}.eps_max", "must be >= eps_min")
        _check(self.eps_max <= 1, f"{key}.eps_max", "must be <= 1 (budgets are in [0,1] units)")


@dataclass
class PGDAugConfig:
    """PGD adversarial training (Madry et al. 2018): L∞ PGD examples of the real batch against
    the current model. Defaults: Madry et al.'s CIFAR-10 setting (ε 8/255, 7 steps of 2/255);
    their MNIST setting is ε 0.3, 40 steps of 0.01."""

    eps: float = 8 / 255
    alpha: float = 2 / 255  # step size
    steps: int = 7
    random_start: bool = True  # start uniformly in the ε-ball, as Madry et al.

    def validate(self, key: str) -> None:
        _check(
            0 <= self.eps <= 1,
            f"{key}.eps",
            f"{self.eps} is outside [0, 1] (budgets are in [0,1] units)",
        )
        _check(
            0 < self.alpha <= 1,
            f"{key}.alpha",
            f"{self.alpha} is outside (0, 1]; use a step such as eps / 4",
        )
        _check(self.steps >= 1, f"{key}.steps", f"{self.steps} is not >= 1")


@dataclass
class GANAugConfig:
    """Plain AC-GAN samples G(z, y) for the batch's labels, optionally filtered."""

    filter_ac: bool = False  # keep only samples whose AC head predicts y
    min_confidence: float = 0.0  # and whose AC softmax for y is at least this

    def validate(self, key: str) -> None:
        _check(0 <= self.min_confidence <= 1, f"{key}.min_confidence", "must be in [0, 1]")


# --------------------------------------------------------------------------------------------
# The unrestricted attack's settings: one schema for the attack, its presets, the augmentation
# technique, the evaluation protocol and the `attack unrestricted` command
# --------------------------------------------------------------------------------------------

LatentOptimizer = Literal["adam", "sgd-noise"]
ZProximity = Literal["hinge", "l2ball"]
#: A hard bound on the latent change after every optimiser step: none, the per-coordinate box
#: |z_j − z⁰_j| ≤ z_eps (linf), or the RMS ball sqrt(mean_j (z_j − z⁰_j)²) ≤ z_eps (l2).
ZProject = Literal["none", "linf", "l2"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class UnrestrictedConfig:
    """Settings of :class:`advaug.attacks.UnrestrictedAttack` (the maths is in that module).

    The defaults are the ``fast`` preset, the one for augmentation: Adam, at most 50 steps,
    per-sample early stopping. Its lr and λ were chosen on a toy problem (λ1 = 10 or lr = 0.01
    stalled there); tune them on the real AC-GAN. Instances are immutable because presets are
    shared; derive one with :meth:`replace`.

    Examples::

        >>> from advaug.config import UNRESTRICTED_PRESETS, UnrestrictedConfig
        >>> UNRESTRICTED_PRESETS["seed"].replace(steps=20).steps
        20
        >>> UnrestrictedConfig(lr=0.0).validate("attack")
        Traceback (most recent call last):
        ...
        advaug.errors.ConfigError: invalid config value attack.lr: must be > 0, got 0.0
    """

    targeted: bool = False  # aim at given classes t (else at any class other than the source s)
    steps: int = 50  # latent updates per sample; 0 = only judge fresh generator samples
    lr: float = 0.05  # step size on z, in latent units (z⁰ ~ N(0, I))
    optimizer: LatentOptimizer = "adam"  # sgd-noise = the seed's SGD with annealed gradient noise
    lambda1: float = 1.0  # weight of L_z, the pull back towards z⁰
    lambda2: float = 1.0  # weight of L_ac, the AC head's cross-entropy for the source class
    z_eps: float = 0.1  # latent change free of L_z (per coordinate; RMS for l2ball)
    z_proximity: ZProximity = "hinge"  # hinge = the seed's per-coordinate box
    # project z back onto the z_eps ball around z⁰ after every step, as PGD does in pixel space
    # (linf: per coordinate; l2: RMS over coordinates); none = only the soft L_z (the default,
    # as in the seed and Song et al.)
    z_project: ZProject = "none"
    noise_eps: float = 0.0  # pixel-noise amplitude in [0, 1] image units (0 = no pixel noise)
    noise_lr: float | None = None  # step size on the pre-tanh pixel noise (None = lr)
    eta0: float = 0.01  # sgd-noise: variance of the gradient noise at step 0
    gamma: float = 0.55  # sgd-noise: that variance decays as eta0 / (1 + t)^gamma
    grad_div: float = 1.0  # sgd-noise: gradient divisor (the seed averaged its loss over a batch)
    betas: tuple[float, float] = (0.9, 0.999)  # adam: decay rates of the two moment estimates
    early_stop: bool = True  # a sample stops at its first success (else every sample runs `steps`)
    # finished samples leave the forward batch; None = auto: yes, unless G's BN uses batch
    # statistics (then samples interact and compaction would change the others' images)
    compact: bool | None = None
    batch_size: int = 256  # samples per forward pass (memory; samples do not interact)

    def __post_init__(self) -> None:  # ints become floats and betas a tuple, as the attack uses
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("float", "float | None") and _is_int(value):
                object.__setattr__(self, f.name, float(value))
        if isinstance(self.betas, list | tuple):
            betas = tuple(float(b) if _is_finite(b) else b for b in self.betas)
            object.__setattr__(self, "betas", betas)
        for name in ("targeted", "early_stop"):
            object.__setattr__(self, name, bool(getattr(self, name)))

    def replace(self, **changes: Any) -> UnrestrictedConfig:
        """A copy with ``changes`` applied; an unknown name raises a :class:`ConfigError`."""
        known = [f.name for f in dataclasses.fields(self)]
        for name in changes:
            if name not in known:
                raise ConfigError(
                    f"unknown unrestricted-attack setting {name!r}; known: {', '.join(known)}"
                )
        return dataclasses.replace(self, **changes)

    @property
    def effective_noise_lr(self) -> float:
        """The step size on the pixel noise: ``noise_lr``, or ``lr`` when that is None."""
        return self.lr if self.noise_lr is None else self.noise_lr

    def validate(self, key: str = "") -> None:
        def where(name: str) -> str:
            return f"{key}.{name}" if key else name

        for name, allowed in (
            ("optimizer", LatentOptimizer),
            ("z_proximity", ZProximity),
            ("z_project", ZProject),
        ):
            value, choices = getattr(self, name), get_args(allowed)
            _check(value in choices, where(name), f"choose one of {choices}, got {value!r}")
        _check(
            _is_int(self.steps) and self.steps >= 0,
            where("steps"),
            f"must be an integer >= 0, got {self.steps!r}",
        )
        _check(
            _is_int(self.batch_size) and self.batch_size >= 1,
            where("batch_size"),
            f"must be an integer >= 1, got {self.batch_size!r}",
        )
        for name in ("lr", "grad_div"):
            value = getattr(self, name)
            _check(_is_finite(value) and value > 0, where(name), f"must be > 0, got {value!r}")
        for name in ("lambda1", "lambda2", "z_eps", "noise_eps", "eta0", "gamma", "noise_lr"):
            value = getattr(self, name)
            if name == "noise_lr" and value is None:
                continue
            _check(_is_finite(value) and value >= 0, where(name), f"must be >= 0, got {value!r}")
        betas = self.betas
        _check(
            isinstance(betas, tuple) and len(betas) == 2 and all(_is_finite(b) for b in betas)
            and all(0 <= b < 1 for b in betas),
            where("betas"),
            f"must be two numbers in [0, 1), got {betas!r}",
        )  # fmt: skip


#: The unrestricted attack's presets, by name (``--preset-attack`` of ``advaug attack``).
UNRESTRICTED_PRESETS: dict[str, UnrestrictedConfig] = {
    # The seed's settings (S, SEED-SPEC §4.4/§5.1): plain SGD with annealed gradient noise,
    # λ = 0.1, lr 0.1, 500 steps, pixel noise ε = 0.1 in [-1, 1] units (0.05 here), no early
    # stop. The seed's loss was a mean over a batch of 32, so each code got 1/32 of its own
    # gradient: ``grad_div``.
    "seed": UnrestrictedConfig(
        targeted=False,
        optimizer="sgd-noise",
        steps=500,
        lr=0.1,
        lambda1=0.1,
        lambda2=0.1,
        z_eps=0.1,
        z_proximity="hinge",
        noise_eps=0.05,
        eta0=0.01,
        gamma=0.55,
        grad_div=32.0,
        early_stop=False,
    ),
    # Song et al.'s code defaults (O, SEED-SPEC §5.2): λ1 = λ2 = 100, lr 1, 1000 steps, batch 64
    # (grad_div), no pixel noise. Set ``targeted=True`` for O's targeted attack.
    "song": UnrestrictedConfig(
        targeted=False,
        optimizer="sgd-noise",
        steps=1000,
        lr=1.0,
        lambda1=100.0,
        lambda2=100.0,
        z_eps=0.1,
        z_proximity="hinge",
        noise_eps=0.0,
        eta0=0.01,
        gamma=0.55,
        grad_div=64.0,
        early_stop=False,
    ),
    # The default for augmentation: the class defaults (see UnrestrictedConfig).
    "fast": UnrestrictedConfig(),
}


def unrestricted_preset(name: str, **changes: Any) -> UnrestrictedConfig:
    """Preset ``name`` of the unrestricted attack with ``changes`` applied.

    The one way technique, evaluation and command-line settings become attack settings (see
    :meth:`UnrestrictedAugConfig.attack_config` and :meth:`EvalConfig.uae_attack`).
    """
    if name not in UNRESTRICTED_PRESETS:
        raise ConfigError(
            f"unknown unrestricted-attack preset {name!r}; "
            f"choose one of {', '.join(UNRESTRICTED_PRESETS)}"
        )
    return UNRESTRICTED_PRESETS[name].replace(**changes)


#: The attack settings an ``unrestricted`` section gives in both modes (``mode=seed`` takes only
#: the schedule from the ``seed`` preset; see :meth:`UnrestrictedAugConfig.attack_config`).
SECTION_SETTINGS = ("optimizer", "lr", "lambda1", "lambda2", "z_eps", "z_project", "noise_eps")


@dataclass
class UnrestrictedAugConfig:
    """Unrestricted adversarial examples from a cached, periodically refreshed latent pool."""

    mode: Literal["pooled", "seed"] = "pooled"  # seed = attack every batch for `steps` steps
    pool_size: int = 1024
    refresh_fraction: float = 0.25  # share of the pool re-attacked at each refresh
    refresh_every: int = 50  # optimiser steps between refreshes
    steps: int = 20  # latent steps per attack
    optimizer: Literal["adam", "sgd-noise"] = "adam"
    lr: float = 0.05
    lambda1: float = 0.1  # z-proximity weight
    lambda2: float = 0.1  # AC-head weight
    z_eps: float = 0.1
    z_project: ZProject = "none"  # hard latent bound after each step (see UnrestrictedConfig)
    noise_eps: float = 0.0  # pixel noise (0 = off)
    attack_batch: int = 512
    dedup_threshold: float = 0.0  # >0: redraw pool entries whose latents collapse together
    # pooled: at each draw, keep only the entries the current model still gets wrong (one
    # eval-mode forward); entries it now classifies correctly leave the pool until re-attacked
    recheck: bool = True

    def validate(self, key: str) -> None:
        for name in ("pool_size", "refresh_every", "steps", "attack_batch"):
            _check(getattr(self, name) >= 1, f"{key}.{name}", "must be >= 1")
        _check(0 < self.refresh_fraction <= 1, f"{key}.refresh_fraction", "must be in (0, 1]")
        _check(self.lr > 0, f"{key}.lr", "must be > 0")
        for name in ("lambda1", "lambda2", "z_eps", "noise_eps", "dedup_threshold"):
            _check(getattr(self, name) >= 0, f"{key}.{name}", "must be >= 0")
        choices = get_args(ZProject)
        _check(self.z_project in choices, f"{key}.z_project", f"choose one of {choices}")

    def attack_config(self) -> UnrestrictedConfig:
        """The attack settings this technique runs with (the only mapping from this section).

        Both modes take this section's :data:`SECTION_SETTINGS` (optimizer, lr, lambda1,
        lambda2, z_eps, z_project, noise_eps), steps and attack_batch. ``pooled`` runs them on
        the ``fast`` preset, with early stopping. ``seed`` runs them on the ``seed`` preset:
        its schedule (no early stop, grad_div 32, the gradient noise eta0 0.01, gamma 0.55);
        the seed's own values (sgd-noise, lr 0.1, pixel noise 0.05) must be set here, as the
        ``paper`` preset does.
        """
        settings = {name: getattr(self, name) for name in SECTION_SETTINGS}
        if self.mode == "seed":
            return unrestricted_preset(
                "seed", steps=self.steps, batch_size=self.attack_batch, **settings
            )
        return unrestricted_preset(
            "fast", steps=self.steps, early_stop=True, batch_size=self.attack_batch, **settings
        )


@dataclass
class AugmentConfig:
    """L = (n_c·CE_clean + λ·n_a·CE_aug) / (n_c + λ·n_a), n_a = floor(prop·B)."""

    technique: str = "none"  # none | fgsm | pgd | gan | unrestricted
    prop: float = 0.5  # share of the batch that comes from the technique
    adv_weight: float = 1.0  # λ
    mode: Literal["replace", "append"] = "replace"  # seed: replace part of the real batch
    bn: Literal["joint", "separate"] = "joint"  # seed: separate BN passes for the two parts
    fgsm: FGSMAugConfig = field(default_factory=FGSMAugConfig)
    pgd: PGDAugConfig = field(default_factory=PGDAugConfig)
    gan: GANAugConfig = field(default_factory=GANAugConfig)
    unrestricted: UnrestrictedAugConfig = field(default_factory=UnrestrictedAugConfig)

    def validate(self, key: str) -> None:
        _check(
            self.technique in TECHNIQUES,
            f"{key}.technique",
            f"unknown technique '{self.technique}'; choose one of {', '.join(TECHNIQUES)}",
        )
        _check(0 <= self.prop <= 1, f"{key}.prop", f"{self.prop} is outside [0, 1]")
        _check(self.adv_weight >= 0, f"{key}.adv_weight", "must be >= 0")

    @property
    def batch_share(self) -> float:
        """The share of each batch handed to the technique: ``prop``, and 0 for ``none``
        (plain training uses the whole batch, whatever ``prop`` says)."""
        return 0.0 if self.technique == "none" else self.prop


@dataclass
class ClassifierConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 256

    def validate(self, key: str) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            _check(getattr(self, name) >= 1, f"{key}.{name}", "must be >= 1")


@dataclass
class GANConfig:
    """AC-GAN with gradient penalty (seed: width 256, z 256; Song et al.: z 128 + one-hot)."""

    z_dim: int = 128
    width: int = 128
    concat_onehot: bool = False
    bn_stats: Literal["running", "batch"] = "running"
    ac_dropout: float = 0.0
    spectral_norm: bool = False
    iters: int = 1000  # generator iterations (1 G step + n_critic D steps)
    batch_size: int = 64  # real images per critic step
    g_batch_mult: int = 2  # G step batch = g_batch_mult * batch_size
    n_critic: int = 5
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.9
    lr_decay: Literal["linear", "constant"] = "linear"
    gp_weight: float = 10.0
    per_pixel_alpha: bool = False
    ac_scale_d: float = 1.0
    ac_scale_g: float = 0.1
    ac_on_fake: bool = False
    dequantize: bool = True
    flip: bool = False  # random horizontal flip of real images
    ema_decay: float = 0.999  # 0 = no EMA of G
    ema_start: int = 0  # iteration at which the EMA starts tracking
    sample_every: int = 200  # fixed-noise grids every N iterations
    eval_every: int = 200  # AC accuracy on the test split every N iterations
    ckpt_every: int = 200  # checkpoint every N iterations (and every ckpt_every_min minutes)
    standing_batches: int = 20  # batches for standing BN statistics after training

    def arch_kwargs(self) -> dict[str, Any]:
        """The architecture fields, as overrides of ``build_gan("acgan", k, **cfg.arch_kwargs())``.

        The other fields are training settings; none of them changes the networks.
        """
        names = ("z_dim", "width", "concat_onehot", "bn_stats", "ac_dropout", "spectral_norm")
        return {name: getattr(self, name) for name in names}

    def validate(self, key: str) -> None:
        for name in ("z_dim", "width", "iters", "batch_size", "g_batch_mult", "n_critic"):
            _check(getattr(self, name) >= 1, f"{key}.{name}", "must be >= 1")
        for name in ("sample_every", "eval_every", "ckpt_every", "standing_batches"):
            _check(getattr(self, name) >= 1, f"{key}.{name}", "must be >= 1")
        _check(self.lr_g > 0 and self.lr_d > 0, f"{key}.lr_g/lr_d", "must be > 0")
        _check(0 <= self.ac_dropout < 1, f"{key}.ac_dropout", "must be in [0, 1)")
        _check(0 <= self.ema_decay < 1, f"{key}.ema_decay", "must be in [0, 1)")
        _check(self.gp_weight >= 0, f"{key}.gp_weight", "must be >= 0")


@dataclass
class EvalConfig:
    """The evaluation protocol applied to every classifier of a study."""

    fgsm_eps: list[float] = field(default_factory=lambda: [2 / 255, 4 / 255, 8 / 255])
    pgd_eps: float = 8 / 255
    pgd_alpha: float = 2 / 255
    pgd_steps: int = 10
    pgd_restarts: int = 1
    robust_samples: int = 1000  # test images used for FGSM/PGD (class-balanced; 0 = all)
    autoattack: bool = False  # needs `pip install advaug[autoattack]` (or torchattacks)
    # reference = Croce & Hein's code (pyautoattack; what RobustBench runs), torchattacks = its
    # re-implementation, auto = reference where installed, else torchattacks
    autoattack_backend: Literal["auto", "reference", "torchattacks"] = "auto"
    gan_samples_per_class: int = 20  # accuracy on clean AC-GAN samples
    uae_samples: int = 200  # unrestricted-attack success at a fixed budget
    uae_steps: int = 20
    uae_z_project: ZProject = "none"  # hard latent bound of the evaluation's attack
    # targeted UAEs (Song et al.): this many codes per (source, target) pair, K·(K−1) pairs;
    # 0 = off. Attack cost grows with K²: 1 per pair is 9,900 codes on CIFAR-100.
    uae_targeted_per_pair: int = 0
    batch_size: int = 256
    collapse_threshold: float = COLLAPSE_THRESHOLD  # spread < this x real's: collapsed

    def validate(self, key: str) -> None:
        _check(all(e >= 0 for e in self.fgsm_eps), f"{key}.fgsm_eps", "every eps must be >= 0")
        _check(self.pgd_eps >= 0, f"{key}.pgd_eps", "must be >= 0")
        for name in ("pgd_steps", "pgd_restarts", "uae_steps", "batch_size"):
            _check(getattr(self, name) >= 1, f"{key}.{name}", "must be >= 1")
        for name in (
            "robust_samples",
            "gan_samples_per_class",
            "uae_samples",
            "uae_targeted_per_pair",
        ):
            _check(getattr(self, name) >= 0, f"{key}.{name}", "must be >= 0")
        choices = get_args(ZProject)
        _check(self.uae_z_project in choices, f"{key}.uae_z_project", f"choose one of {choices}")

    def uae_attack(self, targeted: bool = False) -> UnrestrictedConfig:
        """The protocol's unrestricted attack: the ``fast`` preset (Adam with early stopping,
        λ1 = λ2 = 1) for ``uae_steps`` steps, with ``uae_z_project``."""
        return unrestricted_preset(
            "fast", steps=self.uae_steps, z_project=self.uae_z_project, targeted=targeted
        )


@dataclass
class StudyConfig:
    """The whole comparison; `train-gan` and `train-classifier` read their sections of it."""

    name: str = "study"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    techniques: list[str] = field(default_factory=lambda: list(SEED_TECHNIQUES))
    seeds: list[int] = field(default_factory=lambda: [0])
    reference_model: ModelConfig = field(default_factory=lambda: ModelConfig(name="wrn-16-4"))
    reference_epochs: int = 0  # 0 = same as classifier.epochs
    evaluate: EvalConfig = field(default_factory=EvalConfig)

    def validate(self, key: str) -> None:
        for t in self.techniques:
            _check(
                t in TECHNIQUES,
                "techniques",
                f"unknown technique '{t}'; choose from {', '.join(TECHNIQUES)}",
            )
        _check(len(self.techniques) > 0, "techniques", "needs at least one technique")
        _check(len(self.seeds) > 0, "seeds", "needs at least one seed")
        _check(self.seed >= 0, "seed", f"{self.seed} is negative; seeds are >= 0")
        _check(all(s >= 0 for s in self.seeds), "seeds", f"{self.seeds} has a negative seed")
        _check(self.reference_epochs >= 0, "reference_epochs", "must be >= 0")


# --------------------------------------------------------------------------------------------
# Generic machinery
# --------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check (and gently coerce) ``value`` against the annotation ``tp``."""
    origin = get_origin(tp)
    if origin is Literal:
        if value not in get_args(tp):
            allowed = ", ".join(str(a) for a in get_args(tp))
            raise ConfigError(f"invalid config value {key}={value!r}: choose one of {allowed}")
        return value
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            if type(None) in get_args(tp):
                return None
            raise ConfigError(f"invalid config value {key}: null is not allowed")
        return _coerce(value, args[0], key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"invalid config value {key}: expected a mapping, got {value!r}")
        return _from_dict(tp, value, key)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"invalid config value {key}={value!r}: expected a list")
        (item_tp,) = get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"invalid config value {key}={value!r}: expected a mapping")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"invalid config value {key}={value!r}: expected true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"invalid config value {key}={value!r}: expected an integer")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 4e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"invalid config value {key}={value!r}: expected a number")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"invalid config value {key}={value!r}: expected a finite number")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"invalid config value {key}={value!r}: expected a string")
        return value
    if tp is Any:
        return value
    raise ConfigError(f"invalid config value {key}: unsupported type {_type_name(tp)}")


def _from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            where = f"{prefix}.{k}" if prefix else k
            raise ConfigError(
                f"unknown config key '{where}'; known keys here: {', '.join(sorted(names))}"
            )
    obj = cls()
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else k
        if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict):
            v = _merge_into(getattr(obj, k), v, key)
        else:
            v = _coerce(v, hints[k], key)
        setattr(obj, k, v)
    return obj


def _merge_into(obj: Any, data: dict[str, Any], prefix: str) -> Any:
    """A copy of dataclass ``obj`` with ``data`` applied on top (nested merge)."""
    base = to_dict(obj)
    _deep_update(base, data)
    return _from_dict(type(obj), base, prefix)


def _deep_update(base: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and k != "kwargs":
            _deep_update(base[k], v)
        else:
            base[k] = v


def validate(cfg: Any, key: str = "") -> Any:
    """Run every section's ``validate`` hook (deepest first); returns ``cfg``."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            validate(v, f"{key}.{f.name}" if key else f.name)
    hook = getattr(cfg, "validate", None)
    if hook is not None:
        hook(key)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    return validate(_from_dict(cls, data or {}))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=[1,2]"]`` into a nested dict; values are parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value (e.g. classifier.epochs=5)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override '{item}' has an empty key (e.g. classifier.epochs=5)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' conflicts with an earlier override")
        node[parts[-1]] = value
    return out


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The raw dict of a preset (a packaged name, or a path to a YAML file)."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"unknown preset '{name}'; choose one of {', '.join(list_presets())} "
            "or give a .yaml path"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"preset {path} is not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"preset {path} must be a mapping at the top level")
    return data


def preset_summary(name: str) -> str:
    """The first sentence of a packaged preset's leading comment (what it is for)."""
    lines = []
    for line in (PRESET_DIR / f"{name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    if text.startswith(f"{name}:"):
        text = text[len(name) + 1 :].strip()
    end = text.find(". ")
    return text[: end + 1] if end >= 0 else text


def build_config(
    preset: str | None = "demo",
    overrides: list[str] | None = None,
    sections: dict[str, Any] | None = None,
) -> StudyConfig:
    """Preset, then ``key=value`` overrides, then ``sections`` (a nested dict merged the same
    way, as ``advaug.make_config`` passes its keyword arguments), then validation."""
    data = load_preset(preset) if preset is not None else {}
    _deep_update(data, parse_overrides(overrides or []))
    _deep_update(data, sections or {})
    return from_dict(StudyConfig, data)


#: Keys that only the ``config.yaml`` of a classifier run has (its job, not a study config).
_CLASSIFIER_RUN_KEYS = {"gan_sha256", "ckpt_every_steps"}


def read_config_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A complete config file as a :class:`StudyConfig` dict, and what else a run needs.

    Accepts a study's ``config.yaml`` (or ``--print-config`` output), a GAN run's (data,
    runtime, gan, seed: a part of a study config) and a classifier run's (its job: the
    ``classifier`` section, ``seed``, and the GAN's folder, returned with ``ckpt_every_steps``
    as the extras).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist; give a config.yaml that advaug wrote")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML ({_yaml_problem(e)})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must be a mapping at the top level")
    is_run = "classifier" in data and (
        _CLASSIFIER_RUN_KEYS & set(data) or not isinstance(data.get("gan", {}), dict)
    )
    if not is_run:
        return data, {}
    extras = {k: data.pop(k) for k in ("gan", "ckpt_every_steps", "gan_sha256") if k in data}
    if "seed" in data:
        data["seeds"] = [data["seed"]]
    extras.pop("gan_sha256", None)  # recomputed from the GAN itself
    return data, extras


def build_config_from_file(
    path: str | Path, overrides: list[str] | None = None
) -> tuple[StudyConfig, dict[str, Any]]:
    """:func:`read_config_file`, then overrides, then validation."""
    data, extras = read_config_file(path)
    _deep_update(data, parse_overrides(overrides or []))
    return from_dict(StudyConfig, data), extras


def identity(obj: Any) -> dict[str, Any]:
    """What a config (dataclass) computes: :func:`to_dict` without its :data:`NOT_IDENTITY`
    fields (locations such as a GAN's folder, checkpoint cadence, progress bars)."""
    out = {}
    for f in dataclasses.fields(obj):
        if f.metadata.get("identity", True):
            v = getattr(obj, f.name)
            out[f.name] = identity(v) if dataclasses.is_dataclass(v) else copy.deepcopy(v)
    return out


def config_hash(obj: Any) -> str:
    """A short, stable hash of a config (its :func:`identity`) for caching finished stages."""
    payload = identity(obj) if dataclasses.is_dataclass(obj) else obj
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def read_stored(stored_yaml: str, cls: type) -> Any:
    """A stored ``config.yaml`` read back through the current dataclass ``cls``.

    Raises :class:`ConfigError` when the text is not YAML or does not fit ``cls`` (the message
    says which; callers add the file's name).
    """
    try:
        data = yaml.safe_load(stored_yaml)
    except yaml.YAMLError as e:
        raise ConfigError(f"is not valid YAML ({_yaml_problem(e)})") from e
    if data is not None and not isinstance(data, dict):
        raise ConfigError("is not a YAML mapping")
    try:
        return _from_dict(cls, data or {})
    except (TypeError, AttributeError) as e:
        raise ConfigError(f"does not fit the config schema ({e})") from e


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{problem} at line {mark.line + 1}" if mark is not None else str(problem)


def same_config(stored_yaml: str, obj: Any) -> bool:
    """Whether a stored ``config.yaml`` describes the same run as the dataclass ``obj``.

    The stored text is read back through the current dataclasses, so a field added to advaug
    since (with a default) does not make finished runs stale; a changed or removed field does.
    Fields outside the :func:`identity` (where the GAN lies, how often to checkpoint) may differ.
    """
    try:
        return identity(read_stored(stored_yaml, type(obj))) == identity(obj)
    except ConfigError:
        return False


def config_diff(stored_yaml: str, obj: Any, limit: int = 4) -> str:
    """The keys whose values differ between a stored ``config.yaml`` and ``obj``, as one short
    line (``classifier.optim.lr 0.05 -> 0.01, seed 0 -> 1``); empty when they are the same."""
    try:
        old = _flat(identity(read_stored(stored_yaml, type(obj))))
    except ConfigError as e:
        return f"the stored config {e}"
    new = _flat(identity(obj))
    keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k, _MISSING) != new.get(k, _MISSING)]
    parts = [f"{k} {_show(old.get(k, _MISSING))} -> {_show(new.get(k, _MISSING))}" for k in keys]
    more = f" and {len(parts) - limit} more" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


_MISSING = object()


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k != "kwargs":
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _show(v: Any) -> str:
    return "(absent)" if v is _MISSING else json.dumps(v, default=str)


def dump_yaml(obj: Any) -> str:
    payload = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    return yaml.safe_dump(payload, sort_keys=False)

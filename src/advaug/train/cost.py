"""What one of each operation of a study costs on this machine: timed, not guessed.

Every timing runs the real code on random data of the real shapes: the training steps of
:mod:`advaug.train.steps` with the real technique, the attacks of the evaluation, the latent
attack, checkpoint writes through :class:`~advaug.runtime.checkpoint.CheckpointManager`, a
TensorBoard writer and a report figure. A warm-up call (two when they are cheap: kernels and the
allocator settle), then up to :data:`REPEATS` timed calls (at least three; no more once they
took :data:`BUDGET_S`), with ``torch.cuda.synchronize()`` around each on CUDA.
The median is the estimate; the fastest and the slowest call give its range (:class:`Cost`).
The study's dry run (:func:`advaug.study.plan_study`) multiplies them by what each stage does.
"""

from __future__ import annotations

import importlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advaug.attacks import FGSM, UnrestrictedAttack
from advaug.augment import build_technique
from advaug.config import ClassifierConfig, GANConfig, UnrestrictedConfig
from advaug.models import build_gan
from advaug.runtime import Runtime
from advaug.runtime.checkpoint import CheckpointManager
from advaug.train.shapes import gan_shape_kwargs
from advaug.train.steps import classifier_step, critic_step, generator_step

#: Timed calls per operation after the warm-up, and the seconds after which fewer suffice.
REPEATS, BUDGET_S = 5, 3.0
#: A call shorter than this gets a second warm-up call.
CHEAP_S = 1.0


@dataclass(frozen=True)
class Cost:
    """Seconds: the estimate (``mid``) and its range (``low``, ``high``)."""

    mid: float = 0.0
    low: float = 0.0
    high: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.mid + other.mid, self.low + other.low, self.high + other.high)

    def __mul__(self, k: float) -> Cost:
        return Cost(self.mid * k, self.low * k, self.high * k)

    __rmul__ = __mul__

    def widen(self, low: float, high: float) -> Cost:
        """The range of a count known only within [low, high] × its estimate."""
        return Cost(self.mid, self.low * low, self.high * high)

    @staticmethod
    def fixed(seconds: float) -> Cost:
        return Cost(seconds, seconds, seconds)


@dataclass(frozen=True)
class Timed(Cost):
    """A timed call's :class:`Cost`, and what its first call took beyond that (``warmup``):
    a fresh model's first steps allocate memory and pick kernels, once per run."""

    warmup: float = 0.0

    def per(self, n: int) -> Timed:
        """The cost of one of ``n`` items (the warm-up stays the call's)."""
        return Timed(self.mid / n, self.low / n, self.high / n, self.warmup)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], Any], device: torch.device) -> Timed:
    """The median (and fastest, slowest) seconds of ``fn()`` after the warm-up, and how much
    longer the first call took."""
    t = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t
    if first < CHEAP_S:
        fn()
        _sync(device)
    times: list[float] = []
    while len(times) < REPEATS and (len(times) < 3 or sum(times) < BUDGET_S):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    mid = statistics.median(times)
    return Timed(mid, min(times), max(times), max(0.0, first - mid))


def import_seconds(*modules: str) -> float:
    """Seconds to import ``modules`` here (0 for those already imported)."""
    t = time.perf_counter()
    for name in modules:
        if name not in sys.modules:
            importlib.import_module(name)
    return time.perf_counter() - t


def _images(n: int, shape: tuple[int, ...], k: int, rt: Runtime) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, *shape, generator=gen).to(rt.device)
    if rt.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(k, (n,), generator=gen).to(rt.device)


def classifier_step_cost(
    model: nn.Module, cfg: ClassifierConfig, rt: Runtime, k: int, shape: tuple, gan: Any
) -> Timed:
    """One optimiser step of ``model`` at the real batch size with ``cfg``'s technique. The
    unrestricted pool is filled by the warm-up call (a small pool, one latent step: the pool's
    size does not change a step) and not refreshed by the timed ones; its latent attacks are
    timed by :func:`latent_costs`."""
    from advaug.config import from_dict, to_dict
    from advaug.train.classifier import make_optimizer

    u = cfg.augment.unrestricted
    if cfg.augment.technique == "unrestricted" and u.mode == "pooled":
        c = to_dict(cfg)
        c["augment"]["unrestricted"].update(pool_size=min(u.pool_size, 2 * cfg.batch_size), steps=1)
        cfg = from_dict(ClassifierConfig, c)
    model = rt.prepare(model).train()
    opt = make_optimizer(model, cfg, rt)
    technique = build_technique(cfg.augment, seed=0, device=rt.device, gan=gan)
    x, y = _images(cfg.batch_size, shape, k, rt)
    return timeit(
        lambda: classifier_step(model, opt, technique, x, y, 0, cfg=cfg, rt=rt), rt.device
    )


def build_cost(make: Callable[[], nn.Module], rt: Runtime) -> Timed:
    """Building a model and moving it to the device: what every run and every evaluation pays
    once (loading a checkpoint costs about the same)."""
    return timeit(lambda: rt.prepare(make()), rt.device)


def forward_cost(model: nn.Module, batch: int, shape: tuple, k: int, rt: Runtime) -> Timed:
    """Seconds per image of an evaluation forward pass (eval mode, no gradient)."""
    model = rt.prepare(model).eval()
    x, _ = _images(batch, shape, k, rt)

    @torch.no_grad()
    def run() -> None:
        with rt.autocast():
            model(x)

    return timeit(run, rt.device).per(batch)


def attack_step_cost(model: nn.Module, batch: int, shape: tuple, k: int, rt: Runtime) -> Timed:
    """Seconds per image of one gradient step of an attack (an FGSM call: forward, backward)."""
    model = rt.prepare(model).eval()
    x, y = _images(batch, shape, k, rt)
    attack = FGSM(model, eps=8 / 255)
    return timeit(lambda: attack(x, y), rt.device).per(batch)


def gan_costs(cfg: GANConfig, rt: Runtime, k: int, shape: tuple) -> dict[str, Any]:
    """One AC-GAN iteration (``n_critic`` critic steps, a generator step, the EMA) at the real
    batch, and the evaluation forward passes of G and D per image; with the networks (for the
    latent attack and the checkpoint)."""

    def build() -> tuple[nn.Module, nn.Module]:
        g, d = build_gan("acgan", k, **cfg.arch_kwargs(), **gan_shape_kwargs("acgan", shape))
        return rt.prepare(g), rt.prepare(d)

    built = timeit(build, rt.device)
    g, d = build()
    opt_g, opt_d = torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters())
    rng = torch.Generator(device=rt.device).manual_seed(0)
    x, y = _images(cfg.batch_size, shape, k, rt)

    from advaug.train.classifier import make_ema

    ema = make_ema(g, cfg.ema_decay, use_buffers=False)

    def iteration() -> None:
        for _ in range(cfg.n_critic):
            critic_step(g, d, opt_d, x, y, cfg=cfg, rt=rt, rng=rng)
        generator_step(g, d, opt_g, k, cfg=cfg, rt=rt, rng=rng, ema=ema)

    out: dict[str, Any] = {"iteration": timeit(iteration, rt.device), "g": g, "d": d}
    out["build"] = built
    for p in (*g.parameters(), *d.parameters()):
        p.requires_grad_(False)
    g.eval()
    d.eval()
    n = min(256, max(cfg.batch_size, 2))
    z = torch.randn(n, g.z_dim, device=rt.device, generator=rng)
    labels = torch.randint(k, (n,), device=rt.device, generator=rng)
    images, _ = _images(n, shape, k, rt)
    with torch.no_grad():
        out["g_image"] = timeit(lambda: g(z, labels), rt.device).per(n)
        out["d_image"] = timeit(lambda: d(images), rt.device).per(n)
    out["state"] = {"generator": g.state_dict(), "critic": d.state_dict(),
                    "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict()}  # fmt: skip
    return out


def latent_costs(
    g: nn.Module, d: nn.Module, f: nn.Module, cfg: UnrestrictedConfig, n: int, rt: Runtime
) -> tuple[Cost, Cost]:
    """Seconds per code and step of the latent attack on ``n`` codes at once (early stopping
    off, so every code takes every step), and per code for the rest (fresh samples, judging)."""
    f = rt.prepare(f).eval()
    source = torch.arange(n, device=rt.device) % g.num_classes

    def attack(steps: int) -> Callable[[], Any]:
        c = cfg.replace(steps=steps, early_stop=False)
        rng = torch.Generator(device=rt.device).manual_seed(0)
        atk = UnrestrictedAttack.from_config(g, d, f, c, rng=rng, show_progress=False)
        return lambda: atk(source)

    steps = 2
    base = timeit(attack(0), rt.device)
    full = timeit(attack(steps), rt.device)
    per_step = Cost(
        max(0.0, full.mid - base.mid), max(0.0, full.low - base.high), full.high - base.low
    )
    return per_step * (1 / (steps * n)), base * (1 / n)


def checkpoint_cost(state: dict[str, Any]) -> Cost:
    """One checkpoint of ``state`` through the real manager (serialise, hash, fsync, rename,
    manifest, prune), in a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        manager = CheckpointManager(Path(tmp), keep_last=1)
        step = iter(range(1, 1000))
        return timeit(lambda: manager.save(state, next(step)), torch.device("cpu"))


def run_open_cost() -> Cost:
    """Opening and closing a run's TensorBoard writer with a few scalars (its import aside)."""
    from torch.utils.tensorboard import SummaryWriter

    with tempfile.TemporaryDirectory() as tmp:

        def run() -> None:
            w = SummaryWriter(tmp)
            for i in range(5):
                w.add_scalar("x", float(i), i)
            w.close()

        return timeit(run, torch.device("cpu"))


def figure_cost() -> Timed:
    """One report figure: a small line plot rendered to PNG (matplotlib's Agg canvas)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def run() -> None:
        fig = Figure(figsize=(6, 3), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        for i in range(4):
            ax.plot(range(50), [j * i for j in range(50)], label=str(i))
        ax.legend()
        fig.savefig(io.BytesIO(), format="png")

    return timeit(run, torch.device("cpu"))

"""AC-GAN training with gradient penalty, on the same run machinery as the classifier.

One iteration = ``n_critic`` critic steps on consecutive real batches (reshuffled every epoch,
which the seed forgot), then one generator step on ``g_batch_mult``·B fresh labels. Adam with
β = (0, 0.9) and linear decay to 0; dequantisation noise on real images; an EMA of G's weights
with standing BN statistics is what ``sample`` and the study use.

Every loss term is checked for NaN/inf before each checkpoint; a bad value stops the run with a
message naming the term, and the last good checkpoint stays.

Under ``torchrun`` (see :mod:`advaug.runtime.ddp`) G and D train in DistributedDataParallel:
``gan.batch_size`` is the real batch of one rank per critic step (global batch ``batch_size ×
world_size``; the G step uses ``g_batch_mult × batch_size`` per rank), each rank draws its own
noise, and the learning rates are used as configured (for the global batch). The G step runs
the plain critic (its weights are frozen there), so only G's gradients are all-reduced in it.
Logged losses are means over all ranks; rank 0 writes. The checkpoint keeps every rank's RNG
state; a run resumes under any world size (the loader position is converted).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advaug.config import COLLAPSE_THRESHOLD, DataConfig, GANConfig, RuntimeConfig
from advaug.data.datasets import effective_flip
from advaug.data.loader import DeviceLoader
from advaug.data.splits import Splits
from advaug.errors import NumericalError
from advaug.evaluate.gan_quality import diversity
from advaug.imaging import make_grid, save_grid, save_labelled_grid
from advaug.log import fmt_seconds, get_logger, progress
from advaug.models import build_gan
from advaug.models.gan import Critic, Generator, recompute_standing_stats, sample
from advaug.runtime import (
    Runtime,
    ddp,
    distributed,
    make_runtime,
    restore_generator,
    rng_state,
    seed_everything,
    set_rng_state,
)
from advaug.runtime.checkpoint import check_arch, save_final
from advaug.train import loop
from advaug.train.classifier import make_ema
from advaug.train.run import Run
from advaug.train.schedule import gan_lr_scale, set_lr
from advaug.train.shapes import gan_shape_kwargs
from advaug.train.steps import critic_step, generator_step

log = get_logger(__name__)

#: Images for the AC accuracy and the collapse check during training (the first N of the
#: validation split when there is one, else of the test split).
MONITOR_IMAGES = 2000
#: Largest share of the EMA's weight that may stay on the weights it started from (the G of
#: iteration ``ema_start``) before ``train_gan`` warns that the warm-up is too short.
EMA_START_SHARE = 0.01
#: Images per forward pass in those checks.
EVAL_CHUNK = 500
#: Samples per class in the collapse check.
COLLAPSE_PER_CLASS = 10
#: Offsets of the fixed random streams, from the run's seed, so grids compare across iterations.
GRID_STREAM, INTERPOLATION_STREAM = 7, 11
#: Fixed seeds of the standing-statistics and collapse-check streams.
STANDING_SEED, COLLAPSE_SEED = 3, 13
#: Batches for the cheap standing statistics of an intermediate grid.
GRID_STANDING_BATCHES = 4
#: Fixed-noise grids: one row per class (at most GRID_ROWS), GRID_COLUMNS samples each; the
#: interpolation grid: INTERPOLATION_ROWS latents across at most GRID_COLUMNS classes.
GRID_ROWS, GRID_COLUMNS, INTERPOLATION_ROWS = 20, 10, 8
#: Loss records per run (about), and the most iterations between two records.
LOG_RECORDS, LOG_EVERY_MAX = 20, 50


@dataclass
class GANJob:
    data: DataConfig = field(default_factory=DataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    seed: int = 0


@dataclass
class GANState:
    """Everything a GAN run checkpoints. ``g_net``/``d_net`` train (DDP under torchrun);
    ``g``/``d`` are the plain modules. ``rng`` draws every latent, label and GP mix."""

    g: Generator
    d: Critic
    g_net: nn.Module
    d_net: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ema: Any
    loader: DeviceLoader
    rng: torch.Generator
    splits: Splits
    seed: int
    it: int = 0
    watch: loop.Stopwatch = field(default_factory=loop.Stopwatch)  # training seconds

    @property
    def step(self) -> int:
        return self.it

    @property
    def sampler(self) -> Generator:
        """The generator that samples: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.g

    def archs(self) -> dict[str, Any]:
        return {
            "g_arch": {"arch_name": self.g.arch_name, "arch_kwargs": dict(self.g.arch_kwargs)},
            "d_arch": {"arch_name": self.d.arch_name, "arch_kwargs": dict(self.d.arch_kwargs)},
        }

    def rank_state(self) -> dict[str, Any]:
        return {"gen_rng": self.rng.get_state(), "rng": rng_state()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.g.state_dict(),
            "critic": self.d.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "loader": self.loader.state_dict(),
            "gen_rng": self.rng.get_state(),
            "rng": rng_state(),
            "iter": self.it,
            **self.archs(),
            "num_classes": self.splits.num_classes,
            "classes": self.splits.classes,
        }

    def load_state_dict(self, state: dict[str, Any], rt: Runtime) -> None:
        check_arch(state["g_arch"], self.g.arch_name, self.g.arch_kwargs)
        self.g.load_state_dict(state["generator"])
        self.d.load_state_dict(state["critic"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.it = state["iter"]
        self.loader.load_state_dict(loop.loader_position(state, rt.world_size, len(self.loader)))
        ranks = state.get("ranks")
        fresh = ddp.rank_seed(self.seed + 1 + self.it, rt.rank)  # a stream of this rank's own
        if int(state.get("world_size", 1)) == rt.world_size:
            mine = ranks[rt.rank] if ranks is not None else state
            restore_generator(self.rng, mine["gen_rng"], fresh)
            set_rng_state(mine["rng"])
        elif rt.rank == 0:
            restore_generator(self.rng, state["gen_rng"], fresh)
            set_rng_state(state["rng"])
        else:  # a new rank, or a rank of another world size: a fresh stream of its own
            self.rng.manual_seed(fresh)
            torch.manual_seed(ddp.rank_seed(self.seed + self.it, rt.rank))


class _LossMeans:
    """Running sums of the loss terms between two log records (device tensors: no host sync)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.n = 0

    def add(self, parts_d: dict[str, torch.Tensor], parts_g: dict[str, torch.Tensor]) -> None:
        parts = {f"d_{n}": v for n, v in parts_d.items()}
        parts.update({f"g_{n}": v for n, v in parts_g.items()})
        self.sums = {n: self.sums.get(n, 0) + v.float() for n, v in parts.items()}
        self.n += 1

    def pop(self, rt: Runtime) -> dict[str, float]:
        """The means over the steps and ranks since the last call (one collective, one sync)."""
        totals = ddp.all_sum(self.sums)
        means = {n: v / (self.n * rt.world_size) for n, v in totals.items()}
        self.sums, self.n = {}, 0
        return means


def train_gan(
    job: GANJob,
    out: str | Path,
    *,
    splits: Splits | None = None,
    on_step: loop.OnStep | None = None,
    collapse_threshold: float = COLLAPSE_THRESHOLD,
) -> dict[str, Any]:
    """Train (or resume) an AC-GAN in run folder ``out``; returns its result dict.

    ``on_step(state, save)`` is called after every iteration (see :mod:`advaug.train.loop`);
    ``collapse_threshold`` is the evaluation's (``evaluate.collapse_threshold``) for the
    per-class collapse warning. Under torchrun every rank calls this; the returned result is the
    same on every rank.
    """
    rt = make_runtime(job.runtime)
    with distributed(rt):
        run, splits = loop.open_run(
            job, out, rt, kind="gan", splits=splits, batch_size=job.gan.batch_size,
            key="gan.batch_size",
        )  # fmt: skip
        try:
            if splits is None:
                return run.result()
            st = _build(job, rt, splits)
            return _train(job, run, rt, st, on_step, collapse_threshold)
        finally:
            run.close()


def _build(job: GANJob, rt: Runtime, splits: Splits) -> GANState:
    """G, D, their optimisers, the EMA of G, the loader and the noise stream, seeded."""
    cfg = job.gan
    seed_everything(job.seed)
    shape = gan_shape_kwargs("acgan", tuple(splits.train.x.shape[1:]))
    g, d = build_gan("acgan", splits.num_classes, **cfg.arch_kwargs(), **shape)
    g, d = rt.prepare(g), rt.prepare(d)
    g_net, d_net = ddp.wrap(g, rt), ddp.wrap(d, rt)
    if rt.distributed and rt.rank > 0:
        torch.manual_seed(ddp.rank_seed(job.seed, rt.rank))
    fused = {"fused": True} if rt.device.type == "cuda" else {}
    betas = (cfg.beta1, cfg.beta2)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g, betas=betas, **fused)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=betas, **fused)
    loader = DeviceLoader(
        splits.train.x,
        splits.train.y,
        cfg.batch_size,
        shuffle=True,
        seed=job.seed,
        crop_pad=0,
        flip=effective_flip(job.data.name, cfg.flip),
        drop_last=True,
        device=rt.device,
        channels_last=rt.channels_last,
        rank=rt.rank,
        world_size=rt.world_size,
    )
    rng = torch.Generator(device=rt.device)
    rng.manual_seed(ddp.rank_seed(job.seed + 1, rt.rank))
    ema = make_ema(g, cfg.ema_decay, use_buffers=False)
    if ema is not None and rt.is_main:
        warn_short_ema(cfg.ema_decay, cfg.iters - cfg.ema_start)
    return GANState(g, d, g_net, d_net, opt_g, opt_d, ema, loader, rng, splits, job.seed)


def ema_start_share(decay: float, updates: int) -> float:
    """The weight an EMA with ``decay`` still puts on its starting weights after ``updates``
    updates: ``decay ** (updates - 1)`` (the first update copies the weights, each later one
    multiplies the old average by ``decay``)."""
    return decay ** max(0, updates - 1)


def warn_short_ema(decay: float, updates: int, limit: float = EMA_START_SHARE) -> float:
    """Warn (and return the share) when the EMA of G keeps more than ``limit`` of its weight on
    the first weights it saw: e.g. decay 0.999 over 1,000 iterations keeps 37 %."""
    share = ema_start_share(decay, updates)
    if share > limit:
        longest = limit ** (1 / max(1, updates - 1))
        needed = 1 + math.log(limit) / math.log(decay)
        log.warning(
            "GAN EMA: decay %g over %d iterations keeps %.0f%% of its weight on the generator "
            "it started from; set gan.ema_decay <= %.4g, or gan.iters - gan.ema_start >= %d, "
            "to bring it under %.0f%%",
            decay, updates, 100 * share, longest, math.ceil(needed), 100 * limit,
        )  # fmt: skip
    return share


def _batches(loader: DeviceLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches; each new epoch reshuffles (the loader keeps its position for resume)."""
    while True:
        yield from loader  # a finished pass moves the loader to the next epoch by itself


def _train(
    job: GANJob, run: Run, rt: Runtime, st: GANState, on_step: loop.OnStep | None, collapse: float
) -> dict[str, Any]:
    cfg, k = job.gan, st.splits.num_classes
    if loop.resume(run, st, rt):
        log.info("resumed GAN %s at iteration %d", run.folder, st.it)
    monitor = _Monitor(run, st, rt, job, collapse)
    losses = _LossMeans()
    log_every = max(1, min(LOG_EVERY_MAX, cfg.iters // LOG_RECORDS))
    clock = loop.CheckpointClock(job.runtime.ckpt_every_min, cfg.ckpt_every,
                                 distributed=rt.distributed)  # fmt: skip
    batches = _batches(st.loader)
    it0, t0 = st.it, time.perf_counter()
    st.watch.start()

    def log_losses() -> None:
        rec = losses.pop(rt)
        _check_finite(rec, "training", run.checkpoints.folder)
        rec["lr_g"] = cfg.lr_g * frac
        rec["iters_per_s"] = (st.it - it0) / max(1e-9, time.perf_counter() - t0)
        run.log(st.it, "train", rec)
        bar.set_postfix(w=f"{rec['d_wasserstein']:.2f}", ac=f"{rec['d_ac_acc_real']:.2f}")
        eta = (cfg.iters - st.it) / rec["iters_per_s"] if rec["iters_per_s"] > 0 else math.nan
        log.info(
            "%s iteration %d/%d: wasserstein %.3f, AC real %.1f%%, lr %.3g, %.3g it/s, ETA %s",
            run.folder.name,
            st.it,
            cfg.iters,
            rec["d_wasserstein"],
            100 * rec["d_ac_acc_real"],
            rec["lr_g"],
            rec["iters_per_s"],
            fmt_seconds(eta),
        )

    def save() -> None:
        if losses.n:  # a save between log records logs (and checks) the losses first
            log_losses()
        loop.save(run, st, rt)

    st.g.train()
    st.d.train()
    with progress(total=cfg.iters, initial=st.it, desc="train gan", unit="it") as bar:
        while st.it < cfg.iters:
            frac = gan_lr_scale(cfg, st.it)
            set_lr(st.opt_g, cfg.lr_g * frac)
            set_lr(st.opt_d, cfg.lr_d * frac)
            # n_critic critic steps on consecutive real batches
            for _ in range(cfg.n_critic):
                x, y = next(batches)
                parts_d = critic_step(st.g, st.d_net, st.opt_d, x, y, cfg=cfg, rt=rt, rng=st.rng)
            # one generator step, and the EMA of G from iteration ema_start on
            ema = st.ema if st.it >= cfg.ema_start else None
            parts_g = generator_step(st.g_net, st.d, st.opt_g, k, cfg=cfg, rt=rt, rng=st.rng,
                                     ema=ema)  # fmt: skip
            st.it += 1
            bar.update(1)
            # bookkeeping: loss means per log interval, monitoring, checkpoint, the caller's hook
            losses.add(parts_d, parts_g)
            due = clock.due(st.it)
            if st.it % log_every == 0 or due or st.it == cfg.iters:
                log_losses()
            monitor.after(st.it)
            if due:
                save()
                clock.reset()
            if on_step is not None:
                on_step(st, save)
    return _finish(job, run, rt, st, st.watch.total())


def _finish(job: GANJob, run: Run, rt: Runtime, st: GANState, seconds: float) -> dict[str, Any]:
    """Standing statistics for the sampler, final grids, final.pt and result.json."""
    cfg, splits = job.gan, st.splits
    final_g = st.sampler
    if cfg.bn_stats == "running":
        standing = torch.Generator().manual_seed(STANDING_SEED)
        recompute_standing_stats(final_g, cfg.standing_batches, max(2, cfg.batch_size), standing)
    final_g.eval()
    ac_test = _ac_accuracy(st.d, splits.test.x, splits.test.y, rt)
    result = {
        "iters": st.it,
        "train_seconds": seconds,
        "ac_test_top1": ac_test,
        "protocol": f"AC head top-1 on the {job.data.name} test split ({len(splits.test)} images)",
        "sampler": "EMA generator, standing BN statistics"
        if st.ema is not None
        else "final generator",
        "runtime": rt.describe(),
    }
    loop.world_info(result, rt, cfg.batch_size, st.g_net, st.d_net)
    log.info(
        "%s: AC head test top-1 %.1f%%, %s of training",
        run.folder.name,
        100 * ac_test,
        fmt_seconds(seconds),
    )
    if rt.is_main:
        run.checkpoints.folder.mkdir(parents=True, exist_ok=True)  # none yet if iters < ckpt_every
        z, y = _fixed_noise(final_g, splits.num_classes, job.seed, rt.device)
        grid = _grid(final_g, z, y, run.folder, st.it, cfg, name="final.png", standing=False,
                     classes=splits.classes)  # fmt: skip
        run.log_image("samples/final", grid, st.it)
        _interpolation_grid(
            final_g, splits.num_classes, run.folder / "samples" / "interpolation.png", job.seed
        )
        final = {"generator": final_g.state_dict(), "critic": st.d.state_dict(), **st.archs()}
        final.update(num_classes=splits.num_classes, classes=splits.classes, ema=st.ema is not None)
        save_final(run.checkpoints.folder / "final.pt", final)
    run.finish(result)
    return result


class _Monitor:
    """What a GAN run watches as it trains (rank 0): the AC head's accuracy and per-class
    collapse every ``eval_every`` iterations, on the validation split when there is one (the
    test split stays unseen until the end), else on the test split; fixed-noise grids every
    ``sample_every``."""

    def __init__(self, run: Run, st: GANState, rt: Runtime, job: GANJob, collapse: float):
        self.run, self.st, self.rt, self.cfg = run, st, rt, job.gan
        self.collapse = collapse
        val = st.splits.val
        self.split = "val" if val is not None and len(val) else "test"
        images = val if self.split == "val" else st.splits.test
        self.x = images.x[:MONITOR_IMAGES]
        self.y = images.y[:MONITOR_IMAGES]
        self.fixed = _fixed_noise(st.g, st.splits.num_classes, job.seed, rt.device)

    def after(self, it: int) -> None:
        if not self.rt.is_main:
            return
        st, cfg, k = self.st, self.cfg, self.st.splits.num_classes
        if it % cfg.eval_every == 0 or it == cfg.iters:
            acc = _ac_accuracy(st.d, self.x, self.y, self.rt)
            div = _collapse_check(st.g, st.d, self.x, self.y, self.rt, k, self.collapse)
            self.run.log(it, self.split, {"ac_top1": acc, **div})
            if div["collapsed_classes"]:
                log.warning(
                    "GAN iteration %d: %d of %d classes look collapsed (spread < %.2f x real)",
                    it, div["collapsed_classes"], k, self.collapse,
                )  # fmt: skip
        if it % cfg.sample_every == 0:
            grid = _grid(st.sampler, *self.fixed, self.run.folder, it, cfg,
                         classes=st.splits.classes)  # fmt: skip
            self.run.log_image("samples/fixed_noise", grid, it)


def _fixed_noise(g: Generator, num_classes: int, seed: int, device) -> tuple[torch.Tensor, ...]:
    rows = min(num_classes, GRID_ROWS)
    gen = torch.Generator().manual_seed(seed + GRID_STREAM)
    z = torch.randn(GRID_COLUMNS, g.z_dim, generator=gen).repeat(rows, 1)
    y = torch.arange(rows).repeat_interleave(GRID_COLUMNS)
    return z.to(device), y.to(device)


def _check_finite(parts: dict[str, float], where: str, folder: Path) -> None:
    for name, val in parts.items():
        if not math.isfinite(val):
            raise NumericalError(
                f"GAN {where} loss term '{name}' became {val}; the last good checkpoint is kept in "
                f"{folder}; lower gan.lr_g/lr_d or raise gan.gp_weight"
            )


@torch.no_grad()
def _ac_accuracy(d: Critic, x: torch.Tensor, y: torch.Tensor, rt: Runtime) -> float:
    was = d.training
    d.eval()
    correct = torch.zeros((), dtype=torch.long, device=rt.device)
    for i in range(0, x.shape[0], EVAL_CHUNK):
        xb = x[i : i + EVAL_CHUNK].to(rt.device).float() / 255
        with rt.autocast():
            _, logits = d(xb)
        correct += (logits.argmax(1) == y[i : i + EVAL_CHUNK].to(rt.device)).sum()
    d.train(was)
    return int(correct) / max(1, x.shape[0])  # one host sync


@torch.no_grad()
def _collapse_check(g, d, x, y, rt: Runtime, k: int, threshold: float) -> dict[str, float]:
    """Per-class diversity of G's samples relative to real images, in the critic's features
    (cheap, no extra network): the smallest ratio and the number of collapsed classes."""
    was_g, was_d = g.training, d.training
    g.eval()  # no side effects: eval mode never updates BN statistics
    d.eval()
    labels = torch.arange(k, device=rt.device).repeat_interleave(COLLAPSE_PER_CLASS)
    z = torch.randn(
        labels.shape[0],
        g.z_dim,
        device=rt.device,
        generator=torch.Generator(device=rt.device).manual_seed(COLLAPSE_SEED),
    )
    fake = torch.cat([d.features(g(z[i : i + EVAL_CHUNK], labels[i : i + EVAL_CHUNK])) for i in
                      range(0, labels.shape[0], EVAL_CHUNK)])  # fmt: skip
    real = torch.cat([d.features(x[i : i + EVAL_CHUNK].to(rt.device).float() / 255) for i in
                      range(0, x.shape[0], EVAL_CHUNK)])  # fmt: skip
    g.train(was_g)
    d.train(was_d)
    div = diversity(fake.float().cpu(), labels.cpu(), real_feats=real.float().cpu(),
                    real_labels=y.cpu(), num_classes=k)  # fmt: skip
    ratio = div["ratio_per_class"]
    return {
        "diversity_min_ratio": float(ratio.nan_to_num(nan=1.0).min()),
        "collapsed_classes": int((ratio < threshold).sum()),
    }


def _grid(
    g, z, y, folder: Path, it: int, cfg: GANConfig, name=None, standing=True, classes=None
) -> Tensor:
    """Fixed-noise grid: one row per class (up to 20), 10 samples each; saved as a PNG with the
    class names left of the rows, and returned (unlabelled) as one ``[C, H, W]`` image for the
    run's trackers."""
    was = g.training
    if standing and cfg.bn_stats == "running":
        # EMA weights have no matching running stats: estimate them (cheaply) for the grid.
        standing = torch.Generator().manual_seed(STANDING_SEED)
        recompute_standing_stats(g, GRID_STANDING_BATCHES, max(2, cfg.batch_size), standing)
    imgs = sample(g, y, z=z)
    g.train(was)
    rows = (imgs.shape[0] + GRID_COLUMNS - 1) // GRID_COLUMNS
    names = [str(c) for c in range(rows)]
    if classes:
        names = [classes[c] if c < len(classes) else str(c) for c in range(rows)]
    save_labelled_grid(imgs, folder / "samples" / (name or f"grid-{it:07d}.png"),
                       nrow=GRID_COLUMNS, row_labels=names)  # fmt: skip
    return make_grid(imgs, nrow=GRID_COLUMNS)


def _interpolation_grid(g: Generator, k: int, path: Path, seed: int) -> None:
    """Same z across classes (rows: z; columns: classes, up to 10)."""
    gen = torch.Generator().manual_seed(seed + INTERPOLATION_STREAM)
    cols = min(k, GRID_COLUMNS)
    device = next(g.parameters()).device
    z = torch.randn(INTERPOLATION_ROWS, g.z_dim, generator=gen)
    z = z.repeat_interleave(cols, 0).to(device)
    y = torch.arange(cols).repeat(INTERPOLATION_ROWS).to(device)
    save_grid(sample(g, y, z=z), path, nrow=cols)

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
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from advaug.config import DataConfig, EvalConfig, GANConfig, RuntimeConfig
from advaug.data.loader import DeviceLoader
from advaug.data.splits import Splits, load_splits
from advaug.errors import ConfigError, NumericalError
from advaug.imaging import save_grid
from advaug.log import get_logger, progress
from advaug.models.gan import Critic, Generator, recompute_standing_stats, sample
from advaug.runtime import (
    Runtime,
    ddp,
    distributed,
    make_runtime,
    rng_state,
    seed_everything,
    set_rng_state,
    update_ema,
)
from advaug.runtime.checkpoint import check_arch, save_final
from advaug.train.gan_losses import critic_loss, dequantize, generator_loss
from advaug.train.run import Run

log = get_logger(__name__)


@dataclass
class GANJob:
    data: DataConfig = field(default_factory=DataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    seed: int = 0


def build_gan(cfg: GANConfig, num_classes: int) -> tuple[Generator, Critic]:
    g = Generator(
        z_dim=cfg.z_dim,
        width=cfg.width,
        num_classes=num_classes,
        concat_onehot=cfg.concat_onehot,
        bn_stats=cfg.bn_stats,
    )
    d = Critic(
        width=cfg.width,
        num_classes=num_classes,
        ac_dropout=cfg.ac_dropout,
        spectral_norm=cfg.spectral_norm,
    )
    return g, d


def _batches(loader: DeviceLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches; each new epoch reshuffles (the loader keeps its position for resume)."""
    while True:
        yield from loader  # a finished pass moves the loader to the next epoch by itself


def _fixed_noise(g: Generator, num_classes: int, seed: int, device) -> tuple[torch.Tensor, ...]:
    rows = min(num_classes, 20)
    gen = torch.Generator().manual_seed(seed + 7)
    z = torch.randn(10, g.z_dim, generator=gen).repeat(rows, 1)
    y = torch.arange(rows).repeat_interleave(10)
    return z.to(device), y.to(device)


def _check_finite(parts: dict[str, float], where: str, folder: Path) -> None:
    for name, val in parts.items():
        if not math.isfinite(val):
            raise NumericalError(
                f"GAN {where} loss term '{name}' became {val}; the last good checkpoint is kept in "
                f"{folder}; lower gan.lr_g/lr_d or raise gan.gp_weight"
            )


def train_gan(
    job: GANJob,
    out: str | Path,
    *,
    splits: Splits | None = None,
    stop_after: int | None = None,
    inject_nan_at: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) an AC-GAN in run folder ``out``; returns its result dict.

    Under torchrun every rank calls this; the returned result is the same on every rank.
    """
    rt = make_runtime(job.runtime)
    with distributed(rt):
        return _train(job, out, rt, splits, stop_after, inject_nan_at)


def _train(
    job: GANJob,
    out: str | Path,
    rt: Runtime,
    splits: Splits | None,
    stop_after: int | None,
    inject_nan_at: int | None,
) -> dict[str, Any]:
    from advaug.train.classifier import Interrupted

    run = Run(out, job, kind="gan", keep_last=job.runtime.keep_last, write=rt.is_main)
    if run.finished:
        log.info("%s is finished; nothing to do", out)
        return run.result()
    cfg = job.gan
    splits = splits or load_splits(job.data, seed=job.seed)
    if cfg.batch_size > len(splits.train):
        raise ConfigError(
            f"invalid config value gan.batch_size={cfg.batch_size}: larger than the "
            f"{len(splits.train)} training images; lower it"
        )
    k = splits.num_classes
    seed_everything(job.seed)
    g, d = build_gan(cfg, k)
    g, d = rt.prepare(g), rt.prepare(d)
    # g_net / d_net train (DDP under torchrun); g / d are the plain modules. One process: same.
    g_net, d_net = ddp.wrap(g, rt), ddp.wrap(d, rt)
    if rt.distributed and rt.rank > 0:
        torch.manual_seed(ddp.rank_seed(job.seed, rt.rank))
    betas = (cfg.beta1, cfg.beta2)
    fused = {"fused": True} if rt.device.type == "cuda" else {}
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g, betas=betas, **fused)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=betas, **fused)
    ema = None
    if cfg.ema_decay > 0:
        ema = AveragedModel(g, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=False)
    loader = DeviceLoader(
        splits.train.x,
        splits.train.y,
        cfg.batch_size,
        shuffle=True,
        seed=job.seed,
        crop_pad=0,
        flip=cfg.flip,
        drop_last=True,
        device=rt.device,
        channels_last=rt.channels_last,
        rank=rt.rank,
        world_size=rt.world_size,
    )
    rng = torch.Generator(device=rt.device)
    rng.manual_seed(ddp.rank_seed(job.seed + 1, rt.rank))
    it = 0
    # CPU first: generator states must be CPU tensors; weights are copied onto the device.
    resumed = run.checkpoints.load_latest(map_location="cpu")
    if resumed is not None:
        state, _ = resumed
        check_arch(state["g_arch"], g.arch_name, g.arch_kwargs)
        g.load_state_dict(state["generator"])
        d.load_state_dict(state["critic"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        it = state["iter"]
        saved_world = int(state.get("world_size", 1))
        pos = dict(state["loader"])
        if saved_world != rt.world_size:
            pos["batch"] = min(len(loader), pos["batch"] * saved_world // rt.world_size)
        loader.load_state_dict(pos)
        ranks = state.get("ranks")
        if saved_world == rt.world_size:
            mine = ranks[rt.rank] if ranks is not None else state
            rng.set_state(mine["gen_rng"].cpu())
            set_rng_state(mine["rng"])
        elif rt.rank == 0:
            rng.set_state(state["gen_rng"].cpu())
            set_rng_state(state["rng"])
        else:  # a new rank, or a rank of another world size: a fresh stream of its own
            rng.manual_seed(ddp.rank_seed(job.seed + 1 + it, rt.rank))
            torch.manual_seed(ddp.rank_seed(job.seed + it, rt.rank))
        run.resume_from(it)
        log.info("resumed GAN %s at iteration %d", out, it)
    fixed_z, fixed_y = _fixed_noise(g, k, job.seed, rt.device)
    test_x, test_y = splits.test.x[:2000], splits.test.y[:2000]
    g_arch = {"arch_name": g.arch_name, "arch_kwargs": dict(g.arch_kwargs)}
    d_arch = {"arch_name": d.arch_name, "arch_kwargs": dict(d.arch_kwargs)}

    def save() -> None:
        # Collective under torchrun (every rank hands over its RNG states).
        ranks = ddp.gather_to_main({"gen_rng": rng.get_state(), "rng": rng_state()})
        if rt.is_main:
            extra = {"world_size": rt.world_size, "ranks": ranks} if rt.distributed else {}
            run.checkpoints.save(
                {
                    "generator": g.state_dict(),
                    "critic": d.state_dict(),
                    "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "loader": loader.state_dict(),
                    "gen_rng": rng.get_state(),
                    "rng": rng_state(),
                    "iter": it,
                    "g_arch": g_arch,
                    "d_arch": d_arch,
                    "num_classes": k,
                    "classes": splits.classes,
                    **extra,
                },
                it,
            )

    batches = _batches(loader)
    it0 = it
    log_every = max(1, min(50, cfg.iters // 20))
    sums: dict[str, torch.Tensor] = {}
    n_logged = 0
    t0, last_ckpt = time.perf_counter(), time.monotonic()
    bar = progress(total=cfg.iters, initial=it, desc="train gan", unit="it")
    g.train()
    d.train()
    while it < cfg.iters:
        frac = 1.0 - it / cfg.iters if cfg.lr_decay == "linear" else 1.0
        for opt, lr in ((opt_g, cfg.lr_g), (opt_d, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * frac
        # -- critic steps ----------------------------------------------------------------------
        for p in d.parameters():
            p.requires_grad_(True)
        for _ in range(cfg.n_critic):
            x, y = next(batches)
            if cfg.dequantize:
                x = dequantize(x, rng)
            z = torch.randn(x.shape[0], g.z_dim, device=rt.device, generator=rng)
            with rt.autocast():
                with torch.no_grad():
                    fake = g(z, y)
                loss_d, parts_d = critic_loss(
                    d_net,
                    x,
                    y,
                    fake,
                    gp_weight=cfg.gp_weight,
                    ac_scale=cfg.ac_scale_d,
                    ac_on_fake=cfg.ac_on_fake,
                    per_pixel_alpha=cfg.per_pixel_alpha,
                    rng=rng,
                )
            if inject_nan_at is not None and it == inject_nan_at:
                loss_d = loss_d * float("nan")
                parts_d = {**parts_d, "gp": parts_d["gp"] * float("nan")}
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        # -- generator step --------------------------------------------------------------------
        for p in d.parameters():
            p.requires_grad_(False)
        n_g = cfg.g_batch_mult * cfg.batch_size
        y_g = torch.randint(k, (n_g,), device=rt.device, generator=rng)
        z_g = torch.randn(n_g, g.z_dim, device=rt.device, generator=rng)
        with rt.autocast():
            loss_g, parts_g = generator_loss(d, g_net(z_g, y_g), y_g, ac_scale=cfg.ac_scale_g)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if ema is not None and it >= cfg.ema_start:
            update_ema(ema, g, cfg.ema_decay)
        it += 1
        bar.update(1)
        # -- bookkeeping (one host sync per log interval) --------------------------------------
        step_parts = {f"d_{n}": v for n, v in parts_d.items()}
        step_parts.update({f"g_{n}": v for n, v in parts_g.items()})
        sums = {n: sums.get(n, 0) + v.float() for n, v in step_parts.items()}
        n_logged += 1
        by_time = time.monotonic() - last_ckpt > 60 * job.runtime.ckpt_every_min
        if rt.distributed:  # the clock differs between ranks: agree (saving is collective)
            by_time = it % ddp.AGREE_EVERY == 0 and ddp.agree(by_time)
        due_ckpt = it % cfg.ckpt_every == 0 or by_time
        if it % log_every == 0 or due_ckpt or it == cfg.iters or stop_after == it:
            # one collective and one host sync per log interval: means over steps and ranks
            totals = ddp.all_sum(sums)
            means = {n: v / (n_logged * rt.world_size) for n, v in totals.items()}
            _check_finite(means, "training", run.checkpoints.folder)
            rec = dict(means)
            rec["lr_g"] = cfg.lr_g * frac
            rec["iters_per_s"] = (it - it0) / max(1e-9, time.perf_counter() - t0)
            run.log(it, "train", rec)
            bar.set_postfix(w=f"{rec['d_wasserstein']:.2f}", ac=f"{rec['d_ac_acc_real']:.2f}")
            sums, n_logged = {}, 0
        if (it % cfg.eval_every == 0 or it == cfg.iters) and rt.is_main:
            acc = _ac_accuracy(d, test_x, test_y, rt)
            div = _collapse_check(g, d, test_x, test_y, rt, k)
            run.log(it, "test", {"ac_top1": acc, **div})
            if div["collapsed_classes"]:
                log.warning(
                    "GAN iteration %d: %d of %d classes look collapsed (spread < %.2f x real)",
                    it,
                    div["collapsed_classes"],
                    k,
                    COLLAPSE_THRESHOLD,
                )
        if it % cfg.sample_every == 0 and rt.is_main:
            _grid(g if ema is None else ema.module, fixed_z, fixed_y, run.folder, it, cfg)
        if due_ckpt:
            save()
            last_ckpt = time.monotonic()
        if stop_after is not None and it >= stop_after:
            save()
            bar.close()
            run.close()
            raise Interrupted(f"stopped after iteration {it}")
    bar.close()
    final_g = ema.module if ema is not None else g
    if cfg.bn_stats == "running":
        recompute_standing_stats(
            final_g, cfg.standing_batches, max(2, cfg.batch_size), torch.Generator().manual_seed(3)
        )
    final_g.eval()
    ac_test = _ac_accuracy(d, splits.test.x, splits.test.y, rt)
    replica_diff = max(ddp.replica_difference(g_net), ddp.replica_difference(d_net))
    if rt.is_main:
        run.checkpoints.folder.mkdir(parents=True, exist_ok=True)  # none yet if iters < ckpt_every
        _grid(final_g, fixed_z, fixed_y, run.folder, it, cfg, name="final.png", standing=False)
        _interpolation_grid(final_g, k, run.folder / "samples" / "interpolation.png", job.seed)
        save_final(
            run.checkpoints.folder / "final.pt",
            {
                "generator": final_g.state_dict(),
                "critic": d.state_dict(),
                "g_arch": g_arch,
                "d_arch": d_arch,
                "num_classes": k,
                "classes": splits.classes,
                "ema": ema is not None,
            },
        )
    result = {
        "iters": it,
        "train_seconds": time.perf_counter() - t0,
        "ac_test_top1": ac_test,
        "protocol": f"AC head top-1 on the {job.data.name} test split ({len(splits.test)} images)",
        "sampler": "EMA generator, standing BN statistics"
        if ema is not None
        else "final generator",
        "runtime": rt.describe(),
    }
    if rt.distributed:
        result["global_batch"] = cfg.batch_size * rt.world_size
        result["replica_max_abs_diff"] = replica_diff
    run.finish(result)
    return result


@torch.no_grad()
def _ac_accuracy(d: Critic, x: torch.Tensor, y: torch.Tensor, rt: Runtime) -> float:
    was = d.training
    d.eval()
    correct = torch.zeros((), dtype=torch.long, device=rt.device)
    for i in range(0, x.shape[0], 500):
        xb = x[i : i + 500].to(rt.device).float() / 255
        with rt.autocast():
            _, logits = d(xb)
        correct += (logits.argmax(1) == y[i : i + 500].to(rt.device)).sum()
    d.train(was)
    return int(correct) / max(1, x.shape[0])  # one host sync


COLLAPSE_THRESHOLD = EvalConfig().collapse_threshold


@torch.no_grad()
def _collapse_check(g, d, x, y, rt: Runtime, k: int, per_class: int = 10) -> dict[str, float]:
    """Per-class diversity of G's samples relative to real images, in the critic's features
    (cheap, no extra network): the smallest ratio and the number of collapsed classes."""
    from advaug.evaluate.gan_quality import diversity

    was_g, was_d = g.training, d.training
    g.eval()  # no side effects: eval mode never updates BN statistics
    d.eval()
    labels = torch.arange(k, device=rt.device).repeat_interleave(per_class)
    z = torch.randn(
        labels.shape[0],
        g.z_dim,
        device=rt.device,
        generator=torch.Generator(device=rt.device).manual_seed(13),
    )
    fake = torch.cat([d.features(g(z[i : i + 500], labels[i : i + 500])) for i in
                      range(0, labels.shape[0], 500)])  # fmt: skip
    real = torch.cat([d.features(x[i : i + 500].to(rt.device).float() / 255) for i in
                      range(0, x.shape[0], 500)])  # fmt: skip
    g.train(was_g)
    d.train(was_d)
    div = diversity(fake.float().cpu(), labels.cpu(), real_feats=real.float().cpu(),
                    real_labels=y.cpu(), num_classes=k)  # fmt: skip
    ratio = div["ratio_per_class"]
    return {
        "diversity_min_ratio": float(ratio.nan_to_num(nan=1.0).min()),
        "collapsed_classes": int((ratio < COLLAPSE_THRESHOLD).sum()),
    }


def _grid(g, z, y, folder: Path, it: int, cfg: GANConfig, name=None, standing=True) -> None:
    """Fixed-noise grid: one row per class (up to 20), 10 samples each."""
    was = g.training
    if standing and cfg.bn_stats == "running":
        # EMA weights have no matching running stats: estimate them (cheaply) for the grid.
        recompute_standing_stats(g, 4, max(2, cfg.batch_size), torch.Generator().manual_seed(3))
    imgs = sample(g, y, z=z)
    g.train(was)
    save_grid(imgs, folder / "samples" / (name or f"grid-{it:07d}.png"), nrow=10)


def _interpolation_grid(g: Generator, k: int, path: Path, seed: int) -> None:
    """Same z across classes (rows: z; columns: classes, up to 10)."""
    gen = torch.Generator().manual_seed(seed + 11)
    cols = min(k, 10)
    device = next(g.parameters()).device
    z = torch.randn(8, g.z_dim, generator=gen).repeat_interleave(cols, 0).to(device)
    y = torch.arange(cols).repeat(8).to(device)
    save_grid(sample(g, y, z=z), path, nrow=cols)

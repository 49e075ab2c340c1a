"""Classifier training: SGD-Nesterov, a schedule, EMA, an augmentation technique, exact resume.

One step, in full::

    x, y = next(loader)                                   # device-resident, crop/flip on device
    part = split_batch(x, y, prop, mode)                  # what T transforms, what stays clean
    aug = technique(model, part.x_src, part.y_src, step)  # FGSM / GAN / unrestricted / nothing
    loss = (n_c·CE_c + λ·n_a·CE_a) / (n_c + λ·n_a)        # the seed's mixed loss
    loss.backward(); opt.step(); ema.update()

Checkpoints are written at each epoch end and every ``ckpt_every_min`` minutes (or
``ckpt_every_steps`` steps) and hold model, optimiser, EMA, technique state, loader position and
RNG states, so a killed run resumes to bit-identical weights on the CPU.

Under ``torchrun`` (see :mod:`advaug.runtime.ddp`) the model trains in DistributedDataParallel:
``classifier.batch_size`` is the batch of one rank, the global batch is ``batch_size ×
world_size``, and ``classifier.optim.lr`` is used as configured, i.e. as the learning rate of
that global batch. Rank 0 writes everything; the checkpoint also keeps every rank's RNG and
technique state. A run resumes under any world size: the loader position is converted through
the number of images the run has consumed (the technique state is kept only when the world size
is unchanged). With ``runtime.sync_bn`` (CUDA only) batch norm uses the global batch.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from advaug.augment import build_technique
from advaug.augment.base import forward_mixed, split_batch
from advaug.config import ClassifierConfig, DataConfig, RuntimeConfig
from advaug.data.loader import DeviceLoader
from advaug.data.splits import Splits, load_splits
from advaug.errors import ConfigError, NumericalError
from advaug.evaluate.accuracy import accuracy
from advaug.loading import load_gan
from advaug.log import get_logger, progress
from advaug.models import build_model
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
from advaug.train.run import Run
from advaug.train.schedule import lr_at

log = get_logger(__name__)


@dataclass
class ClassifierJob:
    """Everything that determines one classifier run (its config.yaml)."""

    data: DataConfig = field(default_factory=DataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    seed: int = 0
    gan: str | None = None  # GAN run folder or checkpoint, for the gan/unrestricted techniques
    ckpt_every_steps: int = 0  # >0: also checkpoint every N steps (tests, preemptible machines)


class Interrupted(Exception):
    """Raised by the ``stop_after`` test hook after checkpointing (simulates a kill)."""


def build_classifier(job: ClassifierJob, num_classes: int) -> nn.Module:
    kwargs = job.classifier.model.kwargs
    if "num_classes" in kwargs:
        raise ConfigError(
            "classifier.model.kwargs.num_classes is set by the dataset; remove it from the kwargs"
        )
    return build_model(job.classifier.model.name, num_classes, **kwargs)


def make_optimizer(model: nn.Module, cfg: ClassifierConfig, rt: Runtime) -> torch.optim.Optimizer:
    o = cfg.optim
    kwargs: dict[str, Any] = {}
    if rt.device.type == "cuda":
        kwargs["fused"] = True
    return torch.optim.SGD(
        model.parameters(),
        lr=o.lr,
        momentum=o.momentum,
        nesterov=o.nesterov and o.momentum > 0,
        weight_decay=o.weight_decay,
        **kwargs,
    )


def _state(model, opt, ema, technique, loader, step, epoch, best, extra) -> dict[str, Any]:
    """The checkpoint of a one-process run; ``model`` is the plain (unwrapped) module."""
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "technique": technique.state_dict(),
        "loader": loader.state_dict(),
        "step": step,
        "epoch": epoch,
        "best_val": best,
        "rng": rng_state(),
        **extra,
    }


def train_classifier(
    job: ClassifierJob,
    out: str | Path,
    *,
    splits: Splits | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train (or resume) one classifier in run folder ``out``; returns its result dict.

    Under torchrun every rank calls this; the returned result is the same on every rank.
    """
    rt = make_runtime(job.runtime)
    with distributed(rt):
        return _train(job, out, rt, splits, stop_after)


def _train(
    job: ClassifierJob,
    out: str | Path,
    rt: Runtime,
    splits: Splits | None,
    stop_after: int | None,
) -> dict[str, Any]:
    run = Run(out, job, kind="classifier", keep_last=job.runtime.keep_last, write=rt.is_main)
    if run.finished:
        log.info("%s is finished; nothing to do", out)
        return run.result()
    cfg = job.classifier
    splits = splits or load_splits(job.data, seed=job.seed)
    if cfg.batch_size > len(splits.train):
        raise ConfigError(
            f"invalid config value classifier.batch_size={cfg.batch_size}: larger than the "
            f"{len(splits.train)} training images; lower it"
        )
    seed_everything(job.seed)
    model = rt.prepare(build_classifier(job, splits.num_classes))
    arch = {"arch_name": model.arch_name, "arch_kwargs": model.arch_kwargs}
    # `net` trains (DDP under torchrun); `model` is the plain module that attacks, EMA,
    # evaluation and checkpoints use. One process: the same object.
    net = ddp.wrap(model, rt, sync_bn=getattr(job.runtime, "sync_bn", False))
    model = ddp.unwrap(net)
    if rt.distributed and rt.rank > 0:  # every rank its own random stream (rank 0 keeps seed's)
        torch.manual_seed(ddp.rank_seed(job.seed, rt.rank))
    opt = make_optimizer(model, cfg, rt)
    ema = None
    if cfg.optim.ema_decay > 0:
        ema = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema_decay), use_buffers=True
        )
    gan = _load_gan_for(job, rt) if cfg.augment.technique in ("gan", "unrestricted") else None
    technique = _build_technique(job, rt, gan)
    loader = DeviceLoader(
        splits.train.x,
        splits.train.y,
        cfg.batch_size,
        shuffle=True,
        seed=job.seed,
        crop_pad=job.data.crop_pad,
        pad_mode=job.data.pad_mode,
        flip=job.data.flip,
        drop_last=True,
        device=rt.device,
        channels_last=rt.channels_last,
        rank=rt.rank,
        world_size=rt.world_size,
    )
    steps_per_epoch = len(loader)
    total = steps_per_epoch * cfg.epochs
    step, epoch, best = 0, 0, -1.0
    acc: dict[str, torch.Tensor] | None = None  # the epoch's running sums (device tensors)
    # CPU first: RNG states must be CPU tensors; weights are copied onto the device on load.
    resumed = run.checkpoints.load_latest(map_location="cpu")
    if resumed is not None:
        state, manifest = resumed
        check_arch(state, arch["arch_name"], arch["arch_kwargs"])
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        step, epoch, best = state["step"], state["epoch"], state["best_val"]
        same_world = state.get("world_size", 1) == rt.world_size
        loader.load_state_dict(_loader_state(state, rt.world_size, len(loader)))
        if not same_world:
            step = loader.epoch * steps_per_epoch + loader.state_dict()["batch"]
        acc = _restore_rank_state(state, rt, technique, job.seed + step, same_world)
        if acc is not None:
            acc = {k: v.to(rt.device) for k, v in acc.items()}
        run.resume_from(step)
        log.info("resumed %s at step %d (epoch %d)", out, step, epoch)
    else:
        run.log(
            0,
            "setup",
            {
                "runtime": str(rt.describe()),
                "steps_per_epoch": steps_per_epoch,
                "global_batch": cfg.batch_size * rt.world_size,
            },
        )

    def save(metric: float | None = None) -> None:
        # Collective under torchrun (every rank hands over its RNG and technique state).
        mine = {"rng": rng_state(), "technique": technique.state_dict(), "epoch_stats": acc}
        ranks = ddp.gather_to_main(mine)
        if rt.is_main:
            extra = {
                **arch,
                "num_classes": splits.num_classes,
                "classes": splits.classes,
                "epoch_stats": acc,  # so that a resumed epoch logs the whole epoch
            }
            state = _state(model, opt, ema, technique, loader, step, epoch, best, extra)
            if rt.distributed:
                state.update(world_size=rt.world_size, ranks=ranks)
            run.checkpoints.save(state, step, metric=metric)

    prop = 0.0 if technique.name == "none" else cfg.augment.prop  # `none` trains on all of B
    train_step = rt.maybe_compile(
        lambda xc, yc, aug: forward_mixed(
            net,
            xc,
            yc,
            aug,
            weight=cfg.augment.adv_weight,
            bn=cfg.augment.bn,
            label_smoothing=cfg.optim.label_smoothing,
        )
    )
    t_start, last_ckpt = time.perf_counter(), time.monotonic()
    bar = progress(total=total, initial=step, desc=f"train {cfg.augment.technique}", unit="step")
    # the last step's lr, for a run resumed from a checkpoint on the last batch of an epoch
    lr = lr_at(cfg.optim, max(0, step - 1), steps_per_epoch, cfg.epochs)
    while epoch < cfg.epochs:
        loader.set_epoch(epoch)
        model.train()
        for x, y in loader:
            lr = lr_at(cfg.optim, step, steps_per_epoch, cfg.epochs)
            for g in opt.param_groups:
                g["lr"] = lr
            part = split_batch(x, y, prop, cfg.augment.mode)
            aug = technique(model, part.x_src, part.y_src, step)
            with rt.autocast():
                loss, stats = train_step(part.x_clean, part.y_clean, aug)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                update_ema(ema, model, cfg.optim.ema_decay)
            acc = stats if acc is None else {k: acc[k] + v for k, v in stats.items()}
            step += 1
            bar.update(1)
            by_steps = job.ckpt_every_steps and step % job.ckpt_every_steps == 0
            by_time = time.monotonic() - last_ckpt > 60 * job.runtime.ckpt_every_min
            if rt.distributed:  # the clock differs between ranks: agree (saving is collective)
                by_time = step % ddp.AGREE_EVERY == 0 and ddp.agree(by_time)
            if by_steps or by_time:
                save()
                last_ckpt = time.monotonic()
            if stop_after is not None and step >= stop_after:
                save()
                bar.close()
                run.close()
                raise Interrupted(f"stopped after step {step}")
        # End of epoch: one host sync for the epoch's training stats (summed over the ranks),
        # then validation.
        epoch += 1
        rec = _epoch_record(acc, lr, technique)
        acc = None
        if not math.isfinite(rec["loss"]):
            raise NumericalError(
                f"classifier loss became {rec['loss']} in epoch {epoch}; the last good checkpoint "
                f"is kept in {run.checkpoints.folder}; lower classifier.optim.lr"
            )
        run.log(step, "train", {"epoch": epoch, **rec})
        metric = None
        if splits.val is not None:
            eval_model = ema.module if ema is not None else model
            v = _accuracy(eval_model, splits.val.x, splits.val.y, cfg.eval_batch_size, rt)
            run.log(step, "val", {"epoch": epoch, "top1": v["top1"], "top5": v["top5"]})
            metric = v["top1"]
            best = max(best, metric)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['clean_acc']:.3f}")
        save(metric)
        last_ckpt = time.monotonic()
    bar.close()
    eval_model = ema.module if ema is not None else model
    test = _accuracy(eval_model, splits.test.x, splits.test.y, cfg.eval_batch_size, rt)
    replica_diff = ddp.replica_difference(net)
    final = {
        "model": eval_model.state_dict(),
        **arch,
        "num_classes": splits.num_classes,
        "classes": splits.classes,
        "ema": ema is not None,
    }
    if rt.is_main:
        save_final(run.checkpoints.folder / "final.pt", final)
    result = {
        "technique": cfg.augment.technique,
        "seed": job.seed,
        "epochs": cfg.epochs,
        "steps": step,
        "train_seconds": time.perf_counter() - t_start,
        "test_top1": test["top1"],
        "test_top5": test["top5"],
        "best_val_top1": best if best >= 0 else None,
        "protocol": f"{job.data.name} test split, {len(splits.test)} images, "
        f"{'EMA' if ema is not None else 'final'} weights, seed {job.seed}",
        "runtime": rt.describe(),
    }
    if rt.distributed:
        result["global_batch"] = cfg.batch_size * rt.world_size
        result["replica_max_abs_diff"] = replica_diff
    run.log(step, "test", {"top1": test["top1"], "top5": test["top5"]})
    run.finish(result)
    return result


def _epoch_record(acc: dict[str, torch.Tensor] | None, lr: float, technique) -> dict[str, float]:
    """The epoch's training record: sums over all ranks (one collective, one host sync);
    the technique's own numbers are rank 0's."""
    if acc is None:
        return {"loss": float("nan"), "clean_acc": 0.0, "aug_acc": 0.0, "lr": lr}
    vals = ddp.all_sum(acc)
    n = vals["clean_n"] + vals["aug_n"]
    return {
        "loss": vals["loss_sum"] / max(1, n),
        "clean_acc": vals["clean_correct"] / max(1, vals["clean_n"]),
        "aug_acc": vals["aug_correct"] / vals["aug_n"] if vals["aug_n"] else None,
        "aug_share": vals["aug_n"] / max(1, n),
        "clean_examples": int(vals["clean_n"]),
        "aug_examples": int(vals["aug_n"]),
        "lr": lr,
        **technique.metrics(),
    }


def _build_technique(job: ClassifierJob, rt: Runtime, gan: Any):
    """The job's technique with this rank's own random stream (and pool share, if any)."""
    cfg = job.classifier.augment
    seed = ddp.rank_seed(job.seed, rt.rank)
    kwargs: dict[str, Any] = {"seed": seed, "device": rt.device, "gan": gan}
    if rt.distributed and "world_size" in inspect.signature(build_technique).parameters:
        return build_technique(cfg, **kwargs, rank=rt.rank, world_size=rt.world_size)
    technique = build_technique(cfg, **kwargs)
    if rt.distributed and technique.name == "unrestricted":
        # Until build_technique passes rank/world_size on: split the latent pool over the ranks.
        from advaug.augment.unrestricted import UnrestrictedTechnique

        technique = UnrestrictedTechnique(
            cfg.unrestricted, gan, seed, rt.device, rank=rt.rank, world_size=rt.world_size
        )
    return technique


def _loader_state(state: dict[str, Any], world_size: int, batches: int) -> dict[str, int]:
    """The checkpoint's loader position for ``world_size`` ranks.

    Batch b of world size W ends after ``b * W`` per-rank batches of the shared permutation; a
    different world size resumes at the batch that ends there or just before (at most one global
    batch is seen twice).
    """
    pos = dict(state["loader"])
    saved = int(state.get("world_size", 1))
    if saved != world_size:
        pos["batch"] = min(batches, pos["batch"] * saved // world_size)
    return pos


def _restore_rank_state(
    state: dict[str, Any], rt: Runtime, technique: Any, reseed: int, same_world: bool
) -> dict[str, torch.Tensor] | None:
    """Restore this rank's RNG and technique state and return its running epoch sums.

    With the world size unchanged each rank gets its own; after a change, rank 0 keeps the
    saved RNG and takes the sums of all saved ranks, the others reseed and start from zero, and
    techniques start afresh.
    """
    ranks = state.get("ranks")
    if same_world and ranks is not None:
        mine = ranks[rt.rank]
        technique.load_state_dict(mine["technique"])
        set_rng_state(mine["rng"])
        return mine.get("epoch_stats")
    if same_world:
        technique.load_state_dict(state["technique"])
        set_rng_state(state["rng"])
        return state.get("epoch_stats")
    log.warning(
        "checkpoint was made with world size %s, resuming with %d: technique state restarts",
        state.get("world_size", 1),
        rt.world_size,
    )
    if rt.rank != 0:
        torch.manual_seed(ddp.rank_seed(reseed, rt.rank))
        return None
    set_rng_state(state["rng"])
    parts = [r.get("epoch_stats") for r in ranks] if ranks else [state.get("epoch_stats")]
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    return {k: sum(p[k] for p in parts) for k in parts[0]}


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, rt: Runtime):
    """Top-1/top-5 of ``model`` on (x, y); under torchrun each rank evaluates every
    ``world_size``-th image and the hits are summed."""
    if not rt.distributed:
        return accuracy(model, x, y, batch, rt)
    part = accuracy(model, x[rt.rank :: rt.world_size], y[rt.rank :: rt.world_size], batch, rt)
    n = part["n"]
    hits = {
        "top1": torch.tensor(round(part["top1"] * n) if n else 0.0, device=rt.device),
        "top5": torch.tensor(round(part["top5"] * n) if n else 0.0, device=rt.device),
        "n": torch.tensor(float(n), device=rt.device),
    }
    total = ddp.all_sum(hits)
    n_all = max(1.0, total["n"])
    return {"top1": total["top1"] / n_all, "top5": total["top5"] / n_all, "n": int(total["n"])}


def _load_gan_for(job: ClassifierJob, rt: Runtime):
    if not job.gan:
        raise ConfigError(
            f"technique '{job.classifier.augment.technique}' needs a trained GAN; "
            "pass --gan RUN_DIR (from `advaug train-gan`)"
        )
    return load_gan(job.gan, rt.device)

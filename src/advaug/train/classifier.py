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
"""

from __future__ import annotations

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
from advaug.errors import CheckpointError, ConfigError, NumericalError
from advaug.evaluate.accuracy import accuracy
from advaug.log import get_logger, progress
from advaug.models import build_model
from advaug.train.checkpoint import check_arch, load_file, resolve_checkpoint, save_final
from advaug.train.data_setup import Splits, load_splits
from advaug.train.run import Run
from advaug.train.runtime import Runtime, make_runtime, rng_state, seed_everything, set_rng_state
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
    return build_model(job.classifier.model.name, num_classes, **job.classifier.model.kwargs)


def _optimizer(model: nn.Module, cfg: ClassifierConfig, rt: Runtime) -> torch.optim.Optimizer:
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
    """Train (or resume) one classifier in run folder ``out``; returns its result dict."""
    rt = make_runtime(job.runtime)
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
    opt = _optimizer(model, cfg, rt)
    ema = None
    if cfg.optim.ema_decay > 0:
        ema = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema_decay), use_buffers=True
        )
    gan = _load_gan_for(job, rt) if cfg.augment.technique in ("gan", "unrestricted") else None
    technique = build_technique(cfg.augment, seed=job.seed, device=rt.device, gan=gan)
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
    resumed = run.checkpoints.load_latest(map_location=rt.device)
    if resumed is not None:
        state, manifest = resumed
        check_arch(state, arch["arch_name"], arch["arch_kwargs"])
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        technique.load_state_dict(state["technique"])
        loader.load_state_dict(state["loader"])
        step, epoch, best = state["step"], state["epoch"], state["best_val"]
        set_rng_state(state["rng"])
        run.resume_from(step)
        log.info("resumed %s at step %d (epoch %d)", out, step, epoch)
    else:
        run.log(0, "setup", {"runtime": str(rt.describe()), "steps_per_epoch": steps_per_epoch})

    def save(metric: float | None = None) -> None:
        if rt.is_main:
            extra = {**arch, "num_classes": splits.num_classes, "classes": splits.classes}
            state = _state(model, opt, ema, technique, loader, step, epoch, best, extra)
            run.checkpoints.save(state, step, metric=metric)

    train_step = rt.maybe_compile(
        lambda xc, yc, aug: forward_mixed(
            model,
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
    while epoch < cfg.epochs:
        loader.set_epoch(epoch)
        acc = None
        model.train()
        for x, y in loader:
            lr = lr_at(cfg.optim, step, steps_per_epoch, cfg.epochs)
            for g in opt.param_groups:
                g["lr"] = lr
            part = split_batch(x, y, cfg.augment.prop, cfg.augment.mode)
            aug = technique(model, part.x_src, part.y_src, step)
            with rt.autocast():
                loss, stats = train_step(part.x_clean, part.y_clean, aug)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            acc = stats if acc is None else {k: acc[k] + v for k, v in stats.items()}
            step += 1
            bar.update(1)
            by_steps = job.ckpt_every_steps and step % job.ckpt_every_steps == 0
            if by_steps or time.monotonic() - last_ckpt > 60 * job.runtime.ckpt_every_min:
                save()
                last_ckpt = time.monotonic()
            if stop_after is not None and step >= stop_after:
                save()
                bar.close()
                run.close()
                raise Interrupted(f"stopped after step {step}")
        # End of epoch: one host sync for the epoch's training stats, then validation.
        epoch += 1
        rec = _epoch_record(acc, lr, technique)
        if not math.isfinite(rec["loss"]):
            raise NumericalError(
                f"classifier loss became {rec['loss']} in epoch {epoch}; the last good checkpoint "
                f"is kept in {run.checkpoints.folder}; lower classifier.optim.lr"
            )
        run.log(step, "train", {"epoch": epoch, **rec})
        metric = None
        if splits.val is not None:
            eval_model = ema.module if ema is not None else model
            v = accuracy(eval_model, splits.val.x, splits.val.y, cfg.eval_batch_size, rt)
            run.log(step, "val", {"epoch": epoch, "top1": v["top1"], "top5": v["top5"]})
            metric = v["top1"]
            best = max(best, metric)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['clean_acc']:.3f}")
        save(metric)
        last_ckpt = time.monotonic()
    bar.close()
    eval_model = ema.module if ema is not None else model
    test = accuracy(eval_model, splits.test.x, splits.test.y, cfg.eval_batch_size, rt)
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
    run.log(step, "test", {"top1": test["top1"], "top5": test["top5"]})
    run.finish(result)
    return result


def _epoch_record(acc: dict[str, torch.Tensor] | None, lr: float, technique) -> dict[str, float]:
    if acc is None:
        return {"loss": float("nan"), "clean_acc": 0.0, "aug_acc": 0.0, "lr": lr}
    vals = {k: v.item() for k, v in acc.items()}
    n = vals["clean_n"] + vals["aug_n"]
    return {
        "loss": vals["loss_sum"] / max(1, n),
        "clean_acc": vals["clean_correct"] / max(1, vals["clean_n"]),
        "aug_acc": vals["aug_correct"] / vals["aug_n"] if vals["aug_n"] else None,
        "aug_share": vals["aug_n"] / max(1, n),
        "lr": lr,
        **technique.metrics(),
    }


def _load_gan_for(job: ClassifierJob, rt: Runtime):
    if not job.gan:
        raise ConfigError(
            f"technique '{job.classifier.augment.technique}' needs a trained GAN; "
            "pass --gan RUN_DIR (from `advaug train-gan`)"
        )
    from advaug.train.gan import load_gan

    return load_gan(job.gan, rt.device)


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """A trained classifier (eval mode) from a run folder or checkpoint file."""
    ckpt = resolve_checkpoint(path)
    state = load_file(ckpt, map_location=device)
    if "arch_name" not in state or "model" not in state:
        raise CheckpointError(f"{ckpt} is not an advaug classifier checkpoint")
    model = build_model(state["arch_name"], state["num_classes"], **_kw(state))
    check_arch(state, model.arch_name, model.arch_kwargs)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(
            f"{ckpt} does not fit architecture {state['arch_name']}: {str(e).splitlines()[0]}"
        ) from e
    model.classes = state.get("classes")
    return model.to(device).eval()


def _kw(state: dict[str, Any]) -> dict[str, Any]:
    kw = dict(state.get("arch_kwargs", {}))
    kw.pop("num_classes", None)
    return kw

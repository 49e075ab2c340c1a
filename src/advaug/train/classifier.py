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

import dataclasses
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from advaug.augment import Technique, build_technique
from advaug.config import NOT_IDENTITY, ClassifierConfig, DataConfig, RuntimeConfig
from advaug.data.datasets import canonical_name, dataset_info, effective_flip
from advaug.data.loader import DeviceLoader
from advaug.data.splits import Splits
from advaug.errors import ConfigError, NumericalError
from advaug.evaluate.accuracy import accuracy
from advaug.imaging import make_grid, to_pil
from advaug.loading import GANPair, check_same_classes, load_gan
from advaug.log import fmt_seconds, get_logger, progress
from advaug.models import build_model
from advaug.runtime import (
    Runtime,
    ddp,
    distributed,
    make_runtime,
    rng_state,
    seed_everything,
    set_rng_state,
)
from advaug.runtime.checkpoint import atomic_write_bytes, check_arch, save_final
from advaug.train import loop
from advaug.train.run import Run
from advaug.train.schedule import lr_at, set_lr
from advaug.train.shapes import classifier_shape_kwargs
from advaug.train.steps import classifier_step, mixed_forward

log = get_logger(__name__)


@dataclass
class ClassifierJob:
    """Everything that determines one classifier run (its config.yaml)."""

    data: DataConfig = field(default_factory=DataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    seed: int = 0
    # the GAN of the gan/unrestricted techniques: where it lies (its run folder or checkpoint;
    # not part of the run's identity, so a moved or re-spelt folder is the same run) and what it
    # is (the sha256 of its checkpoint, filled in by train_classifier)
    gan: str | None = field(default=None, metadata=NOT_IDENTITY)
    gan_sha256: str = ""
    # >0: also checkpoint every N steps (tests, preemptible machines); changes no result
    ckpt_every_steps: int = field(default=0, metadata=NOT_IDENTITY)


def build_classifier(job: ClassifierJob, num_classes: int) -> nn.Module:
    """The job's classifier, with the options its dataset decides (classes, input channels;
    see :mod:`advaug.train.shapes`)."""
    kwargs = job.classifier.model.kwargs
    if "num_classes" in kwargs:
        raise ConfigError(
            "classifier.model.kwargs.num_classes is set by the dataset; remove it from the kwargs"
        )
    info = dataset_info(job.data.name)
    name = job.classifier.model.name
    data = canonical_name(job.data.name)
    shape = classifier_shape_kwargs(name, info.image_shape, data, kwargs)
    return build_model(name, num_classes, **kwargs, **shape)


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


def make_ema(model: nn.Module, decay: float, *, use_buffers: bool) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights (None when ``decay`` is 0)."""
    if decay <= 0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=use_buffers)


@dataclass
class ClassifierState:
    """Everything a classifier run checkpoints. ``net`` trains (DDP under torchrun); ``model``
    is the plain module that attacks, the EMA, evaluation and checkpoints use."""

    net: nn.Module
    model: nn.Module
    opt: torch.optim.Optimizer
    ema: AveragedModel | None
    technique: Technique
    loader: DeviceLoader
    splits: Splits
    seed: int
    step: int = 0
    epoch: int = 0
    best: float = -1.0
    epoch_stats: dict[str, torch.Tensor] | None = None  # the epoch's running sums (device)
    watch: loop.Stopwatch = field(default_factory=loop.Stopwatch)  # training seconds

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        acc = self.epoch_stats
        self.epoch_stats = stats if acc is None else {k: acc[k] + v for k, v in stats.items()}

    def arch(self) -> dict[str, Any]:
        return {"arch_name": self.model.arch_name, "arch_kwargs": self.model.arch_kwargs}

    def rank_state(self) -> dict[str, Any]:
        return {
            "rng": rng_state(),
            "technique": self.technique.state_dict(),
            "epoch_stats": self.epoch_stats,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "technique": self.technique.state_dict(),
            "loader": self.loader.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "best_val": self.best,
            "rng": rng_state(),
            **self.arch(),
            "num_classes": self.splits.num_classes,
            "classes": self.splits.classes,
            "epoch_stats": self.epoch_stats,  # so that a resumed epoch logs the whole epoch
        }

    def load_state_dict(self, state: dict[str, Any], rt: Runtime) -> None:
        check_arch(state, self.model.arch_name, self.model.arch_kwargs)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.step, self.epoch, self.best = state["step"], state["epoch"], state["best_val"]
        same_world = state.get("world_size", 1) == rt.world_size
        self.loader.load_state_dict(loop.loader_position(state, rt.world_size, len(self.loader)))
        if not same_world:
            self.step = self.loader.epoch * len(self.loader) + self.loader.state_dict()["batch"]
        acc = _restore_rank_state(state, rt, self.technique, self.seed + self.step, same_world)
        self.epoch_stats = None if acc is None else {k: v.to(rt.device) for k, v in acc.items()}


def train_classifier(
    job: ClassifierJob,
    out: str | Path,
    *,
    splits: Splits | None = None,
    on_step: loop.OnStep | None = None,
) -> dict[str, Any]:
    """Train (or resume) one classifier in run folder ``out``; returns its result dict.

    ``on_step(state, save)`` is called after every step (see :mod:`advaug.train.loop`).
    Under torchrun every rank calls this; the returned result is the same on every rank.
    The GAN of the gan/unrestricted techniques is loaded and checked against the dataset first,
    so a missing or foreign GAN creates no run folder.
    """
    rt = make_runtime(job.runtime)
    with distributed(rt):
        job, gan = _resolve_gan(job, rt)
        run, splits = loop.open_run(
            job,
            out,
            rt,
            kind="classifier",
            splits=splits,
            batch_size=job.classifier.batch_size,
            key="classifier.batch_size",
        )
        try:
            if splits is None:
                return run.result()
            if gan is not None:
                check_same_classes(
                    f"the GAN {job.gan}",
                    gan.classes,
                    f"dataset {splits.name}",
                    splits.classes,
                    "train the GAN on this dataset",
                )
            return _train(job, run, rt, build_state(job, rt, splits, gan=gan), on_step)
        finally:
            run.close()


def _resolve_gan(job: ClassifierJob, rt: Runtime) -> tuple[ClassifierJob, GANPair | None]:
    """The job with its GAN's identity (sha256), and the loaded GAN, for the techniques that
    use one; the GAN must have the dataset's number of classes."""
    if job.classifier.augment.technique not in ("gan", "unrestricted"):
        return job, None
    if not job.gan:
        raise ConfigError(
            f"technique '{job.classifier.augment.technique}' needs a trained GAN; "
            "pass --gan RUN_DIR (from `advaug train-gan`)"
        )
    pair = load_gan(job.gan, rt.device)
    info = dataset_info(job.data.name)
    check_same_classes(
        f"the GAN {job.gan}",
        pair.classes or pair.generator.num_classes,
        f"dataset {job.data.name}",
        info.num_classes,
        "train the GAN on this dataset (advaug train-gan with the same data.name)",
    )
    return dataclasses.replace(job, gan_sha256=pair.sha256), pair


def build_state(
    job: ClassifierJob, rt: Runtime, splits: Splits, *, gan: GANPair | None = None
) -> ClassifierState:
    """Model, optimiser, EMA, technique and loader of a fresh run, seeded as the job says.

    ``gan`` (a loaded pair) replaces loading the job's GAN run for the gan/unrestricted
    techniques.
    """
    cfg = job.classifier
    seed_everything(job.seed)
    model = rt.prepare(build_classifier(job, splits.num_classes))
    net = ddp.wrap(model, rt, sync_bn=job.runtime.sync_bn)
    model = ddp.unwrap(net)
    if rt.distributed and rt.rank > 0:  # every rank its own random stream (rank 0 keeps seed's)
        torch.manual_seed(ddp.rank_seed(job.seed, rt.rank))
    opt = make_optimizer(model, cfg, rt)
    ema = make_ema(model, cfg.optim.ema_decay, use_buffers=True)
    needs_gan = cfg.augment.technique in ("gan", "unrestricted")
    technique = build_technique(
        cfg.augment,
        seed=ddp.rank_seed(job.seed, rt.rank),
        device=rt.device,
        gan=(gan or _load_gan_for(job, rt)) if needs_gan else None,
        rank=rt.rank,
        world_size=rt.world_size,
    )
    loader = DeviceLoader(
        splits.train.x,
        splits.train.y,
        cfg.batch_size,
        shuffle=True,
        seed=job.seed,
        crop_pad=job.data.crop_pad,
        pad_mode=job.data.pad_mode,
        flip=effective_flip(job.data.name, job.data.flip),
        drop_last=True,
        device=rt.device,
        channels_last=rt.channels_last,
        rank=rt.rank,
        world_size=rt.world_size,
    )
    return ClassifierState(net, model, opt, ema, technique, loader, splits, job.seed)


def _train(
    job: ClassifierJob, run: Run, rt: Runtime, st: ClassifierState, on_step: loop.OnStep | None
) -> dict[str, Any]:
    cfg, spe = job.classifier, len(st.loader)
    if loop.resume(run, st, rt):
        log.info("resumed %s at step %d (epoch %d)", run.folder, st.step, st.epoch)
    else:
        setup = {"runtime": str(rt.describe()), "steps_per_epoch": spe}
        run.log(0, "setup", {**setup, "global_batch": cfg.batch_size * rt.world_size})

    def save(metric: float | None = None) -> None:
        loop.save(run, st, rt, metric)

    forward = rt.maybe_compile(mixed_forward(st.net, cfg))
    clock = loop.CheckpointClock(
        job.runtime.ckpt_every_min, job.ckpt_every_steps, distributed=rt.distributed
    )
    # the last step's lr, for a run resumed from a checkpoint on the last batch of an epoch
    lr = lr_at(cfg.optim, max(0, st.step - 1), spe, cfg.epochs)
    desc = f"train {cfg.augment.technique}"
    pace = _Pace(st.step, spe * cfg.epochs, cfg.batch_size * rt.world_size)
    st.watch.start()
    with progress(total=spe * cfg.epochs, initial=st.step, desc=desc, unit="step") as bar:
        while st.epoch < cfg.epochs:
            pace.epoch_start(st.step)
            st.loader.set_epoch(st.epoch)
            st.model.train()
            for x, y in st.loader:
                # the schedule, then one step: augment, mixed loss, backward, update, EMA
                lr = set_lr(st.opt, lr_at(cfg.optim, st.step, spe, cfg.epochs))
                st.add(
                    classifier_step(
                        st.net, st.opt, st.technique, x, y, st.step, cfg=cfg, rt=rt, ema=st.ema,
                        forward=forward,
                    )
                )  # fmt: skip
                st.step += 1
                bar.update(1)
                # checkpoint when the clock says so, then the caller's hook
                if clock.due(st.step):
                    save()
                    clock.reset()
                if on_step is not None:
                    on_step(st, save)
            # end of epoch: its record (one host sync), validation, checkpoint
            st.epoch += 1
            save(_end_epoch(run, st, rt, cfg, lr, bar, pace))
            clock.reset()
    return _finish(job, run, rt, st, st.watch.total())


class _Pace:
    """Images per second in the current epoch and the ETA of the run, for the epoch's log line
    (this process's steps only: a resumed run does not count what it did not do)."""

    def __init__(self, step: int, total_steps: int, images_per_step: int):
        self.step0, self.total, self.per_step = step, total_steps, images_per_step
        self.t0 = self.t_epoch = time.perf_counter()
        self.epoch_step0 = step

    def epoch_start(self, step: int) -> None:
        self.t_epoch, self.epoch_step0 = time.perf_counter(), step

    def line(self, step: int) -> str:
        now = time.perf_counter()
        img_s = (step - self.epoch_step0) * self.per_step / max(1e-9, now - self.t_epoch)
        steps_s = (step - self.step0) / max(1e-9, now - self.t0)
        eta = (self.total - step) / steps_s if steps_s > 0 else float("nan")
        return f"{img_s:.0f} img/s, ETA {fmt_seconds(eta)}"


def _end_epoch(
    run: Run,
    st: ClassifierState,
    rt: Runtime,
    cfg: ClassifierConfig,
    lr: float,
    bar: Any,
    pace: _Pace,
) -> float | None:
    """Log the epoch's training record and its validation accuracy (the checkpoint metric),
    and one line for people: epoch, loss, lr, train and val accuracy, img/s, ETA."""
    rec = _epoch_record(st.epoch_stats, lr, st.technique)
    st.epoch_stats = None
    if not math.isfinite(rec["loss"]):
        raise NumericalError(
            f"classifier loss became {rec['loss']} in epoch {st.epoch}; the last good checkpoint "
            f"is kept in {run.checkpoints.folder}; lower classifier.optim.lr"
        )
    run.log(st.step, "train", {"epoch": st.epoch, **rec})
    metric = None
    if st.splits.val is not None:
        v = _accuracy(st.eval_model, st.splits.val.x, st.splits.val.y, cfg.eval_batch_size, rt)
        run.log(st.step, "val", {"epoch": st.epoch, "top1": v["top1"], "top5": v["top5"]})
        metric = v["top1"]
        st.best = max(st.best, metric)
    bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['clean_acc']:.3f}")
    accs = f"train {rec['clean_acc']:.1%}"
    if rec["aug_acc"] is not None:
        accs += f", augmented {rec['aug_acc']:.1%}"
    if metric is not None:
        accs += f", val {metric:.1%}"
    log.info(
        "%s epoch %d/%d: loss %.4f, lr %.4g, %s, %s",
        run.folder.name,
        st.epoch,
        cfg.epochs,
        rec["loss"],
        lr,
        accs,
        pace.line(st.step),
    )
    return metric


def _finish(
    job: ClassifierJob, run: Run, rt: Runtime, st: ClassifierState, seconds: float
) -> dict[str, Any]:
    """Test accuracy, the final weights (EMA if any) and result.json."""
    cfg, splits = job.classifier, st.splits
    test = _accuracy(st.eval_model, splits.test.x, splits.test.y, cfg.eval_batch_size, rt)
    final = {
        "model": st.eval_model.state_dict(),
        **st.arch(),
        "num_classes": splits.num_classes,
        "classes": splits.classes,
        "ema": st.ema is not None,
    }
    result = {
        "technique": cfg.augment.technique,
        "seed": job.seed,
        "epochs": cfg.epochs,
        "steps": st.step,
        "train_seconds": seconds,
        "test_top1": test["top1"],
        "test_top5": test["top5"],
        "best_val_top1": st.best if st.best >= 0 else None,
        "protocol": f"{job.data.name} test split, {len(splits.test)} images, "
        f"{'EMA' if st.ema is not None else 'final'} weights, seed {job.seed}",
        "runtime": rt.describe(),
    }
    loop.world_info(result, rt, cfg.batch_size, st.net)
    if rt.is_main:
        save_final(run.checkpoints.folder / "final.pt", final)
        if not rt.distributed:  # a technique may reach the other ranks; they are not here
            _sample_grid(st, rt, run.folder / "samples" / "train-batch.png")
    run.log(st.step, "test", {"top1": test["top1"], "top5": test["top5"]})
    log.info(
        "%s: test top-1 %.2f%% (%s), %s of training",
        run.folder.name,
        100 * test["top1"],
        result["protocol"],
        fmt_seconds(seconds),
    )
    run.finish(result)
    return result


#: Images per row of a classifier run's sample grid (``samples/train-batch.png``).
SAMPLE_COLUMNS = 16


@torch.no_grad()
def _sample_grid(st: ClassifierState, rt: Runtime, path: Path) -> None:
    """What the technique makes of training images: the first images of the training split
    above their augmented versions (GAN samples of the same labels, FGSM images, UAEs), after
    training (the final weights are written; the technique's state no longer matters)."""
    x = st.splits.train.x[:SAMPLE_COLUMNS].to(rt.device).float() / 255
    y = st.splits.train.y[:SAMPLE_COLUMNS].to(rt.device)
    with torch.enable_grad():
        aug = st.technique(st.model, x, y, st.step)
    rows = [x] if aug is None else [x, aug[0][:SAMPLE_COLUMNS].float()]
    buf = io.BytesIO()
    to_pil(make_grid(torch.cat(rows).cpu(), SAMPLE_COLUMNS), scale=2).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


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


def _load_gan_for(job: ClassifierJob, rt: Runtime) -> GANPair | None:
    return _resolve_gan(job, rt)[1]

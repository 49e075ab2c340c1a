"""The whole comparison in one resumable command:

    GAN  →  reference classifier  →  one classifier per (technique, seed)  →  evaluation  →  report

Every stage is a run folder whose ``config.yaml`` is its cache key: a rerun skips a finished
stage with the same config, resumes an unfinished one from its last checkpoint, and moves a stage
whose config changed aside (``<name>.stale-<hash>``) before redoing it. Evaluations are cached the
same way (``eval/<model>.json`` carries the hash of everything it depends on).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from advaug.augment import build_technique
from advaug.config import StudyConfig, config_diff, config_hash, dump_yaml, to_dict
from advaug.data.datasets import dataset_info
from advaug.data.splits import Splits, load_splits
from advaug.errors import ConfigError
from advaug.imaging import save_grid
from advaug.loading import load_classifier, load_gan
from advaug.log import fmt_seconds, get_logger, log_to_file
from advaug.models import build_gan
from advaug.runtime import make_runtime
from advaug.runtime.checkpoint import atomic_write_text
from advaug.runtime.lock import FolderLock
from advaug.train.classifier import (
    ClassifierJob,
    build_classifier,
    make_optimizer,
    train_classifier,
)
from advaug.train.gan import GANJob, train_gan
from advaug.train.loop import check_batch_size
from advaug.train.run import stored_status
from advaug.train.steps import classifier_step, critic_step, generator_step

log = get_logger(__name__)

#: Seed offsets from the study's seed: the reference classifier (independent of every compared
#: model), the baseline's transfer UAEs, and the GAN sample grid.
REFERENCE_SEED, TRANSFER_SEED, GRID_SEED = 1000, 17, 5
#: Classes shown in the real and GAN grids (the first ones), and images per class.
GRID_CLASSES, GRID_PER_CLASS = 10, 10
#: UAE pairs drawn for each model's grid.
UAE_GRID_PAIRS = 64
#: The most GAN samples drawn for the GAN quality block.
MAX_QUALITY_SAMPLES = 10_000


@dataclass
class Stage:
    name: str
    kind: str  # gan | reference | classifier | evaluate | report
    folder: Path
    job: Any = None
    status: str = "todo"  # done | partial | stale | todo
    estimate_s: float = 0.0


@dataclass
class Plan:
    cfg: StudyConfig
    out: Path
    stages: list[Stage] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"study '{self.cfg.name}' in {self.out}  (config {config_hash(self.cfg)})"]
        total = 0.0
        for s in self.stages:
            est = f"~{_fmt_s(s.estimate_s)}" if s.estimate_s else ""
            lines.append(f"  [{s.status:>7}] {s.kind:<10} {s.name:<22} {est}")
            if s.status != "done":
                total += s.estimate_s
        lines.append(f"estimated remaining cost: ~{_fmt_s(total)} on this machine")
        lines.append("(estimates time a few real steps of each model here and scale them up)")
        return "\n".join(lines)


def _fmt_s(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _status(folder: Path, job: Any) -> str:
    """todo | partial | done | stale; a run folder whose config.yaml is unreadable counts as
    its checkpoints say (see :func:`advaug.train.run.stored_status`)."""
    status = stored_status(folder, job)
    if status == "new":
        return "todo"
    if status == "different":
        return "stale"
    return "done" if (folder / "result.json").is_file() else "partial"


def _set_aside_if_stale(folder: Path, job: Any) -> None:
    if _status(folder, job) == "stale":
        text = (folder / "config.yaml").read_text()
        old = config_hash(json.loads(json.dumps(_yaml_load(folder / "config.yaml"))))
        dest = folder.with_name(f"{folder.name}.stale-{old}")
        if dest.exists():
            shutil.rmtree(dest)
        folder.rename(dest)
        log.info(
            "config of %s changed (%s); moved the old run to %s",
            folder,
            config_diff(text, job),
            dest,
        )


def _yaml_load(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


def model_names(cfg: StudyConfig) -> list[tuple[str, str, int]]:
    return [(f"{t}-s{s}", t, s) for t in cfg.techniques for s in cfg.seeds]


def _only_technique(c: dict[str, Any], technique: str) -> dict[str, Any]:
    """The classifier section with the other techniques' settings at their defaults, so that
    changing one technique's settings does not invalidate the other techniques' cached runs."""
    from advaug.config import AugmentConfig

    default = to_dict(AugmentConfig())
    aug = c["augment"]
    for t in ("fgsm", "gan", "unrestricted"):
        if t != technique:
            aug[t] = default[t]
    if technique == "none":
        for key in ("prop", "adv_weight", "mode", "bn"):
            aug[key] = default[key]
    aug["technique"] = technique
    return c


def _classifier_job(cfg: StudyConfig, technique: str, seed: int, gan_dir: Path) -> ClassifierJob:
    """The job of one compared classifier. A GAN-based one names the study's GAN by its
    checkpoint's sha256 (known once the GAN is finished); where the GAN lies is not part of its
    identity, so a moved study folder or another spelling of ``--out`` is the same study."""
    c = _only_technique(to_dict(cfg.classifier), technique)
    from advaug.config import ClassifierConfig, from_dict

    uses_gan = technique in ("gan", "unrestricted")
    return ClassifierJob(
        data=cfg.data,
        runtime=cfg.runtime,
        classifier=from_dict(ClassifierConfig, c),
        seed=seed,
        gan=str(gan_dir) if uses_gan else None,
        gan_sha256=_gan_sha256(gan_dir) if uses_gan else "",
    )


def _gan_sha256(gan_dir: Path) -> str:
    """The sha256 of a finished GAN run's final weights ("" before it is finished)."""
    if not (gan_dir / "result.json").is_file():
        return ""
    return _file_hash(gan_dir / "checkpoints" / "final.json")


def _reference_job(cfg: StudyConfig) -> ClassifierJob:
    from advaug.config import ClassifierConfig, from_dict

    c = _only_technique(to_dict(cfg.classifier), "none")
    c["model"] = to_dict(cfg.reference_model)
    c["epochs"] = cfg.reference_epochs or cfg.classifier.epochs
    return ClassifierJob(
        data=cfg.data,
        runtime=cfg.runtime,
        classifier=from_dict(ClassifierConfig, c),
        seed=cfg.seed + REFERENCE_SEED,
    )


def plan_study(cfg: StudyConfig, out: str | Path, *, estimate: bool = True) -> Plan:
    out = Path(out)
    plan = Plan(cfg, out)
    gan_dir = out / "gan"
    needs_gan = any(t in ("gan", "unrestricted") for t in cfg.techniques) or bool(
        cfg.evaluate.gan_samples_per_class or cfg.evaluate.uae_samples
    )
    if needs_gan:
        job = GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan, seed=cfg.seed)
        plan.stages.append(Stage("gan", "gan", gan_dir, job, _status(gan_dir, job)))
    ref = _reference_job(cfg)
    plan.stages.append(
        Stage("reference", "reference", out / "reference", ref, _status(out / "reference", ref))
    )
    gan_done = not needs_gan or plan.stages[0].status == "done"
    trained = {}
    for name, t, s in model_names(cfg):
        job = _classifier_job(cfg, t, s, gan_dir)
        folder = out / "classifiers" / name
        status = _status(folder, job)
        if job.gan and not gan_done:  # the GAN will be (re)trained: so will this classifier
            status = "stale" if folder.exists() else "todo"
        trained[name] = status
        plan.stages.append(Stage(name, "classifier", folder, job, status))
    for name, _, _ in model_names(cfg):
        path = out / "eval" / f"{name}.json"
        done = path.is_file() and trained[name] == "done"
        plan.stages.append(Stage(name, "evaluate", path, None, "done" if done else "todo"))
    plan.stages.append(Stage("report", "report", out / "report", None, "todo"))
    if estimate:
        _estimate(plan)
    return plan


# ---------------------------------------------------------------------------------------------
# Cost estimate: time a few real steps here, then scale
# ---------------------------------------------------------------------------------------------


def _time(fn, repeat: int = 2) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def _estimate(plan: Plan) -> None:
    """Time real training steps here (:mod:`advaug.train.steps`) on random data, then scale."""
    cfg = plan.cfg
    rt = make_runtime(cfg.runtime)
    info = dataset_info(cfg.data.name)
    k, shape = info.num_classes, info.image_shape
    n_train = info.train_size - cfg.data.val_size
    n_train = min(n_train, cfg.data.train_limit) if cfg.data.train_limit else n_train
    b = cfg.classifier.batch_size
    steps_per_epoch = max(1, n_train // b)
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.rand(b, *shape, generator=gen).to(rt.device)
    y = torch.randint(k, (b,), generator=gen).to(rt.device)

    def step_time(job: ClassifierJob) -> float:  # techniques that need no GAN
        model = rt.prepare(build_classifier(job, k)).train()
        opt = make_optimizer(model, job.classifier, rt)
        t = build_technique(job.classifier.augment, seed=cfg.seed, device=rt.device)
        return _time(lambda: classifier_step(model, opt, t, x, y, 0, cfg=job.classifier, rt=rt))

    t_gan = _gan_iteration_time(cfg, rt, k, shape)
    ref = _reference_job(cfg)
    t_step = step_time(_classifier_job(cfg, "none", cfg.seed, plan.out))
    fgsm = _classifier_job(cfg, "fgsm", cfg.seed, plan.out)
    t_fgsm = step_time(fgsm) if "fgsm" in cfg.techniques else t_step
    # one latent step ≈ G + D + f forward/backward on a batch: about a GAN G-step plus a f step
    t_latent_img = (t_gan / (cfg.gan.n_critic + 1) + t_step) / max(1, b)
    per_technique = {"none": t_step, "fgsm": t_fgsm, "gan": 1.1 * t_step}
    for s in plan.stages:
        if s.kind == "gan":
            s.estimate_s = t_gan * cfg.gan.iters
        elif s.kind == "reference":
            s.estimate_s = step_time(ref) * steps_per_epoch * ref.classifier.epochs
        elif s.kind == "classifier":
            steps = steps_per_epoch * cfg.classifier.epochs
            t = s.job.classifier.augment.technique
            s.estimate_s = per_technique.get(t, t_step) * steps
            if t == "unrestricted":
                s.estimate_s += _latent_steps(cfg, steps) * t_latent_img
        elif s.kind == "evaluate":
            e = cfg.evaluate
            n_rob = min(e.robust_samples or info.test_size, info.test_size)
            s.estimate_s = (
                t_step / b * n_rob * (len(e.fgsm_eps) + e.pgd_steps * e.pgd_restarts)
                + e.uae_samples * e.uae_steps * t_latent_img
            )


def _gan_iteration_time(cfg: StudyConfig, rt: Any, k: int, shape: tuple[int, ...]) -> float:
    """Seconds of one AC-GAN iteration (n_critic critic steps and a generator step) here."""
    g_cfg = cfg.gan
    g, d = build_gan("acgan", k, **g_cfg.arch_kwargs())
    g, d = rt.prepare(g), rt.prepare(d)
    opt_g, opt_d = torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters())
    rng = torch.Generator(device=rt.device).manual_seed(cfg.seed)
    x = torch.rand(g_cfg.batch_size, *shape, device=rt.device, generator=rng)
    y = torch.randint(k, (g_cfg.batch_size,), device=rt.device, generator=rng)

    def iteration() -> None:
        for _ in range(g_cfg.n_critic):
            critic_step(g, d, opt_d, x, y, cfg=g_cfg, rt=rt, rng=rng)
        generator_step(g, d, opt_g, k, cfg=g_cfg, rt=rt, rng=rng)

    return _time(iteration, 1)


def _latent_steps(cfg: StudyConfig, steps: int) -> float:
    """Latent-code updates an unrestricted classifier run makes (about half stop early)."""
    u, aug = cfg.classifier.augment.unrestricted, cfg.classifier.augment
    attacked = u.pool_size * (1 + u.refresh_fraction * steps / u.refresh_every)
    if u.mode == "seed":
        attacked = steps * int(aug.prop * cfg.classifier.batch_size)
    return attacked * u.steps * 0.5


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def run_study(cfg: StudyConfig, out: str | Path):
    """Run (or resume) every stage, then write the report; returns the report handle.

    The study folder is locked from start to end (a second study on it is refused with the
    holder's pid, host and start time), and the log lines go to its ``log.txt`` too.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"cannot create study folder {out} ({e.strerror}); choose another --out"
        ) from e
    with FolderLock(out, "study"), log_to_file(out / "log.txt"):
        return _run(cfg, out)


def _run(cfg: StudyConfig, out: Path):
    from advaug.report import write_report

    plan = plan_study(cfg, out, estimate=False)
    t0 = time.perf_counter()
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    splits = load_splits(cfg.data, seed=cfg.seed)
    log.info("study %s in %s: %s", cfg.name, out, splits.describe())
    _check_stages(plan, splits)
    info = _study_info(cfg, splits)
    _write_info(out, info)
    _set_aside_if_gan_changes(plan)
    training = [s for s in plan.stages if s.kind in ("gan", "reference", "classifier")]
    for i, stage in enumerate(training, 1):
        if stage.kind == "classifier" and stage.job.gan:  # the GAN is finished by now
            stage.job = dataclasses.replace(stage.job, gan_sha256=_gan_sha256(out / "gan"))
        _set_aside_if_stale(stage.folder, stage.job)
        status = _status(stage.folder, stage.job)
        log.info(
            "stage %d/%d %s: %s",
            i,
            len(training),
            stage.kind if stage.name == stage.kind else f"{stage.kind} {stage.name}",
            "done, skipped" if status == "done" else f"{status}, training",
        )
        t_stage = time.perf_counter()
        _train_stage(cfg, stage, splits, info)
        if status != "done":
            log.info(
                "stage %s finished in %s", stage.name, fmt_seconds(time.perf_counter() - t_stage)
            )
        _write_info(out, info)
    rt = make_runtime(cfg.runtime)
    reference = load_classifier(out / "reference", rt.device)
    gan_pair = None
    if "gan" in info:
        gan_pair = load_gan(out / "gan", rt.device)
        info["gan"]["quality"] = _gan_quality(cfg, out, gan_pair, reference, splits)
    _grids(out, splits, gan_pair)
    _evaluate_all(cfg, out, splits, gan_pair, reference)
    info["models"] = [n for n, _, _ in model_names(cfg)]
    info["finished"] = True
    info["wall_seconds"] = info.get("wall_seconds", 0.0) + time.perf_counter() - t0
    _write_info(out, info)
    report = write_report(out)
    log.info("study %s finished: report %s", cfg.name, report.index_html)
    return report


def _set_aside_if_gan_changes(plan: Plan) -> None:
    """Classifiers trained on another GAN's samples are stale too, whatever their config says:
    when the GAN will be (re)trained, move them aside (``<name>.stale-gan``)."""
    gan_stage = next((s for s in plan.stages if s.kind == "gan"), None)
    if gan_stage is None or _status(gan_stage.folder, gan_stage.job) not in ("todo", "stale"):
        return
    for s in plan.stages:
        if s.kind == "classifier" and s.job.gan and s.folder.exists():
            dest = s.folder.with_name(f"{s.folder.name}.stale-gan")
            if dest.exists():
                shutil.rmtree(dest)
            s.folder.rename(dest)
            log.info("the GAN will be retrained; moved %s to %s", s.folder, dest)


def _train_stage(cfg: StudyConfig, stage: Stage, splits: Splits, info: dict[str, Any]) -> None:
    """Train (or resume, or skip) one run of the study and record it in ``info``."""
    if stage.kind == "gan":
        result = train_gan(
            stage.job,
            stage.folder,
            splits=splits,
            collapse_threshold=cfg.evaluate.collapse_threshold,
        )
        info["gan"] = {"run_dir": "gan", "result": result}
        return
    res = train_classifier(stage.job, stage.folder, splits=splits)
    if stage.kind == "reference":
        info["reference"] = {
            "run_dir": "reference",
            "arch": cfg.reference_model.name,
            "test_top1": res["test_top1"],
        }


def _check_stages(plan: Plan, splits: Splits) -> None:
    """Refuse, before hours of GAN training, a stage that would fail when it starts."""
    n = len(splits.train)
    for s in plan.stages:
        if s.kind in ("reference", "classifier"):
            build_classifier(s.job, splits.num_classes)  # unknown names or options: ConfigError
            check_batch_size(s.job.classifier.batch_size, n, "classifier.batch_size")
        elif s.kind == "gan":
            check_batch_size(s.job.gan.batch_size, n, "gan.batch_size")


def _study_info(cfg: StudyConfig, splits: Splits) -> dict[str, Any]:
    return {
        "name": cfg.name,
        "preset": cfg.name,
        "config_hash": config_hash(cfg),
        "dataset": splits.name,
        "num_classes": splits.num_classes,
        "classes": splits.classes,
        "splits": {
            "train": len(splits.train),
            "val": len(splits.val) if splits.val is not None else 0,
            "test": len(splits.test),
        },
        "techniques": list(cfg.techniques),
        "seeds": list(cfg.seeds),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "models": [n for n, _, _ in model_names(cfg)],
        "finished": False,
    }


def _write_info(out: Path, info: dict[str, Any]) -> None:
    atomic_write_text(out / "study.json", json.dumps(info, indent=2, default=str))


def _gan_quality(cfg, out: Path, pair, reference, splits: Splits) -> dict[str, Any]:
    """Classifier-feature FID etc. (offline), GAN-test accuracy, AC accuracy; cached."""
    from advaug.evaluate.gan_quality import (
        ClassifierFeatures,
        ac_accuracy,
        gan_test_accuracy,
        generator_quality,
    )

    key = config_hash(
        {
            "gan": to_dict(cfg.gan),
            "data": to_dict(cfg.data),
            "ref": _ref_hash(out),
            "threshold": cfg.evaluate.collapse_threshold,
        }
    )
    cache = out / "gan_quality.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("hash") == key:
            return cached["quality"]
    device = next(pair.generator.parameters()).device
    test = splits.test
    real = test.x.float().div(255)
    n_fake = min(max(len(test), 2 * splits.num_classes), MAX_QUALITY_SAMPLES)
    q = generator_quality(
        pair.generator,
        real,
        test.y,
        ClassifierFeatures(reference, name=f"reference {cfg.reference_model.name}"),
        n_fake,
        seed=cfg.seed,
    )
    lines = q["protocol_lines"]
    ratio = q["per_class"]["diversity_ratio"]
    collapsed = int((ratio < cfg.evaluate.collapse_threshold).sum())
    if collapsed:
        log.warning(
            "GAN: %d of %d classes look collapsed (sample spread < %.2f x real)",
            collapsed,
            splits.num_classes,
            cfg.evaluate.collapse_threshold,
        )
    per = max(1, cfg.evaluate.gan_samples_per_class)
    gtest, _ = gan_test_accuracy(reference, pair.generator, per, seed=cfg.seed)
    ac = ac_accuracy(pair.critic, real.to(device), test.y.to(device))
    quality = {
        "classifier_fid": {"value": q["fid"], "protocol": lines["fid"]},
        "intra_fid": {"value": q.get("intra_fid"), "protocol": lines["intra_fid"]},
        "precision": {"value": q["precision"], "protocol": lines["precision_recall"]},
        "recall": {"value": q["recall"], "protocol": lines["precision_recall"]},
        "diversity_ratio": {"value": q["diversity_ratio"], "protocol": lines["diversity"]},
        "collapsed_classes": {
            "value": collapsed,
            "protocol": f"classes (of {splits.num_classes}) whose within-class feature spread is "
            f"below {cfg.evaluate.collapse_threshold} x the real class's; {lines['diversity']}",
        },
        "gan_test_acc": {
            "value": gtest,
            "protocol": f"reference {cfg.reference_model.name} (trained on real data) on "
            f"{per} AC-GAN samples per class, seed {cfg.seed}",
        },
        "ac_test_acc": {
            "value": ac,
            "protocol": f"AC head top-1 on the {splits.name} test split ({len(test)} images)",
        },
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache, json.dumps({"hash": key, "quality": quality}, indent=2, default=float))
    return quality


def _ref_hash(out: Path) -> str:
    manifest = out / "reference" / "checkpoints" / "final.json"
    return json.loads(manifest.read_text())["sha256"] if manifest.is_file() else ""


def _grids(out: Path, splits: Splits, pair) -> None:
    k, per = min(splits.num_classes, GRID_CLASSES), GRID_PER_CLASS
    idx = torch.cat([(splits.train.y == c).nonzero()[:per, 0] for c in range(k)])
    save_grid(splits.train.x[idx].float() / 255, out / "grids" / "real.png", nrow=per)
    if pair is not None:
        from advaug.models.gan import sample

        g = torch.Generator().manual_seed(GRID_SEED)
        y = torch.arange(k).repeat_interleave(per)
        z = torch.randn(len(y), pair.generator.z_dim, generator=g)
        dev = next(pair.generator.parameters()).device
        save_grid(sample(pair.generator, y.to(dev), z=z.to(dev)), out / "grids" / "gan.png", per)


def _evaluate_all(cfg: StudyConfig, out: Path, splits: Splits, pair, reference) -> None:
    from advaug.evaluate.suite import evaluate_model
    from advaug.evaluate.uae import pair_grid, run_uae

    rt = make_runtime(cfg.runtime)
    transfer, transfer_from = None, ""
    baseline = f"none-s{cfg.seeds[0]}"
    if pair is not None and "none" in cfg.techniques and cfg.evaluate.uae_samples:
        from advaug.attacks import UnrestrictedResult

        path = out / "eval" / "transfer-uae.safetensors"
        base = load_classifier(out / "classifiers" / baseline, rt.device)
        key = _file_hash(out / "classifiers" / baseline / "checkpoints" / "final.json")
        if path.is_file() and UnrestrictedResult.load(path).meta.get("key") == key:
            transfer = UnrestrictedResult.load(path, rt.device)
        else:
            transfer = run_uae(
                pair.generator,
                pair.critic,
                base,
                cfg.evaluate.uae_samples,
                cfg.evaluate.uae_attack(),
                seed=cfg.seed + TRANSFER_SEED,
            )
            transfer.meta["key"] = key
            transfer.save(path)
        transfer_from = f"the baseline {baseline}"
    for name, technique, seed in model_names(cfg):
        folder = out / "classifiers" / name
        key = config_hash(
            {
                "eval": to_dict(cfg.evaluate),
                "model": _file_hash(folder / "checkpoints" / "final.json"),
                "ref": _ref_hash(out),
                "gan": _file_hash(out / "gan" / "checkpoints" / "final.json"),
                "transfer": transfer.meta.get("key", "") if transfer is not None else "",
            }
        )
        path = out / "eval" / f"{name}.json"
        if path.is_file() and json.loads(path.read_text()).get("hash") == key:
            log.info("evaluate %s: done, skipped", name)
            continue
        log.info("evaluate %s: evaluating", name)
        t_eval = time.perf_counter()
        model = load_classifier(folder, rt.device)
        res = evaluate_model(
            model,
            splits.test.x,
            splits.test.y,
            cfg.evaluate,
            dataset=splits.name,
            gan=pair,
            reference=reference,
            transfer=transfer if name != baseline else None,
            transfer_from=transfer_from,
            seed=cfg.seed,
        )
        result = json.loads((folder / "result.json").read_text())
        res.update(
            {
                "name": name,
                "technique": technique,
                "seed": seed,
                "hash": key,
                "checkpoint": str(folder / "checkpoints" / "final.pt"),
                "cost": {
                    "train_seconds": result["train_seconds"],
                    "epochs": result["epochs"],
                    "steps": result["steps"],
                    "seconds_per_epoch": result["train_seconds"] / max(1, result["epochs"]),
                },
            }
        )
        if pair is not None and cfg.evaluate.uae_samples:
            uae = run_uae(
                pair.generator,
                pair.critic,
                model,
                UAE_GRID_PAIRS,
                cfg.evaluate.uae_attack(),
                seed=seed,
            )
            pair_grid(pair.generator, uae, out / "grids" / f"uae-{name}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(res, indent=2, default=float))
        log.info(
            "evaluate %s: finished in %s (%s)",
            name,
            fmt_seconds(time.perf_counter() - t_eval),
            _headline(res["metrics"]),
        )


def _headline(metrics: dict[str, Any]) -> str:
    """Clean top-1 and the PGD accuracy of an evaluation, for its log line."""
    parts = []
    for key, m in metrics.items():
        if (key == "clean_top1" or key.startswith("pgd")) and m.get("value") is not None:
            parts.append(f"{key} {100 * m['value']:.1f}%")
    return ", ".join(parts)


def _file_hash(manifest: Path) -> str:
    return json.loads(manifest.read_text()).get("sha256", "") if manifest.is_file() else ""

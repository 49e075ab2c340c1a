"""The whole comparison in one resumable command:

    GAN  →  reference classifier  →  one classifier per (technique, seed)  →  evaluation  →  report

Every stage is a run folder whose ``config.yaml`` is its cache key: a rerun skips a finished
stage with the same config, resumes an unfinished one from its last checkpoint, and moves a stage
whose config changed aside (``<name>.stale-<hash>``) before redoing it. Evaluations are cached the
same way (``eval/<model>.json`` carries the hash of everything it depends on). Nothing in a key
says where the study lies: a GAN-based classifier names its GAN by the sha256 of the GAN's final
weights, so a moved or copied study folder, or another spelling of ``--out``, redoes nothing.

The study folder is locked from the first stage to the report (:class:`FolderLock`), and every
stage logs one line, in ``log.txt`` too. ``plan_study(..., estimate=True)`` (``--dry-run``)
times the study's real operations here and counts them (:mod:`advaug.train.cost`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from advaug.config import (
    StudyConfig,
    UnrestrictedConfig,
    config_diff,
    config_hash,
    dump_yaml,
    to_dict,
)
from advaug.data.datasets import Fallback, dataset_info, resolve_fallback
from advaug.data.splits import Splits, load_splits
from advaug.errors import AdvaugError, ConfigError
from advaug.evaluate.accuracy import predict
from advaug.imaging import save_labelled_grid
from advaug.launch import LaunchConfig, StageJob, run_stage, run_waves
from advaug.loading import load_classifier, load_gan
from advaug.log import fmt_seconds, get_logger, log_to_file
from advaug.runtime import make_runtime
from advaug.runtime.checkpoint import atomic_write_text
from advaug.runtime.lock import FolderLock
from advaug.train import cost
from advaug.train.classifier import ClassifierJob, build_classifier, train_classifier
from advaug.train.cost import REPEATS, Cost
from advaug.train.gan import GANJob, train_gan
from advaug.train.loop import check_batch_size
from advaug.train.run import stored_status

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
    cost: Cost = field(default_factory=Cost)  # the estimated seconds still to spend here

    @property
    def estimate_s(self) -> float:
        return self.cost.mid


@dataclass
class Plan:
    cfg: StudyConfig
    out: Path
    stages: list[Stage] = field(default_factory=list)
    startup: Cost = field(default_factory=Cost)  # start of the process, imports, the data
    measured: list[str] = field(default_factory=list)  # what the estimate timed here

    @property
    def total(self) -> Cost:
        total = self.startup
        for s in self.stages:
            total = total + (s.cost if s.status != "done" else Cost())
        return total

    def describe(self) -> str:
        lines = [f"study '{self.cfg.name}' in {self.out}  (config {config_hash(self.cfg)})"]
        for s in self.stages:
            est = _fmt_cost(s.cost) if s.status != "done" and s.cost.high else ""
            lines.append(f"  [{s.status:>7}] {s.kind:<10} {s.name:<22} {est}")
        if not self.measured:
            return "\n".join(lines)
        lines.append(f"  start: Python, imports, the data {_fmt_cost(self.startup)}")
        total = self.total
        lines.append(
            f"estimated remaining cost: ~{fmt_seconds(total.mid)} of wall time "
            f"(range {fmt_seconds(total.low)} to {fmt_seconds(total.high)}) on this machine"
        )
        lines.append(
            f"measured here (median of up to {REPEATS} timed calls after a warm-up; the range "
            "runs from the fastest to the slowest call):"
        )
        lines += [f"  {m}" for m in self.measured]
        return "\n".join(lines)


def _fmt_cost(c: Cost) -> str:
    return f"~{fmt_seconds(c.mid)} ({fmt_seconds(c.low)} to {fmt_seconds(c.high)})"


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
    for t in ("fgsm", "pgd", "gan", "unrestricted"):
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


def plan_study(
    cfg: StudyConfig, out: str | Path, *, estimate: bool = True, startup_s: float = 0.0
) -> Plan:
    """The study's stages and what each has left to do; with ``estimate``, their cost on this
    machine, timed here (``startup_s``: what starting the process took, if the caller knows)."""
    out = Path(out)
    cfg, _ = resolve_study_data(cfg)
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
        _estimate(plan, startup_s)
    return plan


# ---------------------------------------------------------------------------------------------
# Cost estimate: time the real operations here, then count them
# ---------------------------------------------------------------------------------------------


#: The share of its step budget that an early-stopping latent attack spends, and its range: most
#: codes stop long before the budget against a trained model (the demo: median 2 of 50 steps),
#: few against a robust or an untrained one (smoke: nearly all run every step).
EARLY_STOP_SHARE = (0.5, 0.1, 1.0)
#: Report figures drawn (learning curves, comparison, cost, per class) and the page itself.
REPORT_FIGURES = 4
#: Latent codes timed at once for the latent attack's cost (at most the attack's batch).
LATENT_TIMING_CODES = 32


def _estimate(plan: Plan, startup_s: float = 0.0) -> None:
    """Time the study's real operations here (:mod:`advaug.train.cost`), then multiply each by
    how often its stage does it (the real split sizes, evaluation as it runs, the pooled
    attack's refreshes). Stages already done cost nothing; a partial one what it has left."""
    costs = _Costs(plan.cfg)
    for s in plan.stages:
        if s.status == "done":
            continue
        if s.kind == "gan":
            s.cost = costs.gan_stage()
        elif s.kind in ("reference", "classifier"):
            s.cost = costs.classifier_stage(s.job)
        elif s.kind == "evaluate":
            s.cost = costs.evaluation(first=s is _first_todo(plan, "evaluate"))
        elif s.kind == "report":
            s.cost = costs.report()
        s.cost = s.cost * (1 - _done_fraction(s, costs.steps(s)))
    plan.startup = Cost.fixed(startup_s) + costs.data
    plan.measured = costs.notes


def _first_todo(plan: Plan, kind: str) -> Stage | None:
    return next((s for s in plan.stages if s.kind == kind and s.status != "done"), None)


def _done_fraction(stage: Stage, steps: int) -> float:
    """How far a partial run of ``steps`` steps got: its newest checkpoint's step."""
    if stage.status != "partial" or steps <= 0:
        return 0.0
    from advaug.runtime.checkpoint import CheckpointManager

    entries = CheckpointManager(stage.folder / "checkpoints").entries()
    return min(1.0, entries[-1]["step"] / steps) if entries else 0.0


class _Costs:
    """The measured costs of one study's operations, each timed once (on first use), and the
    notes that say what was measured."""

    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self.rt = make_runtime(cfg.runtime)
        self.notes: list[str] = []
        info = dataset_info(cfg.data.name)
        self.k, self.shape = info.num_classes, info.image_shape
        t = time.perf_counter()
        try:
            splits = load_splits(cfg.data, seed=cfg.seed)
            self.n_train, self.n_test = len(splits.train), len(splits.test)
            self.n_val = len(splits.val) if splits.val is not None else 0
            where = f"the real splits: train {self.n_train}, val {self.n_val}, test {self.n_test}"
        except AdvaugError as e:  # no data here (yet): the published sizes
            self.n_val = cfg.data.val_size
            self.n_train = _limit(info.train_size - self.n_val, cfg.data.train_limit)
            self.n_test = _limit(info.test_size, cfg.data.test_limit)
            where = f"published sizes (the data did not load: {e})"
        self.data = Cost.fixed(time.perf_counter() - t)
        # what the first optimiser, the first TensorBoard writer and the report import
        imports = cost.import_seconds(
            "torch._dynamo", "torch.utils.tensorboard", "matplotlib.figure"
        )
        self.data = self.data + Cost.fixed(imports)
        self.notes.append(
            f"data: {where}; loading it and the imports still missing here "
            f"{fmt_seconds(self.data.mid)}"
        )
        self._cache: dict[Any, Any] = {}

    def _once(self, key: Any, make: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # -- measurements ---------------------------------------------------------------------
    def gan(self) -> dict[str, Any]:
        def make() -> dict[str, Any]:
            c = self.cfg.gan
            m = cost.gan_costs(c, self.rt, self.k, self.shape)
            m["checkpoint"] = cost.checkpoint_cost(m["state"])
            self.notes.append(
                f"AC-GAN iteration (width {c.width}, batch {c.batch_size}, {c.n_critic} critic "
                f"steps): {_fmt_t(m['iteration'])}; G {_fmt_t(m['g_image'], 1e3)} ms and D "
                f"{_fmt_t(m['d_image'], 1e3)} ms per image; checkpoint {_fmt_t(m['checkpoint'])}"
            )
            return m

        return self._once("gan", make)

    def pair(self) -> Any:
        from advaug.loading import GANPair

        m = self.gan()
        return GANPair(m["g"], m["d"], [str(i) for i in range(self.k)])

    def model(self, job: ClassifierJob) -> dict[str, Any]:
        """Step, forward, attack-step and checkpoint costs of the job's model."""
        c = job.classifier
        key = ("model", c.model.name, json.dumps(c.model.kwargs, sort_keys=True))

        def make() -> dict[str, Any]:
            net = build_classifier(job, self.k)
            e = self.cfg.evaluate
            fwd = cost.forward_cost(net, e.batch_size, self.shape, self.k, self.rt)
            m = {
                "build": cost.build_cost(lambda: build_classifier(job, self.k), self.rt),
                "forward": fwd
                if c.eval_batch_size == e.batch_size
                else cost.forward_cost(net, c.eval_batch_size, self.shape, self.k, self.rt),
                "eval_forward": fwd,
                "grad": cost.attack_step_cost(net, e.batch_size, self.shape, self.k, self.rt),
                "checkpoint": cost.checkpoint_cost({"model": net.state_dict()}) * 2,  # + SGD
            }
            self.notes.append(
                f"{c.model.name}: building it {_fmt_t(m['build'])}; evaluation forward "
                f"{_fmt_t(m['eval_forward'], 1e3)} ms and "
                f"attack step {_fmt_t(m['grad'], 1e3)} ms per image (batch {e.batch_size}); "
                f"checkpoint {_fmt_t(m['checkpoint'])}"
            )
            return m

        return self._once(key, make)

    def step(self, job: ClassifierJob) -> Cost:
        c = job.classifier
        t = c.augment.technique
        key = ("step", c.model.name, json.dumps(c.model.kwargs, sort_keys=True), t)

        def make() -> Cost:
            gan = self.pair() if t in ("gan", "unrestricted") else None
            net = build_classifier(job, self.k)
            step = cost.classifier_step_cost(net, c, self.rt, self.k, self.shape, gan)
            self.notes.append(
                f"{c.model.name} training step, {t}, batch {c.batch_size}: {_fmt_t(step)}"
            )
            return step

        return self._once(key, make)

    def latent(self, f_job: ClassifierJob, attack: UnrestrictedConfig, n: int) -> tuple[Cost, Cost]:
        n = max(1, min(n, LATENT_TIMING_CODES, attack.batch_size))
        key = ("latent", f_job.classifier.model.name, attack.optimizer)

        def make() -> tuple[Cost, Cost]:
            m = self.gan()
            f = build_classifier(f_job, self.k)
            per_step, per_code = cost.latent_costs(m["g"], m["d"], f, attack, n, self.rt)
            self.notes.append(
                f"latent attack ({attack.optimizer}, {n} codes at once, against "
                f"{f_job.classifier.model.name}): {_fmt_t(per_step, 1e3)} ms per code and "
                f"step, {_fmt_t(per_code, 1e3)} ms per code besides"
            )
            return per_step, per_code

        return self._once(key, make)

    # -- stages ---------------------------------------------------------------------------
    def steps(self, stage: Stage) -> int:
        """The steps (GAN iterations) of a training stage."""
        if stage.kind == "gan":
            return stage.job.gan.iters
        if stage.kind in ("reference", "classifier"):
            c = stage.job.classifier
            return self.n_train // c.batch_size * c.epochs
        return 0

    def run_open(self) -> Cost:
        return self._once("run", cost.run_open_cost)

    def gan_stage(self) -> Cost:
        from advaug.train import gan as g

        c, m = self.cfg.gan, self.gan()
        mon = min(self.n_test, g.MONITOR_IMAGES)
        per_class = g.COLLAPSE_PER_CLASS * self.k
        grid = min(self.k, g.GRID_ROWS) * g.GRID_COLUMNS
        monitor = m["d_image"] * (2 * mon + per_class) + m["g_image"] * per_class
        sample = m["g_image"] * (g.GRID_STANDING_BATCHES * max(2, c.batch_size) + grid)
        final = m["g_image"] * (c.standing_batches * max(2, c.batch_size) + 2 * grid)
        total = (
            _warmup(m["iteration"], m["g_image"], m["d_image"])
            + m["build"]
            + m["iteration"] * c.iters
            + monitor * math.ceil(c.iters / c.eval_every)
            + sample * (c.iters // c.sample_every)
            + m["checkpoint"] * (c.iters // c.ckpt_every + 1)
            + final
            + m["d_image"] * self.n_test
            + self.run_open()
        )
        return total + m["checkpoint"] * (total.mid / (60 * self.cfg.runtime.ckpt_every_min))

    def classifier_stage(self, job: ClassifierJob) -> Cost:
        c = job.classifier
        m = self.model(job)
        steps = self.n_train // c.batch_size * c.epochs
        step = self.step(job)
        total = (
            _warmup(step, m["forward"])
            + m["build"]
            + step * steps
            + m["forward"] * (self.n_val * c.epochs + self.n_test)
            + m["checkpoint"] * (c.epochs + 1)
            + self.run_open()
        )
        u = c.augment.unrestricted
        if c.augment.technique == "unrestricted" and u.mode == "pooled":
            codes = u.pool_size + u.refresh_fraction * u.pool_size * (steps // u.refresh_every)
            per_step, per_code = self.latent(job, u.attack_config(), u.pool_size)
            total = total + (per_step * (u.steps * codes) * _share()).widen(*_share_range())
            total = total + per_code * codes
        return total + m["checkpoint"] * (total.mid / (60 * self.cfg.runtime.ckpt_every_min))

    def evaluation(self, first: bool) -> Cost:
        """One model's evaluation, as :func:`advaug.evaluate.suite.evaluate_model` runs it, and
        (with ``first``) what the study evaluates once: the GAN's quality, the transfer UAEs."""
        cfg, e = self.cfg, self.cfg.evaluate
        job = _classifier_job(cfg, "none", cfg.seeds[0], Path("gan"))
        m = self.model(job)
        n_rob = min(e.robust_samples, self.n_test) if e.robust_samples else self.n_test
        total = (
            _warmup(m["eval_forward"], m["grad"])
            + m["build"]
            + m["eval_forward"] * self.n_test
            + (m["grad"] + m["eval_forward"]) * (n_rob * len(e.fgsm_eps))
            + (m["grad"] * e.pgd_steps + m["eval_forward"]) * (n_rob * e.pgd_restarts)
        )
        if e.autoattack:  # APGD-CE's 100 steps at least, ten times that at most
            total = total + (m["grad"] * (100 * n_rob)).widen(1.0, 10.0)
        if not self._uses_gan():
            return total
        mg = self.gan()
        total = total + (mg["g_image"] + m["eval_forward"]) * (e.gan_samples_per_class * self.k)
        codes = e.uae_samples + (UAE_GRID_PAIRS if e.uae_samples else 0)
        if first and e.uae_samples and "none" in cfg.techniques:
            codes += e.uae_samples  # the transfer set, made once against the baseline
        if codes:
            per_step, per_code = self.latent(job, e.uae_attack(), e.uae_samples)
            uae = (per_step * (e.uae_steps * codes) * _share()).widen(*_share_range())
            total = total + uae + per_code * codes
        if first:
            total = total + self._gan_quality()
        return total

    def _uses_gan(self) -> bool:
        return any(s in ("gan", "unrestricted") for s in self.cfg.techniques) or bool(
            self.cfg.evaluate.gan_samples_per_class or self.cfg.evaluate.uae_samples
        )

    def _gan_quality(self) -> Cost:
        mg, k, n_test = self.gan(), self.k, self.n_test
        ref = self.model(_reference_job(self.cfg))
        n_fake = min(max(n_test, 2 * k), MAX_QUALITY_SAMPLES)
        per = max(1, self.cfg.evaluate.gan_samples_per_class) * k
        return (
            mg["build"]
            + ref["build"]
            + mg["g_image"] * (n_fake + per)
            + ref["eval_forward"] * (n_fake + n_test + per)
            + mg["d_image"] * n_test
        )

    def report(self) -> Cost:
        figure = self._once("figure", cost.figure_cost)
        return _warmup(figure) + figure * REPORT_FIGURES


def _warmup(*timed: Cost) -> Cost:
    """What the first calls of a fresh run's operations take beyond the timed ones."""
    return Cost.fixed(sum(getattr(t, "warmup", 0.0) for t in timed))


def _share() -> float:
    return EARLY_STOP_SHARE[0]


def _share_range() -> tuple[float, float]:
    mid, low, high = EARLY_STOP_SHARE
    return low / mid, high / mid


def _limit(n: int, limit: int) -> int:
    return min(n, limit) if limit else n


def _fmt_t(c: Cost, scale: float = 1.0) -> str:
    """A measured time: median and range (``scale`` 1e3 for milliseconds)."""
    lo, mid, hi = (v * scale for v in (c.low, c.mid, c.high))
    unit = " s" if scale == 1.0 else ""
    return f"{mid:.3g}{unit} ({lo:.3g} to {hi:.3g})"


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def run_study(
    cfg: StudyConfig,
    out: str | Path,
    *,
    launch: LaunchConfig | None = None,
    runner: Callable[[StageJob], Any] = run_stage,
):
    """Run (or resume) every stage, then write the report; returns the report handle.

    The study folder is locked from start to end (a second study on it is refused with the
    holder's pid, host and start time), and the log lines go to its ``log.txt`` too. With
    ``launch`` the training stages first run as parallel jobs (:mod:`advaug.launch`; ``runner``
    is what each job calls); the ordinary pass then finds them finished.
    """
    if launch is not None:
        launch.validate()
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"cannot create study folder {out} ({e.strerror}); choose another --out"
        ) from e
    with FolderLock(out, "study"), log_to_file(out / "log.txt"):
        cfg, fallback = resolve_study_data(cfg)
        return _run(cfg, out, launch, runner, fallback)


def resolve_study_data(cfg: StudyConfig) -> tuple[StudyConfig, Fallback | None]:
    """``cfg`` on the dataset it will run on: its own, or ``data.fallback`` where its files are
    absent (:func:`advaug.data.datasets.resolve_fallback`)."""
    data, fallback = resolve_fallback(cfg.data)
    return (cfg if data is cfg.data else dataclasses.replace(cfg, data=data)), fallback


def _run(
    cfg: StudyConfig,
    out: Path,
    launch: LaunchConfig | None = None,
    runner=run_stage,
    fallback: Fallback | None = None,
):
    from advaug.report import write_report

    plan = plan_study(cfg, out, estimate=False)
    t0 = time.perf_counter()
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    splits = load_splits(cfg.data, seed=cfg.seed)
    log.info("study %s in %s: %s", cfg.name, out, splits.describe())
    _check_stages(plan, splits)
    info = _study_info(cfg, splits)
    if fallback is not None:
        info["data_fallback"] = dataclasses.asdict(fallback)
    _write_info(out, info)
    _set_aside_if_gan_changes(plan)
    training = [s for s in plan.stages if s.kind in ("gan", "reference", "classifier")]
    if launch is not None:
        _launch(cfg, out, training, launch, runner)
    for i, stage in enumerate(training, 1):
        status = _prepare_stage(stage, out)
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


def _prepare_stage(stage: Stage, out: Path) -> str:
    """Give a GAN-based classifier its finished GAN's sha256, set a changed run aside, and say
    where the stage stands (todo | partial | done)."""
    if stage.kind == "classifier" and stage.job.gan:  # the GAN is finished by now
        stage.job = dataclasses.replace(stage.job, gan_sha256=_gan_sha256(out / "gan"))
    _set_aside_if_stale(stage.folder, stage.job)
    return _status(stage.folder, stage.job)


def _launch(
    cfg: StudyConfig, out: Path, training: list[Stage], launch: LaunchConfig, runner: Callable
) -> None:
    """The training stages as jobs: first those that need no GAN, then the GAN-based ones."""
    by_name = {s.name: s for s in training}

    def job(s: Stage) -> StageJob:
        return StageJob(s.name, s.kind, s.job, s.folder, cfg.evaluate.collapse_threshold, cfg.seed)

    def unfinished(_: int, stages: list[StageJob]) -> list[StageJob]:
        todo = []
        for sj in stages:
            stage = by_name[sj.name]
            if _prepare_stage(stage, out) != "done":
                todo.append(job(stage))
        return todo

    needs_gan = [s for s in training if s.kind == "classifier" and s.job.gan]
    waves = [[job(s) for s in training if s not in needs_gan], [job(s) for s in needs_gan]]
    folder = Path(launch.folder) if launch.folder else out / "jobs"
    run_waves(waves, launch, folder, before_wave=unfinished, runner=runner)


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
    """Classifier-feature FID etc. (offline), GAN-test accuracy, AC accuracy; cached. Each
    number of the generator stands beside the same number for real data (``real``): FID-type
    numbers against two disjoint real halves of the same size, accuracies on the real test
    split; rates carry their count ``n`` (and ``real_n``)."""
    from advaug.evaluate.gan_quality import (
        ClassifierFeatures,
        ac_accuracy,
        gan_test_accuracy,
        quality_with_baseline,
    )

    key = config_hash(
        {
            "gan": to_dict(cfg.gan),
            "data": to_dict(cfg.data),
            "ref": _ref_hash(out),
            "threshold": cfg.evaluate.collapse_threshold,
            "version": 2,  # 2: real-vs-real baselines, counts
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
    scaled = quality_with_baseline(
        pair.generator,
        real,
        test.y,
        ClassifierFeatures(reference, name=f"reference {cfg.reference_model.name}"),
        seed=cfg.seed,
    )
    q, base, lines = scaled["generator"], scaled["real"], scaled["protocol_lines"]
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
    n_gen = per * splits.num_classes
    gtest, _ = gan_test_accuracy(reference, pair.generator, per, cfg.gan.batch_size, cfg.seed)
    ref_real = (predict(reference, test.x).argmax(1) == test.y.cpu()).double().mean().item()
    ac = ac_accuracy(pair.critic, real.to(device), test.y.to(device))
    ac_gen, _ = gan_test_accuracy(
        _ACHead(pair.critic), pair.generator, per, cfg.gan.batch_size, cfg.seed
    )

    def both(name: str) -> dict[str, Any]:
        return {"value": q[name], "real": base[name]}

    quality = {
        "classifier_fid": {**both("fid"), "protocol": lines["fid"]},
        "intra_fid": {**both("intra_fid"), "protocol": lines["intra_fid"]},
        "precision": {**both("precision"), "protocol": lines["precision_recall"]},
        "recall": {**both("recall"), "protocol": lines["precision_recall"]},
        "diversity_ratio": {**both("diversity_ratio"), "protocol": lines["diversity"]},
        "collapsed_classes": {
            "value": collapsed,
            "protocol": f"classes (of {splits.num_classes}) whose within-class feature spread is "
            f"below {cfg.evaluate.collapse_threshold} x the real class's; {lines['diversity']}",
        },
        "gan_test_acc": {
            "value": gtest,
            "n": n_gen,
            "real": ref_real,
            "real_n": len(test),
            "protocol": f"reference {cfg.reference_model.name} (trained on real data) on {per} "
            f"AC-GAN samples per class ({n_gen}, shuffled batches of {cfg.gan.batch_size}), "
            f"seed {cfg.seed}; real: the same classifier on the {splits.name} test split "
            f"({len(test)} images)",
        },
        "ac_test_acc": {
            "value": ac_gen,
            "n": n_gen,
            "real": ac,
            "real_n": len(test),
            "protocol": f"AC head top-1 on the same {n_gen} AC-GAN samples (label = the "
            f"conditioning class); real: on the {splits.name} test split ({len(test)} images)",
        },
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache, json.dumps({"hash": key, "quality": quality}, indent=2, default=float))
    return quality


class _ACHead(torch.nn.Module):
    """The critic's auxiliary-classifier head as a classifier (logits only)."""

    def __init__(self, critic: torch.nn.Module) -> None:
        super().__init__()
        self.critic = critic

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)[1]


def _ref_hash(out: Path) -> str:
    manifest = out / "reference" / "checkpoints" / "final.json"
    return json.loads(manifest.read_text())["sha256"] if manifest.is_file() else ""


def _grids(out: Path, splits: Splits, pair) -> None:
    k, per = min(splits.num_classes, GRID_CLASSES), GRID_PER_CLASS
    names = class_names(splits.classes, k)
    idx = torch.cat([(splits.train.y == c).nonzero()[:per, 0] for c in range(k)])
    save_labelled_grid(splits.train.x[idx].float() / 255, out / "grids" / "real.png", nrow=per,
                       row_labels=names)  # fmt: skip
    if pair is not None:
        from advaug.models.gan import sample

        g = torch.Generator().manual_seed(GRID_SEED)
        y = torch.arange(k).repeat_interleave(per)
        z = torch.randn(len(y), pair.generator.z_dim, generator=g)
        dev = next(pair.generator.parameters()).device
        imgs = sample(pair.generator, y.to(dev), z=z.to(dev))
        save_labelled_grid(imgs, out / "grids" / "gan.png", per, row_labels=names)


def class_names(classes: list[str] | None, k: int) -> list[str]:
    """The names of the first ``k`` classes (their indices where the dataset names none)."""
    return [classes[c] if classes and c < len(classes) else str(c) for c in range(k)]


@torch.no_grad()
def captioned_pairs(generator, model, uae, path: Path, classes: list[str] | None, pairs: int = 16):
    """The first successful UAEs as pairs: clean G(z⁰, s) above its adversarial version, each
    captioned with the model's prediction (the clean one also with its source class)."""
    ok = uae.successes()
    if len(ok) == 0:
        return None
    ok = ok.select(torch.arange(min(pairs, len(ok))))
    device = next(generator.parameters()).device
    was = generator.training
    generator.eval()
    clean = generator(ok.z0.to(device), ok.source.to(device)).cpu()
    generator.train(was)
    k = max(int(ok.source.max()) + 1, getattr(model, "num_classes", 0) or 0)
    names = class_names(classes, k)
    p_clean = predict(model, clean).argmax(1).tolist()
    p_adv = predict(model, ok.images.cpu()).argmax(1).tolist()
    caps = [f"{names[s]}\nf: {names[p]}" for s, p in zip(ok.source.tolist(), p_clean)]
    caps += [f"adversarial\nf: {names[p]}" for p in p_adv]
    n = clean.shape[0]
    return save_labelled_grid(torch.cat([clean, ok.images.cpu()]), path, nrow=n, captions=caps)


def _transfer_key(cfg: StudyConfig, out: Path, baseline: str) -> str:
    """What the transfer UAEs are made from: the baseline's weights, the GAN's, and the
    evaluation's attack (codes, budget, seed); the cached ones are reused only when it matches."""
    return config_hash(
        {
            "baseline": _file_hash(out / "classifiers" / baseline / "checkpoints" / "final.json"),
            "gan": _file_hash(out / "gan" / "checkpoints" / "final.json"),
            "codes": cfg.evaluate.uae_samples,
            "attack": to_dict(cfg.evaluate.uae_attack()),
            "seed": cfg.seed + TRANSFER_SEED,
        }
    )


def _evaluate_all(cfg: StudyConfig, out: Path, splits: Splits, pair, reference) -> None:
    from advaug.evaluate.suite import evaluate_model
    from advaug.evaluate.uae import run_uae

    rt = make_runtime(cfg.runtime)
    transfer, transfer_from = None, ""
    baseline = f"none-s{cfg.seeds[0]}"
    if pair is not None and "none" in cfg.techniques and cfg.evaluate.uae_samples:
        from advaug.attacks import UnrestrictedResult

        path = out / "eval" / "transfer-uae.safetensors"
        base = load_classifier(out / "classifiers" / baseline, rt.device)
        key = _transfer_key(cfg, out, baseline)
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
            train_attack=(
                cfg.classifier.augment.unrestricted.attack_config()
                if "unrestricted" in cfg.techniques
                else None
            ),
            gan_batch=cfg.gan.batch_size,
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
            captioned_pairs(pair.generator, model, uae, out / "grids" / f"uae-{name}.png",
                            splits.classes)  # fmt: skip
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

"""A study's training stages fanned out as parallel jobs, through submitit.

``advaug study --launcher local --max-parallel 2`` runs independent stages as processes on this
machine; ``--launcher slurm`` submits them as Slurm jobs (partition, GPUs per job, time and
memory). Without ``--launcher`` the study trains its stages one after another in its own
process, as always.

The study stays one study:

- **Dependencies.** Wave 1 holds the GAN, the reference classifier and every classifier that
  needs no GAN; wave 2 the ``gan`` and ``unrestricted`` classifiers, which start only once the
  GAN is finished (their cache key includes its weights' sha256). Evaluation and the report come
  after every classifier, in the study's own process.
- **One folder, one cache, one lock.** The study process holds the study's lock throughout; each
  job trains one stage into its run folder (locking that folder), exactly as the sequential
  study would, and a stage already done is not submitted. After the waves, the study's ordinary
  pass finds every stage finished and goes on to evaluation and the report, so the results are
  those of a sequential run with the same seeds.
- **Resubmission.** A job that fails or is pre-empted (killed, out of time) is submitted again,
  up to ``retries`` times; the stage resumes from its last checkpoint.
- **Multi-GPU stages.** With ``gpus_per_job > 1`` a job runs one task per GPU and the stage
  trains with DDP across them (submitit exports the torch.distributed environment, as torchrun
  would); ``classifier.batch_size`` stays per GPU.

Why submitit: it is Meta's small, well-kept library for exactly this (a local executor whose jobs
are processes, a Slurm executor that writes and submits the sbatch script, job state, logs and
pickled calls), so advaug keeps no scheduler code of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from advaug.errors import AdvaugError, ConfigError
from advaug.log import get_logger

log = get_logger(__name__)

LAUNCHERS = ("local", "slurm")


class StageFailed(AdvaugError):
    """A stage's job failed on every attempt."""


@dataclass
class LaunchConfig:
    """How a study's stages are run as jobs (command-line settings: not part of any cache key)."""

    launcher: Literal["local", "slurm"] = "local"
    max_parallel: int = 2  # jobs running at once
    retries: int = 2  # resubmissions of a failed or pre-empted job (it resumes)
    folder: str | None = None  # submitit's job files and logs (default: STUDY/jobs)
    partition: str | None = None  # slurm
    gpus_per_job: int = 0  # slurm: GPUs (and tasks) per job; >1 trains the stage with DDP
    cpus_per_job: int = 2
    time_min: int = 240  # slurm: the job's time limit
    mem_gb: int = 16  # slurm: memory per job
    poll_s: float = 2.0  # how often job states are checked

    def validate(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise ConfigError(
                f"unknown --launcher {self.launcher!r}; choose one of {', '.join(LAUNCHERS)}"
            )
        for name in ("max_parallel", "cpus_per_job", "time_min", "mem_gb"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
        if self.retries < 0 or self.gpus_per_job < 0:
            raise ConfigError("--retries and --gpus-per-job must be >= 0")


@dataclass
class StageJob:
    """One training stage as a job: what :func:`run_stage` needs, all picklable."""

    name: str
    kind: str  # gan | reference | classifier
    job: Any  # a GANJob or ClassifierJob
    folder: Path
    collapse_threshold: float
    data_seed: int  # the study's seed: every stage trains on the same subsets as in the study


def run_stage(stage: StageJob) -> dict[str, Any]:
    """Train (or resume) one stage; this runs inside the job's process."""
    from advaug.data.splits import load_splits
    from advaug.train.classifier import train_classifier
    from advaug.train.gan import train_gan

    _export_distributed()
    splits = load_splits(stage.job.data, seed=stage.data_seed)
    if stage.kind == "gan":
        return train_gan(
            stage.job, stage.folder, splits=splits, collapse_threshold=stage.collapse_threshold
        )
    return train_classifier(stage.job, stage.folder, splits=splits)


def _export_distributed() -> None:
    """Under a multi-task submitit job, the torch.distributed variables torchrun would set."""
    try:
        import submitit

        env = submitit.JobEnvironment()
    except (ImportError, RuntimeError):  # not inside a submitit job (e.g. called directly)
        return
    if env.num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def make_executor(launch: LaunchConfig, folder: Path) -> Any:
    """A submitit executor for ``launch`` writing its job files under ``folder``."""
    try:
        import submitit
    except ImportError as e:  # pragma: no cover - submitit is a dependency
        raise ConfigError("--launcher needs submitit: pip install submitit") from e
    folder.mkdir(parents=True, exist_ok=True)
    if launch.launcher == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=launch.time_min)
        return ex
    ex = submitit.SlurmExecutor(folder=folder)
    tasks = max(1, launch.gpus_per_job)
    params: dict[str, Any] = {
        "time": launch.time_min,
        "mem": f"{launch.mem_gb}G",
        "cpus_per_task": launch.cpus_per_job,
        "ntasks_per_node": tasks,
        "nodes": 1,
        "job_name": "advaug",
    }
    if launch.partition:
        params["partition"] = launch.partition
    if launch.gpus_per_job:
        params["gpus_per_node"] = launch.gpus_per_job
    ex.update_parameters(**params)
    return ex


def run_waves(
    waves: Sequence[Sequence[StageJob]],
    launch: LaunchConfig,
    folder: Path,
    *,
    before_wave: Callable[[int, list[StageJob]], list[StageJob]] | None = None,
    runner: Callable[[StageJob], Any] = run_stage,
    executor: Any = None,
) -> dict[str, int]:
    """Run every wave's stages as jobs, at most ``max_parallel`` at once, a wave after the
    previous one has finished; returns the attempts each stage took.

    ``before_wave(i, stages)`` may update a wave's stages once the earlier waves are done (the
    GAN's sha256 enters the GAN-based classifiers' jobs there) and drop those already done.
    ``runner`` is what each job calls (tests pass their own); ``executor`` defaults to
    :func:`make_executor`.
    """
    launch.validate()
    executor = executor or make_executor(launch, folder)
    attempts: dict[str, int] = {}
    for i, wave in enumerate(waves):
        stages = list(wave)
        if before_wave is not None:
            stages = before_wave(i, stages)
        if stages:
            log.info(
                "launching wave %d: %s (%s, at most %d at once)",
                i + 1,
                ", ".join(s.name for s in stages),
                launch.launcher,
                launch.max_parallel,
            )
            attempts.update(_run_wave(executor, stages, launch, runner))
    return attempts


def _run_wave(
    executor: Any, stages: list[StageJob], launch: LaunchConfig, runner: Callable
) -> dict[str, int]:
    """Keep up to ``max_parallel`` jobs running until every stage has succeeded."""
    todo = list(stages)
    running: dict[str, tuple[StageJob, Any]] = {}
    attempts = {s.name: 0 for s in stages}
    while todo or running:
        while todo and len(running) < launch.max_parallel:
            stage = todo.pop(0)
            attempts[stage.name] += 1
            running[stage.name] = (stage, executor.submit(runner, stage))
            log.info("stage %s: job %s submitted", stage.name, running[stage.name][1].job_id)
        time.sleep(launch.poll_s)
        for name, (stage, job) in list(running.items()):
            if not job.done():
                continue
            del running[name]
            error = job.exception()
            if error is None:
                log.info("stage %s: job %s done", name, job.job_id)
                continue
            if attempts[name] > launch.retries:
                raise StageFailed(
                    f"stage {name} failed {attempts[name]} times, last: "
                    f"{str(error).strip().splitlines()[-1][:300]}; see {job.paths.stderr}"
                )
            log.warning(
                "stage %s: job %s failed or was pre-empted (%s); resubmitting, it resumes "
                "from its last checkpoint",
                name,
                job.job_id,
                str(error).strip().splitlines()[-1][:200],
            )
            todo.append(stage)
    return attempts

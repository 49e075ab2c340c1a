"""advaug.launch: a study's stages as parallel jobs through submitit. On ``smoke``: the local
executor with 2 stages at once gives the sequential study's weights and evaluations; a stage
killed mid-run is resubmitted and resumes from its checkpoint; the study lock refuses a second
study; the Slurm path writes the sbatch script it would submit (to a stand-in sbatch)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

pytest.importorskip("submitit", reason="the launchers need submitit (pip install advaug[cluster])")

from advaug.config import build_config  # noqa: E402
from advaug.data.splits import load_splits  # noqa: E402
from advaug.errors import ConfigError, LockedError  # noqa: E402
from advaug.launch import LaunchConfig, StageJob, make_executor, run_stage  # noqa: E402
from advaug.runtime.checkpoint import load_file  # noqa: E402
from advaug.runtime.lock import FolderLock  # noqa: E402
from advaug.study import run_study  # noqa: E402
from advaug.train.classifier import train_classifier  # noqa: E402

RUNS = [
    "gan",
    "reference",
    *(f"classifiers/{t}-s0" for t in ("none", "fgsm", "gan", "unrestricted")),
]


def _local(tmp: Path, **kw) -> LaunchConfig:
    settings = {"max_parallel": 2, "poll_s": 0.2, "folder": str(tmp / "jobs"), **kw}
    return LaunchConfig("local", **settings)


@pytest.fixture(scope="module")
def sequential(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sequential") / "study"
    run_study(build_config("smoke"), out)
    return out


def _same_results(a: Path, b: Path) -> None:
    for run in RUNS:
        wa = load_file(a / run / "checkpoints" / "final.pt")
        wb = load_file(b / run / "checkpoints" / "final.pt")
        part = "generator" if run == "gan" else "model"
        assert all(torch.equal(wa[part][k], wb[part][k]) for k in wa[part]), run
    for f in sorted((a / "eval").glob("*.json")):
        ea, eb = json.loads(f.read_text()), json.loads((b / "eval" / f.name).read_text())
        for key in ("cost", "checkpoint", "hash"):
            ea.pop(key, None)
            eb.pop(key, None)
        assert ea == eb, f.name


def test_two_stages_at_once_give_the_sequential_studys_results(sequential, tmp_path):
    out = tmp_path / "study"
    run_study(build_config("smoke"), out, launch=_local(tmp_path))
    assert json.loads((out / "study.json").read_text())["finished"] is True
    _same_results(sequential, out)
    jobs = list((tmp_path / "jobs").glob("*_result.pkl"))
    assert len(jobs) == 6  # every training stage ran as its own job


def _kill_at(n: int):
    def on_step(state, save):
        if state.step >= n:
            save()
            os.kill(os.getpid(), signal.SIGKILL)

    return on_step


def dies_once_after_a_checkpoint(stage: StageJob):
    """The ``fgsm`` stage's first job is killed (SIGKILL) right after its step-5 checkpoint."""
    marker = stage.folder.parent / f".{stage.name}.killed"
    if stage.name == "fgsm-s0" and not marker.exists():
        marker.touch()
        splits = load_splits(stage.job.data, seed=stage.data_seed)
        train_classifier(stage.job, stage.folder, splits=splits, on_step=_kill_at(5))
    return run_stage(stage)


def test_a_stage_killed_mid_run_is_resubmitted_and_resumes(sequential, tmp_path):
    out = tmp_path / "study"
    run_study(
        build_config("smoke"), out, launch=_local(tmp_path), runner=dies_once_after_a_checkpoint
    )
    assert (out / "classifiers" / ".fgsm-s0.killed").is_file()
    log = (out / "log.txt").read_text()
    assert "stage fgsm-s0" in log and "resubmitting" in log
    _same_results(sequential, out)


def test_the_study_lock_refuses_a_second_study_before_any_job(tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    with FolderLock(out, "study"), pytest.raises(LockedError, match="in use by pid"):
        run_study(build_config("smoke"), out, launch=_local(tmp_path))
    assert not (tmp_path / "jobs").exists()


def test_bad_launch_settings_are_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="max-parallel must be >= 1"):
        run_study(build_config("smoke"), tmp_path / "s", launch=_local(tmp_path, max_parallel=0))


def test_the_slurm_path_writes_the_sbatch_script_it_submits(tmp_path, monkeypatch):
    """Stand-ins for sbatch (which records its arguments and answers as Slurm does) and srun."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    args = tmp_path / "sbatch-args"
    for name, body in (
        ("sbatch", f'echo "$@" > {args}\necho "Submitted batch job 4242"'),
        ("srun", "exit 0"),
    ):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    launch = LaunchConfig("slurm", partition="gpu", gpus_per_job=2, time_min=30, mem_gb=8)
    ex = make_executor(launch, tmp_path / "jobs")
    cfg = build_config("smoke")
    from advaug.train.gan import GANJob

    job = GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan)
    stage = StageJob("gan", "gan", job, tmp_path / "gan", 0.3, cfg.seed)
    submitted = ex.submit(run_stage, stage)
    assert submitted.job_id == "4242"
    script = Path(submitted.paths.submission_file).read_text()
    expected = ["--partition=gpu", "--gpus-per-node=2", "--ntasks-per-node=2", "--time=30"]
    for line in [*expected, "--mem=8G"]:
        assert f"#SBATCH {line}" in script, (line, script)
    assert "submitit" in script and args.is_file()

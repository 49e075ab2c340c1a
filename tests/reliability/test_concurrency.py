"""Two processes on one folder: the lock of run and study folders.

A second study (or run) on a folder that a live process holds is refused in one line that
names the holder (pid, host, start time); the lock of a holder that died (SIGKILL) is taken
over; a study holds its lock from its first stage to its report.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from advaug.cli import main
from advaug.config import build_config
from advaug.errors import LockedError
from advaug.runtime.lock import LOCK_NAME, FolderLock
from tests.reliability.helpers import REPO, child_env, one_line_error

HOLD = """
import sys, time
from advaug.runtime.lock import FolderLock
FolderLock(sys.argv[1], "study").acquire()
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    """A separate process that holds the lock of ``tmp_path / 'f'`` until it is killed."""
    folder = tmp_path / "f"
    folder.mkdir()
    env = {**child_env(), "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_live_holder_is_named_and_a_killed_one_is_taken_over(holder, advaug_logs):
    folder, proc = holder
    with pytest.raises(LockedError) as e:
        FolderLock(folder, "study").acquire()
    msg = str(e.value)
    assert f"pid {proc.pid} on {socket.gethostname()} since " in msg and "\n" not in msg
    assert str(folder) in msg
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (folder / LOCK_NAME).is_file()  # a killed holder cannot clean up ...
    with FolderLock(folder, "study"):  # ... but its lock died with it
        held = json.loads((folder / LOCK_NAME).read_text())
        assert held["pid"] == os.getpid()
    assert f"took over the lock of pid {proc.pid}" in advaug_logs.text
    assert not (folder / LOCK_NAME).exists()  # released: removed


def test_a_second_study_on_a_busy_folder_is_refused_before_it_writes(holder, capsys):
    folder, proc = holder
    before = sorted(p.name for p in folder.iterdir())
    code = main(
        ["study", "--preset", "smoke", "--out", str(folder), "classifier.optim.lr=0.01", "--quiet"]
    )
    line = one_line_error(capsys.readouterr().err)
    assert code == 1 and f"pid {proc.pid}" in line and "in use" in line
    assert sorted(p.name for p in folder.iterdir()) == before  # no config.yaml, no stage


def test_a_standalone_run_folder_is_locked_too(holder, capsys):
    folder, proc = holder
    for command in ("train-classifier", "train-gan"):
        code = main(["--quiet", command, "--preset", "smoke", "--out", str(folder)])
        line = one_line_error(capsys.readouterr().err)
        assert code == 1 and f"pid {proc.pid}" in line, command
    assert not (folder / "config.yaml").exists()


def test_a_study_holds_its_lock_across_every_stage(tmp_path, monkeypatch):
    """Checked from inside each training stage: the study folder is locked (and the stage's
    own run folder too)."""
    import advaug.study as study

    out = tmp_path / "s"
    seen: list[str] = []
    real_classifier, real_gan = study.train_classifier, study.train_gan

    def check(folder: Path) -> None:
        for locked in (out, folder):
            with pytest.raises(LockedError):
                FolderLock(locked).acquire()
        seen.append(folder.name)

    def train_classifier(job, folder, **kw):
        return real_classifier(job, folder, on_step=lambda st, save: check(Path(folder)), **kw)

    monkeypatch.setattr(study, "train_classifier", train_classifier)
    monkeypatch.setattr(
        study,
        "train_gan",
        lambda job, folder, **kw: real_gan(
            job, folder, on_step=lambda st, save: check(Path(folder)), **kw
        ),
    )
    cfg = build_config("smoke", ["techniques=[none,gan]", "evaluate.uae_samples=0"])
    study.run_study(cfg, out)
    assert {"gan", "reference", "none-s0", "gan-s0"} <= set(seen)
    assert not list(out.rglob(LOCK_NAME))


def test_two_studies_started_together_one_runs_one_is_refused(tmp_path):
    """The issue's scenario: a second study with another lr on the same folder two seconds
    later. Before the lock, both exited 0 and the first printed the second's models."""
    out = tmp_path / "s"
    cmd = [
        sys.executable,
        "-m",
        "advaug.cli",
        "--quiet",
        "study",
        "--preset",
        "smoke",
        "--out",
        str(out),
    ]
    env = {**child_env(), "PYTHONPATH": str(REPO / "src")}
    first = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not (out / LOCK_NAME).is_file() and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    second = subprocess.run(
        [*cmd, "classifier.optim.lr=0.01"], env=env, capture_output=True, text=True, timeout=300
    )
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 1
    assert f"pid {first.pid}" in one_line_error(second.stderr)
    for run in ("classifiers/none-s0", "gan"):
        steps = [
            json.loads(line)["step"]
            for line in (out / run / "metrics.jsonl").open()
            if json.loads(line)["split"] == "train"
        ]
        assert steps == sorted(set(steps)), run  # no step logged twice
    assert len(list((out / "gan" / "tb").iterdir())) == 1
    assert "lr: 0.05" in (out / "classifiers" / "none-s0" / "config.yaml").read_text()

"""Shared helpers of the reliability tests: run-folder checks, hashing, the harness driver.

The kill-and-resume harness runs ``driver.py`` (next to this file) as a subprocess. The driver
imports advaug once, then forks one child process per attempt, so a kill costs no interpreter
start; the children are SIGKILLed (never asked to stop) at seeded points, some of them inside a
checkpoint write (see :mod:`tests.reliability.faults`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DRIVER = HERE / "driver.py"

#: Kill points per harness run; ``ADVAUG_KILL_POINTS=N`` runs more (the default keeps the
#: reliability suite under a minute on one thread).
DEFAULT_KILLS = {"classifier": 4, "gan": 3, "study": 3}


def kill_points(kind: str) -> int:
    """How many kill points a harness run of ``kind`` plans (env ``ADVAUG_KILL_POINTS``)."""
    raw = os.environ.get("ADVAUG_KILL_POINTS", "").strip()
    return int(raw) if raw else DEFAULT_KILLS[kind]


def child_env() -> dict[str, str]:
    """Environment for subprocesses: one thread, no progress bars fighting for the terminal."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env.pop("ADVAUG_DATA", None)
    return env


def run_driver(spec: dict[str, Any], workdir: Path, timeout: float = 300) -> dict[str, Any]:
    """Run the fork-server driver on ``spec``; returns its JSON report (fails with its stderr)."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "report": str(workdir / "report.json"), "workdir": str(workdir)}
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, str(DRIVER), str(spec_path)],
        cwd=workdir,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    report_path = workdir / "report.json"
    assert proc.returncode == 0 and report_path.is_file(), (
        f"driver failed (rc {proc.returncode}):\n{proc.stderr[-6000:]}"
    )
    return json.loads(report_path.read_text())


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_hash(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` (to prove nothing changed)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def temp_files(folder: Path) -> list[Path]:
    """Temporary files of atomic writes (``.NAME.tmp-PID``) anywhere under ``folder``."""
    return sorted(p for p in Path(folder).rglob(".*.tmp-*") if p.is_file())


def checkpoint_folders(root: Path) -> list[Path]:
    """Every ``checkpoints/`` folder under ``root`` (one per run; a study has several)."""
    return sorted(p for p in Path(root).rglob("checkpoints") if p.is_dir())


def check_checkpoints(root: Path) -> list[str]:
    """Problems with the checkpoints under ``root``; empty when every one is whole.

    Every ``step-*.json`` manifest must name its own ``.pt``, whose bytes must match its sha256
    and load with ``weights_only=True``; a temporary file must never be listed as a checkpoint.
    """
    from advaug.runtime.checkpoint import CheckpointManager, load_file

    problems = []
    for folder in checkpoint_folders(root):
        listed = CheckpointManager(folder).entries()
        manifests = sorted(folder.glob("step-*.json"))
        if len(listed) != len(manifests):
            problems.append(f"{folder}: {len(manifests)} manifests but {len(listed)} are valid")
        for m in listed:
            pt = folder / m["file"]
            if ".tmp" in m["file"] or pt.name.startswith("."):
                problems.append(f"{pt}: a temporary file is listed as a checkpoint")
                continue
            if not pt.is_file():
                problems.append(f"{pt}: manifest without its checkpoint")
            elif sha256(pt) != m["sha256"]:
                problems.append(f"{pt}: half-written (sha256 does not match its manifest)")
            else:
                try:
                    load_file(pt, m)
                except Exception as e:  # noqa: BLE001 - reported, not raised
                    problems.append(f"{pt}: does not load ({e})")
        final = folder / "final.pt"
        if (folder / "final.json").is_file():
            manifest = json.loads((folder / "final.json").read_text())
            if not final.is_file() or sha256(final) != manifest["sha256"]:
                problems.append(f"{final}: half-written (does not match final.json)")
    return problems


def records(run_folder: Path) -> list[dict[str, Any]]:
    """Every record of a run's metrics.jsonl (each line must parse)."""
    lines = (Path(run_folder) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def steps_by_split(run_folder: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for rec in records(run_folder):
        out.setdefault(rec["split"], []).append(rec["step"])
    return out


def assert_states_equal(a: Any, b: Any, where: str = "state") -> None:
    """Bit-identical comparison of two loaded checkpoint states (tensors with torch.equal)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
        for k in a:
            assert_states_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_states_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def newest_step_file(folder: Path) -> Path:
    from advaug.runtime.checkpoint import CheckpointManager

    entries = CheckpointManager(folder).entries()
    assert entries, f"no checkpoint in {folder}"
    return folder / entries[-1]["file"]


def one_line_error(text: str) -> str:
    """The single ``advaug: error:`` line of a CLI's stderr (fails if there is anything else)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("advaug: error:")]
    assert len(errors) == 1, f"expected one error line, got:\n{text}"
    assert "Traceback" not in text, text
    return errors[0]

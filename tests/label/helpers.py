"""Run ``advaug label`` as a real server process, as a user would (and kill it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_server(db: Path, rater: str | None = None) -> tuple[subprocess.Popen, str]:
    """``advaug label DB --port 0`` in a subprocess; returns it and the URL it printed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "advaug.cli", "--quiet", "label", str(db), "--port", "0"]
    if rater:
        cmd += ["--rater", rater]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("open: "):
            return proc, line[6:].strip()
    proc.kill()
    err = proc.stderr.read() if proc.stderr else ""
    raise AssertionError(f"the server printed no URL: {err}")

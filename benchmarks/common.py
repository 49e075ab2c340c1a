"""Helpers shared by the benchmark scripts: machine facts, robust summaries, JSON output.

Every benchmark JSON carries ``machine`` (:func:`machine_info`): what ran it, with the settings
that change CPU speed most on the 2-core machines (torch threads, ``OMP_NUM_THREADS``,
``GLIBC_TUNABLES``) and the load average, since other jobs often share the cores.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

#: Said in every CPU result: absolute numbers from a shared 2-core machine are noisy.
SHARED_CPU_NOTE = (
    "measured while other jobs shared the 2 CPU cores: absolute numbers are noisy (tens of "
    "percent between runs); the ratios between rows of one run are what matter"
)

DTYPES: dict[str, torch.dtype | None] = {
    "none": None,
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or None where the OS has none."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_bf16_flags() -> list[str]:
    """The CPU's bfloat16 instruction-set flags (Linux): without ``avx512_bf16`` or ``amx_bf16``
    bf16 autocast on the CPU is emulated, and slower than fp32."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return sorted(f for f in flags if "bf16" in f)


def machine_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """What ran a benchmark: date, host, CPU, threads, allocator setting, torch, the GPU if any."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "date": now_iso(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "cpu_bf16": cpu_bf16_flags(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
        "load_avg_1_5_15": load_average(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def sync(device: str | torch.device) -> None:
    """Wait for queued device work (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: str | torch.device = "cpu") -> float:
    """Wall seconds of one call of ``fn``, device work included."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    if not values:
        raise ValueError("median of an empty sequence")
    return float(statistics.median(values))


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (atomically: temp file, then rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-style table; floats get 3 significant digits (more before the point)."""

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)

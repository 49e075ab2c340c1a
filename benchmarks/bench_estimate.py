"""The study's dry-run estimate against the study's real wall time, preset by preset.

For each preset: a fresh process runs ``plan_study(..., estimate=True)`` as ``advaug study
--dry-run`` does (its start, imports and data counted); then ``advaug study`` runs for real in
another fresh process into an empty folder, timed from its start to its exit. Both run under the
same conditions, one after the other; the result says the load average before each.

    python benchmarks/bench_estimate.py --presets smoke demo --work /tmp/estimate

Writes ``benchmarks/results/estimate-cpu.json`` (``--result``). Nothing here asserts a time: the
ratio is recorded, and the README quotes it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common

PLAN = """
import json, sys, time
t0 = time.perf_counter()
from advaug.config import build_config
from advaug.study import plan_study
preset, out, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
plan = plan_study(build_config(preset, overrides), out, startup_s=time.perf_counter() - t0)
print(json.dumps({
    "total": vars(plan.total),
    "startup": vars(plan.startup),
    "stages": {f"{s.kind} {s.name}": vars(s.cost) for s in plan.stages},
    "measured": plan.measured,
    "text": plan.describe(),
}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(common.ROOT / "src"), env.get("PYTHONPATH", "")])
    env.setdefault(
        "GLIBC_TUNABLES", "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"
    )
    return env


def measure(preset: str, work: Path, overrides: list[str]) -> dict[str, Any]:
    out = work / preset
    if out.exists():
        raise SystemExit(f"{out} exists; give an empty --work folder")
    load_dry = common.load_average()
    t = time.perf_counter()
    dry = subprocess.run([sys.executable, "-c", PLAN, preset, str(out), *overrides], env=_env(),
                         capture_output=True, text=True, check=True)  # fmt: skip
    dry_s = time.perf_counter() - t
    estimate = json.loads(dry.stdout.splitlines()[-1])
    load_real = common.load_average()
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "advaug.cli", "--quiet", "study", "--preset", preset, "--out",
           str(out), *overrides]  # fmt: skip
    subprocess.run(cmd, env=_env(), capture_output=True, text=True, check=True)
    real_s = time.perf_counter() - t
    trained = {
        str(p.parent.relative_to(out)): json.loads(p.read_text()).get("train_seconds")
        for p in sorted(out.glob("**/result.json"))
    }
    total = estimate["total"]
    return {
        "preset": preset,
        "overrides": overrides,
        "estimate_s": total,
        "real_wall_s": real_s,
        "ratio_estimate_to_real": total["mid"] / real_s,
        "real_within_estimate_range": total["low"] <= real_s <= total["high"],
        "dry_run_wall_s": dry_s,
        "load_avg_before_dry_run": load_dry,
        "load_avg_before_real_run": load_real,
        "estimate_by_stage_s": estimate["stages"],
        "real_train_seconds_by_run": trained,
        "measured": estimate["measured"],
        "dry_run_text": estimate["text"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["smoke", "demo"])
    p.add_argument("--work", type=Path, required=True, help="an empty folder for the studies")
    p.add_argument("--result", type=Path, default=common.RESULTS / "estimate-cpu.json")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every preset")
    args = p.parse_args(argv)
    rows, runs = [], []
    for preset in args.presets:
        r = measure(preset, args.work, args.overrides)
        runs.append(r)
        est = r["estimate_s"]
        rows.append([preset, est["mid"], f"{est['low']:.0f}-{est['high']:.0f}", r["real_wall_s"],
                     r["ratio_estimate_to_real"], r["dry_run_wall_s"]])  # fmt: skip
        print(common.markdown_table(
            ["preset", "estimate s", "range s", "real s", "estimate/real", "dry run s"], rows[-1:]
        ), flush=True)  # fmt: skip
    payload = {"machine": common.machine_info(), "note": common.SHARED_CPU_NOTE, "runs": runs}
    print(f"wrote {common.write_json(args.result, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

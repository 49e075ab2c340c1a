"""Mutation testing of advaug's critical modules with mutmut, one module at a time.

Each module runs in its own scratch copy (``.mutation/<name>/``) whose ``[tool.mutmut]`` names
only that source file and only the test files that mirror it, so the clean run, the per-function
test map and every mutant touch those tests alone. mutmut forks each mutant from a warm server
(torch is imported once) and runs only the tests that called the mutated function. Results are
merged into ``docs/mutation.json`` (score per module, and every surviving mutant with its diff);
``docs/MUTATION.md`` explains each survivor.

    python tools/mutation.py                     # every module, most critical first
    python tools/mutation.py --modules pgd,fgsm  # some of them
    python tools/mutation.py --list              # the module table
    python tools/mutation.py --modules loop --functions '*resume*,*loader_position*'
                                                 # only the mutants of some functions

Runs resume: mutmut keeps its verdicts in the scratch copy and re-tests only functions whose
source or tests changed. Hypothesis runs under the ``mutation`` profile (tests/conftest.py):
few, derandomised examples, so a report is reproducible and a mutant costs seconds.
"""

from __future__ import annotations

import argparse
import fcntl
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (source file under src/advaug, the test files that exercise it), most critical first.
MODULES: dict[str, tuple[str, list[str]]] = {
    "pgd": ("attacks/pgd.py", ["tests/attacks/test_pgd.py"]),
    "fgsm": ("attacks/fgsm.py", ["tests/attacks/test_fgsm.py"]),
    "augment_base": (
        "augment/base.py",
        ["tests/augment/test_base.py", "tests/runtime/test_gpu_readiness.py"],
    ),
    "gan_losses": ("train/gan_losses.py", ["tests/train/test_gan_losses.py"]),
    "safe_pickle": ("data/safe_pickle.py", ["tests/data/test_safe_pickle.py"]),
    # checkpoint and loop: the unit tests that mirror them, and the fast part of reliability/
    # (retention, full disks); the tests that train whole runs and resume them cost seconds
    # per mutant and are left to `make test`
    "checkpoint": (
        "runtime/checkpoint.py",
        ["tests/runtime/test_checkpoint.py", "tests/reliability/test_resources.py"],
    ),
    "loop": ("train/loop.py", ["tests/train/test_loop.py"]),
    "loader": ("data/loader.py", ["tests/data/test_loader.py"]),
    "stats": ("report/stats.py", ["tests/report/test_stats.py"]),
    "tables": ("report/tables.py", ["tests/report/test_tables.py"]),
    "config": ("config.py", ["tests/test_config.py"]),
    "augment_fgsm": ("augment/fgsm.py", ["tests/augment/test_fgsm_aug.py"]),
    "augment_gan": ("augment/gan.py", ["tests/augment/test_gan_aug.py"]),
    "augment_pgd": ("augment/pgd.py", ["tests/augment/test_pgd.py"]),
    "augment_unrestricted": (
        "augment/unrestricted.py",
        ["tests/augment/test_unrestricted_aug.py"],
    ),
    "unrestricted": ("attacks/unrestricted.py", ["tests/attacks/test_unrestricted.py"]),
    "accuracy": (
        "evaluate/accuracy.py",
        ["tests/evaluate/test_accuracy.py", "tests/evaluate/test_suite.py"],
    ),
    "robustness": (
        "evaluate/robustness.py",
        [
            "tests/evaluate/test_robustness.py",
            "tests/evaluate/test_suite.py",
            "tests/evaluate/test_robustbench.py",
        ],
    ),
    "gan_quality": ("evaluate/gan_quality.py", ["tests/evaluate/test_gan_quality.py"]),
    "uae": ("evaluate/uae.py", ["tests/evaluate/test_uae.py"]),
}

STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    24: "timeout",  # SIGXCPU: mutmut's CPU-time limit
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    37: "type check",
    -9: "segfault",
    -11: "segfault",
    None: "not checked",
}
PYTEST_ARGS = ["-p", "no:cacheprovider", "-q", "--hypothesis-profile=mutation"]
# mutmut stops a mutant after about (its tests' measured seconds + 1) x this many seconds of
# wall time (forkserver mode) and counts it as a timeout, that is as killed. Its default, 15,
# gives ~20 s: on this shared 2-core machine a niced fork can take longer than that just to
# run a few fast tests, so survivors were reported as timeouts. 100 (~2 min) still stops a
# mutant that loops forever.
TIMEOUT_MULTIPLIER = 100.0


def _scratch(name: str, work: Path, timeout_multiplier: float = TIMEOUT_MULTIPLIER) -> Path:
    """A fresh copy of src/ and tests/ whose pyproject scopes mutmut to one module."""
    source, tests = MODULES[name]
    where = work / name
    where.mkdir(parents=True, exist_ok=True)
    for part in ("src", "tests"):
        shutil.copytree(
            ROOT / part,
            where / part,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
    config = (ROOT / "pyproject.toml").read_text()
    config += (
        "\n[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f'only_mutate = ["src/advaug/{source}"]\n'
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        f"pytest_add_cli_args = {json.dumps(PYTEST_ARGS)}\n"
        'process_isolation = "forkserver"\n'
        "use_git_change_detection = false\n"
        f"timeout_multiplier = {float(timeout_multiplier)}\n"
    )
    (where / "pyproject.toml").write_text(config)
    return where


def _mutmut(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    exe = Path(sys.executable).with_name("mutmut")
    return subprocess.run(
        [str(exe), *args], cwd=where, env=env, text=True, capture_output=True, check=False
    )


def _verdicts(name: str, where: Path) -> dict[str, int | None]:
    """mutmut's exit code per mutant of one module (its .meta file)."""
    meta = where / "mutants/src/advaug" / f"{MODULES[name][0]}.meta"
    return json.loads(meta.read_text())["exit_code_by_key"]


def _record(path: Path, name: str, result: dict, tool_version: str) -> None:
    """Put one module's result into the report at ``path``, read afresh just before: a run takes
    minutes per module, and another run (or a merge) may have written other modules meanwhile.
    Runs that finish together take turns (a lock file beside the report, held from the read to
    the rename), and each writes its own temporary file, replaced whole, so a stop never leaves
    half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = json.loads(path.read_text()) if path.exists() else {"modules": {}}
        report.update(
            tool="mutmut",
            version=tool_version,
            command="make mutation MODULES=<names>  (python tools/mutation.py --modules ...)",
        )
        report.setdefault("modules", {})[name] = result
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        os.replace(tmp, path)


def _in_scope(key: str, functions: list[str]) -> bool:
    """Whether mutant ``key`` belongs to the selected functions (all of them when none)."""
    return not functions or any(fnmatch.fnmatch(key, pattern) for pattern in functions)


def _collect(name: str, where: Path, functions: list[str] | None = None) -> dict:
    """Counts, score and survivors (with their diffs) of one module's finished run, limited to
    the mutants of ``functions`` (mutmut name patterns) when given."""
    source, tests = MODULES[name]
    functions = functions or []
    codes = {k: c for k, c in _verdicts(name, where).items() if _in_scope(k, functions)}
    counts: dict[str, int] = {}
    for code in codes.values():
        status = STATUS.get(code, "suspicious")
        counts[status] = counts.get(status, 0) + 1
    survivors = sorted(k for k, c in codes.items() if STATUS.get(c, "suspicious") == "survived")
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    tested = killed + counts.get("survived", 0) + counts.get("no tests", 0)
    result = {
        "source": f"src/advaug/{source}",
        "tests": tests,
        "counts": dict(sorted(counts.items())),
        "score": round(100 * killed / tested, 1) if tested else None,
        "survivors": [
            {"mutant": k, "diff": _mutmut(where, "show", k).stdout.strip()} for k in survivors
        ],
    }
    if functions:
        result["functions"] = functions
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", default="", help="comma-separated names (default: all)")
    parser.add_argument("--work", type=Path, default=ROOT / ".mutation")
    parser.add_argument("--report", type=Path, default=ROOT / "docs/mutation.json")
    parser.add_argument("--list", action="store_true", help="print the module table and stop")
    parser.add_argument(
        "--functions",
        default="",
        help="comma-separated mutmut name patterns (fnmatch), e.g. '*resume*': run and score "
        "only those functions' mutants (for a module too slow to run whole)",
    )
    parser.add_argument(
        "--timeout-multiplier",
        type=float,
        default=TIMEOUT_MULTIPLIER,
        help="mutmut's timeout_multiplier: a mutant is stopped (and counted as a timeout) after "
        "about (its tests' seconds + 1) x this many seconds (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.list:
        for name, (source, tests) in MODULES.items():
            print(f"{name:22} src/advaug/{source:26} {' '.join(tests)}")
        return 0
    names = [n.strip() for n in args.modules.split(",") if n.strip()] or list(MODULES)
    functions = [f.strip() for f in args.functions.split(",") if f.strip()]
    unknown = sorted(set(names) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {sorted(MODULES)}")
    for name in names:
        where = _scratch(name, args.work, args.timeout_multiplier)
        print(f"[mutation] {name}: mutmut run in {where}", flush=True)
        run = _mutmut(where, "run", "--max-children", "1", *functions)
        # mutmut keeps earlier verdicts: survivors and untested mutants are re-run by name
        # against the current tests (which may kill them now)
        survivors = [
            k
            for k, code in _verdicts(name, where).items()
            if code in (0, 5, 33) and _in_scope(k, functions)
        ]
        if run.returncode == 0 and survivors:
            run = _mutmut(where, "run", "--max-children", "1", *survivors)
        if run.returncode != 0:
            print(run.stdout[-3000:], run.stderr[-3000:], sep="\n", file=sys.stderr)
            return run.returncode
        result = _collect(name, where, functions)
        _record(args.report, name, result, version("mutmut"))
        print(f"[mutation] {name}: score {result['score']} % {result['counts']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

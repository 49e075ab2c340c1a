"""Kill-and-resume driver: ``python driver.py SPEC.json`` (run by test_kill_resume.py).

It imports advaug once, then runs every attempt of a job in a forked child process:

1. a reference attempt, uninterrupted, into ``ref/``; it records the sequence of fault-hook
   events (each atomic write's three points, each prune) and the wall time;
2. attempts into ``cut/``, each SIGKILLed at its kill point, until the planned kill points are
   used; then a last attempt that runs to the end.

A kill point is either *in a write* (the child kills itself from
the hook of :mod:`tests.reliability.faults` at the first event at or after a seeded position of the
reference sequence; most of these fall inside checkpoint writes) or *timed* (the driver kills the
child after a seeded delay, wherever it is). After every kill the driver checks that every
checkpoint with a manifest is whole and loads, and, for a study, which stages were finished. The
report (JSON) lists every kill, every problem found, and those snapshots; the test asserts on it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

torch.set_num_threads(1)

import pytest  # noqa: E402

from tests.reliability import faults  # noqa: E402
from tests.reliability.helpers import check_checkpoints, sha256, temp_files  # noqa: E402


def _target(spec: dict[str, Any]):
    """A function ``run(out)`` that runs the job of ``spec`` to completion in this process."""
    from advaug.config import build_config
    from advaug.log import setup_logging

    setup_logging("INFO", show_progress=False)
    kind = spec["kind"]
    overrides = list(spec.get("overrides", []))
    if kind == "study":
        from advaug.cli import main

        def run_study(out: Path) -> None:
            rc = main(["--quiet", "study", "--preset", "smoke", "--out", str(out), *overrides])
            if rc != 0:
                raise SystemExit(rc)

        build_config("smoke", overrides)  # fail early on a bad spec
        from advaug.data.digits import load_digits

        load_digits()  # cached in the parent: children inherit it
        return run_study

    from advaug.data.splits import load_splits

    cfg = build_config("smoke", overrides)
    splits = load_splits(cfg.data, seed=cfg.seed)
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401 - import once, in the parent

    if kind == "classifier":
        from advaug.train.classifier import ClassifierJob, train_classifier

        job = ClassifierJob(
            data=cfg.data,
            runtime=cfg.runtime,
            classifier=cfg.classifier,
            seed=cfg.seeds[0],
            ckpt_every_steps=spec.get("ckpt_every_steps", 0),
        )
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # imports torch._dynamo
        return lambda out: train_classifier(job, out, splits=splits)
    if kind == "gan":
        from advaug.train.gan import GANJob, train_gan

        job = GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan, seed=cfg.seed)
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        return lambda out: train_gan(job, out, splits=splits)
    raise ValueError(f"unknown kind {kind!r}")


class Attempt:
    """One forked attempt: how it ended and the hook events it saw."""

    def __init__(self, status: str, events: list[str], seconds: float, err: str):
        self.status = status  # finished | killed | failed
        self.events = events
        self.seconds = seconds
        self.err = err
        self.by_timer = False


def attempt(
    run,
    out: Path,
    logdir: Path,
    n: int,
    positions: dict[str, int] | None = None,
    kill_at: int | None = None,
    kill_nth: int | None = None,
    delay: float | None = None,
) -> Attempt:
    """Run ``run(out)`` in a forked child and kill it: at the first hook event at or after
    reference position ``kill_at``, at its ``kill_nth`` hook event, or after ``delay`` seconds."""
    events_path = logdir / f"attempt-{n:02d}.events"
    err_path = logdir / f"attempt-{n:02d}.err"
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # ---------------------------------------------------------------- child
        code = 0
        try:
            fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 2)
            events = open(events_path, "a", buffering=1)  # noqa: SIM115 - lives until _exit
            seen = [0]

            def hook(event: str, path: Path) -> None:
                try:
                    key = f"{event}:{Path(path).resolve().relative_to(out.resolve())}"
                except ValueError:
                    return
                events.write(key + "\n")
                seen[0] += 1
                if kill_nth is not None and seen[0] >= kill_nth:
                    os.kill(os.getpid(), signal.SIGKILL)
                if kill_at is not None and positions is not None:
                    pos = positions.get(key)
                    if pos is not None and pos >= kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)

            faults.install(pytest.MonkeyPatch(), hook)  # lives until _exit
            run(out)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 3
        except BaseException:  # noqa: BLE001 - reported through the err file
            traceback.print_exc()
            code = 3
        finally:
            sys.stderr.flush()
            os._exit(code)
    # ------------------------------------------------------------------------------ parent
    if delay is not None:
        deadline = t0 + delay
        while True:
            done, status_code = os.waitpid(pid, os.WNOHANG)
            if done:
                return _finish(status_code, events_path, err_path, t0)
            if time.perf_counter() >= deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    _, status_code = os.waitpid(pid, 0)
    result = _finish(status_code, events_path, err_path, t0)
    result.by_timer = delay is not None and result.status == "killed"
    return result


def _finish(status_code: int, events_path: Path, err_path: Path, t0: float) -> Attempt:
    seconds = time.perf_counter() - t0
    events = events_path.read_text().splitlines() if events_path.is_file() else []
    err = err_path.read_text() if err_path.is_file() else ""
    if os.WIFSIGNALED(status_code) and os.WTERMSIG(status_code) == signal.SIGKILL:
        return Attempt("killed", events, seconds, err)
    if os.WIFEXITED(status_code) and os.WEXITSTATUS(status_code) == 0:
        return Attempt("finished", events, seconds, err)
    return Attempt(f"failed (status {status_code})", events, seconds, err)


def stage_snapshot(out: Path) -> dict[str, Any]:
    """Finished study stages: result.json mtime and final.pt hash; eval JSON mtimes."""
    snap: dict[str, Any] = {}
    for result in sorted(out.rglob("result.json")):
        folder = result.parent
        final = folder / "checkpoints" / "final.pt"
        snap[str(folder.relative_to(out))] = {
            "result_mtime_ns": result.stat().st_mtime_ns,
            "final_sha256": sha256(final) if final.is_file() else None,
        }
    for ev in sorted((out / "eval").glob("*.json")) if (out / "eval").is_dir() else []:
        snap[str(ev.relative_to(out))] = {"mtime_ns": ev.stat().st_mtime_ns}
    return snap


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    work = Path(spec["workdir"])
    ref, cut, logs = work / "ref", work / "cut", work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    run = _target(spec)
    report: dict[str, Any] = {"kind": spec["kind"], "kills": [], "problems": [], "errors": []}

    # 1. the uninterrupted reference run, recording its hook events
    first = attempt(run, ref, logs, 0)
    if first.status != "finished":
        report["errors"].append(f"reference run {first.status}:\n{first.err[-3000:]}")
        Path(spec["report"]).write_text(json.dumps(report, indent=1))
        return 0
    seq = first.events
    counts: dict[str, int] = {}
    for key in seq:
        counts[key] = counts.get(key, 0) + 1
    positions = {key: i for i, key in enumerate(seq) if counts[key] == 1}
    report["reference"] = {"seconds": first.seconds, "events": len(seq)}

    # 2. the kill plan: in-write points at seeded positions, plus seeded timed kills
    rng = random.Random(spec["seed"])
    n_kills = int(spec["kills"])
    n_timed = n_kills // 3
    n_early = 1 if n_kills >= 4 else 0
    unique = sorted(positions.values())
    hook_points = sorted(rng.sample(unique, min(len(unique), n_kills - n_timed - n_early)))
    plan: list[tuple[str, int | float]] = [("write", p) for p in hook_points]
    for _ in range(n_timed):
        plan.insert(rng.randrange(len(plan) + 1), ("timed", rng.uniform(0.1, 0.6)))
    for _ in range(n_early):  # the first writes of a resumed attempt (metrics.jsonl cut)
        plan.insert(rng.randrange(1, len(plan) + 1), ("early", rng.randint(1, 3)))

    # No kill attempt may finish the run (a kill point would be lost): each one also dies at the
    # backstop, the start of the last write of the reference run, which is redone after a kill.
    backstop = max(i for key, i in positions.items() if key.startswith("write-partial:"))

    # 3. the interrupted run
    reached = -1  # furthest reference position seen so far
    snapshots: dict[str, Any] = {}
    n = 1
    finished = False
    for mode, value in plan:
        if mode == "write":
            at = min(max(int(value), reached + 1), backstop)
            a = attempt(run, cut, logs, n, positions, kill_at=at)
        elif mode == "early":
            a = attempt(run, cut, logs, n, positions, kill_at=backstop, kill_nth=int(value))
        else:
            left = max(0.05, first.seconds * (1 - max(reached, 0) / max(1, len(seq))))
            delay = float(value) * left
            a = attempt(run, cut, logs, n, positions, kill_at=backstop, delay=delay)
        n += 1
        seen = [positions[k] for k in a.events if k in positions]
        reached = max([reached, *seen])
        entry = {
            "mode": mode,
            "status": a.status,
            "last_event": a.events[-1] if a.events else None,
            "by_timer": a.by_timer,
        }
        if a.status.startswith("failed"):
            report["errors"].append(f"attempt {n - 1} ({mode}) {a.status}:\n{a.err[-3000:]}")
            break
        report["problems"] += [
            f"after kill {len(report['kills']) + 1}: {p}" for p in check_checkpoints(cut)
        ]
        for key, value_ in stage_snapshot(cut).items():
            snapshots.setdefault(key, value_)
        entry["temp_files"] = [str(p.relative_to(cut)) for p in temp_files(cut)]
        report["kills"].append(entry)
        if a.status == "finished":
            finished = True
            break
    # 4. run to the end
    while not finished:
        a = attempt(run, cut, logs, n)
        n += 1
        if a.status != "finished":
            report["errors"].append(f"final attempt {a.status}:\n{a.err[-3000:]}")
            break
        finished = True
    report["finished"] = finished
    report["landed"] = sum(1 for k in report["kills"] if k["status"] == "killed")
    report["in_write"] = sum(
        1 for k in report["kills"] if k["status"] == "killed" and k["mode"] in ("write", "early")
    )
    report["problems"] += [f"at the end: {p}" for p in check_checkpoints(cut)]
    report["snapshots"] = snapshots
    report["final_snapshot"] = stage_snapshot(cut)
    report["warnings"] = sorted(
        {
            line.split(" WARNING ", 1)[1]
            for p in logs.glob("attempt-*.err")
            for line in p.read_text().splitlines()
            if " WARNING " in line
        }
    )
    Path(spec["report"]).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""The study end to end on the smoke preset: stages, caching, resume after a kill, the report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from advaug.config import build_config
from advaug.study import plan_study, run_study


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    cfg = build_config("smoke")
    report = run_study(cfg, out)
    return cfg, out, report


def test_study_writes_every_stage_and_the_report(smoke_study):
    cfg, out, report = smoke_study
    info = json.loads((out / "study.json").read_text())
    assert info["finished"] and info["models"] == [f"{t}-s0" for t in cfg.techniques]
    for name in info["models"]:
        ev = json.loads((out / "eval" / f"{name}.json").read_text())
        assert 0 <= ev["metrics"]["clean_top1"]["value"] <= 1
        assert ev["metrics"]["clean_top1"]["protocol"].startswith("digits test split")
        assert "pgd3@8/255" in ev["metrics"]
        assert ev["cost"]["seconds_per_epoch"] > 0
    assert "transfer_uae_acc" in json.loads((out / "eval" / "fgsm-s0.json").read_text())["metrics"]
    assert info["gan"]["quality"]["classifier_fid"]["value"] >= 0
    collapsed = info["gan"]["quality"]["collapsed_classes"]
    assert 0 <= collapsed["value"] <= 10 and "collapsed" not in collapsed["protocol"]
    assert report.index_html.is_file() and report.results_md.is_file()
    assert (out / "grids" / "real.png").is_file() and (out / "grids" / "gan.png").is_file()


def test_rerun_skips_finished_stages(smoke_study):
    cfg, out, _ = smoke_study
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("classifiers/*/result.json")}
    stamps.update({p: p.stat().st_mtime_ns for p in out.glob("eval/*.json")})
    plan = plan_study(cfg, out, estimate=False)
    assert {s.status for s in plan.stages if s.kind != "report"} == {"done"}
    run_study(cfg, out)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_changed_config_redoes_only_what_changed(smoke_study, tmp_path):
    cfg, out, _ = smoke_study
    changed = build_config("smoke", ["classifier.augment.fgsm.eps_max=0.05"])
    stages = plan_study(changed, out, estimate=False).stages
    plan = {s.name: s.status for s in stages if s.kind in ("gan", "classifier", "reference")}
    assert plan["fgsm-s0"] == "stale"
    assert plan["none-s0"] == plan["gan-s0"] == plan["unrestricted-s0"] == "done"
    assert plan["gan"] == plan["reference"] == "done"


def test_dry_run_prints_plan_with_estimate(smoke_study):
    cfg, out, _ = smoke_study
    text = plan_study(cfg, out / "fresh").describe()
    assert "todo" in text and "estimated remaining cost" in text


def test_killed_study_resumes_without_redoing_finished_stages(tmp_path):
    out = tmp_path / "s"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
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
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill it once the GAN stage has finished and a classifier stage has started
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "gan" / "result.json").is_file() and any(out.glob("classifiers/*/config.yaml")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gan_stamp = (out / "gan" / "result.json").stat().st_mtime_ns
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "gan" / "result.json").stat().st_mtime_ns == gan_stamp
    assert json.loads((out / "study.json").read_text())["finished"]
    assert Path(out / "report" / "index.html").is_file()


def test_retraining_the_gan_retrains_the_classifiers_that_used_it(tmp_path):
    cfg = build_config("smoke", ["techniques=[none,gan]", "evaluate.uae_samples=0"])
    out = tmp_path / "s"
    run_study(cfg, out)
    none_stamp = (out / "classifiers" / "none-s0" / "result.json").stat().st_mtime_ns
    gan_stamp = (out / "classifiers" / "gan-s0" / "result.json").stat().st_mtime_ns
    changed = build_config(
        "smoke", ["techniques=[none,gan]", "evaluate.uae_samples=0", "gan.iters=4"]
    )
    run_study(changed, out)
    assert (out / "classifiers" / "none-s0" / "result.json").stat().st_mtime_ns == none_stamp
    assert (out / "classifiers" / "gan-s0" / "result.json").stat().st_mtime_ns != gan_stamp
    assert (out / "classifiers" / "gan-s0.stale-gan").is_dir()

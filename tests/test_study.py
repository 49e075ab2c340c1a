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
    # every FID-type number has its real-vs-real scale; rates have their counts
    q = info["gan"]["quality"]
    assert all(q[k]["real"] >= 0 for k in ("classifier_fid", "intra_fid", "precision"))
    assert q["gan_test_acc"]["n"] > 0 and q["gan_test_acc"]["real_n"] == info["splits"]["test"]
    ev = json.loads((out / "eval" / "none-s0.json").read_text())
    assert ev["metrics"]["clean_top1"]["n"] == info["splits"]["test"]
    assert ev["per_image"]["clean_top1"]["n"] == info["splits"]["test"]
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


def _stamps(out: Path) -> dict[Path, int]:
    """The mtimes of every file that finishing a stage writes."""
    files = [*out.glob("*/result.json"), *out.glob("classifiers/*/result.json")]
    return {p.relative_to(out): p.stat().st_mtime_ns for p in [*files, *out.glob("eval/*.json")]}


def test_a_moved_study_or_another_spelling_of_its_folder_redoes_nothing(
    smoke_study, tmp_path, monkeypatch
):
    """The GAN's folder is where the GAN lies, not what it is: a moved or copied study, a
    relative instead of an absolute --out, or another working directory is the same study."""
    import shutil

    cfg, out, _ = smoke_study
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(out, moved)
    before = _stamps(moved)
    monkeypatch.chdir(moved.parent)
    for spelling in ("moved", str(moved), "./../elsewhere/moved"):
        stages = plan_study(cfg, spelling, estimate=False).stages
        assert {s.name: s.status for s in stages if s.kind != "report"} == {
            s.name: "done" for s in stages if s.kind != "report"
        }, spelling
    run_study(cfg, "moved")
    assert _stamps(moved) == before
    assert not list(moved.glob("classifiers/*.stale-*"))


def test_same_command_same_numbers(smoke_study, tmp_path):
    """Two runs of the same study give the same metrics (timings aside) and the same weights."""
    from advaug.runtime.checkpoint import load_file
    from tests.reliability.helpers import assert_states_equal

    cfg, out, _ = smoke_study
    again = tmp_path / "again"
    run_study(cfg, again)
    for ev in sorted((out / "eval").glob("*.json")):
        a, b = json.loads(ev.read_text()), json.loads((again / "eval" / ev.name).read_text())
        for res in (a, b):
            res.pop("cost"), res.pop("checkpoint")
        assert a == b, ev.name
    for final in sorted(out.glob("**/checkpoints/final.pt")):
        rel = final.relative_to(out)
        assert_states_equal(load_file(final), load_file(again / rel), str(rel))
    info = [json.loads((d / "study.json").read_text())["gan"]["quality"] for d in (out, again)]
    assert info[0] == info[1]


def test_logs_stay_in_every_run_and_study_folder(smoke_study):
    cfg, out, _ = smoke_study
    study_log = (out / "log.txt").read_text()
    n = len(cfg.techniques) + 2
    for i, name in enumerate(["gan", "reference", *(f"classifier {t}-s0" for t in cfg.techniques)]):
        assert f"stage {i + 1}/{n} {name}: todo, training" in study_log
    for t in cfg.techniques:
        assert f"evaluate {t}-s0: finished in" in study_log
    for t in cfg.techniques:
        run_log = (out / "classifiers" / f"{t}-s0" / "log.txt").read_text()
        epochs = [line for line in run_log.splitlines() if f"{t}-s0 epoch " in line]
        assert len(epochs) == cfg.classifier.epochs, run_log
        assert all("loss" in e and "lr" in e and "img/s" in e and "ETA" in e for e in epochs)
        assert epochs[0] in study_log  # the study's log has its runs' lines too
    assert "iteration" in (out / "gan" / "log.txt").read_text()
    assert not list(out.glob("**/advaug.lock")), "a finished study holds no lock"


def test_classifier_runs_keep_sample_images(smoke_study):
    cfg, out, _ = smoke_study
    for t in cfg.techniques:
        assert (out / "classifiers" / f"{t}-s0" / "samples" / "train-batch.png").is_file()


def test_a_corrupt_stage_config_is_repaired_or_named(smoke_study, tmp_path):
    import shutil

    from advaug.errors import ConfigError

    cfg, out, _ = smoke_study
    copy = tmp_path / "s"
    shutil.copytree(out, copy)
    cfg_file = copy / "classifiers" / "none-s0" / "config.yaml"
    cfg_file.write_text("data: {name: [digits\n")  # cut in the middle of a flow node
    plan = {s.name: s.status for s in plan_study(cfg, copy, estimate=False).stages}
    assert plan["none-s0"] == "done"  # its checkpoints were made with this very config
    stamps = _stamps(copy)
    run_study(cfg, copy)
    assert _stamps(copy) == stamps
    assert "classifier:" in cfg_file.read_text()  # written again
    # checkpoints of another config beside the unreadable file: refused, naming the file
    cfg_file.write_text("data: {name: [digits\n")
    manifests = list((copy / "classifiers" / "none-s0" / "checkpoints").glob("step-*.json"))
    for m in manifests:
        m.write_text(json.dumps({**json.loads(m.read_text()), "config_hash": "0123456789ab"}))
    with pytest.raises(ConfigError) as e:
        plan_study(cfg, copy, estimate=False)
    msg = str(e.value)
    assert str(cfg_file) in msg and "not valid YAML" in msg and "\n" not in msg


def test_dry_run_counts_what_the_study_really_does(monkeypatch, tmp_path):
    """The estimate multiplies timed operations (faked here: 1 s each) by the real counts: the
    test split's size (not the protocol's robust_samples when the split is smaller), every
    attack step of the evaluation, and the training steps of the real training split."""
    from advaug.train import cost
    from advaug.train.cost import Cost

    one = Cost(1.0, 0.5, 2.0)
    for name in ("forward_cost", "attack_step_cost", "classifier_step_cost", "checkpoint_cost"):
        monkeypatch.setattr(cost, name, lambda *a, **k: one)
    monkeypatch.setattr(cost, "run_open_cost", lambda: Cost())
    monkeypatch.setattr(cost, "build_cost", lambda *a, **k: Cost())
    monkeypatch.setattr(cost, "figure_cost", lambda: one)
    cfg = build_config(
        "smoke",
        ["techniques=[none]", "evaluate.gan_samples_per_class=0", "evaluate.uae_samples=0",
         "evaluate.robust_samples=1000", "evaluate.fgsm_eps=[0.01,0.02]", "evaluate.pgd_steps=3",
         "data.test_limit=0", "runtime.ckpt_every_min=1e9"],
    )  # fmt: skip
    plan = plan_study(cfg, tmp_path / "s")
    stages = {(s.kind, s.name): s for s in plan.stages}
    n_test = 359  # the digits test split: fewer than robust_samples
    fwd, grad = n_test, n_test  # one each per image
    assert stages["evaluate", "none-s0"].cost.mid == fwd + 2 * (grad + fwd) + (3 * grad + fwd)
    steps = 300 // 32 * 2  # train_limit 300, batch 32, 2 epochs
    none = stages["classifier", "none-s0"].cost
    # the steps, the test split's forward pass, a checkpoint (model and optimiser) per epoch
    assert none.mid == pytest.approx(steps + n_test + 2 * (2 + 1))
    assert none.low < none.mid < none.high
    text = plan.describe()
    assert "estimated remaining cost" in text and "range" in text
    assert "the real splits: train 300, val 0, test 359" in text
    assert "measured here" in text


def test_a_study_takes_pgd_and_keeps_its_settings_out_of_the_others(tmp_path):
    """``pgd`` is a technique a study plans (with a timed estimate of its real training step);
    changing its settings changes only the pgd classifier's identity. The default study stays
    the seed's four techniques."""
    from advaug.study import _classifier_job

    assert build_config("smoke").techniques == ["none", "fgsm", "gan", "unrestricted"]
    over = ["techniques=[none,pgd]", "evaluate.gan_samples_per_class=0", "evaluate.uae_samples=0"]
    cfg = build_config("smoke", over)
    plan = plan_study(cfg, tmp_path / "s")
    names = {s.name for s in plan.stages if s.kind == "classifier"}
    assert names == {"none-s0", "pgd-s0"}
    assert "training step, pgd" in plan.describe()
    changed = build_config("smoke", [*over, "classifier.augment.pgd.eps=0.3"])
    gan = tmp_path / "gan"
    for t, same in (("none", True), ("fgsm", True), ("pgd", False)):
        a, b = _classifier_job(cfg, t, 0, gan), _classifier_job(changed, t, 0, gan)
        assert (a.classifier == b.classifier) is same, t
    assert _classifier_job(changed, "pgd", 0, gan).classifier.augment.pgd.eps == 0.3


def test_transfer_uaes_are_remade_when_the_gan_or_the_attack_changes(tmp_path):
    """The cached transfer UAEs belong to one baseline, one GAN and one attack protocol: a
    study rerun with a retrained GAN (or more codes, or another budget) must not reuse them."""
    import dataclasses

    from advaug.study import _transfer_key

    def manifest(path, sha):
        path.mkdir(parents=True, exist_ok=True)
        (path / "final.json").write_text(json.dumps({"sha256": sha}))

    cfg = build_config("smoke")
    manifest(tmp_path / "classifiers" / "none-s0" / "checkpoints", "a")
    manifest(tmp_path / "gan" / "checkpoints", "g1")
    key = _transfer_key(cfg, tmp_path, "none-s0")
    assert _transfer_key(cfg, tmp_path, "none-s0") == key
    manifest(tmp_path / "gan" / "checkpoints", "g2")
    assert _transfer_key(cfg, tmp_path, "none-s0") != key
    manifest(tmp_path / "gan" / "checkpoints", "g1")
    more = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, uae_samples=21))
    longer = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, uae_steps=6))
    assert len({key, _transfer_key(more, tmp_path, "none-s0"),
                _transfer_key(longer, tmp_path, "none-s0")}) == 3  # fmt: skip
    manifest(tmp_path / "classifiers" / "none-s0" / "checkpoints", "b")
    assert _transfer_key(cfg, tmp_path, "none-s0") != key

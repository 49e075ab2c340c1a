"""Kill-and-resume: SIGKILL a training run at seeded points (many inside checkpoint writes),
resume it until it finishes, and compare with an uninterrupted run.

Each harness run forks its attempts from one driver process (``driver.py``): a reference run,
then attempts killed at ``ADVAUG_KILL_POINTS`` points (defaults in ``helpers.DEFAULT_KILLS``),
then a last attempt to the end. Asserted: the final weights and the last full checkpoint
(optimiser, EMA, RNG, loader position) are bit-identical to the reference; after every kill each
checkpoint with a manifest is whole and loads; metrics.jsonl logs every step once, in order; no
temporary file is left at the end; a study does not redo finished stages and its evaluation
JSONs equal the reference's.
"""

from __future__ import annotations

import json

import pytest

from advaug.runtime.checkpoint import load_file
from tests.hooks import Interrupted, stop_after
from tests.reliability import faults
from tests.reliability.helpers import (
    assert_states_equal,
    kill_points,
    newest_step_file,
    records,
    run_driver,
    steps_by_split,
    temp_files,
)

CLASSIFIER = [
    "classifier.epochs=3",  # 9 steps per epoch; checkpoints every 4 steps and at epoch ends
    "runtime.ckpt_every_min=1000",
    "classifier.augment.technique=fgsm",  # a technique with its own RNG
    "classifier.augment.fgsm.eps_min=0.01",
    "classifier.optim.ema_decay=0.9",
    "data.val_size=100",  # a validation metric, so retention also keeps the best checkpoint
]
GAN = [
    "gan.width=8",
    "gan.z_dim=8",
    "gan.batch_size=16",
    "gan.n_critic=1",
    "gan.iters=8",
    "gan.ckpt_every=2",
    "gan.sample_every=1000",
    "gan.eval_every=4",
    "gan.standing_batches=1",
]
STUDY = [  # no GAN stage: reference, two classifiers, evaluation, report
    "techniques=[none,fgsm]",
    "evaluate.gan_samples_per_class=0",
    "evaluate.uae_samples=0",
    "runtime.ckpt_every_min=1000",
]


def _check_report(report: dict, planned: int) -> None:
    assert not report["errors"], "\n".join(report["errors"])
    assert not report["problems"], "\n".join(report["problems"])
    assert report["finished"]
    assert report["landed"] == planned, report["kills"]


def _harness(tmp_path, kind: str, overrides: list[str], seed: int, **extra) -> dict:
    n = kill_points(kind)
    spec = {"kind": kind, "overrides": overrides, "seed": seed, "kills": n, **extra}
    report = run_driver(spec, tmp_path, timeout=120 + 30 * n)
    _check_report(report, n)
    assert not temp_files(tmp_path / "cut"), temp_files(tmp_path / "cut")
    return report


def test_classifier_survives_sigkill_at_seeded_points(tmp_path):
    report = _harness(tmp_path, "classifier", CLASSIFIER, seed=1, ckpt_every_steps=4)
    assert report["in_write"] >= 1
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert_states_equal(
        load_file(ref / "checkpoints" / "final.pt"), load_file(cut / "checkpoints" / "final.pt")
    )
    # the last full checkpoint: model, optimiser, EMA, technique RNG, loader, global RNG
    a, b = newest_step_file(ref / "checkpoints"), newest_step_file(cut / "checkpoints")
    assert a.name == b.name == "step-00000027.pt"
    assert_states_equal(load_file(a), load_file(b))
    steps = steps_by_split(cut)
    assert steps == steps_by_split(ref)
    assert steps == {"setup": [0], "train": [9, 18, 27], "val": [9, 18, 27], "test": [27]}
    epochs = [r["epoch"] for r in records(cut) if r["split"] == "train"]
    assert epochs == [1, 2, 3]
    ref_result = json.loads((ref / "result.json").read_text())
    cut_result = json.loads((cut / "result.json").read_text())
    assert cut_result["test_top1"] == ref_result["test_top1"]


def test_gan_survives_sigkill_at_seeded_points(tmp_path):
    report = _harness(tmp_path, "gan", GAN, seed=2)
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert_states_equal(
        load_file(ref / "checkpoints" / "final.pt"), load_file(cut / "checkpoints" / "final.pt")
    )
    a, b = newest_step_file(ref / "checkpoints"), newest_step_file(cut / "checkpoints")
    assert a.name == b.name == "step-00000008.pt"
    assert_states_equal(load_file(a), load_file(b))
    steps = steps_by_split(cut)
    assert steps == steps_by_split(ref)
    assert steps["train"] == list(range(1, 9))  # log_every is 1 at 8 iterations
    assert steps["test"] == [4, 8]
    # the GAN's per-interval loss means are checkpoint-aligned: values match too
    ref_train = [r for r in records(ref) if r["split"] == "train"]
    cut_train = [r for r in records(cut) if r["split"] == "train"]
    for r, c in zip(ref_train, cut_train):
        assert {k: v for k, v in r.items() if k != "iters_per_s"} == {
            k: v for k, v in c.items() if k != "iters_per_s"
        }
    assert report["reference"]["events"] > 0


def _eval_values(path) -> dict:
    res = json.loads(path.read_text())
    res.pop("cost")  # wall-clock seconds
    res.pop("checkpoint")  # an absolute path
    return res


def test_study_survives_sigkill_and_does_not_redo_finished_stages(tmp_path):
    report = _harness(tmp_path, "study", STUDY, seed=3)
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    # a stage (or evaluation) finished before some kill was never redone
    final = report["final_snapshot"]
    assert report["snapshots"], "no stage finished between kills; raise the kill points"
    for key, first_seen in report["snapshots"].items():
        assert final[key] == first_seen, f"{key} was redone after a kill"
    names = sorted(p.name for p in (ref / "eval").glob("*.json"))
    assert names == ["fgsm-s0.json", "none-s0.json"]
    for name in names:
        assert _eval_values(cut / "eval" / name) == _eval_values(ref / "eval" / name), name
    for stage in ("reference", "classifiers/none-s0", "classifiers/fgsm-s0"):
        assert_states_equal(
            load_file(ref / stage / "checkpoints" / "final.pt"),
            load_file(cut / stage / "checkpoints" / "final.pt"),
        )
        assert steps_by_split(cut / stage) == steps_by_split(ref / stage)
    assert json.loads((cut / "study.json").read_text())["finished"] is True
    assert (cut / "report" / "index.html").is_file()


def test_classifier_resumes_from_a_checkpoint_on_the_last_batch_of_an_epoch(tmp_path):
    from advaug.config import build_config
    from advaug.train.classifier import ClassifierJob, train_classifier

    cfg = build_config("smoke", ["runtime.ckpt_every_min=1000"])
    job = ClassifierJob(data=cfg.data, runtime=cfg.runtime, classifier=cfg.classifier, seed=0)
    with pytest.raises(Interrupted):  # 9 steps per epoch: the checkpoint at 9 is mid-loop
        train_classifier(job, tmp_path / "r", on_step=stop_after(9))
    train_classifier(job, tmp_path / "r")
    assert steps_by_split(tmp_path / "r")["train"] == [9, 18]


def test_classifier_train_record_of_a_resumed_epoch_matches_the_uninterrupted_one(tmp_path):
    from advaug.config import build_config
    from advaug.train.classifier import ClassifierJob, train_classifier

    cfg = build_config("smoke", ["runtime.ckpt_every_min=1000"])
    job = ClassifierJob(data=cfg.data, runtime=cfg.runtime, classifier=cfg.classifier, seed=0)
    train_classifier(job, tmp_path / "full")
    with pytest.raises(Interrupted):
        train_classifier(job, tmp_path / "cut", on_step=stop_after(5))
    train_classifier(job, tmp_path / "cut")
    full = [r for r in records(tmp_path / "full") if r["split"] == "train"]
    cut = [r for r in records(tmp_path / "cut") if r["split"] == "train"]
    assert [r["step"] for r in cut] == [r["step"] for r in full]  # this part holds
    assert cut == full


class _Killed(BaseException):
    """Stands in for SIGKILL in-process (no except clause of the library catches it)."""


@pytest.mark.parametrize("event", ["write-partial", "write-synced", "write-renamed"])
def test_a_kill_inside_the_result_write_logs_the_test_record_once(tmp_path, monkeypatch, event):
    """The test record is logged after the last checkpoint with that checkpoint's step; a resume
    from it must still drop the record (found by the harness: it was logged twice)."""
    from advaug.config import build_config
    from advaug.train.classifier import ClassifierJob, train_classifier

    cfg = build_config("smoke", ["runtime.ckpt_every_min=1000"])
    job = ClassifierJob(data=cfg.data, runtime=cfg.runtime, classifier=cfg.classifier, seed=0)

    def kill(ev, path):
        if ev == event and path.name == "result.json":
            raise _Killed

    with monkeypatch.context() as patch, pytest.raises(_Killed):
        faults.install(patch, kill)
        train_classifier(job, tmp_path / "r")
    assert steps_by_split(tmp_path / "r")["test"] == [18]
    if event != "write-renamed":
        train_classifier(job, tmp_path / "r")  # resumes from step 18 and redoes the test
    assert steps_by_split(tmp_path / "r") == {
        "setup": [0],
        "train": [9, 18],
        "test": [18],
    }

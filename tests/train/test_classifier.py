from __future__ import annotations

import dataclasses

import pytest
import torch

from advaug.config import build_config
from advaug.data.splits import load_splits
from advaug.errors import CheckpointError, ConfigError
from advaug.loading import load_classifier
from advaug.models import list_models, register_model
from advaug.runtime.checkpoint import load_file
from advaug.train.classifier import ClassifierJob, train_classifier
from tests.hooks import Interrupted, stop_after


def _job(technique: str = "none", **over) -> ClassifierJob:
    cfg = build_config("smoke", [f"classifier.augment.technique={technique}", *over.pop("o", [])])
    return ClassifierJob(
        data=cfg.data, runtime=cfg.runtime, classifier=cfg.classifier, seed=0, **over
    )


@pytest.fixture(scope="module")
def splits():
    return load_splits(build_config("smoke").data)


def _weights(folder):
    return load_file(folder / "checkpoints" / "final.pt")["model"]


@pytest.mark.parametrize("technique", ["none", "fgsm", "pgd"])
def test_interrupted_then_resumed_run_is_bit_identical(tmp_path, splits, technique):
    job = _job(technique, ckpt_every_steps=4)
    full = train_classifier(job, tmp_path / "full", splits=splits)
    with pytest.raises(Interrupted):
        train_classifier(job, tmp_path / "cut", splits=splits, on_step=stop_after(6))  # epoch 1
    with pytest.raises(Interrupted):
        train_classifier(
            job, tmp_path / "cut", splits=splits, on_step=stop_after(13)
        )  # mid-epoch 2
    resumed = train_classifier(job, tmp_path / "cut", splits=splits)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed["test_top1"] == full["test_top1"]
    # metrics.jsonl: every epoch logged exactly once
    import json

    recs = [
        json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    ]
    epochs = [r["epoch"] for r in recs if r["split"] == "train"]
    assert epochs == [1, 2]


class _DropoutNet(torch.nn.Module):
    """Conv, dropout 0.5 and a linear head: the global random stream decides every mask, so a
    resume that does not restore it diverges at the first step."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.drop = torch.nn.Dropout(0.5)
        self.fc = torch.nn.Linear(8 * 16 * 16, num_classes)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.conv(x * 2 - 1))).flatten(1))


if "test-dropout-net" not in list_models():
    register_model("test-dropout-net")(_DropoutNet)


def test_resume_with_dropout_restores_the_random_stream(tmp_path, splits):
    job = _job("none", o=["classifier.model.name=test-dropout-net"])
    train_classifier(job, tmp_path / "full", splits=splits)
    with pytest.raises(Interrupted):
        train_classifier(job, tmp_path / "cut", splits=splits, on_step=stop_after(5))
    torch.manual_seed(12345)  # another process's stream: only the checkpoint's may count
    train_classifier(job, tmp_path / "cut", splits=splits)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ema_and_label_smoothing_resume_too(tmp_path, splits):
    job = _job("none", o=["classifier.optim.ema_decay=0.9", "classifier.optim.label_smoothing=0.1"])
    train_classifier(job, tmp_path / "full", splits=splits)
    with pytest.raises(Interrupted):
        train_classifier(job, tmp_path / "cut", splits=splits, on_step=stop_after(5))
    train_classifier(job, tmp_path / "cut", splits=splits)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_finished_run_is_not_redone(tmp_path, splits):
    job = _job()
    first = train_classifier(job, tmp_path / "r", splits=splits)
    mtime = (tmp_path / "r" / "result.json").stat().st_mtime_ns
    again = train_classifier(job, tmp_path / "r", splits=splits)
    assert again["test_top1"] == first["test_top1"]
    assert (tmp_path / "r" / "result.json").stat().st_mtime_ns == mtime


def test_a_run_folder_with_another_config_is_refused(tmp_path, splits):
    train_classifier(_job(), tmp_path / "r", splits=splits)
    other = _job(o=["classifier.epochs=1"])
    with pytest.raises(ConfigError, match="different config"):
        train_classifier(other, tmp_path / "r", splits=splits)


def test_learns_digits_far_above_chance(tmp_path):
    cfg = build_config(
        "smoke",
        [
            "data.train_limit=0",
            "data.test_limit=0",
            "classifier.epochs=8",
            "classifier.optim.lr=0.1",
        ],
    )
    job = ClassifierJob(data=cfg.data, runtime=cfg.runtime, classifier=cfg.classifier, seed=0)
    res = train_classifier(job, tmp_path / "r")
    assert res["test_top1"] > 0.5  # chance is 0.1


def test_batch_larger_than_data_is_a_config_error(tmp_path, splits):
    job = _job(o=["classifier.batch_size=5000"])
    with pytest.raises(ConfigError, match="batch_size"):
        train_classifier(job, tmp_path / "r", splits=splits)
    assert not (tmp_path / "r" / "result.json").exists()


def test_gan_technique_without_gan_is_a_config_error(tmp_path, splits):
    with pytest.raises(ConfigError, match="--gan"):
        train_classifier(_job("gan"), tmp_path / "r", splits=splits)


def test_load_classifier_round_trip_and_mismatch(tmp_path, splits):
    train_classifier(_job(), tmp_path / "r", splits=splits)
    model = load_classifier(tmp_path / "r")
    assert model.num_classes == 10 and not model.training
    # a checkpoint whose weights do not fit the recorded architecture
    state = load_file(tmp_path / "r" / "checkpoints" / "final.pt")
    state["arch_kwargs"] = {**state["arch_kwargs"], "width": 16}
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_classifier(bad)


def test_job_is_a_plain_dataclass():
    assert dataclasses.is_dataclass(ClassifierJob)


def test_none_trains_on_the_whole_batch(tmp_path, splits):
    """prop belongs to the augmenting techniques: the baseline must not drop half its batch."""
    import json

    job = _job("none", o=["classifier.augment.prop=0.5", "classifier.epochs=1"])
    train_classifier(job, tmp_path / "r", splits=splits)
    rec = next(
        json.loads(line)
        for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "train"
    )
    assert rec["aug_share"] == 0.0
    assert rec["clean_examples"] == 9 * 32  # 300 images, batch 32: every example of 9 batches


@pytest.mark.parametrize("stop", [9, 18])  # mid-run, and at the very last step
def test_training_seconds_add_up_over_a_resume(tmp_path, splits, stop):
    """train_seconds counts every process of a run, not only the last one (the cost ratios of
    the report divide them). The first process is made slow (a sleep per step, so the bound
    holds on any machine); the resumed one then finishes the run."""
    import json
    import time

    slow = 0.1

    def slow_then_stop(state, save):
        time.sleep(slow)
        stop_after(stop)(state, save)

    with pytest.raises(Interrupted):
        train_classifier(_job(), tmp_path / "r", splits=splits, on_step=slow_then_stop)
    manifest = json.loads((tmp_path / "r" / "checkpoints" / f"step-{stop:08d}.json").read_text())
    assert manifest["train_seconds"] >= stop * slow
    result = train_classifier(_job(), tmp_path / "r", splits=splits)
    assert result["train_seconds"] >= manifest["train_seconds"]

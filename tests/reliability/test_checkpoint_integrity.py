"""Checkpoint integrity: manifests, detection of corrupted files with fallback to the previous
good checkpoint (in a real run that still ends bit-identical), architecture mismatches, and
``weights_only=True`` everywhere."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import advaug
from advaug.config import build_config, config_hash
from advaug.data.splits import load_splits
from advaug.errors import CheckpointError
from advaug.loading import load_classifier, load_gan
from advaug.runtime.checkpoint import CheckpointManager, check_arch, load_file
from advaug.train.classifier import ClassifierJob, train_classifier
from advaug.train.gan import GANJob, train_gan
from tests.hooks import Interrupted, stop_after
from tests.reliability.helpers import assert_states_equal, records, steps_by_split
from tests.reliability.test_kill_resume import GAN

SRC = Path(advaug.__file__).resolve().parent


def _job(*over: str, ckpt_every_steps: int = 4) -> ClassifierJob:
    cfg = build_config("smoke", ["runtime.ckpt_every_min=1000", *over])
    return ClassifierJob(
        data=cfg.data,
        runtime=cfg.runtime,
        classifier=cfg.classifier,
        seed=0,
        ckpt_every_steps=ckpt_every_steps,
    )


@pytest.fixture(scope="module")
def splits():
    return load_splits(build_config("smoke").data)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, splits):
    """An uninterrupted classifier run (18 steps, checkpoints at 4, 8, 9, 12, 16, 18)."""
    out = tmp_path_factory.mktemp("full") / "run"
    train_classifier(_job(), out, splits=splits)
    return out


def _final(folder: Path) -> dict:
    return load_file(folder / "checkpoints" / "final.pt")


def _interrupted(tmp_path: Path, splits, stop_at: int = 14) -> Path:
    out = tmp_path / "cut"
    with pytest.raises(Interrupted):
        train_classifier(_job(), out, splits=splits, on_step=stop_after(stop_at))
    return out


# ---------------------------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------------------------


def test_every_checkpoint_has_a_complete_manifest(full_run):
    job = _job()
    folder = full_run / "checkpoints"
    manifests = sorted(folder.glob("step-*.json"))
    assert [p.name for p in manifests] == ["step-00000016.json", "step-00000018.json"]  # keep 2
    for p in manifests:
        m = json.loads(p.read_text())
        pt = folder / m["file"]
        data = pt.read_bytes()
        assert m["sha256"] == hashlib.sha256(data).hexdigest()
        assert m["bytes"] == len(data)
        assert m["step"] == int(re.search(r"(\d+)", p.name).group(1))
        assert m["config_hash"] == config_hash(job) and m["kind"] == "classifier"
        assert m["versions"]["torch"] == torch.__version__
        assert m["versions"]["advaug"] == advaug.__version__
        assert re.fullmatch(r"\d+\.\d+\.\d+\S*", m["versions"]["python"])
    final = json.loads((folder / "final.json").read_text())
    assert final["sha256"] == hashlib.sha256((folder / "final.pt").read_bytes()).hexdigest()
    assert final["final"] is True and "torch" in final["versions"]


# ---------------------------------------------------------------------------------------------
# Corruption: detect, say so, fall back, end bit-identical
# ---------------------------------------------------------------------------------------------


def _flip_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _delete(p: Path) -> None:
    p.unlink()


def _garbage_manifest(p: Path) -> None:
    p.with_suffix(".json").write_text('{"file": "step-000')


def _wrong_sha_manifest(p: Path) -> None:
    m = json.loads(p.with_suffix(".json").read_text())
    m["sha256"] = "0" * 64
    p.with_suffix(".json").write_text(json.dumps(m))


@pytest.mark.parametrize(
    "corrupt, says",
    [
        (_flip_byte, "corrupted or truncated"),
        (_truncate, "corrupted or truncated"),
        (_delete, "does not exist"),
        (_wrong_sha_manifest, "corrupted or truncated"),
        (_garbage_manifest, "not a valid checkpoint manifest"),
    ],
    ids=["flipped-byte", "truncated", "deleted", "wrong-sha", "garbage-manifest"],
)
def test_corrupt_newest_checkpoint_falls_back_and_ends_bit_identical(
    tmp_path, splits, full_run, advaug_logs, corrupt, says
):
    cut = _interrupted(tmp_path, splits, stop_at=14)  # checkpoints 12 and 14 are kept
    newest = cut / "checkpoints" / "step-00000014.pt"
    corrupt(newest)
    advaug_logs.clear()
    train_classifier(_job(), cut, splits=splits)
    text = advaug_logs.text
    assert says in text and "step-00000014" in text
    assert re.search(r"resumed \S+ at step 12 ", text), text
    assert_states_equal(_final(full_run), _final(cut))
    assert steps_by_split(cut) == steps_by_split(full_run)


def test_every_checkpoint_corrupt_starts_over_without_duplicate_metrics(
    tmp_path, splits, full_run, advaug_logs
):
    cut = _interrupted(tmp_path, splits, stop_at=14)
    for p in (cut / "checkpoints").glob("step-*.pt"):
        _truncate(p)
    advaug_logs.clear()
    train_classifier(_job(), cut, splits=splits)
    assert advaug_logs.text.count("falling back to the previous checkpoint") == 2
    assert "starting over" in advaug_logs.text
    assert_states_equal(_final(full_run), _final(cut))
    assert steps_by_split(cut) == {"setup": [0], "train": [9, 18], "test": [18]}


def test_gan_truncated_checkpoint_falls_back_and_ends_bit_identical(tmp_path, advaug_logs):
    cfg = build_config("smoke", GAN)
    job = GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan, seed=0)
    splits = load_splits(cfg.data)
    train_gan(job, tmp_path / "full", splits=splits)
    with pytest.raises(Interrupted):
        train_gan(job, tmp_path / "cut", splits=splits, on_step=stop_after(6))
    _truncate(tmp_path / "cut" / "checkpoints" / "step-00000006.pt")
    advaug_logs.clear()
    train_gan(job, tmp_path / "cut", splits=splits)
    assert "step-00000006.pt is corrupted or truncated" in advaug_logs.text
    assert "resumed GAN" in advaug_logs.text and "at iteration 4" in advaug_logs.text
    assert_states_equal(_final(tmp_path / "full"), _final(tmp_path / "cut"))
    assert [r["step"] for r in records(tmp_path / "cut") if r["split"] == "train"] == list(
        range(1, 9)
    )


def test_final_checkpoint_corruption_is_an_error_not_a_fallback(tmp_path, full_run):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    _flip_byte(run / "checkpoints" / "final.pt")
    with pytest.raises(CheckpointError, match="corrupted or truncated") as e:
        load_classifier(run)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------
# Architecture and class-count mismatches
# ---------------------------------------------------------------------------------------------


def test_check_arch_names_the_mismatch_in_one_line():
    saved = {"arch_name": "tiny-cnn", "arch_kwargs": {"num_classes": 10, "width": 16}}
    with pytest.raises(CheckpointError) as e:
        check_arch(saved, "densenet-bc-40", {"num_classes": 10})
    assert "'tiny-cnn', not 'densenet-bc-40'" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(CheckpointError) as e:
        check_arch(saved, "tiny-cnn", {"num_classes": 100, "width": 16})
    assert "num_classes=10 but the model has num_classes=100" in str(e.value)
    with pytest.raises(CheckpointError, match="width=16 but the model has width=32"):
        check_arch(saved, "tiny-cnn", {"num_classes": 10, "width": 32})
    check_arch(saved, "tiny-cnn", {"num_classes": 10, "width": 16})  # a match passes


def test_check_arch_reads_a_checkpoint_without_the_shape_options_as_3_channel_32px():
    """Checkpoints written before in_channels / channels / image_size existed still load into
    the 3-channel models they were made for, and never into a 1-channel one."""
    saved = {"arch_name": "tiny-cnn", "arch_kwargs": {"num_classes": 10, "width": 16}}
    check_arch(saved, "tiny-cnn", {"num_classes": 10, "width": 16, "in_channels": 3})
    with pytest.raises(CheckpointError, match="in_channels=3 but the model has in_channels=1"):
        check_arch(saved, "tiny-cnn", {"num_classes": 10, "width": 16, "in_channels": 1})
    old_g = {"arch_name": "acgan-generator", "arch_kwargs": {"num_classes": 10}}
    check_arch(old_g, "acgan-generator", {"num_classes": 10, "channels": 3, "image_size": 32})
    with pytest.raises(CheckpointError, match="image_size=32 but the model has image_size=28"):
        check_arch(old_g, "acgan-generator", {"num_classes": 10, "channels": 3, "image_size": 28})


def test_resuming_checkpoints_of_another_architecture_fails_in_one_line(tmp_path, splits):
    cut = _interrupted(tmp_path, splits, stop_at=6)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copytree(cut / "checkpoints", other / "checkpoints")  # no config.yaml: a fresh run
    job = _job("classifier.model.kwargs={width: 4}")
    with pytest.raises(CheckpointError) as e:
        train_classifier(job, other, splits=splits)
    msg = str(e.value)
    assert "width=8 but the model has width=4" in msg and "\n" not in msg


def test_classifier_checkpoint_whose_weights_do_not_fit_fails_in_one_line(tmp_path, full_run):
    state = _final(full_run)
    state["num_classes"] = 100  # the weights are for 10 classes
    state["arch_kwargs"] = {**state["arch_kwargs"], "num_classes": 100}
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as e:
        load_classifier(tmp_path / "bad.pt")
    assert "does not fit" in str(e.value) and "\n" not in str(e.value)


def test_gan_checkpoint_given_as_a_classifier_is_refused(tmp_path):
    state = {"generator": {}, "g_arch": {"arch_name": "g", "arch_kwargs": {}}}
    torch.save(state, tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match="not an advaug classifier checkpoint"):
        load_classifier(tmp_path / "g.pt")
    torch.save({"model": {}, "arch_name": "tiny-cnn"}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="not an advaug GAN checkpoint"):
        load_gan(tmp_path / "c.pt")


# ---------------------------------------------------------------------------------------------
# weights_only everywhere
# ---------------------------------------------------------------------------------------------


def test_every_torch_load_in_the_package_uses_weights_only_true():
    calls = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            depth, i = 1, m.end()
            while depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            call = text[m.start() : i]
            calls.append(call)
            assert "weights_only=True" in call, f"{path}: {call}"
    assert calls, "no torch.load call found: the scan is broken"


def test_loaders_pass_weights_only_true_at_run_time(tmp_path, full_run, monkeypatch):
    seen = []
    real = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_classifier(full_run)
    load_file(full_run / "checkpoints" / "final.pt")
    assert CheckpointManager(full_run / "checkpoints").load_latest() is not None
    assert seen and all(w is True for w in seen), seen

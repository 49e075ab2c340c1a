"""``data.fallback``: a study's second-choice dataset, taken only when the first one's files are
absent (or cannot be downloaded), never in place of a damaged copy; the report names it."""

from __future__ import annotations

import dataclasses
import urllib.error

import pytest

import advaug.data.mnist as mnist
from advaug.config import DataConfig, StudyConfig, validate
from advaug.data.datasets import Fallback, resolve_fallback
from advaug.data.mnist import TRAIN_IMAGES
from advaug.errors import ConfigError, DataError, DataMissingError
from advaug.report.tables import dataset_label
from advaug.study import plan_study, resolve_study_data

from .mnist_synth import write_gz, write_mnist


def _cfg(root, **kw) -> DataConfig:
    return DataConfig(name="mnist", root=str(root), fallback="digits", check_sizes=False, **kw)


def test_absent_files_fall_back_and_say_why(tmp_path):
    used, fb = resolve_fallback(_cfg(tmp_path / "nowhere"))
    assert used.name == "digits" and used.fallback is None and used.root is None
    assert fb.wanted == "mnist" and fb.used == "digits"
    # the reason is the loader's own one-line error, naming the folder it looked in
    assert str((tmp_path / "nowhere" / "mnist").resolve()) in fb.reason and "\n" not in fb.reason
    assert fb.describe().startswith("digits, the fallback: mnist was not available (MNIST")


def test_present_files_are_used_and_the_fallback_is_cleared(tmp_path):
    write_mnist(tmp_path / "mnist")
    cfg = _cfg(tmp_path, verify=False)
    used, fb = resolve_fallback(cfg)
    assert fb is None
    assert used == dataclasses.replace(cfg, fallback=None)


def test_no_fallback_is_the_config_itself(tmp_path):
    cfg = DataConfig(name="mnist", root=str(tmp_path))
    assert resolve_fallback(cfg) == (cfg, None)


def test_a_damaged_copy_is_an_error_not_a_fallback(tmp_path):
    folder = write_mnist(tmp_path / "mnist")
    write_gz(folder / TRAIN_IMAGES, b"\x00\x00\x08\x01" + bytes(12))  # labels' magic on images
    with pytest.raises(DataError) as info:
        resolve_fallback(_cfg(tmp_path, verify=False))
    assert not isinstance(info.value, DataMissingError)


def test_a_failed_download_falls_back_with_the_download_error(tmp_path, monkeypatch):
    def offline(url):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(mnist, "_default_opener", offline)
    used, fb = resolve_fallback(_cfg(tmp_path / "d", download=True))
    assert used.name == "digits"
    assert "could not download" in fb.reason and "Name or service not known" in fb.reason


def test_the_fallback_must_be_another_dataset():
    cfg = StudyConfig(data=DataConfig(name="mnist", fallback="mnist"))
    with pytest.raises(ConfigError, match=r"data\.fallback.*another"):
        validate(cfg)


def test_a_study_plans_on_the_dataset_it_will_run_on(tmp_path):
    cfg = StudyConfig(data=_cfg(tmp_path / "nowhere"))
    resolved, fb = resolve_study_data(cfg)
    assert resolved.data.name == "digits" and fb is not None
    plan = plan_study(cfg, tmp_path / "out", estimate=False)
    assert plan.cfg.data.name == "digits"
    assert all(s.job.data.name == "digits" for s in plan.stages if s.job is not None)


def test_the_report_names_the_fallback_and_its_reason():
    assert dataset_label({"dataset": "mnist"}) == "mnist"
    fb = Fallback("mnist", "digits", "MNIST not found: /x lacks a file")
    label = dataset_label({"dataset": "digits", "data_fallback": dataclasses.asdict(fb)})
    want = "digits (the fallback: mnist was not available: MNIST not found: /x lacks a file)"
    assert label == want


def test_the_fallback_is_no_part_of_a_stages_identity(tmp_path):
    """Stages trained before the field existed (or with it) keep their hash: the resolved
    config's dataset name is what identifies the data."""
    from advaug.config import config_hash

    plain = DataConfig(name="mnist")
    assert config_hash(dataclasses.replace(plain, fallback="digits")) == config_hash(plain)

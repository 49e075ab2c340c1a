"""``advaug export``: weights + config.json that ``load_classifier`` reads back exactly, refused
when tampered with, and usable as a plain nn.Module by other attack libraries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from advaug.cli import main
from advaug.config import build_config
from advaug.errors import CheckpointError, ConfigError
from advaug.loading import export_classifier, load_classifier
from advaug.train.classifier import ClassifierJob, train_classifier


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    cfg = build_config("smoke", ["classifier.epochs=1", "classifier.optim.ema_decay=0.9"])
    job = ClassifierJob(data=cfg.data, runtime=cfg.runtime, classifier=cfg.classifier, seed=0)
    out = tmp_path_factory.mktemp("export") / "run"
    train_classifier(job, out)
    return out


@pytest.fixture(scope="module")
def exported(run: Path) -> Path:
    assert main(["export", str(run)]) == 0
    return run / "export"


def _images(n: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_export_writes_weights_and_a_config(exported: Path, run: Path, capsys) -> None:
    assert sorted(p.name for p in exported.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((exported / "config.json").read_text())
    assert meta["format"] == "advaug-classifier" and meta["arch_name"] == "tiny-cnn"
    assert meta["num_classes"] == 10 and meta["classes"] == [str(k) for k in range(10)]
    assert meta["input"]["range"] == [0.0, 1.0] and meta["input"]["layout"] == "NCHW"
    assert meta["source"].endswith("final.pt")


def test_the_exported_model_equals_the_run_model(exported: Path, run: Path) -> None:
    a, b = load_classifier(run), load_classifier(exported)
    x = _images()
    assert torch.equal(a(x), b(x))
    assert b.classes == a.classes and not b.training
    assert torch.equal(load_classifier(exported / "model.safetensors")(x), a(x))


def test_export_of_an_export_and_the_api_name(exported: Path, tmp_path: Path) -> None:
    import advaug

    again = advaug.export(exported, tmp_path / "again")
    x = _images(4)
    assert torch.equal(load_classifier(again)(x), load_classifier(exported)(x))


def test_tampered_weights_are_refused(exported: Path, tmp_path: Path) -> None:
    copy = export_classifier(exported, tmp_path / "copy")
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the sha256") as info:
        load_classifier(copy)
    assert "\n" not in str(info.value)


def test_a_foreign_config_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="not an exported advaug classifier"):
        load_classifier(tmp_path)


def test_a_run_folder_with_its_own_config_json_still_loads_its_checkpoint(
    run: Path, exported: Path
) -> None:
    (run / "config.json").write_text("{}")  # e.g. a user's notes: not an export
    try:
        x = _images(2)
        assert torch.equal(load_classifier(run)(x), load_classifier(exported)(x))
    finally:
        (run / "config.json").unlink()


def test_unknown_format_is_a_one_line_usage_error(run: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError, match="unknown export format 'onnx'"):
        export_classifier(run, tmp_path / "x", format="onnx")
    assert main(["export", str(run), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'onnx'" in err


def test_reference_autoattack_code_attacks_the_exported_module(exported: Path) -> None:
    """Another tool's attack on the plain module: APGD-CE from Croce & Hein's code."""
    aa = pytest.importorskip("pyautoattack")
    from pyautoattack.autopgd_base import APGDAttack

    model = load_classifier(exported)
    x, y = _images(32), torch.arange(32) % 10
    eps = 8 / 255
    apgd = APGDAttack(model, n_iter=10, eps=eps, norm="Linf", seed=0, device="cpu")
    adv = apgd.perturb(x, y)
    assert aa.__version__ and (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        clean_ok = (model(x).argmax(1) == y).sum()
        adv_ok = (model(adv).argmax(1) == y).sum()
    assert adv_ok <= clean_ok


def test_torchattacks_attacks_the_exported_module(exported: Path) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    model = load_classifier(exported)
    x, y = _images(32), torch.arange(32) % 10
    adv = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=5)(x, y)
    assert (adv - x).abs().max() <= 8 / 255 + 1e-6

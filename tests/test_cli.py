"""The advaug command: help, version, listings, every subcommand on the smoke preset, and
one-line errors with the right exit codes."""

from __future__ import annotations

import json

import pytest

from advaug import __version__
from advaug.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("study", "train-gan", "train-classifier", "evaluate", "attack", "report"):
        assert cmd in out


def test_listings(capsys):
    code, out, _ = run(capsys, "presets")
    assert code == 0 and "demo" in out.split()
    code, out, _ = run(capsys, "models")
    assert code == 0 and "densenet-bc-100" in out.split()


TRAIN = ["train-classifier", "--preset", "smoke"]


@pytest.mark.parametrize(
    "argv, code, fragment",
    [
        ([*TRAIN, "classifier.augment.prop=2"], 2, "classifier.augment.prop"),
        (["train-classifier", "--preset", "nope"], 2, "unknown preset"),
        ([*TRAIN, "data.name=imagenet"], 2, "imagenet"),
        ([*TRAIN, "classifier.model.name=resnet9000"], 2, "resnet9000"),
        ([*TRAIN, "--technique", "mixup"], 2, "mixup"),
        ([*TRAIN, "classifier.batch_size=100000"], 2, "batch_size"),
        ([*TRAIN, "--technique", "gan"], 2, "--gan"),
        (["frobnicate"], 2, "invalid choice"),
        (["report", "/nonexistent/study"], 2, "/nonexistent/study"),
        (["evaluate", "/nonexistent/run", "--preset", "smoke"], 1, "/nonexistent/run"),
    ],
)
def test_errors_are_one_line_with_exit_codes(capsys, tmp_path, argv, code, fragment):
    if argv[0] == "train-classifier":
        argv = [*argv, "--out", str(tmp_path / "r")]
    got, _, err = run(capsys, "--quiet", *argv)
    assert got == code, err
    lines = [line for line in err.strip().splitlines() if line.startswith("advaug")]
    assert len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "r" / "result.json").exists()


def test_debug_shows_the_traceback(capsys):
    from advaug.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "train-classifier", "--preset", "smoke", "classifier.epochs=-1"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    assert main(["--quiet", "train-gan", "--preset", "smoke", "--out", str(root / "gan")]) == 0
    args = ["--quiet", "train-classifier", "--preset", "smoke", "--out", str(root / "clf")]
    assert main(args) == 0
    return root


def test_evaluate_prints_metrics_with_protocols(capsys, trained):
    capsys.readouterr()
    code, out, _ = run(
        capsys,
        "--quiet",
        "evaluate",
        str(trained / "clf"),
        "--preset",
        "smoke",
        "--gan",
        str(trained / "gan"),
        "--out",
        str(trained / "ev"),
    )
    assert code == 0
    assert "clean_top1" in out and "digits test split" in out and "uae_success" in out
    res = json.loads((trained / "ev" / "evaluation.json").read_text())
    assert res["metrics"]["gan_acc"]["protocol"].startswith("clean AC-GAN samples")


def test_attack_unrestricted_writes_dataset_grid_and_summary(capsys, trained):
    capsys.readouterr()
    code, out, err = run(
        capsys,
        "--quiet",
        "attack",
        "unrestricted",
        str(trained / "clf"),
        "--gan",
        str(trained / "gan"),
        "-n",
        "20",
        "--steps",
        "5",
        "--reference",
        str(trained / "clf"),
        "--out",
        str(trained / "atk"),
    )
    assert code == 0, err
    assert "success over 20 sources" in out and "protocol:" in out
    summary = json.loads((trained / "atk" / "summary.json").read_text())
    assert summary["n"] == 20 and 0 <= summary["success_rate"] <= 1
    assert "legitimacy" in summary
    from advaug.attacks import UnrestrictedResult

    res = UnrestrictedResult.load(trained / "atk" / "uae.safetensors")
    assert len(res) == 20 and res.images.shape == (20, 3, 32, 32)


def test_evaluate_refuses_a_checkpoint_for_another_class_count(capsys, trained, tmp_path):
    import torch

    from advaug.models import build_model
    from advaug.runtime.checkpoint import save_final

    model = build_model("tiny-cnn", 7)
    state = {
        "model": model.state_dict(),
        "arch_name": model.arch_name,
        "arch_kwargs": model.arch_kwargs,
        "num_classes": 7,
        "classes": [str(i) for i in range(7)],
    }
    (tmp_path / "c" / "checkpoints").mkdir(parents=True)
    save_final(tmp_path / "c" / "checkpoints" / "final.pt", state)
    assert torch.load(tmp_path / "c" / "checkpoints" / "final.pt", weights_only=True)
    code, _, err = run(capsys, "--quiet", "evaluate", str(tmp_path / "c"), "--preset", "smoke")
    assert code == 1 and "7 classes" in err and len(err.strip().splitlines()) == 1

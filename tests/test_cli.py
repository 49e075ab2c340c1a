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
    assert "attack success (codes f classified correctly at z⁰):" in out
    assert "success over all 20 codes" in out and "protocol:" in out
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


# ---------------------------------------------------------------------------------------------
# Where the flags go, presets, --print-config and --config
# ---------------------------------------------------------------------------------------------


def test_quiet_and_debug_work_after_the_command_too(capsys):
    from advaug import log
    from advaug.errors import ConfigError

    log.set_progress(True)
    code, _, _ = run(capsys, "models", "--quiet")
    assert code == 0 and log._state["progress"] is False
    with pytest.raises(ConfigError):  # --debug after the command: the traceback, not one line
        main(["train-classifier", "--preset", "smoke", "classifier.epochs=-1", "--debug"])
    log.set_progress(True)


def test_presets_say_what_each_is_for(capsys):
    code, out, _ = run(capsys, "presets")
    assert code == 0
    smoke = out[out.index("smoke") :]
    assert "seconds on a CPU" in smoke and "digits; tiny-cnn x 2 epochs" in smoke


@pytest.mark.parametrize("command", [["study"], ["train-gan"], ["train-classifier"]])
def test_print_config_round_trips_through_config(capsys, tmp_path, command):
    code, printed, _ = run(
        capsys, *command, "--preset", "smoke", "--print-config", "classifier.optim.lr=0.02"
    )
    assert code == 0 and "seed: 0" in printed
    (tmp_path / "c.yaml").write_text(printed)
    code, again, _ = run(capsys, *command, "--config", str(tmp_path / "c.yaml"), "--print-config")
    assert code == 0 and again == printed
    code, _, err = run(capsys, *command, "--config", str(tmp_path / "c.yaml"), "--preset", "demo")
    assert code == 2 and "not both" in err


def test_a_runs_config_yaml_can_be_fed_back(capsys, trained):
    """A classifier run's config.yaml (its job: ckpt_every_steps, gan, gan_sha256) is a config."""
    result = trained / "clf" / "result.json"
    stamp = result.stat().st_mtime_ns
    code, out, err = run(
        capsys,
        "--quiet",
        "train-classifier",
        "--config",
        str(trained / "clf" / "config.yaml"),
        "--out",
        str(trained / "clf"),
    )
    assert code == 0, err
    assert json.loads(out)["test_top1"] == json.loads(result.read_text())["test_top1"]
    assert result.stat().st_mtime_ns == stamp  # the same run: finished, nothing redone


def test_a_changed_config_refusal_names_the_keys(capsys, trained):
    code, _, err = run(
        capsys,
        "--quiet",
        "train-classifier",
        "--preset",
        "smoke",
        "--out",
        str(trained / "clf"),
        "classifier.optim.lr=0.01",
        "seeds=[3]",
    )
    assert code == 2
    assert "classifier.optim.lr 0.05 -> 0.01" in err and "seed 0 -> 3" in err
    assert len(err.strip().splitlines()) == 1


def test_a_corrupt_run_config_is_named_not_called_different(capsys, trained, tmp_path):
    import shutil

    run_dir = tmp_path / "clf"
    shutil.copytree(trained / "clf", run_dir)
    (run_dir / "config.yaml").write_text("data: {name: [digits\n")
    args = ["--quiet", "train-classifier", "--preset", "smoke", "--out", str(run_dir)]
    code, _, err = run(capsys, *args)  # the checkpoints show it was this config: rewritten
    assert code == 0, err
    assert "classifier:" in (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text("data: {name: [digits\n")
    code, _, err = run(capsys, *args, "classifier.optim.lr=0.01")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(run_dir / "config.yaml") in err and "not valid YAML" in err
    assert "different config" not in err and "delete" not in err


# ---------------------------------------------------------------------------------------------
# evaluate and attack check before they compute; GANs and references of another dataset
# ---------------------------------------------------------------------------------------------


def test_evaluate_uses_the_runs_own_config_without_a_preset(capsys, trained):
    code, out, err = run(capsys, "--quiet", "evaluate", str(trained / "clf"))
    assert code == 0, err
    assert "digits test split, 100 images" in out  # smoke's test_limit, not demo's 359
    assert str(trained / "clf" / "config.yaml") in err


def _foreign_gan(folder, classes):
    from advaug.models import build_gan
    from advaug.runtime.checkpoint import save_final

    g, d = build_gan("acgan", len(classes), width=8, z_dim=8)
    state = {
        "generator": g.state_dict(),
        "critic": d.state_dict(),
        "g_arch": {"arch_name": g.arch_name, "arch_kwargs": dict(g.arch_kwargs)},
        "d_arch": {"arch_name": d.arch_name, "arch_kwargs": dict(d.arch_kwargs)},
        "num_classes": len(classes),
        "classes": classes,
    }
    (folder / "checkpoints").mkdir(parents=True)
    save_final(folder / "checkpoints" / "final.pt", state)
    return folder


def test_a_gan_of_another_dataset_is_refused_before_anything_runs(capsys, trained, tmp_path):
    seven = _foreign_gan(tmp_path / "gan7", [str(i) for i in range(7)])
    out = tmp_path / "clf"
    code, _, err = run(
        capsys,
        "--quiet",
        "train-classifier",
        "--preset",
        "smoke",
        "--technique",
        "gan",
        "--gan",
        str(seven),
        "--out",
        str(out),
    )
    assert code == 1 and "7 classes" in err and "IndexError" not in err
    assert not out.exists(), "a refused GAN must not leave a run folder"
    named = _foreign_gan(tmp_path / "gan-cifar", ["airplane", "automobile", *"abcdefgh"])
    code, _, err = run(
        capsys,
        "--quiet",
        "train-classifier",
        "--preset",
        "smoke",
        "--technique",
        "gan",
        "--gan",
        str(named),
        "--out",
        str(out),
    )
    assert code == 1 and "airplane" in err and not (out / "checkpoints").exists()
    code, _, err = run(
        capsys,
        "--quiet",
        "evaluate",
        str(trained / "clf"),
        "--preset",
        "smoke",
        "--gan",
        str(seven),
    )
    assert code == 1 and "7 classes" in err and len(err.strip().splitlines()) == 1


def _attack(capsys, trained, out, *extra):
    return run(
        capsys,
        "--quiet",
        "attack",
        "unrestricted",
        str(trained / "clf"),
        "--gan",
        str(trained / "gan"),
        "-n",
        "10",
        "--steps",
        "2",
        "--out",
        str(out),
        *extra,
    )


def test_attack_checks_its_inputs_before_it_computes(capsys, trained, tmp_path, monkeypatch):
    import advaug.evaluate.uae as uae

    def tripwire(*a, **k):
        raise AssertionError("the attack ran before its inputs were checked")

    monkeypatch.setattr(uae, "run_uae", tripwire)
    code, _, err = _attack(capsys, trained, tmp_path / "a", "--reference", str(tmp_path / "no"))
    assert code == 1 and "no checkpoint found" in err
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    code, _, err = _attack(capsys, trained, tmp_path / "file")
    assert code == 2 and "is a file" in err and "FileExistsError" not in err
    # a reference classifier of another dataset (same class count, other classes)
    from advaug.runtime.checkpoint import load_file, save_final

    state = load_file(trained / "clf" / "checkpoints" / "final.pt")
    state["classes"] = ["airplane", "automobile", *"abcdefgh"]
    (tmp_path / "ref" / "checkpoints").mkdir(parents=True)
    save_final(tmp_path / "ref" / "checkpoints" / "final.pt", state)
    code, _, err = _attack(capsys, trained, tmp_path / "b", "--reference", str(tmp_path / "ref"))
    assert code == 1 and "airplane" in err and "reference" in err


def test_attack_files_have_the_usual_mode(capsys, trained, tmp_path):
    code, _, err = _attack(capsys, trained, tmp_path / "m")
    assert code == 0, err
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "m").iterdir()}
    assert modes["uae.safetensors"] == modes["summary.json"] == modes["pairs.png"], modes

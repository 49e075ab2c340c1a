"""The `song-mnist` and `fashion` presets: they resolve to the protocol they promise, `advaug
presets` lists them, a dry run plans every stage, and a tiny override of `song-mnist` runs end to
end on a synthetic IDX MNIST (no real-data training here; the real runs are in docs/)."""

from __future__ import annotations

import json

import pytest

from advaug.api import make_config
from advaug.cli import main
from advaug.config import build_config
from advaug.study import plan_study, run_study

from .data.mnist_synth import write_mnist

SYNTH = {"verify": False, "check_sizes": False}


def test_song_mnist_is_song_et_al_s_mnist_protocol():
    cfg = build_config("song-mnist")
    assert cfg.data.name == "mnist" and cfg.techniques == ["none", "pgd"]
    assert cfg.classifier.model.name == "madry-mnist"
    assert cfg.reference_model.name == "lenet5-bn"
    # Song et al.'s conditioning (one-hot(y) beside z) in the measured CPU recipe: width 16,
    # z 64, one critic step per G step at Adam 2e-3, no decay (docs/song-mnist/README.md)
    g = cfg.gan
    assert g.concat_onehot and (g.width, g.z_dim, g.n_critic, g.lr_decay) == (16, 64, 1, "constant")
    assert g.lr_g == g.lr_d == pytest.approx(2e-3)
    pgd = cfg.classifier.augment.pgd
    assert pgd.eps == pytest.approx(0.3) and pgd.random_start
    assert pgd.steps * pgd.alpha >= pgd.eps  # the steps can reach the edge of the ball
    e = cfg.evaluate  # Madry et al.'s attack: PGD-40, steps of 0.01, eps 0.3
    assert (e.pgd_eps, e.pgd_alpha, e.pgd_steps) == (pytest.approx(0.3), 0.01, 40)
    assert e.uae_samples >= 1000
    assert e.uae_targeted_per_pair * 10 * 9 >= 1000  # targeted codes over the 90 pairs


def test_fashion_is_the_seed_s_study_on_fashion_mnist():
    cfg = build_config("fashion")
    assert cfg.data.name == "fashion-mnist"
    assert cfg.techniques == ["none", "fgsm", "pgd", "gan", "unrestricted"]
    assert cfg.seeds == [0, 1, 2]
    assert cfg.reference_model.name != cfg.classifier.model.name  # an independent judge
    assert cfg.gan == build_config("song-mnist", ["gan.iters=1500"]).gan  # the same recipe


def test_the_demo_runs_on_mnist_and_falls_back_to_the_embedded_digits():
    cfg = build_config("demo")
    assert (cfg.data.name, cfg.data.fallback, cfg.data.download) == ("mnist", "digits", True)
    assert cfg.reference_model.name != cfg.classifier.model.name
    assert cfg.runtime.threads == 2  # the pinned count that reproduces the committed numbers


def test_presets_lists_both_with_what_they_are_for(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    song = out[out.index("song-mnist") :]
    assert "Song et al.'s MNIST experiment" in song and "mnist; madry-mnist x 2 epochs" in song
    assert "mnist (fallback: digits); lenet5-bn" in out[out.index("demo") :]
    fashion = out[out.index("\nfashion ") :]
    assert "Fashion-MNIST" in fashion and "seeds [0, 1, 2]" in fashion


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_mnist(root / "mnist", train_per_class=10, test_per_class=4)
    write_mnist(root / "fashion-mnist", train_per_class=6, test_per_class=2)
    return root


@pytest.mark.parametrize(
    ("preset", "classifiers"),
    [
        ("song-mnist", ["none-s0", "pgd-s0"]),
        ("fashion", [f"{t}-s{s}" for t in ("none", "fgsm", "pgd", "gan", "unrestricted")
                     for s in (0, 1, 2)]),
    ],
)  # fmt: skip
def test_a_dry_run_plans_every_stage(synth_root, tmp_path, preset, classifiers):
    cfg = make_config(preset, data={"root": str(synth_root), **SYNTH})
    stages = plan_study(cfg, tmp_path / preset, estimate=False).stages
    by_kind = {k: [s.name for s in stages if s.kind == k] for k in {s.kind for s in stages}}
    assert by_kind["gan"] == ["gan"] and by_kind["reference"] == ["reference"]
    assert by_kind["classifier"] == classifiers and by_kind["evaluate"] == classifiers
    assert {s.status for s in stages} == {"todo"}


def test_the_dry_run_command_prints_the_plan(synth_root, tmp_path, capsys):
    argv = ["study", "--preset", "song-mnist", f"data.root={synth_root}", "data.verify=false",
            "data.check_sizes=false", "--out", str(tmp_path / "s"), "--dry-run"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "study 'song-mnist'" in out and "pgd-s0" in out and "estimated remaining cost" in out


@pytest.fixture(scope="module")
def tiny_song(synth_root, tmp_path_factory):
    """song-mnist with every size cut to seconds; the protocol (models, eps, attacks) kept."""
    cfg = make_config(
        "song-mnist",
        data={"root": str(synth_root), **SYNTH},
        runtime={"progress": False},
        gan={"iters": 2, "batch_size": 16, "ckpt_every": 2, "sample_every": 2, "eval_every": 2,
             "standing_batches": 2},
        classifier={"epochs": 1, "batch_size": 32},
        evaluate={"pgd_steps": 2, "robust_samples": 20, "gan_samples_per_class": 2,
                  "uae_samples": 10, "uae_steps": 2, "uae_targeted_per_pair": 1},
    )  # fmt: skip
    out = tmp_path_factory.mktemp("song")
    return cfg, out, run_study(cfg, out)


def test_a_tiny_song_mnist_runs_end_to_end(tiny_song):
    cfg, out, report = tiny_song
    info = json.loads((out / "study.json").read_text())
    assert info["finished"] and info["models"] == ["none-s0", "pgd-s0"]
    for name in info["models"]:
        m = json.loads((out / "eval" / f"{name}.json").read_text())["metrics"]
        assert 0 <= m["pgd2@0.3"]["value"] <= 1  # the PGD row at Madry et al.'s eps
        assert 0 <= m["uae_success"]["value"] <= 1 and "uae_legit_clean" in m
        # every one of the 90 (source, target) pairs was attacked once
        assert "90 pairs" in m["uae_targeted_success_mean"]["protocol"]
    assert report.index_html.is_file() and "pgd" in report.table_text

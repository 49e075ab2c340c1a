"""The smoke pipeline on 1x28x28 images: a tiny synthetic MNIST written in IDX format, then the
GAN, a plain and an unrestricted-augmented classifier, the reference judge, the evaluation, the
grids and the report, all through ``run_study`` (about 20 s on one thread)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from advaug.api import make_config
from advaug.loading import load_classifier, load_gan
from advaug.study import run_study

from .data.mnist_synth import write_mnist


@pytest.fixture(scope="module")
def mnist_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_mnist(root / "mnist", train_per_class=10, test_per_class=4)
    cfg = make_config(
        "smoke",
        data={"name": "mnist", "root": str(root), "verify": False, "check_sizes": False},
        techniques=["none", "unrestricted"],
        gan={"iters": 2, "ckpt_every": 2, "sample_every": 2, "eval_every": 2},
        classifier={"epochs": 1},
    )
    out = tmp_path_factory.mktemp("study")
    return out, run_study(cfg, out)


def test_the_gan_draws_one_channel_28px_images(mnist_study):
    out, _ = mnist_study
    pair = load_gan(out / "gan")
    g = pair.generator
    assert (g.arch_kwargs["channels"], g.arch_kwargs["image_size"]) == (1, 28)
    x = g.eval()(torch.randn(3, g.z_dim), torch.tensor([0, 5, 9]))
    assert x.shape == (3, 1, 28, 28) and 0 <= float(x.min()) <= float(x.max()) <= 1
    _, logits = pair.critic(x)
    assert logits.shape == (3, 10)


@pytest.mark.parametrize("run", ["classifiers/none-s0", "classifiers/unrestricted-s0", "reference"])
def test_classifiers_take_one_channel_and_normalise_with_mnist_statistics(mnist_study, run):
    out, _ = mnist_study
    model = load_classifier(out / run)
    assert model.arch_kwargs["in_channels"] == 1 and model.arch_kwargs["normalize"] == "mnist"
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_evaluation_grids_and_report(mnist_study):
    out, report = mnist_study
    info = json.loads((out / "study.json").read_text())
    assert info["finished"] and info["dataset"] == "mnist"
    for name in info["models"]:
        ev = json.loads((out / "eval" / f"{name}.json").read_text())
        assert ev["metrics"]["clean_top1"]["protocol"] == "mnist test split, 40 images"
        assert 0 <= ev["metrics"]["clean_top1"]["value"] <= 1
    assert info["gan"]["quality"]["classifier_fid"]["value"] >= 0
    assert 0 <= info["gan"]["quality"]["gan_test_acc"]["value"] <= 1
    for grid in ("real", "gan", "uae-unrestricted-s0"):
        with Image.open(out / "grids" / f"{grid}.png") as img:
            assert img.mode == "RGB"
            # 28px tiles scaled by 2 (labelled grids add class names and captions around them)
            assert img.height >= 60 and img.width >= 60
    assert report.index_html.is_file() and "unrestricted" in report.table_text

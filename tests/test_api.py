"""The library surface: lazy re-exports, ``make_config``, the trainers' wrappers, evaluation and
the docstring examples (doctests). ``examples/quickstart.py`` runs from the installed wheel in
``tests/test_install.py``."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import advaug
from advaug import api, loading
from advaug.config import StudyConfig
from advaug.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SMOKE = {"classifier": {"epochs": 1}}


@pytest.mark.parametrize("module", [api, loading], ids=lambda m: m.__name__)
def test_docstring_examples_run(module) -> None:
    result = doctest.testmod(module)
    assert result.attempted >= 10
    assert result.failed == 0


def test_package_docstring_names_only_real_names() -> None:
    for name in advaug.__all__:
        assert getattr(advaug, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        advaug.nope  # noqa: B018


def test_import_advaug_is_light() -> None:
    """``import advaug`` loads neither torch nor the API; the first use does."""
    code = "import sys, advaug; print('torch' in sys.modules, 'advaug.api' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["False", "False"], out.stderr
    code = "import sys, advaug; advaug.make_config; print('advaug.api' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "True", out.stderr


def test_subpackages_keep_their_names() -> None:
    """``advaug.config`` and ``advaug.evaluate`` stay modules (the functions have other names)."""
    import advaug.evaluate.suite  # noqa: F401 - the import that would shadow a function

    assert advaug.config.StudyConfig is StudyConfig
    assert callable(advaug.evaluate_classifier) and hasattr(advaug.evaluate, "suite")


def test_make_config_merges_strings_then_sections() -> None:
    cfg = advaug.make_config(
        "smoke", "classifier.epochs=7", "seeds=[3]", classifier={"optim": {"lr": 0.2}}
    )
    assert isinstance(cfg, StudyConfig)
    assert (cfg.classifier.epochs, cfg.classifier.optim.lr, cfg.seeds) == (7, 0.2, [3])
    assert cfg.classifier.optim.momentum == 0.9  # a merge, not a replacement


def test_make_config_accepts_a_section_dataclass() -> None:
    from advaug.config import EvalConfig

    cfg = advaug.make_config("smoke", evaluate=EvalConfig(pgd_steps=4))
    assert cfg.evaluate.pgd_steps == 4


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"classifier": {"epochs": -1}}, "classifier.epochs"),
        ({"classifier": {"nope": 1}}, "unknown config key 'classifier.nope'"),
        ({"data": {"name": 3}}, "data.name"),
    ],
)
def test_make_config_errors_name_the_key(kwargs, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        advaug.make_config("smoke", **kwargs)


@pytest.fixture(scope="module")
def fgsm_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("api") / "fgsm"
    result = advaug.train_classifier(advaug.make_config("smoke", **SMOKE), out, technique="fgsm")
    assert result["test_top1"] >= 0
    return out


def test_train_classifier_applies_technique_and_seed(fgsm_run: Path, tmp_path: Path) -> None:
    import yaml

    stored = yaml.safe_load((fgsm_run / "config.yaml").read_text())
    assert stored["classifier"]["augment"]["technique"] == "fgsm"
    assert stored["seed"] == 0
    with pytest.raises(ConfigError, match="unknown technique 'mixup'"):
        advaug.train_classifier("smoke", tmp_path / "x", technique="mixup")


def test_evaluate_classifier_takes_a_path_or_a_module(fgsm_run: Path) -> None:
    cfg = advaug.make_config("smoke", **SMOKE)
    by_path = advaug.evaluate_classifier(fgsm_run, cfg)
    model = advaug.load_classifier(fgsm_run)
    by_module = advaug.evaluate_classifier(model, cfg)
    assert by_path["metrics"] == by_module["metrics"]
    assert by_path["robustbench"]["comparable"] is False
    assert any("digits" in r for r in by_path["robustbench"]["reasons"])
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 10)


def test_train_gan_and_load_gan(tmp_path: Path) -> None:
    cfg = advaug.make_config("smoke", gan={"iters": 2, "ckpt_every": 2, "sample_every": 2})
    result = advaug.train_gan(cfg, tmp_path / "gan")
    assert result["iters"] == 2
    pair = advaug.load_gan(tmp_path / "gan")
    imgs = pair.generator(torch.randn(3, pair.generator.z_dim), torch.tensor([0, 1, 2]))
    assert imgs.shape == (3, 3, 32, 32) and 0 <= float(imgs.min()) <= float(imgs.max()) <= 1

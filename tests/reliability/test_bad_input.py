"""Bad input, fuzzed, through ``advaug.cli.main(argv)`` (in-process) and the real console script.

Every case must give exactly one ``advaug: error:`` line, exit 2 (usage) or 1 (runtime), no
traceback (unless ``--debug``), and leave no ``result.json`` that a later run would take for a
finished run. Training is never reached: the progress bar that every training loop opens right
before its first step is replaced by a tripwire, so a case that slips through validation fails
the test instead of training.

The number of cases tried is printed by each test (``pytest -s``): hypothesis examples plus
parametrized cases.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import advaug.train.classifier
import advaug.train.gan
from advaug.cli import main
from advaug.config import StudyConfig, build_config, list_presets
from advaug.errors import ConfigError
from tests.reliability.helpers import child_env, one_line_error

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run: deterministic tests
)


class ReachedTraining(BaseException):  # noqa: N818 - a tripwire, not an error type
    """Raised when bad input got as far as a training loop."""


@pytest.fixture
def cli(monkeypatch, capsys, tmp_path):
    """``cli(*argv) -> (exit code, the one error line)``, with the training tripwire set."""

    def tripwire(*args, **kwargs):
        raise ReachedTraining("bad input reached a training loop")

    monkeypatch.setattr(advaug.train.classifier, "progress", tripwire)
    monkeypatch.setattr(advaug.train.gan, "progress", tripwire)
    monkeypatch.chdir(tmp_path)  # an empty path must never write into the repository

    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["--quiet", *argv])
        err = capsys.readouterr().err
        return code, one_line_error(err)

    return run


def _no_finished_run(folder: Path) -> None:
    assert not list(Path(folder).rglob("result.json")), "a failed run left a result.json"


# ---------------------------------------------------------------------------------------------
# Every config leaf, with a value of the wrong type
# ---------------------------------------------------------------------------------------------


def _leaves(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, tp = f"{prefix}{f.name}", hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _leaves(tp, key + ".")
        else:
            out.append((key, tp))
    return out


LEAVES = _leaves(StudyConfig)
TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=8).filter(
    lambda s: s not in ("true", "false", "yes", "no", "on", "off", "null", "y", "n")
)


def _wrong_values(tp: Any) -> st.SearchStrategy:
    """YAML-able values that ``tp`` must refuse."""
    mapping = st.dictionaries(TEXT, st.integers(0, 3), min_size=1, max_size=2)
    lists = st.lists(st.integers(0, 3), min_size=1, max_size=3)
    origin = get_origin(tp)
    if origin is Literal:
        return st.one_of(TEXT.filter(lambda s: s not in get_args(tp)), lists, mapping)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = next(a for a in get_args(tp) if a is not type(None))
        return st.one_of(lists, mapping) if inner is str else _wrong_values(inner)
    if origin is list:
        return st.one_of(TEXT, mapping, st.lists(mapping, min_size=1, max_size=2))
    if origin is dict:
        return st.one_of(TEXT, lists, st.integers())
    if tp is bool:
        return st.one_of(st.integers(2, 99), TEXT, lists)
    if tp is int:
        return st.one_of(TEXT, lists, mapping, st.booleans(), st.none(), st.just(1.5))
    if tp is float:
        return st.one_of(TEXT, lists, mapping, st.booleans(), st.none(), st.just(float("nan")))
    if tp is str:
        return st.one_of(lists, mapping, st.integers(), st.booleans(), st.none())
    raise AssertionError(f"no strategy for {tp}")


@st.composite
def wrong_type_override(draw) -> tuple[str, str]:
    key, tp = draw(st.sampled_from(LEAVES))
    value = draw(_wrong_values(tp))
    return key, f"{key}={json.dumps(value)}"


COMMANDS = st.sampled_from(["train-classifier", "train-gan", "study"])


def _fuzz_usage_errors(cli, tmp_path, cases, what: str) -> None:
    """Every drawn override, under every command, is a usage error (exit 2) whose one line
    names the key, and creates no run folder."""
    tried = 0

    @SETTINGS
    @given(case=cases, command=COMMANDS)
    def check(case, command):
        nonlocal tried
        tried += 1
        key, override = case
        with tempfile.TemporaryDirectory(dir=tmp_path) as d:
            code, line = cli(command, "--preset", "smoke", "--out", f"{d}/run", override)
            assert code == 2, line
            assert key.split(".")[-1] in line, line
            assert not Path(d, "run").exists(), "a usage error must not create the run folder"

    check()
    print(f"{what} cases tried: {tried}")
    assert tried >= 40


def test_fuzzed_wrong_types_are_usage_errors_naming_the_key(cli, tmp_path):
    _fuzz_usage_errors(cli, tmp_path, wrong_type_override(), "wrong-type")


# ---------------------------------------------------------------------------------------------
# Values out of range: negative sizes, prop outside [0, 1], eps < 0, ...
# ---------------------------------------------------------------------------------------------

AT_LEAST_1 = [
    "classifier.epochs",
    "classifier.batch_size",
    "classifier.eval_batch_size",
    "gan.z_dim",
    "gan.width",
    "gan.iters",
    "gan.batch_size",
    "gan.g_batch_mult",
    "gan.n_critic",
    "gan.ckpt_every",
    "gan.eval_every",
    "gan.sample_every",
    "gan.standing_batches",
    "runtime.keep_last",
    "classifier.augment.unrestricted.pool_size",
    "classifier.augment.unrestricted.steps",
    "classifier.augment.unrestricted.attack_batch",
    "classifier.augment.unrestricted.refresh_every",
    "evaluate.pgd_steps",
    "evaluate.pgd_restarts",
    "evaluate.uae_steps",
    "evaluate.batch_size",
]
AT_LEAST_0 = [
    "data.val_size",
    "data.train_limit",
    "data.test_limit",
    "data.crop_pad",
    "runtime.threads",
    "reference_epochs",
    "evaluate.robust_samples",
    "evaluate.gan_samples_per_class",
    "evaluate.uae_samples",
]
NONNEG_FLOATS = [
    "classifier.augment.fgsm.eps_min",
    "classifier.augment.adv_weight",
    "classifier.optim.weight_decay",
    "classifier.optim.warmup_epochs",
    "evaluate.pgd_eps",
    "gan.gp_weight",
    "classifier.augment.unrestricted.lambda1",
    "classifier.augment.unrestricted.z_eps",
]
POSITIVE_FLOATS = ["classifier.optim.lr", "gan.lr_g", "gan.lr_d", "runtime.ckpt_every_min"]
UNIT_INTERVAL = [  # [0, 1]
    "classifier.augment.prop",
    "classifier.augment.gan.min_confidence",
]
HALF_OPEN = [  # [0, 1)
    "classifier.optim.momentum",
    "classifier.optim.label_smoothing",
    "classifier.optim.ema_decay",
    "gan.ema_decay",
    "gan.ac_dropout",
]
FINITE = {"allow_nan": False, "allow_infinity": False}


@st.composite
def out_of_range_override(draw) -> tuple[str, str]:
    kind = draw(st.sampled_from(["ge1", "ge0", "nonneg", "pos", "unit", "half", "eps", "list"]))
    if kind == "ge1":
        key, v = draw(st.sampled_from(AT_LEAST_1)), draw(st.integers(-(10**6), 0))
    elif kind == "ge0":
        key, v = draw(st.sampled_from(AT_LEAST_0)), draw(st.integers(-(10**6), -1))
    elif kind == "nonneg":
        key, v = draw(st.sampled_from(NONNEG_FLOATS)), draw(st.floats(-1e6, -1e-6, **FINITE))
    elif kind == "pos":
        key, v = draw(st.sampled_from(POSITIVE_FLOATS)), draw(st.floats(-1e6, 0.0, **FINITE))
    elif kind == "unit":
        key = draw(st.sampled_from(UNIT_INTERVAL))
        v = draw(st.floats(-1e6, -1e-6, **FINITE) | st.floats(1.000001, 1e6, **FINITE))
    elif kind == "half":
        key = draw(st.sampled_from(HALF_OPEN))
        v = draw(st.floats(-1e6, -1e-6, **FINITE) | st.floats(1.0, 1e6, **FINITE))
    elif kind == "eps":  # eps_max below eps_min, or above 1
        key = "classifier.augment.fgsm.eps_max"
        v = draw(st.floats(-1e3, 8 / 255 - 1e-4, **FINITE) | st.floats(1.0001, 1e3, **FINITE))
    else:
        key = "evaluate.fgsm_eps"
        good = st.floats(0, 1, **FINITE)
        v = draw(st.lists(good, max_size=2)) + [draw(st.floats(-1e3, -1e-6, **FINITE))]
    return key, f"{key}={json.dumps(v)}"


def test_fuzzed_out_of_range_values_are_usage_errors_naming_the_key(cli, tmp_path):
    _fuzz_usage_errors(cli, tmp_path, out_of_range_override(), "out-of-range")


# ---------------------------------------------------------------------------------------------
# Unknown keys and unknown names
# ---------------------------------------------------------------------------------------------

SECTIONS = ["", "data.", "runtime.", "gan.", "classifier.", "classifier.optim.", "evaluate."]


@st.composite
def unknown_name_case(draw) -> tuple[str, list[str], str]:
    """(command, overrides or flags, fragment the error must contain)."""
    word = draw(TEXT)
    kind = draw(st.sampled_from(["key", "dataset", "model", "technique", "techniques", "preset"]))
    if kind == "key":
        section = draw(st.sampled_from(SECTIONS))
        known = {f.name for f in dataclasses.fields(StudyConfig)} | {
            "name", "root", "device", "epochs", "lr", "z_dim", "width", "iters", "model", "optim",
            "augment", "seed", "seeds", "techniques", "batch_size", "fgsm_eps", "pgd_eps",
        }  # fmt: skip
        word = draw(TEXT.filter(lambda w: w not in known and not w.startswith("_")))
        return "train-classifier", [f"{section}{word}=1"], f"unknown config key '{section}{word}'"
    if kind == "dataset":
        name = draw(
            TEXT.filter(lambda w: w.replace("-", "") not in ("cifar10", "cifar100", "digits"))
        )
        return draw(COMMANDS), [f"data.name={name}"], "unknown dataset"
    if kind == "model":
        return "train-classifier", [f"classifier.model.name=m-{word}"], "unknown model"
    if kind == "technique":
        flag = draw(st.booleans())
        args = ["--technique", f"t-{word}"] if flag else [f"classifier.augment.technique=t-{word}"]
        return "train-classifier", args, "unknown technique"
    if kind == "techniques":
        return "study", [f"techniques=[none,t-{word}]"], "unknown technique"
    name = draw(TEXT.filter(lambda w: w not in list_presets()))
    return "train-gan", ["--preset", name], "unknown preset"


def test_fuzzed_unknown_keys_and_names_are_usage_errors(cli, tmp_path):
    tried = 0

    @SETTINGS
    @given(case=unknown_name_case())
    def check(case):
        nonlocal tried
        tried += 1
        command, args, fragment = case
        preset = [] if "--preset" in args else ["--preset", "smoke"]
        with tempfile.TemporaryDirectory(dir=tmp_path) as d:
            code, line = cli(command, *preset, "--out", f"{d}/run", *args)
            assert code == 2, line
            assert fragment in line, line
            _no_finished_run(Path(d))

    check()
    print(f"unknown key/name cases tried: {tried}")
    assert tried >= 40


# ---------------------------------------------------------------------------------------------
# batch_size larger than the data
# ---------------------------------------------------------------------------------------------


def test_fuzzed_batch_larger_than_the_data_is_a_usage_error(cli, tmp_path):
    tried = 0

    @SETTINGS
    @given(
        limit=st.integers(10, 300),
        extra=st.integers(1, 10**5),
        which=st.sampled_from([("train-classifier", "classifier"), ("train-gan", "gan")]),
    )
    def check(limit, extra, which):
        nonlocal tried
        tried += 1
        command, section = which
        with tempfile.TemporaryDirectory(dir=tmp_path) as d:
            code, line = cli(
                command,
                "--preset",
                "smoke",
                "--out",
                f"{d}/run",
                f"data.train_limit={limit}",
                f"{section}.batch_size={limit + extra}",
            )
            assert code == 2, line
            assert f"{section}.batch_size={limit + extra}" in line
            assert f"larger than the {limit} training images" in line
            _no_finished_run(Path(d))

    check()
    print(f"batch-size cases tried: {tried}")
    assert tried >= 40


# ---------------------------------------------------------------------------------------------
# Paths: empty, missing, unwritable, not what they should be
# ---------------------------------------------------------------------------------------------


def _path_cases(tmp: Path) -> list[tuple[list[str], int, str]]:
    a_file = tmp / "a-file"
    a_file.write_text("not a folder")
    bad_yaml = tmp / "bad.yaml"
    bad_yaml.write_text("data: [unclosed\n")
    list_yaml = tmp / "list.yaml"
    list_yaml.write_text("- 1\n- 2\n")
    evil_yaml = tmp / "evil.yaml"
    evil_yaml.write_text(f"name: !!python/object/apply:os.system ['touch {tmp}/yaml-ran']\n")
    unknown_yaml = tmp / "unknown.yaml"
    unknown_yaml.write_text("classifier: {nope: 1}\n")
    smoke = ["--preset", "smoke"]
    return [
        (["train-classifier", *smoke, "--out", ""], 2, "run folder is empty"),
        (["train-gan", *smoke, "--out", ""], 2, "run folder is empty"),
        (["train-classifier", *smoke, "--out", f"{a_file}/run"], 2, "cannot create run folder"),
        (["train-gan", *smoke, "--out", str(a_file)], 2, "cannot create run folder"),
        (["study", *smoke, "--out", f"{a_file}/study"], 2, "cannot create study folder"),
        (["train-classifier", *smoke, "--out", "/proc/advaug-no/run"], 2, "cannot create"),
        (
            [
                "train-classifier",
                *smoke,
                "--out",
                f"{tmp}/r1",
                "data.name=cifar100",
                f"data.root={tmp}/missing",
            ],
            1,
            "CIFAR-100 not found",
        ),  # fmt: skip
        (
            [
                "train-classifier",
                *smoke,
                "--out",
                f"{tmp}/r2",
                "data.name=cifar10",
                f"data.root={a_file}",
            ],
            1,
            "",
        ),  # fmt: skip
        (
            ["train-classifier", *smoke, "--out", f"{tmp}/r3", "--technique", "gan", "--gan", ""],
            2,
            "needs a trained GAN",
        ),
        (
            [
                "train-classifier",
                *smoke,
                "--out",
                f"{tmp}/r4",
                "--technique",
                "unrestricted",
                "--gan",
                f"{tmp}/missing",
            ],
            1,
            "no checkpoint found",
        ),  # fmt: skip
        (["evaluate", "", *smoke], 1, "no checkpoint path given"),
        (["evaluate", f"{tmp}/missing", *smoke], 1, "no checkpoint found"),
        (["evaluate", str(a_file), *smoke], 1, "cannot be loaded safely"),
        (["attack", "unrestricted", f"{tmp}/missing", "--gan", f"{tmp}/missing"], 1, ""),
        (["report", f"{tmp}/missing"], 2, ""),
        (["report", str(a_file)], 2, ""),
        (["train-classifier", "--preset", f"{tmp}/missing.yaml"], 2, "unknown preset"),
        (["train-classifier", "--preset", str(bad_yaml)], 2, "not valid YAML"),
        (["train-classifier", "--preset", str(list_yaml)], 2, "must be a mapping"),
        (["train-classifier", "--preset", str(evil_yaml)], 2, "not valid YAML"),
        (["train-classifier", "--preset", str(unknown_yaml)], 2, "classifier.nope"),
        (["train-classifier", *smoke, "--seed", "-3", "--out", f"{tmp}/r5"], 2, "seed"),
        (["train-classifier", *smoke, "--seed", "x"], 2, "invalid int value"),
        (["train-classifier", *smoke, "noequals"], 2, "key=value"),
        (["train-classifier", *smoke, "=3"], 2, "empty key"),
        (["train-classifier", *smoke, "a..b=3"], 2, "empty key"),
        (["attack", "unrestricted", "x", "--gan", "y", "-n", "0"], 2, "--num"),
        (["attack", "sideways", "x", "--gan", "y"], 2, "invalid choice"),
        (["no-such-command"], 2, "invalid choice"),
        (["train-classifier", "--no-such-flag"], 2, "unrecognized arguments"),
    ]


N_PATH_CASES = 30


@pytest.mark.parametrize("index", range(N_PATH_CASES))
def test_bad_paths_and_arguments_give_one_line_and_the_right_exit_code(cli, tmp_path, index):
    cases = _path_cases(tmp_path)
    assert len(cases) == N_PATH_CASES
    argv, want, fragment = cases[index]
    code, line = cli(*argv)
    assert code == want, line
    assert fragment in line
    assert not (tmp_path / "yaml-ran").exists(), "a YAML preset ran code"
    _no_finished_run(tmp_path)


def test_a_failed_start_does_not_block_the_corrected_rerun(cli, tmp_path, monkeypatch):
    out = tmp_path / "run"
    code, line = cli("train-classifier", "--preset", "smoke", "--out", str(out),
                     "classifier.batch_size=5000")  # fmt: skip
    assert code == 2 and "batch_size" in line
    assert (out / "config.yaml").is_file() and not (out / "result.json").exists()
    monkeypatch.undo()  # the tripwire off: this run really trains
    monkeypatch.chdir(tmp_path)
    assert main(["--quiet", "train-classifier", "--preset", "smoke", "--out", str(out)]) == 0
    assert json.loads((out / "result.json").read_text())["steps"] == 18


def test_debug_shows_the_traceback_instead(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="classifier.augment.prop"):
        main(["--debug", "train-classifier", "--preset", "smoke", "classifier.augment.prop=2"])


# ---------------------------------------------------------------------------------------------
# Known gaps (strict xfail: they fail loudly once fixed, so the marker gets removed)
# ---------------------------------------------------------------------------------------------


def test_empty_preset_is_a_usage_error(cli, tmp_path):
    code, line = cli("train-classifier", "--preset", "", "--out", str(tmp_path / "r"))
    assert code == 2 and "preset" in line


@pytest.mark.parametrize("override", ["seed=-1", "seeds=[-2]"])
def test_negative_seeds_are_usage_errors(override):
    with pytest.raises(ConfigError, match="seed"):
        build_config("smoke", [override])


@pytest.mark.parametrize(
    "override", ["classifier.model.kwargs={width: abc}", "classifier.model.kwargs={num_classes: 5}"]
)
def test_bad_model_options_are_usage_errors(cli, tmp_path, override):
    code, line = cli(
        "train-classifier", "--preset", "smoke", "--out", str(tmp_path / "r"), override
    )
    assert code == 2, line
    assert override.split("{")[1].split(":")[0] in line


@pytest.mark.parametrize(
    "override", ["reference_model.name=nope", "classifier.model.name=nope",
                 "classifier.batch_size=5000"]
)  # fmt: skip
def test_study_checks_every_stage_before_training_the_gan(cli, tmp_path, override):
    code, line = cli("study", "--preset", "smoke", "--out", str(tmp_path / "s"), override)
    assert code == 2


# ---------------------------------------------------------------------------------------------
# The real console script: exit codes and stderr of a separate process
# ---------------------------------------------------------------------------------------------


def _script(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("advaug")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "advaug.cli"]
    return subprocess.run(
        [*cmd, "--quiet", *argv], cwd=cwd, env=child_env(), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_console_script_exit_codes(tmp_path):
    usage = _script("train-classifier", "--preset", "smoke", "classifier.augment.prop=1.5",
                    "--out", str(tmp_path / "a"), cwd=tmp_path)  # fmt: skip
    assert usage.returncode == 2
    assert "classifier.augment.prop" in one_line_error(usage.stderr)
    runtime = _script("train-classifier", "--preset", "smoke", "--out", str(tmp_path / "b"),
                      "data.name=cifar100", f"data.root={tmp_path}/none", cwd=tmp_path)  # fmt: skip
    assert runtime.returncode == 1
    assert "CIFAR-100 not found" in one_line_error(runtime.stderr)
    _no_finished_run(tmp_path)

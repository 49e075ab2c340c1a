"""Trackers: TensorBoard gets scalars, the GAN's sample grids and hparams; W&B sits behind the
same hook (a recording fake here, the real package offline where it is installed); a missing
TensorBoard is skipped, a missing wandb is a one-line error. And ``runtime.deterministic``."""

from __future__ import annotations

import doctest
import sys
import types
from pathlib import Path

import pytest
import torch

from advaug.config import RuntimeConfig, build_config
from advaug.errors import ConfigError
from advaug.train import trackers as trackers_mod
from advaug.train.classifier import ClassifierJob, train_classifier
from advaug.train.gan import GANJob, train_gan
from advaug.train.run import Run


def test_flatten_example_runs() -> None:
    result = doctest.testmod(trackers_mod)
    assert result.attempted > 0 and result.failed == 0


def _job(loggers: list[str]) -> ClassifierJob:
    cfg = build_config("smoke", ["classifier.epochs=1", f"runtime.loggers={loggers}"])
    return ClassifierJob(data=cfg.data, runtime=cfg.runtime, classifier=cfg.classifier)


def _gan_job(loggers: list[str]) -> GANJob:
    cfg = build_config("smoke", ["gan.iters=3", f"runtime.loggers={loggers}"])
    return GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan)


def test_tensorboard_holds_scalars_grids_and_hparams(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    train_gan(_gan_job(["tensorboard"]), tmp_path / "gan")
    ea = EventAccumulator(str(tmp_path / "gan" / "tb"), size_guidance={"images": 0})
    ea.Reload()
    tags = ea.Tags()
    assert {"samples/fixed_noise", "samples/final"} <= set(tags["images"])
    assert any(t.startswith("train/") for t in tags["scalars"])
    assert "final/ac_test_top1" in tags["scalars"]
    content = ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["gan.iters"].number_value == 3
    assert hparams["data.name"].string_value == "digits"
    grid = ea.Images("samples/final")[0]
    assert grid.width > 32 and grid.height > 32


def test_without_tensorboard_the_run_still_logs_to_jsonl(tmp_path: Path, monkeypatch) -> None:
    def missing(*args, **kwargs):
        raise ImportError("No module named 'tensorboard'")

    monkeypatch.setattr(trackers_mod.TensorBoardTracker, "__init__", missing)
    run = Run(tmp_path / "run", _job(["tensorboard"]), kind="classifier")
    run.log(1, "train", {"loss": 0.5})
    run.log_image("samples/x", torch.rand(3, 8, 8), 1)
    run.finish({"test_top1": 0.5})
    assert run.metrics()[0]["loss"] == 0.5 and not (tmp_path / "run" / "tb").exists()


class FakeWandb(types.ModuleType):
    """Records what the tracker asks of the wandb package."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.calls: list[tuple] = []
        self.summary: dict = {}

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        return self

    def log(self, data, step):
        self.calls.append(("log", data, step))

    def finish(self):
        self.calls.append(("finish",))

    class Image:
        def __init__(self, arr):
            self.shape = arr.shape


def test_wandb_gets_the_same_records(tmp_path: Path, monkeypatch) -> None:
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_PROJECT", "my-study")
    run = Run(tmp_path / "run", _job(["wandb"]), kind="classifier")
    run.log(3, "train", {"loss": 0.5, "note": "text is not a number"})
    run.log_image("samples/grid", torch.rand(3, 10, 12), 3)
    run.finish({"test_top1": 0.75, "protocol": "words"})
    (_, init), log1, log2, finish = fake.calls
    assert init["project"] == "my-study" and init["name"] == "run" and init["resume"] == "allow"
    assert init["config"]["classifier.epochs"] == 1 and init["dir"] == str(tmp_path / "run")
    assert log1 == ("log", {"train/loss": 0.5}, 3)
    assert log2[2] == 3 and log2[1]["samples/grid"].shape == (10, 12, 3)
    assert finish == ("finish",) and fake.summary == {"final/test_top1": 0.75}
    again = Run(tmp_path / "run", _job(["wandb"]), kind="classifier")
    again.log(4, "train", {"loss": 0.4})
    assert fake.calls[-1] == ("log", {"train/loss": 0.4}, 4)
    assert fake.calls[-2][1]["id"] == init["id"]  # a resumed run continues the same W&B run


def test_wandb_asked_for_but_missing_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    run = Run(tmp_path / "run", _job(["wandb"]), kind="classifier")
    with pytest.raises(ConfigError, match=r"pip install 'advaug\[wandb\]'") as info:
        run.log(1, "train", {"loss": 0.5})
    assert "\n" not in str(info.value)


def test_unknown_logger_is_refused_by_the_config() -> None:
    with pytest.raises(ConfigError, match="runtime.loggers"):
        build_config("smoke", ["runtime.loggers=[mlflow]"])


def test_real_wandb_offline(tmp_path: Path, monkeypatch) -> None:
    """Runs where wandb is installed (pip install 'advaug[wandb]'; make does not install it)."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    train_classifier(_job(["wandb"]), tmp_path / "run")
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


def test_deterministic_runtime_sets_the_switches(monkeypatch) -> None:
    from advaug.runtime import make_runtime

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        make_runtime(RuntimeConfig(device="cpu", deterministic=True))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def test_deterministic_training_runs_and_matches(tmp_path: Path) -> None:
    """Every op of a classifier step (FGSM technique, EMA) has a deterministic CPU kernel, and
    the switch does not change CPU results."""
    cfg = build_config("smoke", ["classifier.epochs=1", "classifier.optim.ema_decay=0.9"])
    jobs = {}
    for flag in (False, True):
        rt = RuntimeConfig(**{**cfg.runtime.__dict__, "deterministic": flag})
        jobs[flag] = ClassifierJob(data=cfg.data, runtime=rt, classifier=cfg.classifier)
    try:
        plain = train_classifier(jobs[False], tmp_path / "plain")
        det = train_classifier(jobs[True], tmp_path / "det")
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    assert det["test_top1"] == plain["test_top1"]
    a = torch.load(tmp_path / "plain" / "checkpoints" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "det" / "checkpoints" / "final.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])

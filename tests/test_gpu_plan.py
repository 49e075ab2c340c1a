"""benchmarks/gpu_carry.py and benchmarks/gpu_plan.sh: the carried CIFAR-100 subset and the
one-call plan, end to end on the CPU (--tiny sizes, the benchmark part skipped: test_gpu_bench
runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from advaug.config import DataConfig
from advaug.data.splits import load_splits
from tests.data.cifar_synth import cifar_files, write_folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_carry  # noqa: E402


@pytest.fixture(scope="module")
def carry(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("carry")
    src = write_folder(base / "src", "cifar100", cifar_files("cifar100", 5, 3))
    gpu_carry.build(src, base / "carry", 400, 200)
    return base / "carry"


def test_the_carried_subset_is_a_balanced_prefix_the_loader_reads(carry, tmp_path):
    desc = json.loads((carry / "carry.json").read_text())
    assert (desc["train"], desc["test"]) == (400, 200)
    assert desc["per_class"] == {"train": 4, "test": 2}
    with tarfile.open(carry / gpu_carry.ARCHIVE) as tar:
        names = sorted(tar.getnames())
        tar.extractall(tmp_path, filter="data")
    assert names == [f"cifar-100-python/{n}" for n in ("meta", "test", "train")]
    cfg = DataConfig(name="cifar100", root=str(tmp_path / "cifar-100-python"), verify=False)
    with pytest.raises(Exception, match="data.check_sizes=false"):  # a subset, said plainly
        load_splits(cfg)
    cfg.check_sizes = False
    splits = load_splits(cfg)
    assert (len(splits.train), len(splits.test), splits.num_classes) == (400, 200, 100)
    assert splits.train.y.bincount(minlength=100).tolist() == [4] * 100


def test_the_builder_refuses_a_prefix_that_is_not_whole_classes(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        gpu_carry.main(["--src", str(tmp_path), "--train", "150", "--out", str(tmp_path)])
    assert e.value.code == 2 and "multiples of 100" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_one_call_plan_runs_end_to_end_and_leaves_everything_under_out(carry, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "CARRY": str(carry), "PLAN_BENCH": "0",
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}  # fmt: skip
    p = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_plan.sh"), "--tiny"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    for f in ("plan.log", "carry.json", "study.tar.gz"):
        assert (out / f).is_file(), f
    for f in ("results.md", "results.json", "index.html", "study.json", "config.yaml"):
        assert (out / "study" / f).is_file(), f
    assert json.loads((out / "study" / "study.json").read_text())["finished"] is True
    with tarfile.open(out / "study.tar.gz") as tar:
        names = tar.getnames()
    assert "study/report/index.html" in names
    assert not [n for n in names if "checkpoints" in n or n.endswith(".safetensors")]
    assert "gpu_plan.sh done (study exit 0)" in (out / "plan.log").read_text()

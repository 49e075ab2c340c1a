"""The attack benchmark script runs end to end at smoke size and reports consistent numbers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_attacks.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_attacks", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_benchmark_writes_json(bench, tmp_path, capsys) -> None:
    out = tmp_path / "attacks.json"
    bench.main(["--quick", "--out", str(out)])
    res = json.loads(out.read_text())
    assert set(res["norm_attacks"]) == {"fgsm", "pgd-10"}
    fgsm, pgd = res["norm_attacks"]["fgsm"], res["norm_attacks"]["pgd-10"]
    assert fgsm["images_per_s"] == pytest.approx(8 / fgsm["seconds_per_batch"])
    assert pgd["images_per_s"] < fgsm["images_per_s"]  # 10 gradient steps vs 1
    on, off = res["unrestricted"]
    assert on["early_stop"] and not off["early_stop"] and off["mean_steps"] == 5
    assert on["mean_steps"] <= 5 and 0 <= on["success_rate"] <= 1
    assert on["cost_vs_fgsm"] == pytest.approx(fgsm["images_per_s"] / on["examples_per_s"])
    assert "fgsm" in capsys.readouterr().out

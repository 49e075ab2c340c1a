"""benchmarks/gpu_bench.py: the whole run at --tiny sizes on the CPU, and its arithmetic."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_bench.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_bench_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


gb = _module()
ROWS = ("classifier_step", "acgan_w16", "unrestricted", "pgd10_eval", "classifier_compile")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ADVAUG_BENCH_TINY": "1"}
    env["PYTHONPATH"] = f"{ROOT / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}"
    p = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return p, json.loads(out.read_text()) if out.is_file() else None


def test_tiny_run_passes_its_checks_and_writes_every_row(tiny_run):
    p, res = tiny_run
    assert p.returncode == 0, p.stderr[-3000:]
    assert res is not None and res["env"]["tiny"] and res["env"]["finished"]
    assert res["env"]["failed_checks"] == []
    for name in ("classifier", "gan", "bf16_vs_fp32", "attacks", "study_smoke"):
        assert res["checks"][name]["ok"] is True, (name, res["checks"][name])
    assert res["checks"]["attacks"]["pgd10_fp32"]["success"] >= 0.99
    assert res["diagnostics"]["host_syncs"]["status"] == "not applicable"  # CUDA only
    for name in ROWS:
        assert res["throughput"][name]["status"] == "done", (name, res["throughput"][name])
    # the table comes last
    assert p.stdout.strip().splitlines()[-1].startswith("|   + torch.compile")


def test_rows_hold_rates_flops_and_speedups_that_add_up(tiny_run):
    _, res = tiny_run
    assert res["env"]["peak_bf16_tflops"] is None  # a CPU has no bf16 peak in the table
    for name in ROWS[:-1]:
        row = res["throughput"][name]
        base, fast = row["baseline"], row["fast"]
        assert base["per_s"] > 0 and fast["per_s"] > 0
        assert row["speedup"] == pytest.approx(fast["per_s"] / base["per_s"])
        for r in (base, fast):
            assert r["flops_per_item"] > 0, name
            assert r["tflops"] == pytest.approx(r["per_s"] * r["flops_per_item"] / 1e12)
            assert r["fraction_of_peak"] is None
    comp = res["throughput"]["classifier_compile"]
    assert comp["compiled"] is False and "tiny" in comp["note"]  # plumbing only on the CPU
    assert comp["speedup"] == pytest.approx(comp["compile"]["per_s"] / comp["eager"]["per_s"])


def test_peaks_are_looked_up_by_card_name():
    assert gb.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gb.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gb.peak_tflops("NVIDIA H200") == 989.0
    assert gb.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gb.peak_tflops("Some Future Card") is None


def test_rate_rows_and_speedups_by_hand():
    r = gb.rate_row(1000.0, "images/s", 2e9, 989.0)
    assert r["tflops"] == pytest.approx(2.0) and r["fraction_of_peak"] == pytest.approx(2 / 989)
    assert gb.rate_row(1000.0, "images/s", None, 989.0)["tflops"] is None
    assert gb.compare({"per_s": 2.0}, {"per_s": 5.0})["speedup"] == pytest.approx(2.5)
    assert gb.compare({"per_s": None}, {"per_s": 5.0})["speedup"] is None


def test_sync_sites_count_warnings_per_line():
    state = []

    def loop():
        for _ in range(3):
            warnings.warn("called a synchronizing CUDA operation", stacklevel=1)
        warnings.warn("called a synchronizing CUDA operation", stacklevel=1)
        warnings.warn("something else", stacklevel=1)

    sites = gb.sync_sites(loop, lambda: state.append("on"), lambda: state.append("off"))
    assert state == ["on", "off"]
    assert sorted(sites.values()) == [1, 3]
    assert all(k.startswith("test_gpu_bench.py:") or "tests" in k for k in sites)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_without_a_gpu_and_without_tiny_it_refuses(monkeypatch, capsys):
    monkeypatch.delenv("ADVAUG_BENCH_TINY", raising=False)
    assert gb.main([]) == 2
    assert "--tiny" in capsys.readouterr().err

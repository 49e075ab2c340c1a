"""The benchmark scripts: FLOP counts by hand, timing bookkeeping, the ``--quick`` JSON files,
and that the techniques benchmark trains exactly as ``train_classifier`` does."""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import bench_classifier as bc  # noqa: E402
import bench_pool_vs_seed as bps  # noqa: E402
import bench_techniques as bt  # noqa: E402
import common  # noqa: E402
from advaug.data.splits import load_splits  # noqa: E402
from advaug.loading import load_classifier  # noqa: E402
from advaug.train.classifier import train_classifier  # noqa: E402

MACHINE_KEYS = {"torch", "torch_threads", "cpu_count", "glibc_tunables", "date", "load_avg_1_5_15"}


def _conv(cout: int, cin: int, hw_out: int) -> int:
    """FLOPs of a 3x3 convolution's forward pass for one image (2 per multiply-add)."""
    return 2 * cout * cin * 9 * hw_out * hw_out


# -- helpers ---------------------------------------------------------------------------------


def test_median_ratio_and_table() -> None:
    assert common.median([3.0, 1.0, 2.0]) == 2.0
    assert common.median([1.0, 4.0]) == 2.5
    with pytest.raises(ValueError):
        common.median([])
    assert common.ratio(6.0, 3.0) == 2.0
    assert common.ratio(1.0, 0.0) is None and common.ratio(None, 2.0) is None
    table = common.markdown_table(["a", "b"], [["x", 1234.5], ["y", None]]).splitlines()
    assert table == ["| a | b |", "|---|---|", "| x | 1,234 |", "| y | - |"]


def test_write_json_round_trips(tmp_path: Path) -> None:
    path = common.write_json(tmp_path / "sub" / "r.json", {"a": 1, "p": Path("x")})
    assert json.loads(path.read_text()) == {"a": 1, "p": "x"}
    assert not list(path.parent.glob("*.tmp"))
    info = common.machine_info("cpu")
    assert set(info) >= MACHINE_KEYS
    assert info["torch_threads"] == torch.get_num_threads()


# -- bench_classifier ------------------------------------------------------------------------


def test_flops_of_a_linear_model_by_hand() -> None:
    # forward addmm 2·in·out per image; backward only the weight gradient (the input needs
    # none): another 2·in·out. The bias gradient is a sum, which FlopCounterMode does not count.
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    assert bc.count_train_flops(model, batch=4, num_classes=10) == 4 * 3072 * 10
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("batch", [1, 3])
def test_flops_of_tiny_cnn_by_hand(batch: int) -> None:
    # tiny-cnn width 8: conv 3→8 at 32², conv 8→8 stride 2 at 16², conv 8→16 stride 2 at 8²,
    # fc 16→10. Backward: the first conv only needs its weight gradient, the others both.
    fwd = [_conv(8, 3, 32), _conv(8, 8, 16), _conv(16, 8, 8), 2 * 16 * 10]
    bwd = fwd[0] + 2 * sum(fwd[1:])
    expected = sum(fwd) + bwd
    assert expected == 2_212_800
    assert bc.count_train_flops("tiny-cnn", batch=batch, num_classes=10) == expected


def test_bench_train_step_trains_and_reports_consistently() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))
    before = [p.detach().clone() for p in model.parameters()]
    r = bc.bench_train_step(
        model, 4, "cpu", False, None, False, 2, warmup=1, repeats=3, num_classes=10,
        flops_per_image=1000,
    )  # fmt: skip
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert len(r["images_per_s_repeats"]) == 3
    assert r["images_per_s"] == statistics.median(r["images_per_s_repeats"])
    assert r["tflops_per_s"] == pytest.approx(r["images_per_s"] * 1000 / 1e12)
    assert r["images_per_cpu_s"] == pytest.approx(4 / r["cpu_seconds_per_step"])
    assert (r["batch"], r["steps"], r["warmup_steps"], r["autocast"]) == (4, 2, 1, "none")


def test_classifier_quick_json_and_merge(tmp_path: Path) -> None:
    out = tmp_path / "classifier.json"
    assert bc.main(["--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert {"benchmark", "what", "note", "machine", "settings", "results"} <= set(res)
    assert set(res["machine"]) >= MACHINE_KEYS
    assert "shared" in res["note"]
    rows = {r["variant"]: r for r in res["results"]}
    assert list(rows) == list(bc.DEFAULT_VARIANTS)
    assert rows["eager"]["vs_eager"] == 1.0
    cl = rows["channels_last+bf16"]
    assert cl["vs_eager"] == pytest.approx(cl["images_per_s"] / rows["eager"]["images_per_s"])
    assert (cl["channels_last"], cl["autocast"], cl["compile"]) == (True, "bfloat16", False)
    # tiny-cnn as above with 100 classes: the fc costs 2·16·K forward and twice that backward
    assert cl["flops_per_image"] == 2_212_800 - 6 * 16 * 10 + 6 * 16 * 100
    # --merge keeps the rows this run does not re-measure and replaces the ones it does
    assert bc.main(["--quick", "--variants", "eager", "--out", str(out), "--merge"]) == 0
    merged = json.loads(out.read_text())
    assert sorted(r["variant"] for r in merged["results"]) == sorted(bc.DEFAULT_VARIANTS)
    eager = [r for r in merged["results"] if r["variant"] == "eager"]
    assert len(eager) == 1 and eager[0]["date"] >= rows["eager"]["date"]
    assert merged["settings"]["variants"] == ["eager"]
    assert merged["earlier_runs"] == [{"machine": res["machine"], "settings": res["settings"]}]


def test_classifier_rejects_unknown_variant() -> None:
    with pytest.raises(SystemExit):
        bc.main(["--quick", "--variants", "fastest"])


# -- bench_techniques ------------------------------------------------------------------------


@pytest.mark.parametrize(("technique", "prop"), [("fgsm", 0.5), ("none", 0.0)])
def test_run_epoch_matches_train_classifier(tmp_path: Path, technique: str, prop: float) -> None:
    """The benchmark's epoch is train_classifier's: identical weights after one epoch."""
    over = ["classifier.epochs=1", f"classifier.augment.technique={technique}"]
    cfg = bt.make_config("smoke", [*over, f"classifier.augment.prop={prop}"], "cpu")
    splits = load_splits(cfg.data, seed=cfg.seed)
    job = bt.ClassifierJob(data=cfg.data, runtime=cfg.runtime, classifier=cfg.classifier)
    tr = bt.Trainer(job, splits, None)
    ep = tr.run_epoch(0)
    assert ep["steps"] == tr.steps_per_epoch == len(splits.train) // cfg.classifier.batch_size
    assert ep["augmented_used"] == ep["steps"] * int(prop * cfg.classifier.batch_size)
    train_classifier(job, tmp_path / "run", splits=splits)
    ref = load_classifier(tmp_path / "run").state_dict()
    mine = tr.model.state_dict()
    assert ref.keys() == mine.keys()
    for k in ref:
        assert torch.equal(ref[k], mine[k]), k


def test_techniques_quick_json(tmp_path: Path) -> None:
    out = tmp_path / "techniques.json"
    assert bt.main(["--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert {"benchmark", "note", "machine", "settings", "gan", "techniques", "goal"} <= set(res)
    assert set(res["machine"]) >= MACHINE_KEYS
    rows = res["techniques"]
    assert list(rows) == list(bt.TECHNIQUES)
    none, fgsm, pooled, seed = (rows[k] for k in ("none", "fgsm", "unrestricted-pooled",
                                                  "unrestricted-seed"))  # fmt: skip
    assert none["vs_none"] == 1.0 and fgsm["vs_fgsm"] == 1.0
    for r in rows.values():
        assert r["vs_none"] == pytest.approx(r["epoch_seconds"] / none["epoch_seconds"])
        assert r["vs_fgsm_cpu"] == pytest.approx(r["epoch_cpu_seconds"] / fgsm["epoch_cpu_seconds"])
        assert r["steps_per_epoch"] == none["steps_per_epoch"] > 0
    # whole epochs for all but the seed's schedule, whose epoch is extrapolated from its steps
    assert [k for k, r in rows.items() if r["extrapolated"]] == ["unrestricted-seed"]
    assert seed["epoch_seconds"] == pytest.approx(
        sum(seed["step_seconds"]) / seed["timed_steps"] * seed["steps_per_epoch"]
    )
    assert seed["unrestricted"]["mode"] == "seed" and seed["unrestricted"]["steps"] == 5
    assert seed["unrestricted"]["optimizer"] == "sgd-noise"
    assert pooled["unrestricted"]["mode"] == "pooled"
    assert len(pooled["epochs_seconds"]) == 2
    assert pooled["epoch_seconds"] == pooled["epochs_seconds"][1]
    # the pool (32 codes) is filled in the first epoch; later epochs only refresh a quarter
    assert pooled["first_epoch_attacked"] >= 32 > pooled["attacked_per_epoch"]
    assert pooled["attack_examples_per_s"] > 0
    assert none["augmented_used_per_step"] == none["augmented_per_step"] == 0
    assert fgsm["augmented_used_per_step"] == fgsm["augmented_per_step"] == 16
    goal = res["goal"]
    assert goal["pooled_vs_fgsm"] == pooled["vs_fgsm"]
    assert goal["pooled_goal_met"] == (pooled["vs_fgsm"] <= 10)
    assert goal["seed_vs_fgsm"] == seed["vs_fgsm"]


def test_pool_vs_seed_json(tmp_path: Path) -> None:
    out = tmp_path / "pvs.json"
    sets = ["gan.iters=2", "gan.ckpt_every=2", "gan.sample_every=2", "gan.eval_every=2",
            "gan.width=8", "gan.z_dim=8", "data.train_limit=64", "evaluate.uae_samples=8",
            "evaluate.uae_steps=2", "classifier.augment.unrestricted.steps=2"]  # fmt: skip
    args = ["--epochs", "1", "--modes", "pooled,seed", "--out", str(out)]
    assert bps.main([*args, *[f"--set={s}" for s in sets]]) == 0
    res = json.loads(out.read_text())
    pooled, seed = res["modes"]["pooled"], res["modes"]["seed"]
    assert pooled["time_vs_pooled"] == 1.0 and seed["time_vs_pooled"] > 0
    assert seed["attack"]["early_stop"] is False and pooled["attack"]["early_stop"] is True
    assert seed["attack"]["lr"] == pooled["attack"]["lr"]  # the same attack settings
    assert seed["codes_attacked"] == seed["steps"] * 16  # every batch: n_a = 0.5 * 32 codes
    for r in (pooled, seed):
        assert r["uae_success_correct"]["n"] + round(8 * r["uae_clean_wrong_rate"]["value"]) == 8
    assert "8 balanced sources" in res["protocol"]["evaluation_attack"]


# -- bench_gan_recipe ------------------------------------------------------------------------


def test_gan_recipe_fields_are_typed_like_the_config() -> None:
    import bench_gan_recipe as bgr

    got = bgr.parse_fields(["width=16", "lr_g=2e-3", "concat_onehot=true", "lr_decay=constant"])
    assert got == {"width": 16, "lr_g": 0.002, "concat_onehot": True, "lr_decay": "constant"}
    with pytest.raises(SystemExit, match="unknown GANConfig field 'widht'"):
        bgr.parse_fields(["widht=16"])


def test_gan_recipe_records_gan_test_until_the_iterations_end(tmp_path, monkeypatch) -> None:
    """Two iterations on a synthetic MNIST with a judge that always says class 3: the judge's
    accuracy on the 1,000 samples (100 per class) is exactly 10 %, live and EMA."""
    import bench_gan_recipe as bgr

    from .data.mnist_synth import write_mnist

    write_mnist(tmp_path / "mnist", train_per_class=8, test_per_class=2)

    class Judge(nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((len(x),), 3), 10).float()

    monkeypatch.setattr(bgr, "load_classifier", lambda path: Judge())
    monkeypatch.setattr(bgr, "load_splits", lambda cfg: load_splits(
        dataclasses.replace(cfg, verify=False, check_sizes=False)))  # fmt: skip
    fields = bgr.parse_fields(["width=4", "z_dim=8", "iters=2", "batch_size=8", "n_critic=1",
                               "ema_decay=0.5"])  # fmt: skip
    records = bgr.run("mnist", str(tmp_path), "judge", 1e9, 1, fields)
    assert [r["it"] for r in records] == [1, 2]
    assert all(r["gantest"] == r["gantest_ema"] == pytest.approx(0.1) for r in records)
    out = tmp_path / "B.json"
    out.write_text(json.dumps({"cfg": fields, "rec": records}))
    combined = bgr.combine([out])
    assert combined["runs"]["B"]["rec"] == records and "judge" in combined["protocol"]

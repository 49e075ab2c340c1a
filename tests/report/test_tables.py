"""The results table against hand computations, and its three files."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advaug.report.load import ModelRun, StudyData, load_study
from advaug.report.tables import (
    COST_PROTOCOL,
    Stat,
    build_table,
    pool_summary,
    table_text,
    to_csv,
    to_json,
    to_markdown,
    write_tables,
)

from .synth import PROTO, make_study

SQRT2 = math.sqrt(2)


def test_mean_and_std_by_hand(study_dir: Path):
    t = build_table(load_study(study_dir))
    assert t.techniques == ["none", "fgsm"]
    assert t.metrics[:3] == ["clean_top1", "clean_top5", "fgsm@2/255"]
    c = t.cells["none"]["clean_top1"]  # 0.50, 0.54
    assert c.mean == pytest.approx(0.52)
    assert c.std == pytest.approx(0.02 * SQRT2)  # sqrt(2 · 0.02² / (2 − 1))
    assert c.n == 2
    assert [v["value"] for v in c.values] == [0.50, 0.54]
    f = t.cells["fgsm"]["fgsm@8/255"]  # 0.20, 0.26
    assert f.mean == pytest.approx(0.23) and f.std == pytest.approx(0.03 * SQRT2)
    p = t.cells["none"]["pgd10@8/255"]  # 0.01, 0.01
    assert p.std == pytest.approx(0.0)
    assert t.cells["fgsm"]["uae_steps_p50"].mean == pytest.approx(13.0)
    assert t.protocol_line("clean_top1") == PROTO["clean_top1"]
    assert c.protocol == PROTO["clean_top1"]


def test_cost_and_ratio_by_hand(study_dir: Path):
    t = build_table(load_study(study_dir))
    assert t.seconds_per_epoch["none"].mean == pytest.approx(11.0)  # (10 + 12) / 2
    assert t.seconds_per_epoch["none"].std == pytest.approx(SQRT2)
    assert t.seconds_per_epoch["fgsm"].mean == pytest.approx(22.0)
    assert t.ratio == {"none": pytest.approx(1.0), "fgsm": pytest.approx(2.0)}
    assert t.train_seconds["fgsm"].mean == pytest.approx(66.0)  # 3 epochs × 22 s
    assert "cpu, fp32" in t.cost_protocol


def test_single_seed_has_no_std_and_null_values_are_skipped(tmp_path: Path):
    models = {
        "none-s0": {"clean_top1": 0.5, "uae_success": 0.9},
        "fgsm-s0": {"clean_top1": 0.4, "uae_success": None},
        "fgsm-s1": {"clean_top1": 0.6, "uae_success": 0.7},
    }
    study = load_study(make_study(tmp_path / "s", models))
    t = build_table(study)
    assert t.cells["none"]["clean_top1"].std is None
    u = t.cells["fgsm"]["uae_success"]
    assert (u.mean, u.std, u.n) == (0.7, None, 1)
    assert [v["value"] for v in u.values] == [None, 0.7]
    md = to_markdown(t, study)
    assert "| `none` | 1 | 50.00 | 90.00 |" in md
    assert "70.00 (n=1)" in md


def test_no_baseline_means_no_ratio(tmp_path: Path):
    study = load_study(make_study(tmp_path / "s", {"fgsm-s0": {"clean_top1": 0.4}}))
    t = build_table(study)
    assert t.ratio == {"fgsm": None}
    assert "cost_ratio_to_none" in to_csv(t) and to_csv(t).strip().endswith(",")


def test_csv_rows(study_dir: Path):
    t = build_table(load_study(study_dir))
    rows = list(csv.DictReader(io.StringIO(to_csv(t))))
    assert [r["technique"] for r in rows] == ["none", "fgsm"]
    none = rows[0]
    assert float(none["clean_top1_mean"]) == pytest.approx(0.52)
    assert float(none["clean_top1_std"]) == pytest.approx(0.02 * SQRT2)
    assert float(rows[1]["seconds_per_epoch_mean"]) == pytest.approx(22.0)
    assert float(rows[1]["cost_ratio_to_none"]) == pytest.approx(2.0)
    assert none["n_models"] == "2"
    metric_cols = [c for c in rows[0] if c.endswith("_mean")]
    assert metric_cols[0] == "clean_top1_mean" and "uae_steps_p50_mean" in metric_cols


def test_json_has_per_seed_values_and_protocols(study_dir: Path):
    study = load_study(study_dir)
    t = build_table(study)
    paths = write_tables(t, study, study_dir / "report")
    data = json.loads(paths["json"].read_text())
    assert data == json.loads(json.dumps(to_json(t, study)))
    cell = data["table"]["fgsm"]["clean_top1"]
    assert cell["mean"] == pytest.approx(0.46) and cell["n"] == 2
    assert [(v["seed"], v["value"]) for v in cell["values"]] == [(0, 0.45), (1, 0.47)]
    assert cell["protocol"] == PROTO["clean_top1"]
    assert data["protocols"]["pgd10@8/255"] == PROTO["pgd10@8/255"]
    assert data["cost"]["fgsm"]["ratio_to_none"] == pytest.approx(2.0)
    assert data["units"]["clean_top1"] == "fraction" and data["units"]["uae_steps_p50"] == "value"
    assert data["seeds"] == [0, 1] and data["dataset"] == "cifar100"
    assert data["models"][0]["checkpoint"] == "classifiers/none-s0/checkpoints/final.pt"


def test_markdown_table_and_protocol_list(study_dir: Path):
    study = load_study(study_dir)
    md = to_markdown(build_table(study), study)
    assert "| Technique | Models | Clean top-1 (%) |" in md
    assert "| `none` | 2 | 52.00 ± 2.83 | 81.00 ± 1.41 |" in md
    assert "| `fgsm` | 2 | 46.00 ± 1.41 |" in md
    assert "| 11.0 ± 1.4 | ×1.00 |" in md and "| 22.0 ± 2.8 | ×2.00 |" in md
    assert "## Protocol" in md
    for line in PROTO.values():
        assert line in md


def test_text_table_fits_a_terminal(study_dir: Path):
    study = load_study(study_dir)
    text = table_text(build_table(study), study)
    assert "52.0 ± 2.8" in text and "×2.00" in text
    assert all(len(line) <= 100 for line in text.splitlines())


def test_text_table_splits_many_techniques(tmp_path: Path):
    techs = ["none", "fgsm", "gan", "unrestricted", "unrestricted_long_a", "unrestricted_long_b",
             "mixup_variant", "cutmix_variant"]  # fmt: skip
    models = {f"{t}-s{s}": {"clean_top1": 0.5 + 0.01 * s, "fgsm@8/255": 0.1} for t in techs
              for s in (0, 1)}  # fmt: skip
    study = load_study(make_study(tmp_path / "s", models))
    text = table_text(build_table(study), study)
    lines = text.splitlines()
    assert all(len(line) <= 100 for line in lines)
    assert sum(1 for line in lines if line.startswith("clean_top1")) >= 2  # two blocks
    for t in techs:
        assert t in text


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=6))
def test_stat_matches_statistics(xs: list[float]):
    s = Stat.of([{"model": f"m{i}", "seed": i, "value": x} for i, x in enumerate(xs)])
    assert s.n == len(xs)
    assert s.mean == pytest.approx(statistics.fmean(xs))
    if len(xs) == 1:
        assert s.std is None
    else:
        mean = sum(xs) / len(xs)
        by_hand = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
        assert s.std == pytest.approx(by_hand, abs=1e-12)


def test_bare_values_count_and_say_their_protocol_is_missing(tmp_path: Path):
    root = make_study(tmp_path / "s", {"none-s0": {"clean_top1": 0.5}})
    ev = json.loads((root / "eval" / "none-s0.json").read_text())
    ev["metrics"]["gan_acc"] = 0.8
    (root / "eval" / "none-s0.json").write_text(json.dumps(ev))
    t = build_table(load_study(root))
    assert t.cells["none"]["gan_acc"].mean == 0.8
    assert t.protocol_line("gan_acc") == "protocol not recorded"


def _add_counts_and_outcomes(root: Path, key: str, n: int) -> dict[str, list[bool]]:
    """Give every model's ``key`` its count and per-image outcomes (as many right as its
    value says: the first round(value·n) images)."""
    import torch

    from advaug.evaluate.accuracy import pack_outcomes

    flags = {}
    for path in sorted((root / "eval").glob("*.json")):
        ev = json.loads(path.read_text())
        v = ev["metrics"][key]["value"]
        ok = [i < round(v * n) for i in range(n)]
        ev["metrics"][key]["n"] = n
        ev["per_image"] = {key: pack_outcomes(torch.tensor(ok))}
        path.write_text(json.dumps(ev))
        flags[path.stem] = ok
    return flags


def test_rates_with_counts_get_wilson_intervals_and_paired_differences(study_dir: Path):
    from advaug.report.stats import wilson

    _add_counts_and_outcomes(study_dir, "clean_top1", 200)
    study = load_study(study_dir)
    t = build_table(study)
    none = t.cells["none"]["clean_top1"]
    # none-s0 0.50 and none-s1 0.54 of 200 each: 100 + 108 of 400 pooled
    assert none.items == 400 and none.ci == wilson(208, 400)
    assert [v["ci"] for v in none.values] == [wilson(100, 200), wilson(108, 200)]
    # metrics without counts have none
    assert t.cells["none"]["fgsm@2/255"].ci is None and t.cells["none"]["uae_steps_p50"].ci is None
    # fgsm − none: (0.45 − 0.50 + 0.47 − 0.54) / 2 = −0.06, on the same 200 images per seed
    d = t.diffs["fgsm"]["clean_top1"]
    assert d.diff == pytest.approx(-0.06) and (d.seeds, d.items) == (2, 200)
    assert d.low <= -0.06 <= d.high < 0
    assert "none" not in t.diffs and "fgsm@2/255" not in t.diffs["fgsm"]
    # every file carries them
    data = to_json(t, study)
    cell = data["table"]["fgsm"]["clean_top1"]
    assert cell["items"] == 400 and len(cell["ci95"]) == 2
    assert cell["diff_vs_none"]["diff"] == pytest.approx(-0.06)
    assert "Wilson" in data["intervals"]
    row = next(r for r in csv.DictReader(io.StringIO(to_csv(t))) if r["technique"] == "fgsm")
    assert row["clean_top1_n"] == "400" and float(row["clean_top1_diff"]) == pytest.approx(-0.06)
    assert float(row["clean_top1_ci_low"]) < 0.46 < float(row["clean_top1_ci_high"])
    assert row["fgsm@2/255_ci_low"] == "" and row["fgsm@2/255_diff"] == ""
    md = to_markdown(t, study)
    lo, hi = t.cells["none"]["clean_top1"].ci
    assert f"52.00 ± 2.83 [{100 * lo:.2f}, {100 * hi:.2f}]" in md
    assert "## Difference from `none`" in md and "| `fgsm` | -6.00 [" in md


def test_html_shows_intervals_and_differences(study_dir: Path):
    from advaug.report import write_report

    _add_counts_and_outcomes(study_dir, "clean_top1", 200)
    page = write_report(study_dir).index_html.read_text()
    assert "95% CI [" in page and "n=400" in page and "vs none -6.00 [" in page
    assert "Wilson 95 % interval" in page


def test_gan_section_puts_real_data_beside_the_generator(study_dir: Path):
    from advaug.report import write_report
    from advaug.report.stats import wilson

    meta = json.loads((study_dir / "study.json").read_text())
    meta["gan"]["quality"] = {
        "classifier_fid": {"value": 0.21, "real": 0.034, "protocol": "FID 180 vs 180"},
        "gan_test_acc": {"value": 0.36, "n": 100, "real": 0.9, "real_n": 359, "protocol": "p"},
    }
    (study_dir / "study.json").write_text(json.dumps(meta))
    page = write_report(study_dir).index_html.read_text()
    assert "<th class='num'>Generator</th><th class='num'>Real data</th>" in page
    assert "Classifier-feature FID" in page and ">0.034<" in page
    lo, hi = wilson(36, 100)
    assert f'36.00%<span class="seeds">95% CI [{100 * lo:.2f}, {100 * hi:.2f}], n=100' in page
    assert "90.00%<span" in page and "n=359" in page


def test_pool_summary_weights_by_draws_and_reaches_every_output(study_dir: Path):
    """Two epochs of a pooled unrestricted model: 100 draws with 80% still adversarial, then
    300 draws with 40%: the summary is (80 + 120) / 400 = 50%, not the plain mean 60%."""
    from advaug.report.html import pool_table
    from advaug.report.tables import pool_summary

    path = study_dir / "classifiers" / "fgsm-s0" / "metrics.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    pool = [
        {"pool_draws": 100, "pool_still_adv": 0.8, "pool_age_mean": 10.0, "pool_age_max": 30,
         "pool_reuse_mean": 2.0},
        {"pool_draws": 300, "pool_still_adv": 0.4, "pool_age_mean": 30.0, "pool_age_max": 50},
    ]  # fmt: skip
    train = [r for r in recs if r.get("split") == "train"]
    train[0].update(pool[0])
    train[1].update(pool[1])
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    study = load_study(study_dir)
    (row,) = pool_summary(study)
    assert row["model"] == "fgsm-s0" and row["draws"] == 400
    assert row["still_adversarial"] == pytest.approx(0.5)
    assert row["age_mean"] == pytest.approx((10 * 100 + 30 * 300) / 400)
    assert row["age_max"] == 50 and row["reuse_mean"] == pytest.approx(2.0)
    table = build_table(study)
    assert to_json(table, study)["pool"] == [row]
    md = to_markdown(table, study)
    assert "## Pooled unrestricted augmentation" in md and "| fgsm-s0 | 400 | 50.0% |" in md
    assert "50.0%" in pool_table(study)


def test_no_pool_means_no_pool_section(study_dir: Path):
    from advaug.report.html import pool_table

    study = load_study(study_dir)
    table = build_table(study)
    assert to_json(table, study)["pool"] == []
    assert "Pooled" not in to_markdown(table, study) and pool_table(study) == ""


def test_only_rates_get_wilson_intervals():
    """A median step count or a latent-distance percentile carries the n it was taken over,
    but it is not a share of n items: no interval (a 'steps 1.00 [0.96, 1]' cell is wrong)."""
    from advaug.report.stats import wilson

    vals = [{"model": "m", "seed": 0, "value": 0.5, "n": 40}]
    assert Stat.of([dict(v) for v in vals], rate=True).ci == pytest.approx(wilson(20, 40))
    plain = Stat.of([dict(v) for v in vals])
    assert plain.ci is None and "ci" not in plain.values[0]


def test_the_worst_and_best_targeted_pair_get_no_interval(tmp_path: Path):
    """The extremes over (source, target) pairs rest on one pair's codes and are a selection;
    runs before this rule stored the count of all codes with them, which gave a narrow interval.
    The mean over pairs keeps its interval."""
    from advaug.report.stats import wilson

    models = {
        f"none-s{s}": {"clean_top1": 0.5, "uae_targeted_success_mean": 0.5,
                       "uae_targeted_success_min": 0.25, "uae_targeted_success_max": 0.75}
        for s in (0, 1)
    }  # fmt: skip
    root = make_study(tmp_path / "s", models)
    for key in ("uae_targeted_success_mean", "uae_targeted_success_min",
                "uae_targeted_success_max"):  # fmt: skip
        _add_counts_and_outcomes(root, key, 40)
    cells = build_table(load_study(root)).cells["none"]
    assert cells["uae_targeted_success_mean"].ci == wilson(40, 80)
    for key in ("uae_targeted_success_min", "uae_targeted_success_max"):
        assert cells[key].ci is None and cells[key].mean == models["none-s0"][key], key


# -- the statistics against hand-built studies (mutation testing, issue 18) ------------------


def _packed(flags: list[bool]) -> dict:
    import torch

    from advaug.evaluate.accuracy import pack_outcomes

    return pack_outcomes(torch.tensor(flags))


def _run(name: str, metrics: dict | None, spe: float | None = None, **kw) -> ModelRun:
    """A model of technique and seed ``<technique>-s<seed>``; ``metrics`` None: no eval."""
    tech, seed = name.rsplit("-s", 1)
    ev = None
    if metrics is not None:
        ev = {"metrics": metrics, "per_image": kw.pop("per_image", {})}
        if spe is not None:
            ev["cost"] = {"seconds_per_epoch": spe, "train_seconds": 3 * spe, "epochs": 3}
    return ModelRun(name, tech, int(seed), ev, kw.pop("result", None), kw.pop("records", []))


def _study(*models: ModelRun, techniques: list[str] | None = None) -> StudyData:
    return StudyData(Path("s"), {"techniques": techniques or []}, list(models))


def test_cells_keep_each_value_and_each_protocol_whole():
    """A model without the metric (or with a malformed entry) is skipped, not the rest; an
    integer ``n`` is kept, a bool or float one is not; protocols are listed per model."""
    from advaug.report.stats import wilson

    study = _study(
        _run("none-s0", {"clean_top1": {"value": 0.5, "n": 10, "protocol": "p1"}}),
        _run("none-s1", {"clean_top1": [0.1], "gan_acc": {"value": 0.9}}),
        _run("none-s2", {"clean_top1": {"value": 0.7, "n": True, "protocol": "p2"}}),
        _run("none-s3", {"clean_top1": {"value": 0.6, "n": 2.0, "protocol": "p1"}}),
        _run("fgsm-s0", None, result={"train_seconds": 30.0, "epochs": 3}),
        _run("fgsm-s1", {"clean_top1": "0.25"}),
    )
    t = build_table(study)
    c = t.cells["none"]["clean_top1"]
    assert c.values == [
        {"model": "none-s0", "seed": 0, "value": 0.5, "n": 10, "ci": wilson(5, 10)},
        {"model": "none-s2", "seed": 2, "value": 0.7},
        {"model": "none-s3", "seed": 3, "value": 0.6},
    ]
    assert (c.n, c.protocol, c.items, c.ci) == (3, "p1 | p2", None, None)
    assert t.protocols["clean_top1"] == {"p1": ["none-s0", "none-s3"], "p2": ["none-s2"]}
    assert t.protocol_line("clean_top1") == "p1 [none-s0, none-s3]; p2 [none-s2]"
    assert t.cells["none"]["gan_acc"].values == [{"model": "none-s1", "seed": 1, "value": 0.9}]
    assert t.cells["none"]["gan_acc"].protocol is None and t.protocols["gan_acc"] == {}
    assert t.cells["fgsm"]["clean_top1"].values == [{"model": "fgsm-s1", "seed": 1, "value": 0.25}]
    assert t.models == {"none": ["none-s0", "none-s1", "none-s2", "none-s3"], "fgsm": ["fgsm-s1"]}
    assert (t.techniques, t.metrics) == (["none", "fgsm"], ["clean_top1", "gan_acc"])


def test_costs_keep_each_model_and_the_ratio_needs_a_nonzero_baseline():
    study = _study(
        _run("none-s0", {}, spe=0.0),
        _run("fgsm-s0", {}, spe=4.0),
        _run("gan-s0", None),  # no cost at all
    )
    t = build_table(study)
    assert t.seconds_per_epoch["fgsm"].values == [{"model": "fgsm-s0", "seed": 0, "value": 4.0}]
    assert t.train_seconds["fgsm"].values == [{"model": "fgsm-s0", "seed": 0, "value": 12.0}]
    assert t.seconds_per_epoch["gan"].mean is None and t.seconds_per_epoch["gan"].n == 0
    assert t.ratio == {"none": None, "fgsm": None, "gan": None}
    assert t.cost_protocol == COST_PROTOCOL  # no runtime recorded: nothing appended
    study.models[0].eval["cost"]["seconds_per_epoch"] = 2.0
    study.models[1].result = {"runtime": {"device": "cuda", "precision": "bf16", "world_size": 2}}
    t = build_table(study)
    assert t.ratio == {"none": 1.0, "fgsm": 2.0, "gan": None}
    assert t.cost_protocol == COST_PROTOCOL + "; measured on cuda, bf16, 2 ranks"


def test_differences_pair_seeds_for_every_metric_with_outcomes():
    """Outcomes on the second metric only (the first has none), techniques listed with the
    baseline last; a model without a seed, and one without outcomes, are left out."""
    base = [True, True, False, False]
    better = [True, True, True, False]
    study = _study(
        _run("fgsm-s0", {"clean_top1": 0.5, "fgsm@8/255": 0.75},
             per_image={"fgsm@8/255": _packed(better)}),
        _run("gan-s0", {"clean_top1": 0.5, "fgsm@8/255": 0.5}),
        _run("none-s0", {"clean_top1": 0.5, "fgsm@8/255": 0.5},
             per_image={"fgsm@8/255": _packed(base)}),
        techniques=["fgsm", "gan", "none"],
    )  # fmt: skip
    t = build_table(study)
    assert list(t.diffs) == ["fgsm"] and list(t.diffs["fgsm"]) == ["fgsm@8/255"]
    d = t.diffs["fgsm"]["fgsm@8/255"]
    assert d.diff == pytest.approx(0.25) and (d.seeds, d.items) == (1, 4)
    study.models[0].seed = study.models[2].seed = None  # without seeds nothing is paired
    assert build_table(study).diffs == {}
    study.models[0].seed = study.models[2].seed = 0
    study.models.pop()  # no baseline
    assert build_table(study).diffs == {}


def test_a_rate_without_any_value_has_no_interval():
    s = Stat.of([{"model": "m", "seed": 0, "value": None, "n": 10}], "p", rate=True)
    assert (s.mean, s.std, s.n, s.items, s.ci, s.protocol) == (None, None, 0, None, None, "p")
    assert s.values == [{"model": "m", "seed": 0, "value": None, "n": 10}]


def test_pool_summary_rows_whole_and_missing_keys():
    """Records without draws are not the pool's; a record without a share is left out of the
    weighting; keys no record has give None."""
    recs = [
        {"pool_draws": 0, "pool_still_adv": 0.0},
        {"pool_draws": 100, "pool_still_adv": 0.8, "pool_reuse_mean": 1.0},
        {"pool_draws": 300, "pool_reuse_mean": 3.0},
        {"split": "val", "top1": 0.5},
    ]
    other = [{"pool_draws": 5, "pool_still_adv": 1.0, "pool_age_max": 7}]
    study = _study(
        _run("none-s0", None),
        _run("unrestricted-s3", None, records=recs),
        _run("unrestricted-s4", None, records=other),
    )
    assert pool_summary(study) == [
        {"model": "unrestricted-s3", "technique": "unrestricted", "seed": 3, "draws": 400,
         "still_adversarial": 0.8, "age_mean": None, "age_max": None, "reuse_mean": 2.0},
        {"model": "unrestricted-s4", "technique": "unrestricted", "seed": 4, "draws": 5,
         "still_adversarial": 1.0, "age_mean": None, "age_max": 7, "reuse_mean": None},
    ]  # fmt: skip

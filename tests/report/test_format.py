"""Metric names, order and number formatting."""

from __future__ import annotations

import random

from advaug.report.format import (
    DASH,
    direction,
    fmt_stat,
    fmt_value,
    is_percent,
    label,
    order_metrics,
    row_ref,
)


def test_order_clean_then_attacks_by_budget_then_generative_then_rest():
    want = [
        "clean_top1",
        "clean_top5",
        "fgsm@2/255",
        "fgsm@8/255",
        "pgd10@8/255",
        "autoattack@8/255",
        "gan_acc",
        "uae_success",
        "uae_legit",
        "uae_steps_p50",
        "transfer_uae_acc",
        "uae_other",
        "zzz_custom",
    ]
    shuffled = want[:]
    random.Random(0).shuffle(shuffled)
    assert order_metrics(shuffled + ["clean_top1"]) == want


def test_eps_sorted_numerically_not_as_text():
    assert order_metrics(["fgsm@16/255", "fgsm@2/255", "fgsm@8/255"]) == [
        "fgsm@2/255",
        "fgsm@8/255",
        "fgsm@16/255",
    ]


def test_labels():
    assert label("pgd10@8/255") == "PGD-10 ε=8/255"
    assert label("fgsm@2/255") == "FGSM ε=2/255"
    assert label("autoattack@8/255") == "AutoAttack ε=8/255"
    assert label("clean_top1") == "Clean top-1"
    assert label("fid") == "FID"
    assert label("my_metric") == "My metric"


def test_percent_and_direction():
    for k in ["clean_top1", "fgsm@8/255", "gan_acc", "uae_success", "uae_legit", "ac_acc"]:
        assert is_percent(k), k
    for k in ["uae_steps_p50", "fid", "is_mean", "train_seconds"]:
        assert not is_percent(k), k
    assert direction("clean_top1") == "higher"
    assert direction("pgd10@8/255") == "higher"
    assert direction("uae_success") == "lower"
    assert direction("uae_legit") is None
    assert direction("fid") == "lower"


def test_number_formats():
    assert fmt_value("clean_top1", 0.5234) == "52.34"
    assert fmt_value("clean_top1", 0.5234, pct_digits=1) == "52.3"
    assert fmt_value("clean_top1", None) == DASH
    assert fmt_value("fid", 45.256) == "45.3"
    assert fmt_value("uae_steps_p50", 6.0, ref=13.0) == "6.0"
    assert fmt_value("uae_steps_p50", 6.0) == "6.00"
    assert fmt_stat("clean_top1", 0.52, 0.0282842712) == "52.00 ± 2.83"
    assert fmt_stat("clean_top1", 0.52, None) == "52.00"
    assert fmt_stat("uae_steps_p50", 6.0, 1.41421, ref=13.0) == "6.0 ± 1.4"
    assert fmt_stat("x", None, 1.0) == DASH
    assert row_ref([None, -3.0, 2.0]) == 3.0
    assert row_ref([None]) is None


def test_no_label_breaks_a_markdown_table():
    """Labels go into markdown table headers: a '|' in one would split its column."""
    from advaug.report.format import _LABELS

    assert not [k for k, v in _LABELS.items() if "|" in v]

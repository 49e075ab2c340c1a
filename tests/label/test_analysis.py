"""The analysis against hand-computed values. Every answer here is scripted by the test; none is
a human judgement."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advaug.label.analysis import (
    analyse,
    cohen_kappa,
    format_summary,
    krippendorff_alpha,
    summarize,
    wilson,
)
from advaug.label.store import NONE, Answer, Item, LabelStore


def test_wilson_by_hand():
    # 8 of 10: p = .8, z = 1.959964, z² = 3.841459; centre = (.8 + z²/20) / (1 + z²/10)
    # = .992073 / 1.384146 = .716740; half = z·sqrt(.016 + z²/400) / 1.384146 = .226577
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.490163, abs=2e-6) and high == pytest.approx(0.943317, abs=2e-6)
    low, high = wilson(0, 10)  # z²/(n + z²) = 3.841459 / 13.841459
    assert low == 0.0 and high == pytest.approx(0.277533, abs=1e-6)
    assert wilson(10, 10) == pytest.approx((1 - 0.277533, 1.0), abs=1e-6)
    assert wilson(0, 0) is None
    with pytest.raises(ValueError):
        wilson(11, 10)


@settings(deadline=None)
@given(st.integers(1, 2000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_matches_scipy(kn):
    scipy_stats = pytest.importorskip("scipy.stats")  # installed with scikit-learn
    k, n = kn
    ci = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson(k, n)
    assert low == pytest.approx(ci.low, abs=1e-9) and high == pytest.approx(ci.high, abs=1e-9)


def test_krippendorff_alpha_by_hand():
    # two raters, four images: (a, a), (a, b), (b, b), (b, b). Coincidences: o_aa = 2,
    # o_ab = o_ba = 1, o_bb = 4; n_a = 3, n_b = 5, n = 8. D_o = 2/8, D_e = 2·3·5/(8·7) = 30/56,
    # alpha = 1 − D_o/D_e = 1 − 7/15 = 8/15.
    assert krippendorff_alpha({0: [0, 0], 1: [0, 1], 2: [1, 1], 3: [1, 1]}) == pytest.approx(8 / 15)
    # an image answered once adds nothing; perfect agreement is 1
    assert krippendorff_alpha({0: [0, 0], 1: [2, 2], 2: [1]}) == pytest.approx(1.0)
    assert krippendorff_alpha({0: [0], 1: [1]}) is None  # no image with two answers
    assert krippendorff_alpha({0: [1, 1], 1: [1, 1]}) is None  # one value only: undefined


def test_cohen_kappa_by_hand():
    # 2x2: (T,T)=3, (T,F)=1, (F,T)=1, (F,F)=5; n=10. p_o = .8,
    # p_e = .4·.4 + .6·.6 = .52, kappa = (.8 − .52)/(1 − .52) = .583333
    a = [True] * 4 + [False] * 6
    b = [True, True, True, False, True, False, False, False, False, False]
    assert cohen_kappa(a, b) == pytest.approx(0.28 / 0.48)
    assert cohen_kappa([True, True], [True, True]) is None
    assert cohen_kappa([], []) is None
    assert cohen_kappa([True, True], [True, False]) == pytest.approx(0.0)


def _items() -> list[Item]:
    # ids 0-3 UAEs (sources 0, 1, 2, 0; proxy right on 0 and 1), 4-5 clean, 6-7 real
    return [
        Item(0, "uae", 0, proxy_pred=0),
        Item(1, "uae", 1, proxy_pred=1),
        Item(2, "uae", 2, proxy_pred=0),
        Item(3, "uae", 0, proxy_pred=2),
        Item(4, "gan", 1, proxy_pred=1),
        Item(5, "gan", 2, proxy_pred=2),
        Item(6, "real", 0, proxy_pred=0),
        Item(7, "real", 1, proxy_pred=0),
    ]


def _answers(script: dict[str, list[tuple[int, int]]]) -> list[Answer]:
    out, seq = [], 0
    for rater, pairs in script.items():
        for item, choice in pairs:
            seq += 1
            out.append(Answer(seq, rater, item, choice, "web", float(seq)))
    return out


SCRIPT = {  # scripted answers, not people
    "alice": [(0, 0), (1, 2), (2, 2), (3, NONE), (4, 1), (5, 2), (6, 0), (7, 1)],
    "bob": [(0, 0), (1, 1), (2, 1), (4, 1), (5, 0), (6, 0)],
}


def test_analyse_counts_scripted_answers():
    s = analyse(_items(), _answers(SCRIPT), proxy="toy proxy")
    assert s["items"] == {"uae": 4, "gan": 2, "real": 2}
    assert s["answers"] == 14 and s["raters"] == ["alice", "bob"]
    # UAE answers: alice 0✓ 1✗ 2✓ 3✗(none), bob 0✓ 1✓ 2✗ → 4 of 7 legitimate
    assert (s["human"]["uae"]["k"], s["human"]["uae"]["n"]) == (4, 7)
    low, high = wilson(4, 7)
    assert (s["human"]["uae"]["low"], s["human"]["uae"]["high"]) == (low, high)
    assert (s["human"]["gan"]["k"], s["human"]["gan"]["n"]) == (3, 4)
    assert (s["human"]["real"]["k"], s["human"]["real"]["n"]) == (3, 3)
    assert (s["none_answers"]["uae"]["k"], s["none_answers"]["uae"]["n"]) == (1, 7)
    assert s["per_rater"]["alice"]["uae"]["k"] == 2 and s["per_rater"]["bob"]["uae"]["k"] == 2
    # proxy on items: UAE 2 of 4 say source, clean 2 of 2, real 1 of 2
    auto = s["proxy"]["automatic"]
    assert [auto[k]["k"] for k in ("uae", "gan", "real")] == [2, 2, 1]
    # per UAE answer (proxy says source on items 0, 1): (P, H) pairs:
    # alice 0 (T,T) 1 (T,F) 2 (F,T) 3 (F,F); bob 0 (T,T) 1 (T,T) 2 (F,F)
    c = s["proxy"]["confusion"]
    assert c == {
        "proxy_source_human_source": 3,
        "proxy_source_human_not": 1,
        "proxy_not_human_source": 1,
        "proxy_not_human_not": 2,
    }
    assert (s["proxy"]["agreement"]["k"], s["proxy"]["agreement"]["n"]) == (5, 7)
    # p_o = 5/7, p_e = (4/7)(4/7) + (3/7)(3/7) = 25/49 → kappa = (35/49 − 25/49)/(24/49) = 10/24
    assert s["proxy"]["kappa"] == pytest.approx(10 / 24)
    assert s["agreement"]["items"] == 6 and s["agreement"]["raters"] == 2
    assert -1 <= s["agreement"]["alpha"] <= 1
    text = format_summary({**s, "set": "x.sqlite"})
    assert "57.1% [25.0, 84.2]" in text and "toy proxy" in text and "alice" in text


def test_no_answers_is_said_not_invented(store: LabelStore):
    s = summarize(store)
    assert s["answers"] == 0 and s["human"]["uae"]["value"] is None
    assert all(math.isfinite(v["value"]) for v in s["proxy"]["automatic"].values())
    text = format_summary(s)
    assert "no human labels yet" in text and "%" not in text


def test_summary_of_a_stored_set(store: LabelStore):
    items = store.items()
    for it in items:  # scripted: "alice" always answers the source, "bob" always none
        store.answer("alice", it.id, it.source)
        store.answer("bob", it.id, NONE)
    s = summarize(store)
    assert s["human"]["uae"]["k"] == 6 and s["human"]["uae"]["n"] == 12
    assert s["per_rater"]["alice"]["real"]["value"] == 1.0
    assert s["per_rater"]["bob"]["gan"]["value"] == 0.0
    assert s["proxy"]["name"].startswith("AC head")
    assert s["agreement"]["alpha"] < 0  # the two scripts disagree systematically

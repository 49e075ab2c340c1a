"""Wilson intervals against a hand computation; the paired bootstrap's properties; the packed
per-image outcomes round-trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advaug.evaluate.accuracy import pack_outcomes
from advaug.report.stats import paired_difference, rate_interval, unpack_outcomes, wilson


def test_wilson_interval_by_hand():
    # k = 8 of n = 10, z = 1.959964 (95 %), z² = 3.841459:
    #   centre = (p + z²/2n) / (1 + z²/n) = (0.8 + 0.1920729) / 1.3841459 = 0.7167402
    #   half   = z / (1 + z²/n) · sqrt(p(1-p)/n + z²/4n²) = 1.4160097 · 0.1600114 = 0.2265777
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.7167402 - 0.2265777, abs=1e-6)  # 0.4901625
    assert hi == pytest.approx(0.7167402 + 0.2265777, abs=1e-6)  # 0.9433179
    # at k = 0 the interval starts at 0 and ends at z²/(n + z²) = 3.8414588 / 13.8414588
    lo, hi = wilson(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.2775328, abs=1e-6)
    assert wilson(0, 0) is None


@given(st.integers(1, 5000), st.data())
@settings(max_examples=60, deadline=None)
def test_wilson_matches_the_formula(n, data):
    k = data.draw(st.integers(0, n))
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(max(0.0, centre - half), abs=1e-9)
    assert hi == pytest.approx(min(1.0, centre + half), abs=1e-9)
    assert lo <= p <= hi


def test_rate_interval_needs_a_share_and_its_count():
    assert rate_interval(0.8, 10) == wilson(8, 10)
    assert rate_interval(0.8, None) is None and rate_interval(None, 10) is None
    assert rate_interval(7.0, 10) is None  # not a share (e.g. a median of steps)
    assert rate_interval(0.5, True) is None


@given(st.lists(st.booleans(), max_size=70))
def test_packed_outcomes_round_trip(flags):
    packed = pack_outcomes(torch.tensor(flags, dtype=torch.bool))
    assert packed["n"] == len(flags)
    assert unpack_outcomes(packed).tolist() == flags


def test_packed_outcomes_are_compact_and_malformed_ones_are_none():
    packed = pack_outcomes(torch.ones(10_000, dtype=torch.bool))
    assert len(packed["bits"]) == 1668  # 1,250 bytes in base64
    assert unpack_outcomes({"n": 9, "bits": packed["bits"][:4]}) is not None
    assert unpack_outcomes({"n": 10_001, "bits": packed["bits"]}) is None
    assert unpack_outcomes({"n": 3, "bits": "not base64!"}) is None
    assert unpack_outcomes([1, 0]) is None


def _outcomes(p: float, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(n) < p


def test_paired_difference_of_identical_techniques_is_exactly_zero():
    base = {s: _outcomes(0.5, 300, s) for s in range(3)}
    d = paired_difference({s: v.copy() for s, v in base.items()}, base)
    assert (d.diff, d.low, d.high, d.seeds, d.items) == (0.0, 0.0, 0.0, 3, 300)


def test_paired_difference_by_hand_and_its_interval():
    # seed 0: technique right on 6 of 10 where none is right on 4 (diff 0.2);
    # seed 1: 5 vs 5 (diff 0); the mean over seeds is 0.1
    t = {0: np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], bool), 1: np.array([1] * 5 + [0] * 5, bool)}
    b = {0: np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool), 1: np.array([0] * 5 + [1] * 5, bool)}
    d = paired_difference(t, b)
    assert d.diff == pytest.approx(0.1) and d.seeds == 2 and d.items == 10
    assert d.low < 0.1 < d.high
    # one seed at a time: the interval is the item bootstrap of that seed's differences
    only0 = paired_difference({0: t[0]}, {0: b[0]})
    assert only0.diff == pytest.approx(0.2)
    assert only0.low == 0.0 < 0.2 < only0.high <= 0.6  # no item is worse


def test_a_clear_improvement_excludes_zero_and_noise_does_not():
    base = {s: _outcomes(0.5, 2000, s) for s in range(3)}
    better = {s: base[s] | _outcomes(0.2, 2000, 10 + s) for s in range(3)}
    d = paired_difference(better, base)
    assert d.low > 0.05
    same = {s: _outcomes(0.5, 2000, 20 + s) for s in range(3)}
    assert paired_difference(same, base).low < 0 < paired_difference(same, base).high


def test_seed_variation_widens_the_interval():
    # the same item-level effect, but one seed's gain is much larger than the other's
    base = {s: _outcomes(0.5, 1000, s) for s in range(2)}
    even = {s: base[s] | _outcomes(0.1, 1000, 10 + s) for s in range(2)}
    uneven = {0: base[0] | _outcomes(0.01, 1000, 10), 1: base[1] | _outcomes(0.2, 1000, 11)}
    e, u = paired_difference(even, base), paired_difference(uneven, base)
    assert (u.high - u.low) > 1.5 * (e.high - e.low)


def test_paired_difference_needs_common_seeds_and_the_same_items():
    a = {0: np.ones(5, bool)}
    assert paired_difference(a, {1: np.ones(5, bool)}) is None
    assert paired_difference(a, {0: np.ones(6, bool)}) is None


def test_rate_interval_at_the_edges_of_a_share_and_a_count():
    """p = 0 and p = 1 are shares, one item is a count, a float count is a count; a count
    below one, a negative or a text count is not."""
    assert rate_interval(1.0, 1) == wilson(1, 1) and rate_interval(0.0, 5) == wilson(0, 5)
    assert rate_interval(0.8, 10.0) == wilson(8, 10)
    assert rate_interval(0.25, 4) == wilson(1, 4)  # k = round(p·n)
    assert rate_interval(0.5, 0) is None and rate_interval(0.5, 0.5) is None
    assert rate_interval(-0.1, 10) is None and rate_interval(1.1, 10) is None
    assert rate_interval(0.5, "10") is None


def test_wilson_of_one_trial_and_another_confidence():
    lo, hi = wilson(1, 1)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(1 / (1 + 1.959963984540054**2))
    wide, narrow = wilson(8, 10, 0.99), wilson(8, 10)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]


def test_unpack_outcomes_at_the_edges():
    """No items is an empty array (not a failure); a whole byte of items is enough bits; a
    bool or missing count, bytes instead of text, and a short bit string are malformed."""
    assert unpack_outcomes({"n": 0, "bits": ""}).tolist() == []
    eight = pack_outcomes(torch.tensor([True, False] * 4))
    assert unpack_outcomes(eight).tolist() == [True, False] * 4
    assert unpack_outcomes({"n": True, "bits": eight["bits"]}) is None
    assert unpack_outcomes({"n": -1, "bits": eight["bits"]}) is None
    assert unpack_outcomes({"bits": eight["bits"]}) is None
    assert unpack_outcomes({"n": 8, "bits": eight["bits"].encode()}) is None
    assert unpack_outcomes({"n": 8}) is None
    # a damaged string is malformed, not read by skipping what is not base64 ("AQ==" is [1])
    assert unpack_outcomes({"n": 1, "bits": "AQ=="}).tolist() == [True]
    assert unpack_outcomes({"n": 1, "bits": "A!Q=="}) is None
    assert unpack_outcomes(eight).dtype == bool


def test_paired_difference_defaults_are_the_documented_ones():
    """2,000 replicates, a 95 % interval and the fixed seed 0: the report is reproducible."""
    t = {s: _outcomes(0.6, 200, s) for s in range(3)}
    b = {s: _outcomes(0.5, 200, 10 + s) for s in range(3)}
    d = paired_difference(t, b)
    assert d == paired_difference(t, b, replicates=2000, confidence=0.95, seed=0)
    assert d == paired_difference(t, b)  # the same numbers every time
    assert d != paired_difference(t, b, seed=1)
    assert d.to_json() == {"diff": d.diff, "low": d.low, "high": d.high, "seeds": 3,
                           "items": 200}  # fmt: skip


def test_paired_difference_interval_is_the_bootstraps_central_95_percent():
    """One seed, 400 items whose difference is 1 on half of them: the item bootstrap of the
    mean is Binomial(400, 1/2)/400, whose central 95 % is 0.5 ± 1.96·0.025 (normal
    approximation; 2,000 replicates put each end within about 0.003 of it)."""
    t = {0: np.arange(400) % 2 == 0}
    b = {0: np.zeros(400, bool)}
    d = paired_difference(t, b)
    assert d.diff == 0.5
    assert d.low == pytest.approx(0.5 - 1.96 * 0.025, abs=0.003)
    assert d.high == pytest.approx(0.5 + 1.96 * 0.025, abs=0.003)
    d90 = paired_difference(t, b, confidence=0.90)
    assert d90.low == pytest.approx(0.5 - 1.645 * 0.025, abs=0.003)


def test_paired_difference_needs_items_of_one_length_in_every_seed():
    one = {0: np.ones(5, bool), 1: np.ones(6, bool)}
    assert paired_difference(one, {0: np.ones(5, bool), 1: np.ones(6, bool)}) is None
    assert paired_difference({0: np.ones(0, bool)}, {0: np.ones(0, bool)}) is None
    # one seed of the technique scored on more items than the baseline's
    longer = {0: np.ones(5, bool), 1: np.ones(6, bool)}
    assert paired_difference(longer, {0: np.ones(5, bool), 1: np.ones(5, bool)}) is None

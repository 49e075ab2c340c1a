"""Uncertainty of the report's numbers: Wilson intervals of rates, and paired bootstrap
intervals of each technique's difference from the baseline.

- **A rate and its count.** An evaluation metric ``{"value": p, "n": N}`` is a share of ``N``
  items (test images, GAN samples, latent codes ...). :func:`wilson` gives its 95 % Wilson score
  interval through scipy (``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``), with
  ``k = round(p·N)``. Any metric that carries ``n`` gets one: a new rate needs only its count.
- **Paired differences.** Every model of a study is scored on the same items (the same test
  images and subsets, the same GAN samples and latent codes), and the evaluation saves each
  rate's per-item outcomes (``per_image``, packed by ``advaug.evaluate.accuracy.pack_outcomes``).
  :func:`paired_difference` then bootstraps mean_s(rate(T, s) - rate(none, s)) over seeds *and*
  items: each replicate draws the seeds with replacement and, independently, the items with
  replacement (the same items for both techniques, which is what pairs them), so the interval
  covers both the seed-to-seed variation of training and the sampling of the test items.
  scipy.stats.bootstrap resamples observations along one axis only (paired samples share it),
  not two crossed factors, so the two-way resampling is done here with numpy.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The confidence level of every interval in the report.
CONFIDENCE = 0.95
#: Bootstrap replicates of a paired difference.
BOOTSTRAP_REPLICATES = 2000
#: The bootstrap's fixed seed: a report is reproducible.
BOOTSTRAP_SEED = 0


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The Wilson score interval of ``k`` successes in ``n`` trials (None when ``n`` is 0)."""
    if n <= 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def rate_interval(value: float | None, n: Any) -> tuple[float, float] | None:
    """The Wilson interval of a rate ``value`` measured on ``n`` items (None when either is
    missing or ``value`` is not a share)."""
    if value is None or not isinstance(n, int | float) or isinstance(n, bool) or n < 1:
        return None
    if not 0.0 <= value <= 1.0:
        return None
    n = int(n)
    return wilson(round(value * n), n)


def unpack_outcomes(packed: Any) -> np.ndarray | None:
    """The bool outcomes that ``pack_outcomes`` wrote, or None for anything malformed."""
    if not isinstance(packed, dict):
        return None
    n, bits = packed.get("n"), packed.get("bits")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0 or not isinstance(bits, str):
        return None
    try:
        raw = np.frombuffer(base64.b64decode(bits, validate=True), dtype=np.uint8)
    except ValueError:
        return None
    if raw.size * 8 < n:
        return None
    return np.unpackbits(raw, count=n, bitorder="little").astype(bool)


@dataclass
class Difference:
    """mean over seeds of rate(technique) - rate(baseline), with its bootstrap interval."""

    diff: float
    low: float
    high: float
    seeds: int  # paired seeds
    items: int  # items per seed

    def to_json(self) -> dict[str, Any]:
        return {"diff": self.diff, "low": self.low, "high": self.high, "seeds": self.seeds,
                "items": self.items}  # fmt: skip


def paired_difference(
    technique: dict[int, np.ndarray],
    baseline: dict[int, np.ndarray],
    *,
    replicates: int = BOOTSTRAP_REPLICATES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> Difference | None:
    """The paired difference of two techniques' rates, bootstrapped over seeds and items.

    ``technique`` and ``baseline`` map a training seed to its per-item outcomes (bool, the same
    items in the same order). Seeds present in both are paired; None when there is none, or
    when the item lists differ in length (they were not scored on the same items).
    """
    seeds = sorted(set(technique) & set(baseline))
    if not seeds:
        return None
    sizes = {technique[s].shape[0] for s in seeds} | {baseline[s].shape[0] for s in seeds}
    if len(sizes) != 1 or 0 in sizes:
        return None
    d = np.stack([technique[s].astype(np.int8) - baseline[s].astype(np.int8) for s in seeds])
    n_seeds, n_items = d.shape
    # Items with the same outcome differences across the seeds are interchangeable: drawing
    # n_items items with replacement is drawing how many of each such pattern (a multinomial),
    # which is exact and needs no [replicates, n_items] index array.
    patterns, counts = np.unique(d.T, axis=0, return_counts=True)  # [P, seeds], [P]
    rng = np.random.default_rng(seed)
    drawn = rng.multinomial(n_items, counts / n_items, size=replicates)  # [B, P]
    per_seed = drawn @ patterns.astype(np.float64) / n_items  # [B, seeds]
    pick = rng.integers(0, n_seeds, size=(replicates, n_seeds))
    boot = np.take_along_axis(per_seed, pick, axis=1).mean(axis=1)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    diff = float(d.mean(axis=1, dtype=np.float64).mean())
    if not all(math.isfinite(v) for v in (diff, low, high)):
        return None
    return Difference(diff, float(low), float(high), n_seeds, n_items)

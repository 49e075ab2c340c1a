"""What the human answers of a labelling set say, next to the automatic proxy.

- **Human legitimacy**: the share of answers on UAE successes that name the source class
  ("none / cannot tell" counts as not the source). Its baselines: the same share on the clean
  GAN samples of the same codes and on real test images of the same classes.
- Each share has a **Wilson 95% interval** and its n. n counts answers: with several raters per
  image the answers are not independent, so the interval is then too narrow; the per-rater
  lines show the spread between people.
- **Agreement between raters**: Krippendorff's alpha, nominal, over every image that at least two
  raters answered ("none / cannot tell" is one more category). Alpha, unlike Fleiss' kappa,
  allows raters who labelled different subsets, which is how people label.
- **Proxy against humans**: on UAE answers, a 2×2 table (proxy says source or not, the person
  says source or not), the share agreeing, and Cohen's kappa. The proxy is the reference
  classifier when the set has one, else the GAN's AC head; ``proxy`` names it.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from advaug.label.store import KINDS, NONE, Answer, Item, LabelStore

Z95 = 1.959963984540054  # the 0.975 quantile of the standard normal

KIND_LABEL = {
    "uae": "UAE successes: human legitimacy (answer = source)",
    "gan": "clean GAN samples G(z⁰, s): accuracy",
    "real": "real test images: accuracy",
}


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion k/n (``None`` when n = 0):

    (p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)
    """
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n], got k={k}, n={n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Share:
    """k of n, with its Wilson 95% interval (``value``/``low``/``high`` are ``None`` at n = 0)."""

    k: int
    n: int

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.k, self.n)

    def to_json(self) -> dict[str, Any]:
        ci = self.interval
        return {
            "k": self.k,
            "n": self.n,
            "value": self.value,
            "low": ci[0] if ci else None,
            "high": ci[1] if ci else None,
        }

    def text(self) -> str:
        ci = self.interval
        if ci is None:
            return "no answers"
        return f"{100 * self.k / self.n:.1f}% [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _share(pairs: list[tuple[int, int]]) -> Share:
    """Share of (choice, source) pairs where the choice is the source."""
    return Share(sum(1 for c, s in pairs if c == s), len(pairs))


def krippendorff_alpha(units: dict[int, list[int]]) -> float | None:
    """Nominal Krippendorff's alpha over ``{unit: [values]}`` (the ``krippendorff`` package);
    ``None`` when no unit has two values or every value is the same (alpha is undefined)."""
    import krippendorff
    import numpy as np

    pairable = {u: v for u, v in units.items() if len(v) >= 2}
    values = {x for v in pairable.values() for x in v}
    if not pairable or len(values) < 2:
        return None
    width = max(len(v) for v in pairable.values())
    data = np.full((width, len(pairable)), np.nan)
    code = {x: i for i, x in enumerate(sorted(values))}
    for j, v in enumerate(pairable.values()):
        data[: len(v), j] = [code[x] for x in v]
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))


def cohen_kappa(a: list[bool], b: list[bool]) -> float | None:
    """Cohen's kappa of two paired yes/no ratings, κ = (p_o − p_e) / (1 − p_e): p_o the share
    of pairs that agree, p_e the agreement expected by chance from each rater's own yes rate.
    ``None`` when chance agreement is total (p_e = 1: kappa is undefined)."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ya, yb = sum(a) / n, sum(b) / n
    p_e = ya * yb + (1 - ya) * (1 - yb)
    if p_e >= 1:
        return None
    value = (p_o - p_e) / (1 - p_e)
    return value if math.isfinite(value) else None


def analyse(items: list[Item], answers: list[Answer], proxy: str = "") -> dict[str, Any]:
    """Every measure of the module docstring, as plain data (see ``format_summary``)."""
    by_id = {it.id: it for it in items}
    pairs: dict[str, list[tuple[int, int]]] = {k: [] for k in KINDS}
    rater_pairs: dict[str, dict[str, list[tuple[int, int]]]] = defaultdict(
        lambda: {k: [] for k in KINDS}
    )
    units: dict[int, list[int]] = defaultdict(list)
    confusion = Counter()
    for a in answers:
        it = by_id[a.item]
        pairs[it.kind].append((a.choice, it.source))
        rater_pairs[a.rater][it.kind].append((a.choice, it.source))
        units[a.item].append(a.choice)
        if it.kind == "uae" and it.proxy_pred is not None:
            confusion[(it.proxy_pred == it.source, a.choice == it.source)] += 1
    automatic = {
        kind: _share([(it.proxy_pred, it.source) for it in items
                      if it.kind == kind and it.proxy_pred is not None])
        for kind in KINDS
    }  # fmt: skip
    proxy_says = [p for (p, h), c in confusion.items() for _ in range(c)]
    human_says = [h for (p, h), c in confusion.items() for _ in range(c)]
    agree = confusion[(True, True)] + confusion[(False, False)]
    multi = sum(1 for v in units.values() if len(v) >= 2)
    return {
        "items": {kind: sum(1 for it in items if it.kind == kind) for kind in KINDS},
        "answers": len(answers),
        "raters": sorted(rater_pairs),
        "human": {kind: _share(pairs[kind]).to_json() for kind in KINDS},
        "none_answers": {
            kind: Share(sum(1 for c, _ in pairs[kind] if c == NONE), len(pairs[kind])).to_json()
            for kind in KINDS
        },
        "per_rater": {
            r: {kind: _share(p[kind]).to_json() for kind in KINDS} for r, p in rater_pairs.items()
        },
        "agreement": {
            "method": "Krippendorff's alpha (nominal)",
            "alpha": krippendorff_alpha(units),
            "raters": len(rater_pairs),
            "items": multi,
        },
        "proxy": {
            "name": proxy or "no automatic proxy in this set",
            "automatic": {kind: automatic[kind].to_json() for kind in KINDS},
            "confusion": {
                "proxy_source_human_source": confusion[(True, True)],
                "proxy_source_human_not": confusion[(True, False)],
                "proxy_not_human_source": confusion[(False, True)],
                "proxy_not_human_not": confusion[(False, False)],
            },
            "agreement": Share(agree, sum(confusion.values())).to_json(),
            "kappa": cohen_kappa(proxy_says, human_says),
        },
    }


def summarize(store: LabelStore) -> dict[str, Any]:
    """``analyse`` of a stored set, with the set's path, source and classes."""
    out = analyse(store.items(), store.answers(), str(store.meta.get("proxy", "")))
    out["set"] = str(store.path)
    out["source"] = store.meta.get("source")
    out["real"] = store.meta.get("real")
    out["classes"] = len(store.classes)
    return out


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _share_text(d: dict[str, Any]) -> str:
    if not d["n"]:
        return "no answers"
    return f"{100 * d['value']:.1f}% [{100 * d['low']:.1f}, {100 * d['high']:.1f}]"


def format_summary(s: dict[str, Any]) -> str:
    """The summary as text for a terminal."""
    items = ", ".join(f"{s['items'][k]} {k}" for k in KINDS)
    lines = [
        f"human evaluation of {s['set']}",
        f"  {sum(s['items'].values())} items ({items}); {len(s['raters'])} rater(s), "
        f"{s['answers']} answers",
    ]
    if not s["answers"]:
        lines.append("  no human labels yet: `advaug label SOURCE --rater NAME` serves the page")
        return "\n".join(lines)
    proxy = s["proxy"]
    w = max(len(v) for v in KIND_LABEL.values())
    lines.append("")
    lines.append(f"  {'':<{w}}  {'human [Wilson 95%]':<24} {'n':>5}  automatic proxy")
    for kind in KINDS:
        h, a = s["human"][kind], proxy["automatic"][kind]
        lines.append(
            f"  {KIND_LABEL[kind]:<{w}}  {_share_text(h):<24} {h['n']:>5}  "
            f"{_pct(a['value'])} (n={a['n']})"
        )
    ag = s["agreement"]
    alpha = "undefined (it needs two raters on the same images)"
    if ag["alpha"] is not None:
        alpha = f"{ag['alpha']:.3f}"
    lines += [
        "",
        f"  rater agreement, {ag['method']}: {alpha}",
        f"    {ag['raters']} rater(s), {ag['items']} images with two or more answers",
        f"  automatic proxy: {proxy['name']}",
    ]
    c = proxy["confusion"]
    if sum(c.values()):
        kappa = "undefined" if proxy["kappa"] is None else f"{proxy['kappa']:.3f}"
        lines += [
            "  on UAE answers:        human: source   human: not",
            f"    proxy: source      {c['proxy_source_human_source']:>13}   "
            f"{c['proxy_source_human_not']:>11}",
            f"    proxy: not source  {c['proxy_not_human_source']:>13}   "
            f"{c['proxy_not_human_not']:>11}",
            f"    agreement {_share_text(proxy['agreement'])}, Cohen's kappa {kappa}",
        ]
    lines.append("")
    lines.append("  per rater (answers = source, per kind):")
    for r, kinds in s["per_rater"].items():
        parts = [f"{k} {_share_text(kinds[k])} (n={kinds[k]['n']})" for k in KINDS]
        lines.append(f"    {r}: " + "; ".join(parts))
    lines.append(
        "  n counts answers; with several raters per image they are not independent, so the "
        "intervals are too narrow then."
    )
    return "\n".join(lines)

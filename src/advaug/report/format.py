"""How metrics are named, ordered and printed: one place for every table and page.

Metric keys come from the evaluation (``clean_top1``, ``fgsm@8/255``, ``pgd10@8/255``,
``uae_success`` ...). Accuracy-like metrics are stored as fractions and shown as percentages.
"""

from __future__ import annotations

import re

DASH = "—"

_FIRST = ["clean_top1", "clean_top5"]
_LATER = ["gan_acc", "uae_success_correct", "uae_clean_wrong_rate", "uae_success", "uae_legit",
          "uae_legit_clean", "uae_steps_p50", "transfer_uae_acc"]  # fmt: skip
_LABELS = {
    "clean_top1": "Clean top-1",
    "clean_top5": "Clean top-5",
    "gan_acc": "GAN-sample acc.",
    "uae_success_correct": "UAE success (correct at z⁰)",
    "uae_clean_wrong_rate": "Wrong at z⁰",
    "uae_success": "UAE success (all codes)",
    "uae_legit": "UAE legitimate",
    "uae_legit_clean": "Legitimate, clean G(z⁰)",
    "uae_steps_p50": "UAE steps (median)",
    "transfer_uae_acc": "Transferred-UAE acc.",
    "uae_ac_agree_clean": "AC head = source, clean G(z⁰)",
    "uae_ac_agree_success": "AC head = source, successes",
    **{
        f"uae_dz_{kind}_p{q}": f"Latent Δz {name} (p{q})"  # no '|': it splits markdown cells
        for kind, name in (("rms", "RMS"), ("max", "max"))
        for q in (50, 90, 99)
    },
    "uae_targeted_success_mean": "Targeted UAE success (mean over pairs)",
    "uae_targeted_success_min": "Targeted UAE success (worst pair)",
    "uae_targeted_success_max": "Targeted UAE success (best pair)",
    "fid": "FID",
    "intra_fid": "Intra-class FID",
    "kid": "KID",
    "is": "Inception score",
    "is_mean": "Inception score",
    "is_std": "Inception score (std over splits)",
    "diversity_ratio": "Diversity ratio (fake / real)",
    "classifier_fid": "Classifier-feature FID",
    "gan_test_acc": "Reference classifier's accuracy (GAN-test)",
    "ac_test_acc": "AC-head accuracy",
    "collapsed_classes": "Collapsed classes",
}
_ATTACK_NAMES = {"fgsm": "FGSM", "autoattack": "AutoAttack", "pgd": "PGD", "cw": "CW"}
_NOT_PERCENT = ("steps", "seconds", "time", "fid", "kid", "inception", "loss", "count", "lpips")
_PERCENT = ("top1", "top5", "acc", "success", "legit", "agree", "rate", "@")
_LOWER_BETTER = {"uae_success", "uae_success_correct", "uae_clean_wrong_rate", "fid", "intra_fid",
                 "kid", "uae_targeted_success_mean", "uae_targeted_success_min",
                 "uae_targeted_success_max"}  # fmt: skip
#: Properties of the GAN and the attack, not of the classifier: no better direction.
_NO_DIRECTION = {"uae_legit", "uae_legit_clean", "uae_ac_agree_clean", "uae_ac_agree_success"}
_HIGHER_BETTER = {"uae_steps_p50", "is", "is_mean", "inception_score"}


def _eps_value(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9.]+)\s*/\s*([0-9.]+)\s*", text)
    try:
        return float(m.group(1)) / float(m.group(2)) if m else float(text)
    except (ValueError, ZeroDivisionError):
        return float("inf")


def sort_key(key: str) -> tuple[int, int, float, str]:
    """Clean accuracy first, then attacks (FGSM, PGD, AutoAttack, others; by budget), then the
    generative metrics in a fixed order, then anything else alphabetically."""
    if key in _FIRST:
        return (0, _FIRST.index(key), 0.0, key)
    if "@" in key:
        attack, eps = key.split("@", 1)
        families = ["fgsm", "pgd", "autoattack"]
        fam = next((i for i, f in enumerate(families) if attack.startswith(f)), len(families))
        return (1, fam, _eps_value(eps), key)
    if key in _LATER:
        return (2, _LATER.index(key), 0.0, key)
    if key.startswith(("uae_", "transfer_", "gan_")):
        return (3, 0, 0.0, key)
    return (4, 0, 0.0, key)


def order_metrics(keys: list[str] | set[str]) -> list[str]:
    """Metric keys in the report's order (duplicates removed)."""
    return sorted(set(keys), key=sort_key)


def is_percent(key: str) -> bool:
    """Whether a metric is a fraction that the report shows as a percentage."""
    k = key.lower()
    if any(t in k for t in _NOT_PERCENT):
        return False
    return any(t in k for t in _PERCENT)


#: Rates picked as the extreme of many sub-rates (the worst and best targeted pair): the count
#: behind them is one pair's, and the pick is a selection, so no interval is honest for them.
_SELECTED = {"uae_targeted_success_min", "uae_targeted_success_max"}


def has_interval(key: str) -> bool:
    """Whether a metric given with its count ``n`` gets a Wilson interval: a percentage that is
    a share of its ``n`` items, not an extreme picked from many (older runs stored an ``n`` for
    those too)."""
    return is_percent(key) and key not in _SELECTED


def direction(key: str) -> str | None:
    """``"higher"`` or ``"lower"`` when it is clear which is better for the classifier."""
    if key in _LOWER_BETTER:
        return "lower"
    if key in _HIGHER_BETTER:
        return "higher"
    if is_percent(key) and key not in _NO_DIRECTION and "success" not in key:
        return "higher"
    return None


def label(key: str) -> str:
    """A readable name: ``pgd10@8/255`` → ``PGD-10 ε=8/255``."""
    if key in _LABELS:
        return _LABELS[key]
    if "@" in key:
        attack, eps = key.split("@", 1)
        m = re.fullmatch(r"([a-z_]+?)(\d*)", attack)
        if m:
            base = _ATTACK_NAMES.get(m.group(1), m.group(1).upper())
            attack = f"{base}-{m.group(2)}" if m.group(2) else base
        return f"{attack} ε={eps}"
    text = key.replace("_", " ")
    return text[:1].upper() + text[1:]


def decimals(ref: float | None) -> int:
    """Decimals for a plain number of magnitude ``ref`` (about four significant digits)."""
    a = abs(ref or 0.0)
    return 0 if a >= 1000 else 1 if a >= 10 else 2 if a >= 1 else 3


def fmt_value(key: str, v: float | None, pct_digits: int = 2, ref: float | None = None) -> str:
    """One value: percentages without the % sign (the header says it), ``—`` when absent.
    Plain numbers get the decimals that suit ``ref`` (default: the value itself), so that a
    row of a table can share one precision."""
    if v is None:
        return DASH
    if is_percent(key):
        return f"{100 * v:.{pct_digits}f}"
    return f"{v:.{decimals(v if ref is None else ref)}f}"


def fmt_stat(
    key: str,
    mean: float | None,
    std: float | None,
    pct_digits: int = 2,
    ref: float | None = None,
    pm: str = " ± ",
) -> str:
    """``mean ± std`` (std in the mean's precision), just the mean without a std."""
    if mean is None:
        return DASH
    if std is None:
        return fmt_value(key, mean, pct_digits, ref)
    if is_percent(key):
        return f"{100 * mean:.{pct_digits}f}{pm}{100 * std:.{pct_digits}f}"
    d = decimals(mean if ref is None else ref)
    return f"{mean:.{d}f}{pm}{std:.{d}f}"


def row_ref(means: list[float | None]) -> float | None:
    """The largest magnitude in a row (the reference for its shared precision)."""
    vals = [abs(m) for m in means if m is not None]
    return max(vals) if vals else None


def unit(key: str) -> str:
    """``"%"`` for percentages, else empty."""
    return "%" if is_percent(key) else ""

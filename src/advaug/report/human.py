"""The report's "Human evaluation" block: what people said about the study's UAEs, next to the
automatic proxy, read from the labelling sets in ``<study>/labels/*.sqlite`` (written by
``advaug label STUDY``). Without any answer the block says "No human labels": no number is shown
that people did not give."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from advaug.errors import AdvaugError
from advaug.report.format import DASH

LABELS_DIR = "labels"
KINDS = ("uae", "gan", "real")
ROWS = {
    "uae": "UAE legitimacy: share of UAE successes seen as their source class",
    "gan": "Baseline: clean GAN samples G(z⁰, s) of the same codes seen as their class",
    "real": "Baseline: real test images of the same classes seen as their class",
}
NONE_TEXT = "No human labels."
HOWTO = (
    "<code>advaug label STUDY --rater NAME</code> serves a local page on which people name the "
    "class of the study's UAEs, mixed with clean GAN samples and real test images; their answers "
    "appear here next to the automatic proxy."
)


def load_human(root: Path, notes: list[str]) -> list[dict[str, Any]]:
    """The summary of every labelling set of the study (a note for each unreadable one)."""
    paths = sorted((root / LABELS_DIR).glob("*.sqlite"))
    if not paths:
        return []
    from advaug.label.analysis import summarize
    from advaug.label.store import LabelStore

    out = []
    for p in paths:
        try:
            s = summarize(LabelStore(p))
        except AdvaugError as e:
            notes.append(f"{LABELS_DIR}/{p.name} could not be read ({e}); skipped")
            continue
        s["set"] = f"{LABELS_DIR}/{p.name}"
        out.append(s)
    return out


def labelled(human: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sets that people have answered at least once."""
    return [s for s in human if s.get("answers")]


def _share(d: dict[str, Any]) -> str:
    if not d.get("n"):
        return DASH
    return f"{100 * d['value']:.1f}% [{100 * d['low']:.1f}, {100 * d['high']:.1f}]"


def _pct(d: dict[str, Any]) -> str:
    return DASH if d.get("value") is None else f"{100 * d['value']:.1f}%"


def _alpha(s: dict[str, Any]) -> str:
    ag = s["agreement"]
    value = "undefined" if ag["alpha"] is None else f"{ag['alpha']:.3f}"
    return (
        f"{ag['method']}: {value} ({ag['raters']} rater(s), {ag['items']} images with two or "
        "more answers)"
    )


def _about(s: dict[str, Any]) -> str:
    items = ", ".join(f"{s['items'][k]} {k}" for k in KINDS)
    return (
        f"{sum(s['items'].values())} images ({items}), {len(s['raters'])} rater(s), "
        f"{s['answers']} answers; real images from the {s.get('real') or 'test split'}"
    )


def _kappa(s: dict[str, Any]) -> str:
    k = s["proxy"]["kappa"]
    return "undefined" if k is None else f"{k:.3f}"


def human_html(human: list[dict[str, Any]]) -> str:
    """The block's HTML (everything escaped)."""
    sets = labelled(human)
    if not sets:
        return f'<p class="muted"><b>{NONE_TEXT}</b> {HOWTO}</p>'
    parts = []
    for s in sets:
        proxy = s["proxy"]
        rows = [
            "<tr><th>Measure</th><th class='num'>Human (Wilson 95%)</th>"
            "<th class='num'>n answers</th><th class='num'>Automatic proxy</th>"
            "<th class='num'>n images</th></tr>"
        ]
        for k in KINDS:
            h, a = s["human"][k], proxy["automatic"][k]
            rows.append(
                f"<tr><td>{escape(ROWS[k])}</td><td class='num'>{escape(_share(h))}</td>"
                f"<td class='num'>{h['n']}</td><td class='num'>{escape(_pct(a))}</td>"
                f"<td class='num'>{a['n']}</td></tr>"
            )
        c = proxy["confusion"]
        confusion = (
            "<table><tr><th>UAE answers</th><th class='num'>human: source</th>"
            "<th class='num'>human: not source</th></tr>"
            f"<tr><td>proxy: source</td><td class='num'>{c['proxy_source_human_source']}</td>"
            f"<td class='num'>{c['proxy_source_human_not']}</td></tr>"
            f"<tr><td>proxy: not source</td><td class='num'>{c['proxy_not_human_source']}</td>"
            f"<td class='num'>{c['proxy_not_human_not']}</td></tr></table>"
        )
        parts.append(
            f"<h3><code>{escape(s['set'])}</code></h3>"
            f"<p>{escape(_about(s))}.</p>"
            f"<table>{''.join(rows)}</table>"
            f"<p>Agreement between raters: {escape(_alpha(s))}.</p>"
            f"<p>Automatic proxy: {escape(proxy['name'])}. How well it predicts the person:</p>"
            f"{confusion}<p>Agreement {escape(_share(proxy['agreement']))} of "
            f"{proxy['agreement']['n']} answers; Cohen's kappa {escape(_kappa(s))}.</p>"
        )
    parts.append(
        '<p class="muted">"none / cannot tell" counts as not the source. n counts answers; with '
        "several raters per image they are not independent, so the intervals are then too "
        "narrow. The automatic column is the proxy's share over the same images.</p>"
    )
    return "".join(parts)


def human_markdown(human: list[dict[str, Any]]) -> list[str]:
    """The block as markdown lines (for results.md)."""
    lines = ["", "## Human evaluation", ""]
    sets = labelled(human)
    if not sets:
        return lines + [
            f"{NONE_TEXT} `advaug label STUDY --rater NAME` serves a local labelling page; "
            "people's answers appear here next to the automatic proxy."
        ]
    for s in sets:
        proxy = s["proxy"]
        lines += [f"### `{s['set']}`", "", _about(s) + ".", ""]
        lines += [
            "| Measure | Human (Wilson 95%) | n answers | Automatic proxy | n images |",
            "|---|---:|---:|---:|---:|",
        ]
        for k in KINDS:
            h, a = s["human"][k], proxy["automatic"][k]
            lines.append(f"| {ROWS[k]} | {_share(h)} | {h['n']} | {_pct(a)} | {a['n']} |")
        c = proxy["confusion"]
        lines += [
            "",
            f"- Agreement between raters: {_alpha(s)}.",
            f"- Automatic proxy: {proxy['name']}. On UAE answers: proxy source / human source "
            f"{c['proxy_source_human_source']}, proxy source / human not "
            f"{c['proxy_source_human_not']}, proxy not / human source "
            f"{c['proxy_not_human_source']}, proxy not / human not {c['proxy_not_human_not']}; "
            f"agreement {_share(proxy['agreement'])}, Cohen's kappa {_kappa(s)}.",
            "",
        ]
    return lines

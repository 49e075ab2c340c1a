"""One self-contained ``index.html`` for a study: inline CSS, images as base64 data URIs, no
scripts and no external resources, so that the file can be mailed or archived alone."""

from __future__ import annotations

import base64
import datetime as dt
import io
from html import escape
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from advaug.report.files import write_text
from advaug.report.format import (
    DASH,
    direction,
    fmt_stat,
    fmt_value,
    is_percent,
    label,
    row_ref,
)
from advaug.report.human import human_html
from advaug.report.load import StudyData, num
from advaug.report.stats import rate_interval
from advaug.report.tables import (
    INTERVAL_PROTOCOL,
    POOL_PROTOCOL,
    ResultsTable,
    cell_text,
    dataset_label,
    diff_text,
    header,
    interval_text,
    pool_cells,
    pool_summary,
)

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f6f7f9;color:#1d2430;
 font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:1120px;margin:0 auto;padding:28px 32px 60px;background:#fff;min-height:100vh}
h1{font-size:28px;margin:0 0 4px}
h2{font-size:21px;margin:38px 0 10px;padding-bottom:4px;border-bottom:2px solid #e4e7ec}
h3{font-size:16px;margin:22px 0 6px}
p{margin:6px 0 10px}
.sub{color:#5b6472;margin:0 0 16px}
code{font:13px/1.4 ui-monospace,"DejaVu Sans Mono",monospace;background:#f1f3f6;
 padding:1px 4px;border-radius:3px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 18px;margin:8px 0 0}
dl.facts dt{color:#5b6472}
dl.facts dd{margin:0}
nav{margin:16px 0 0;padding:8px 0;border-top:1px solid #e4e7ec;border-bottom:1px solid #e4e7ec}
nav a{margin-right:16px;color:#2459b3;text-decoration:none}
.notes{background:#fff8e1;border:1px solid #f0d68a;border-radius:6px;padding:8px 14px;margin:18px 0}
.notes h3{margin:4px 0}
.notes ul{margin:4px 0;padding-left:20px}
.howto{background:#f1f6fd;border:1px solid #cadcf5;border-radius:6px;padding:6px 18px;margin:18px 0}
.howto li{margin:3px 0}
.howto h3{margin:10px 0 4px}
table{border-collapse:collapse;margin:8px 0 6px;font-size:14px}
th,td{padding:5px 12px;border-bottom:1px solid #e4e7ec;vertical-align:top}
th{background:#f1f3f6;text-align:left;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.group td{background:#fafbfc;color:#5b6472;font-size:12px;text-transform:uppercase;
 letter-spacing:.04em;padding-top:8px}
td .seeds{display:block;color:#7a8391;font-size:11.5px;font-weight:400;white-space:normal}
td.best{font-weight:700}
td.name{white-space:nowrap}
.arrow{color:#7a8391;font-size:12px}
sup{font-size:10px;color:#2459b3}
ol.protocol{font-size:13.5px;color:#39414d;padding-left:26px}
ol.protocol li{margin:3px 0}
.wide{overflow-x:auto}
figure{margin:12px 0 18px;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #e4e7ec;border-radius:4px;background:#fff}
img.pixel{image-rendering:pixelated}
figcaption{color:#5b6472;font-size:13.5px;margin-top:4px;max-width:760px}
.row{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}
.muted{color:#7a8391}
footer{margin-top:40px;color:#7a8391;font-size:12.5px}
"""

GRID_WIDTH = 480  # target display width of a sample grid in a row of two (CSS px)
PAGE_WIDTH = 1050  # width of the page's content (CSS px)
MAX_HEIGHT = 560  # a sample grid is enlarged no taller than this (CSS px) ...
MAX_ZOOM = 6  # ... and by at most this factor
MIN_FIGURE = 320  # a figure is at least this wide, so that its caption stays readable


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """``data:<mime>;base64,...``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _display_size(w: int, h: int, pixel: bool, target: int | None) -> tuple[int, int]:
    """Display size in CSS px: pixel images grow by a whole factor towards ``target`` (within
    ``MAX_HEIGHT`` and ``MAX_ZOOM``); wider images keep their size up to ``PAGE_WIDTH`` and
    shrink beyond it."""
    if target and pixel and w < target:
        k = max(1, min(target // w, MAX_HEIGHT // max(h, 1), MAX_ZOOM))
        return w * k, h * k
    if w > PAGE_WIDTH:
        return PAGE_WIDTH, round(h * PAGE_WIDTH / w)
    return w, h


def img_tag(
    data: bytes, alt: str, pixel: bool = False, target: int | None = None
) -> tuple[str, int | None]:
    """An ``<img>`` with the image inline, and its display width. ``pixel`` images (sample
    grids) are enlarged by a whole factor towards ``target`` CSS px and drawn without
    smoothing."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h, fmt = im.width, im.height, (im.format or "PNG").lower()
    except (UnidentifiedImageError, OSError):
        return f'<p class="muted">({escape(alt)}: not a readable image)</p>', None
    dw, dh = _display_size(w, h, pixel, target)
    cls = ' class="pixel"' if pixel and dw >= w else ""
    tag = (
        f'<img{cls} src="{data_uri(data, f"image/{fmt}")}" alt="{escape(alt)}" '
        f'width="{dw}" height="{dh}">'
    )
    return tag, dw


def _figure(data: bytes | None, alt: str, caption: str, **kw: Any) -> str:
    if data is None:
        return ""
    tag, width = img_tag(data, alt, **kw)
    style = f' style="width:{max(width, MIN_FIGURE)}px"' if width else ""
    return f"<figure{style}>{tag}<figcaption>{caption}</figcaption></figure>"


def _file_figure(path: Path | None, alt: str, caption: str, **kw: Any) -> str:
    return _figure(path.read_bytes() if path else None, alt, caption, **kw)


def _duration(seconds: Any) -> str:
    s = num(seconds)
    if s is None:
        return DASH
    if s < 120:
        return f"{s:.1f} s"
    h, rem = divmod(int(round(s)), 3600)
    return f"{h} h {rem // 60} min" if h else f"{rem // 60} min {rem % 60} s"


def _facts(study: StudyData, table: ResultsTable) -> str:
    meta = study.meta
    n_eval = sum(1 for m in study.models if m.eval is not None)
    ref = meta.get("reference") if isinstance(meta.get("reference"), dict) else {}
    rows = [
        ("Dataset", f"{dataset_label(meta)}, {meta.get('num_classes', DASH)} classes"),
        ("Preset", str(meta.get("preset", DASH))),
        ("Seeds", ", ".join(str(s) for s in study.seeds) or DASH),
        ("Techniques", ", ".join(table.techniques) or DASH),
        ("Models", f"{len(study.models)} trained, {n_eval} evaluated"),
    ]
    if ref:
        top1 = num(ref.get("test_top1"))
        rows.append(
            (
                "Reference classifier",
                f"{ref.get('arch', DASH)} (test top-1 "
                f"{DASH if top1 is None else f'{100 * top1:.2f}%'})",
            )
        )
    status = "finished" if meta.get("finished") else "not finished (partial report)"
    rows.append(("Status", f"{status}; study wall time {_duration(meta.get('wall_seconds'))}"))
    rows.append(("Created", str(meta.get("created", DASH))))
    body = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
    return f'<dl class="facts">{body}</dl>'


def _howto(table: ResultsTable) -> str:
    items = [
        "Every technique trains the same classifier recipe; <code>none</code> is the baseline. "
        "In the other techniques a share of each batch is replaced by examples the technique "
        "produced (the <em>augmented part</em>).",
        "Cells are <b>mean ± std over seeds</b> (sample std; none with one seed); the small grey "
        "line lists the value of each seed. With few seeds, differences smaller than about one "
        "std are not evidence.",
        "↑ marks rows where higher is better for the classifier, ↓ where lower is better; "
        "<b>bold</b> is the best mean of such a row.",
        "Under a rate: its <b>Wilson 95 % interval</b> and the number of items n it is a share "
        "of (test images, GAN samples, latent codes); under each technique, its <b>difference "
        "from <code>none</code></b> in percentage points with a 95 % bootstrap interval over "
        "seeds and items. An interval that excludes 0 is evidence of a difference; one that "
        "spans 0 is not.",
        "Each metric's number in the first column points to its protocol below the table (data "
        "split, sample counts, attack and budget, checkpoint). Numbers measured under different "
        "protocols are not comparable.",
        "Accuracies are percentages of the evaluated images. <em>UAE</em> = unrestricted "
        "adversarial example: a GAN sample whose latent code was searched until this model "
        "misclassified it.",
        "Cost is classifier training time per epoch and its ratio to <code>none</code> on the "
        "same hardware; it does not include training the GAN, which all GAN-based techniques "
        "share.",
    ]
    lis = "".join(f"<li>{i}</li>" for i in items)
    return f'<section class="howto"><h3>How to read this</h3><ul>{lis}</ul></section>'


def _notes(study: StudyData, extra: list[str]) -> str:
    notes = study.notes + extra
    if not notes:
        return ""
    lis = "".join(f"<li>{escape(n)}</li>" for n in notes)
    return f'<section class="notes"><h3>Missing or partial</h3><ul>{lis}</ul></section>'


def _group(key: str) -> str:
    if key.startswith("clean_"):
        return "Clean test accuracy"
    if "@" in key:
        return "Norm-bounded attacks (accuracy under attack)"
    if key.startswith(("uae_", "gan_", "transfer_")):
        return "Generative and unrestricted examples"
    return "Other"


def _best(table: ResultsTable, key: str) -> set[str]:
    d = direction(key)
    means = {t: table.cells[t][key].mean for t in table.techniques}
    means = {t: m for t, m in means.items() if m is not None}
    if d is None or len(means) < 2:
        return set()
    target = max(means.values()) if d == "higher" else min(means.values())
    best = {t for t, m in means.items() if m == target}
    return set() if len(best) == len(means) else best  # a full tie marks nothing


def _seed_line(key: str, values: list[dict[str, Any]], ref: float | None) -> str:
    parts = []
    for v in values:
        who = f"s{v['seed']}" if v.get("seed") is not None else str(v.get("model"))
        parts.append(f"{who}\u00a0{fmt_value(key, v.get('value'), ref=ref)}")
    return " · ".join(parts)


def results_table(table: ResultsTable) -> str:
    """Metrics × techniques with per-seed values, grouped, then the numbered protocol list."""
    if not table.metrics:
        return '<p class="muted">No evaluation results yet (no <code>eval/*.json</code>).</p>'
    head = "".join(f'<th class="num">{escape(t)}</th>' for t in table.techniques)
    n_row = "".join(f'<td class="num">{len(table.models[t])}</td>' for t in table.techniques)
    rows = [f"<tr><th>Metric</th>{head}</tr>", f"<tr><td>models evaluated</td>{n_row}</tr>"]
    group = None
    span = len(table.techniques) + 1
    for i, k in enumerate(table.metrics, 1):
        if _group(k) != group:
            group = _group(k)
            rows.append(f'<tr class="group"><td colspan="{span}">{escape(group)}</td></tr>')
        d = direction(k)
        arrow = {"higher": " ↑", "lower": " ↓"}.get(d or "", "")
        name = (
            f'{escape(header(k))}<span class="arrow">{arrow}</span>'
            f'<sup><a href="#p-{i}">{i}</a></sup>'
        )
        best = _best(table, k)
        ref = row_ref([table.cells[t][k].mean for t in table.techniques])
        cells = []
        for t in table.techniques:
            s = table.cells[t][k]
            text = escape(cell_text(table, t, k))
            seeds = _seed_line(k, s.values, ref) if len(s.values) > 1 else ""
            extra = f'<span class="seeds">{escape(seeds)}</span>' if seeds else ""
            if s.ci is not None:
                extra += (
                    f'<span class="seeds">95% CI {escape(interval_text(k, s.ci))}, '
                    f"n={s.items}</span>"
                )
            d = table.diffs.get(t, {}).get(k)
            if d is not None:
                unit = " pp" if is_percent(k) else ""
                extra += f'<span class="seeds">vs none {escape(diff_text(k, d))}{unit}</span>'
            cls = "num best" if t in best else "num"
            cells.append(f'<td class="{cls}">{text}{extra}</td>')
        rows.append(f"<tr><td>{name}<br><code>{escape(k)}</code></td>{''.join(cells)}</tr>")
    protos = "".join(
        f'<li id="p-{i}"><b>{escape(header(k))}</b>: {escape(table.protocol_line(k))}</li>'
        for i, k in enumerate(table.metrics, 1)
    )
    return (
        f'<div class="wide"><table>{"".join(rows)}</table></div>'
        f'<h3>Protocol</h3><ol class="protocol">{protos}</ol>'
        f'<p class="muted">Intervals: {escape(INTERVAL_PROTOCOL)}</p>'
    )


def cost_table(table: ResultsTable) -> str:
    """Seconds per epoch, ratio to ``none`` and total training time per technique."""
    rows = [
        "<tr><th>Technique</th><th class='num'>Seconds / epoch</th>"
        "<th class='num'>Cost vs none</th><th class='num'>Training time (mean)</th>"
        "<th class='num'>Runs</th></tr>"
    ]
    ref = row_ref([s.mean for s in table.seconds_per_epoch.values()])
    for t in table.techniques:
        s = table.seconds_per_epoch[t]
        r = table.ratio[t]
        rows.append(
            f"<tr><td><code>{escape(t)}</code></td>"
            f"<td class='num'>{escape(fmt_stat('seconds', s.mean, s.std, ref=ref))}</td>"
            f"<td class='num'>{DASH if r is None else f'×{r:.2f}'}</td>"
            f"<td class='num'>{escape(_duration(table.train_seconds[t].mean))}</td>"
            f"<td class='num'>{s.n}</td></tr>"
        )
    return (
        f"<table>{''.join(rows)}</table>"
        f'<p class="muted">Protocol: {escape(table.cost_protocol)}.</p>'
    )


def pool_table(study: StudyData) -> str:
    """What the pooled unrestricted technique fed each model (empty without a pool)."""
    rows = pool_summary(study)
    if not rows:
        return ""
    out = [
        "<tr><th>Model</th><th class='num'>Draws</th><th class='num'>Still adversarial</th>"
        "<th class='num'>Age mean (steps)</th><th class='num'>Age max</th>"
        "<th class='num'>Reuse mean</th></tr>"
    ]
    for r in rows:
        model, *nums = (escape(c) for c in pool_cells(r))
        out.append(
            f"<tr><td>{model}</td>" + "".join(f"<td class='num'>{c}</td>" for c in nums) + "</tr>"
        )
    return (
        "<h3>Pooled unrestricted augmentation</h3>"
        f"<table>{''.join(out)}</table>"
        f'<p class="muted">Protocol: {escape(POOL_PROTOCOL)}.</p>'
    )


def models_table(study: StudyData) -> str:
    """Every model with its seed, training length, training-time test accuracy and checkpoint."""
    rows = [
        "<tr><th>Model</th><th>Technique</th><th class='num'>Seed</th>"
        "<th class='num'>Epochs</th><th class='num'>Steps</th><th class='num'>Train time</th>"
        "<th class='num'>Test top-1 at end of training</th><th>Evaluated checkpoint</th></tr>"
    ]
    for m in study.models:
        r = m.result or {}
        top1 = num(r.get("test_top1"))
        ckpt = m.checkpoint
        rows.append(
            f"<tr><td class='name'>{escape(m.name)}</td><td><code>{escape(m.technique)}</code></td>"
            f"<td class='num'>{DASH if m.seed is None else m.seed}</td>"
            f"<td class='num'>{escape(str(r.get('epochs', DASH)))}</td>"
            f"<td class='num'>{escape(str(r.get('steps', DASH)))}</td>"
            f"<td class='num'>{escape(_duration(m.cost()['train_seconds']))}</td>"
            f"<td class='num'>{DASH if top1 is None else f'{100 * top1:.2f}%'}</td>"
            f"<td>{f'<code>{escape(ckpt)}</code>' if ckpt else 'not evaluated'}</td></tr>"
        )
    protos = sorted(
        {str(m.result["protocol"]) for m in study.models if m.result and m.result.get("protocol")}
    )
    note = (
        f'<p class="muted">Training-time test accuracy protocol: {escape("; ".join(protos))}.</p>'
        if protos
        else ""
    )
    return f'<div class="wide"><table>{"".join(rows)}</table></div>{note}'


def _gan_section(study: StudyData) -> str:
    gan = study.meta.get("gan") if isinstance(study.meta.get("gan"), dict) else {}
    parts = []
    quality = gan.get("quality") if isinstance(gan.get("quality"), dict) else {}
    if quality:
        rows = [
            "<tr><th>Metric</th><th class='num'>Generator</th><th class='num'>Real data</th>"
            "<th>Protocol</th></tr>"
        ]
        for k, entry in quality.items():
            entry = entry if isinstance(entry, dict) else {"value": entry}
            gen = _gan_value(k, entry.get("value"), entry.get("n"))
            real = _gan_value(k, entry.get("real"), entry.get("real_n"))
            rows.append(
                f"<tr><td>{escape(label(k))}<br><code>{escape(k)}</code></td>"
                f"<td class='num'>{gen}</td><td class='num'>{real}</td>"
                f"<td>{escape(str(entry.get('protocol') or 'protocol not recorded'))}</td></tr>"
            )
        parts.append(f"<table>{''.join(rows)}</table>")
        parts.append(
            '<p class="muted">Real data: the same number for real images, the scale of the '
            "generator's: FID-type numbers compare two disjoint class-stratified halves of the "
            "reference split at the generator's sample counts (a perfect generator scores about "
            "this, not 0); accuracies are on the real test split. Rates show their Wilson 95 % "
            "interval and count n.</p>"
        )
    else:
        parts.append('<p class="muted">No GAN quality metrics in study.json.</p>')
    result = gan.get("result") if isinstance(gan.get("result"), dict) else {}
    facts = [
        (k, v)
        for k, v in result.items()
        if isinstance(v, str | int | float | bool) and len(str(v)) <= 160
    ]
    if facts:
        items = "".join(
            f"<dt>{escape(k)}</dt><dd>"
            f"{escape(_duration(v) if k.endswith('seconds') else _short(v))}</dd>"
            for k, v in facts
        )
        parts.append(f'<h3>GAN training run</h3><dl class="facts">{items}</dl>')
    return "".join(parts)


def _gan_value(key: str, value: Any, n: Any) -> str:
    """One GAN-quality number (escaped HTML); a rate with its count gets its interval."""
    v = num(value)
    if v is None:
        return DASH
    text = escape(fmt_value(key, v) + ("%" if is_percent(key) else ""))
    ci = rate_interval(v, n) if is_percent(key) else None
    if ci is not None:
        text += f'<span class="seeds">95% CI {escape(interval_text(key, ci))}, n={n}</span>'
    return text


def _short(v: Any) -> str:
    f = num(v)
    if isinstance(v, float) and f is not None:
        return f"{f:.4g}"
    return str(v)


def _samples(study: StudyData) -> tuple[str, list[str]]:
    missing = []
    figs = []
    specs = [
        ("grids/real.png", "Real training images", "Real images from the training split."),
        ("grids/gan.png", "AC-GAN samples", "Class-conditional AC-GAN samples G(z, y)."),
        (
            "gan/samples/final.png",
            "AC-GAN samples (GAN run)",
            "Samples from the GAN run's final checkpoint (fixed noise).",
        ),
        (
            "gan/samples/interpolation.png",
            "AC-GAN interpolation",
            "Latent interpolation between codes, class fixed per row.",
        ),
    ]
    for rel, alt, cap in specs:
        p = study.image(rel)
        if p is None:
            missing.append(rel)
            continue
        figs.append(
            _file_figure(
                p,
                alt,
                f"<b>{escape(alt)}.</b> {escape(cap)} <code>{rel}</code>",
                pixel=True,
                target=PAGE_WIDTH if "interpolation" in rel else GRID_WIDTH,
            )
        )
    body = f'<div class="row">{"".join(figs)}</div>' if figs else ""
    if missing:
        found = ", ".join(f"<code>{m}</code>" for m in missing)
        body += f'<p class="muted">Not found: {found}.</p>'
    return body, [f"sample grid {m} not found" for m in missing if m.startswith("grids/")]


def _uae(study: StudyData) -> tuple[str, list[str]]:
    figs, missing = [], []
    for m in study.models:
        p = study.image(f"grids/uae-{m.name}.png")
        if p is None:
            missing.append(m.name)
            continue
        cap = (
            f"<b>{escape(m.name)}</b> (<code>{escape(m.technique)}</code>, seed {m.seed}): "
            "top row: clean GAN samples G(z⁰, y); bottom row, same column: their unrestricted "
            "adversarial versions G(z*, y) found against this model. "
            f"<code>grids/uae-{escape(m.name)}.png</code>"
        )
        figs.append(_file_figure(p, f"UAEs against {m.name}", cap, pixel=True, target=GRID_WIDTH))
    known = {f"uae-{m.name}.png" for m in study.models} | {"real.png", "gan.png"}
    grids = study.root / "grids"
    for p in sorted(grids.glob("*.png")) if grids.is_dir() else []:
        if p.name not in known:
            figs.append(
                _file_figure(
                    p, p.stem, f"<code>grids/{escape(p.name)}</code>", pixel=True, target=GRID_WIDTH
                )
            )
    body = f'<div class="row">{"".join(figs)}</div>' if figs else ""
    if missing:
        body += f'<p class="muted">No UAE grid for: {", ".join(escape(n) for n in missing)}.</p>'
    return body, []


def render_html(study: StudyData, table: ResultsTable, plots: dict[str, bytes]) -> str:
    """The whole page as a string (``plots``: PNG bytes by name, see ``report.plots``)."""
    samples, miss_s = _samples(study)
    uae, _ = _uae(study)
    miss_plots = []
    if "learning_curves" not in plots:
        miss_plots.append("no training metrics (metrics.jsonl) for any model: no learning curves")
    if "val_curves" not in plots and "learning_curves" in plots:
        miss_plots.append("no validation records: curves show training accuracy only")
    title = f"advaug study: {study.name}"
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    sections = [
        f"<header><h1>{escape(title)}</h1>"
        f'<p class="sub">Data augmentation with generative models under adversarial training: '
        f"results, learning curves, costs and samples.</p>{_facts(study, table)}</header>",
        "<nav><a href='#results'>Results</a><a href='#cost'>Cost</a>"
        "<a href='#curves'>Learning curves</a><a href='#samples'>Samples</a>"
        "<a href='#uae'>UAEs</a><a href='#human'>Human evaluation</a><a href='#gan'>GAN quality</a>"
        "<a href='#models'>Models</a></nav>",
        _notes(study, miss_s + miss_plots),
        _howto(table),
        f'<section id="results"><h2>Results</h2>{results_table(table)}</section>',
        f'<section id="cost"><h2>Cost of each technique</h2>{cost_table(table)}{pool_table(study)}'
        + _figure(
            plots.get("cost"),
            "cost chart",
            "Seconds per training epoch (error bar: std over seeds); the label gives the ratio "
            "to <code>none</code>.",
        )
        + "</section>",
        '<section id="curves"><h2>Learning curves</h2>'
        + (
            _figure(
                plots.get("learning_curves"),
                "learning curves",
                "Per technique: accuracy on the clean part and on the augmented part of the "
                "training batches (running epoch average) and validation top-1, mean over seeds; "
                "the band spans the seeds' minimum and maximum. An augmented-part accuracy close "
                "to 100% means the technique's examples became easy for the model.",
            )
            or '<p class="muted">No training metrics found.</p>'
        )
        + _figure(
            plots.get("val_curves"),
            "validation curves",
            "Validation top-1 of every technique, mean over seeds.",
        )
        + _figure(
            plots.get("per_class"),
            "per-class accuracy",
            "Per-class test top-1 of each technique (mean over seeds), the classes named under "
            "the axis, in one order for every technique: from the first technique's best class "
            "to its worst.",
        )
        + "</section>",
        f'<section id="samples"><h2>Samples</h2>{samples or "<p>No sample grids.</p>"}</section>',
        '<section id="uae"><h2>Unrestricted adversarial examples</h2>'
        f"{uae or '<p class=muted>No UAE grids.</p>'}</section>",
        f'<section id="human"><h2>Human evaluation</h2>{human_html(study.human)}</section>',
        f'<section id="gan"><h2>GAN quality</h2>{_gan_section(study)}</section>',
        f'<section id="models"><h2>Models and checkpoints</h2>{models_table(study)}</section>',
        f"<footer>Generated by <code>advaug report</code> on {escape(now)} from "
        f"<code>{escape(str(study.root))}</code>. Machine-readable: results.json, results.csv; "
        "text: results.md.</footer>",
    ]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(sections)}</main></body></html>\n"
    )


def write_html(study: StudyData, table: ResultsTable, plots: dict[str, Path], out: Path) -> Path:
    """Render the page with the PNGs in ``plots`` embedded and write it to ``out``."""
    data = {name: p.read_bytes() for name, p in plots.items()}
    return write_text(out, render_html(study, table, data))

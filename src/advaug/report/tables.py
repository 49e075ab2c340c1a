"""The results table: technique × metric, mean ± std over seeds, plus the cost of each technique.

``build_table`` aggregates; ``write_tables`` writes ``results.json`` (everything, per seed),
``results.csv`` (one row per technique) and ``results.md`` (percentages and a protocol list);
``table_text`` is the compact version for a terminal.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advaug.report.files import write_text
from advaug.report.format import (
    DASH,
    fmt_stat,
    has_interval,
    is_percent,
    label,
    order_metrics,
    row_ref,
)
from advaug.report.human import human_markdown, labelled
from advaug.report.load import StudyData, num
from advaug.report.stats import Difference, paired_difference, rate_interval, wilson

BASELINE = "none"
COST_PROTOCOL = (
    "seconds per epoch = classifier training wall-clock / epochs (from each model's eval cost, "
    "else its result.json), mean ± std over seeds; ratio = mean(technique) / mean(none)"
)


@dataclass
class Stat:
    """Mean, sample std (ddof=1; ``None`` below two values) and count of the finite values.

    For a rate whose every value carries its item count ``n`` (``{"model", "seed", "value",
    "n"}``), also ``items`` (the counts summed over the values) and ``ci``: the Wilson 95 %
    interval of the pooled share (sum of round(value·n) over sum of n), which is the interval of
    the cell's mean when all values have the same n. Each value gets its own ``ci`` too. These
    intervals cover the sampling of the evaluated items only; the paired differences from
    ``none`` (``ResultsTable.diffs``) also cover the seeds.
    """

    mean: float | None
    std: float | None
    n: int
    values: list[dict[str, Any]] = field(default_factory=list)  # {"model", "seed", "value"...}
    protocol: str | None = None
    items: int | None = None
    ci: tuple[float, float] | None = None

    @classmethod
    def of(
        cls, values: list[dict[str, Any]], protocol: str | None = None, rate: bool = False
    ) -> Stat:
        """Mean and std over the values; for a ``rate`` (a share of ``n`` items: an accuracy,
        a success rate), each value's and the pooled share's Wilson interval. Other numbers
        that carry an ``n`` (a median of steps, a latent distance percentile) get none."""
        xs = [v["value"] for v in values if v["value"] is not None]
        mean = statistics.fmean(xs) if xs else None
        std = statistics.stdev(xs) if len(xs) >= 2 else None
        items, ci = None, None
        known = [v for v in values if v["value"] is not None]
        for v in known:
            if rate and "n" in v:
                v["ci"] = rate_interval(v["value"], v["n"])
        if known and all(v.get("ci") is not None for v in known):
            items = sum(int(v["n"]) for v in known)
            ci = wilson(sum(round(v["value"] * int(v["n"])) for v in known), items)
        return cls(mean, std, len(xs), values, protocol, items, ci)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": self.mean, "std": self.std, "n": self.n}
        if self.ci is not None:
            out["items"], out["ci95"] = self.items, list(self.ci)
        out["values"] = [
            {**v, "ci": list(v["ci"])} if v.get("ci") is not None else v for v in self.values
        ]
        if self.protocol is not None:
            out["protocol"] = self.protocol
        return out


@dataclass
class ResultsTable:
    """The aggregated study: ``cells[technique][metric]`` and the cost per technique."""

    techniques: list[str]
    metrics: list[str]
    cells: dict[str, dict[str, Stat]]
    protocols: dict[str, dict[str, list[str]]]  # metric → protocol → models using it
    seconds_per_epoch: dict[str, Stat]
    train_seconds: dict[str, Stat]
    ratio: dict[str, float | None]
    models: dict[str, list[str]]  # technique → models with an evaluation
    cost_protocol: str = COST_PROTOCOL
    # technique → metric → paired difference from `none` (only where per-item outcomes exist)
    diffs: dict[str, dict[str, Difference]] = field(default_factory=dict)

    def protocol_line(self, metric: str) -> str:
        """The metric's protocol; when models differ, each variant with the models using it."""
        variants = self.protocols.get(metric, {})
        if not variants:
            return "protocol not recorded"
        if len(variants) == 1:
            return next(iter(variants))
        return "; ".join(f"{p} [{', '.join(ms)}]" for p, ms in variants.items())


def _runtime_summary(study: StudyData) -> str:
    seen: dict[str, None] = {}
    for m in study.models:
        rt = (m.result or {}).get("runtime")
        if isinstance(rt, dict) and rt.get("device"):
            ws = rt.get("world_size", 1)
            ranks = f", {ws} ranks" if ws != 1 else ""
            seen[f"{rt['device']}, {rt.get('precision', '?')}{ranks}"] = None
    return "; ".join(seen)


def build_table(study: StudyData) -> ResultsTable:
    """Aggregate the evaluations of ``study`` per technique (in the study's order)."""
    techniques = study.techniques
    keys: set[str] = set()
    for m in study.models:
        keys.update(m.metrics)
    metrics = order_metrics(keys)
    cells: dict[str, dict[str, Stat]] = {}
    protocols: dict[str, dict[str, list[str]]] = {k: {} for k in metrics}
    spe: dict[str, Stat] = {}
    train_s: dict[str, Stat] = {}
    evaluated: dict[str, list[str]] = {}
    for t in techniques:
        runs = study.by_technique(t)
        with_eval = [m for m in runs if m.eval is not None]
        evaluated[t] = [m.name for m in with_eval]
        cells[t] = {}
        for k in metrics:
            vals, protos = [], []
            for m in with_eval:
                entry = m.metrics.get(k)
                if isinstance(entry, int | float | str):  # a bare value, without protocol
                    entry = {"value": entry}
                if not isinstance(entry, dict):
                    continue
                val = {"model": m.name, "seed": m.seed, "value": num(entry.get("value"))}
                count = entry.get("n")
                if isinstance(count, int) and not isinstance(count, bool):
                    val["n"] = count
                vals.append(val)
                p = entry.get("protocol")
                if p:
                    protocols[k].setdefault(str(p), []).append(m.name)
                    protos.append(str(p))
            proto = " | ".join(dict.fromkeys(protos)) or None
            cells[t][k] = Stat.of(vals, proto, rate=has_interval(k))
        costs = [(m, m.cost()) for m in runs]
        spe[t] = Stat.of(
            [{"model": m.name, "seed": m.seed, "value": c["seconds_per_epoch"]} for m, c in costs]
        )
        train_s[t] = Stat.of(
            [{"model": m.name, "seed": m.seed, "value": c["train_seconds"]} for m, c in costs]
        )
    base = spe.get(BASELINE)
    ratio = {
        t: (s.mean / base.mean if s.mean is not None and base and base.mean else None)
        for t, s in spe.items()
    }
    proto = COST_PROTOCOL
    rts = _runtime_summary(study)
    if rts:
        proto += f"; measured on {rts}"
    return ResultsTable(
        techniques, metrics, cells, protocols, spe, train_s, ratio, evaluated, proto,
        _differences(study, techniques, metrics),
    )  # fmt: skip


def _outcomes_by_seed(study: StudyData, technique: str, key: str) -> dict[int, Any]:
    out = {}
    for m in study.by_technique(technique):
        o = m.outcomes(key) if m.seed is not None else None
        if o is not None:
            out[m.seed] = o
    return out


def _differences(
    study: StudyData, techniques: list[str], metrics: list[str]
) -> dict[str, dict[str, Difference]]:
    """Each technique's paired difference from ``none`` for every metric whose per-item
    outcomes both saved (bootstrapped over seeds and items, see ``report.stats``)."""
    if BASELINE not in techniques:
        return {}
    out: dict[str, dict[str, Difference]] = {}
    for k in metrics:
        base = _outcomes_by_seed(study, BASELINE, k)
        if not base:
            continue
        for t in techniques:
            if t == BASELINE:
                continue
            d = paired_difference(_outcomes_by_seed(study, t, k), base)
            if d is not None:
                out.setdefault(t, {})[k] = d
    return out


# -- writers ---------------------------------------------------------------------------------


#: What the pooled unrestricted technique's summary means (results.md, the HTML page).
POOL_PROTOCOL = (
    "over every training record (epoch) of the model: still adversarial = share of the drawn "
    "pool entries that still fooled the model at draw time (the re-check; only those were "
    "trained on), weighted by draws; age = training steps since an entry was attacked, mean "
    "over the entries trained on (weighted by draws) and the maximum; reuse = times an entry "
    "was trained on before its refresh, mean over the records"
)


def pool_summary(study: StudyData) -> list[dict[str, Any]]:
    """Per model trained with the pooled ``unrestricted`` technique: what its pool fed the
    model, from the ``pool_*`` keys of its training records (``metrics.jsonl``)."""
    out = []
    for m in study.models:
        recs = [r for r in m.records if num(r.get("pool_draws"))]
        if not recs:
            continue
        draws = [num(r["pool_draws"]) or 0.0 for r in recs]

        def weighted(key: str, recs=recs, draws=draws) -> float | None:
            pairs = [(num(r.get(key)), d) for r, d in zip(recs, draws, strict=True)]
            pairs = [(v, d) for v, d in pairs if v is not None]
            total = sum(d for _, d in pairs)
            return sum(v * d for v, d in pairs) / total if total else None

        reuse = [v for v in (num(r.get("pool_reuse_mean")) for r in recs) if v is not None]
        ages = [v for v in (num(r.get("pool_age_max")) for r in recs) if v is not None]
        out.append(
            {
                "model": m.name,
                "technique": m.technique,
                "seed": m.seed,
                "draws": int(sum(draws)),
                "still_adversarial": weighted("pool_still_adv"),
                "age_mean": weighted("pool_age_mean"),
                "age_max": max(ages) if ages else None,
                "reuse_mean": statistics.fmean(reuse) if reuse else None,
            }
        )
    return out


def pool_cells(row: dict[str, Any]) -> list[str]:
    """One :func:`pool_summary` row as table cells: model, draws, still adversarial, age mean,
    age max, reuse mean."""

    def f(v: Any, fmt: str) -> str:
        return DASH if v is None else format(v, fmt)

    still = row["still_adversarial"]
    return [
        str(row["model"]),
        str(row["draws"]),
        DASH if still is None else f"{100 * still:.1f}%",
        f(row["age_mean"], ".1f"),
        f(row["age_max"], ".0f"),
        f(row["reuse_mean"], ".2f"),
    ]


def pool_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The pool summary as a markdown section (nothing when no model used a pool)."""
    if not rows:
        return []
    lines = [
        "",
        "## Pooled unrestricted augmentation",
        "",
        "| Model | Draws | Still adversarial | Age mean (steps) | Age max | Reuse mean |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += ["| " + " | ".join(pool_cells(r)) + " |" for r in rows]
    lines += ["", f"Protocol: {POOL_PROTOCOL}."]
    return lines


def to_json(table: ResultsTable, study: StudyData) -> dict[str, Any]:
    """The machine-readable results: every cell with its per-seed values and protocol."""
    meta = study.meta
    return {
        "study": study.name,
        "dataset": meta.get("dataset"),
        "data_fallback": meta.get("data_fallback"),
        "preset": meta.get("preset"),
        "num_classes": meta.get("num_classes"),
        "seeds": study.seeds,
        "techniques": table.techniques,
        "metrics": table.metrics,
        "units": {k: ("fraction" if is_percent(k) else "value") for k in table.metrics},
        "protocols": {k: table.protocol_line(k) for k in table.metrics},
        "table": {t: {k: _cell_json(table, t, k) for k in table.metrics} for t in table.techniques},
        "intervals": INTERVAL_PROTOCOL,
        "cost": {
            t: {
                "seconds_per_epoch": table.seconds_per_epoch[t].to_json(),
                "train_seconds": table.train_seconds[t].to_json(),
                "ratio_to_none": table.ratio[t],
            }
            for t in table.techniques
        },
        "cost_protocol": table.cost_protocol,
        "pool": pool_summary(study),
        "pool_protocol": POOL_PROTOCOL,
        "models": [
            {
                "name": m.name,
                "technique": m.technique,
                "seed": m.seed,
                "checkpoint": m.checkpoint,
                "evaluated": m.eval is not None,
            }
            for m in study.models
        ],
        "human": labelled(study.human),
        "missing": study.notes,
    }


def _cell_json(table: ResultsTable, t: str, k: str) -> dict[str, Any]:
    out = table.cells[t][k].to_json()
    d = table.diffs.get(t, {}).get(k)
    if d is not None:
        out["diff_vs_none"] = d.to_json()
    return out


def to_csv(table: ResultsTable) -> str:
    """One row per technique: ``n_models``; per metric ``_mean``, ``_std``, the item count
    ``_n`` and Wilson interval ``_ci_low``/``_ci_high`` of rates, and the paired difference from
    ``none`` with its bootstrap interval (``_diff``, ``_diff_low``, ``_diff_high``); then cost.
    Empty where a number does not apply."""
    header = ["technique", "n_models"]
    for k in table.metrics:
        header += [f"{k}_mean", f"{k}_std", f"{k}_n", f"{k}_ci_low", f"{k}_ci_high"]
        header += [f"{k}_diff", f"{k}_diff_low", f"{k}_diff_high"]
    header += ["seconds_per_epoch_mean", "seconds_per_epoch_std", "cost_ratio_to_none"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)

    def cell(v: float | None) -> str:
        return "" if v is None else repr(float(v))

    for t in table.techniques:
        row: list[str] = [t, str(len(table.models[t]))]
        for k in table.metrics:
            s = table.cells[t][k]
            lo, hi = s.ci if s.ci is not None else (None, None)
            row += [cell(s.mean), cell(s.std), "" if s.items is None else str(s.items)]
            row += [cell(lo), cell(hi)]
            d = table.diffs.get(t, {}).get(k)
            row += [cell(d.diff), cell(d.low), cell(d.high)] if d else ["", "", ""]
        s = table.seconds_per_epoch[t]
        row += [cell(s.mean), cell(s.std), cell(table.ratio[t])]
        w.writerow(row)
    return buf.getvalue()


def cell_text(table: ResultsTable, t: str, k: str, pct_digits: int = 2, ci: bool = False) -> str:
    """``mean ± std`` of one cell in its row's precision, with ``(n=k)`` when values are
    missing for some models; with ``ci``, the Wilson 95 % interval of a rate after it."""
    s = table.cells[t][k]
    ref = row_ref([table.cells[u][k].mean for u in table.techniques])
    text = fmt_stat(k, s.mean, s.std, pct_digits, ref)
    if s.mean is not None and s.n < len(table.models[t]):
        text += f" (n={s.n})"
    if ci and s.ci is not None:
        text += f" {interval_text(k, s.ci, pct_digits)}"
    return text


def interval_text(k: str, ci: tuple[float, float], pct_digits: int = 2) -> str:
    """``[lo, hi]`` in the metric's unit (percent for rates)."""
    if is_percent(k):
        return f"[{100 * ci[0]:.{pct_digits}f}, {100 * ci[1]:.{pct_digits}f}]"
    return f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def diff_text(k: str, d: Difference, pct_digits: int = 2) -> str:
    """``+1.20 [+0.40, +2.00]``: percentage points for rates."""
    scale = 100 if is_percent(k) else 1
    return (
        f"{scale * d.diff:+.{pct_digits}f} "
        f"[{scale * d.low:+.{pct_digits}f}, {scale * d.high:+.{pct_digits}f}]"
    )


INTERVAL_PROTOCOL = (
    "Rates carry their item count n and a Wilson 95 % score interval (scipy.stats.binomtest"
    "(k, n).proportion_ci(method='wilson')); with several seeds it is the interval of the pooled "
    "share (the sum of k over the sum of n), so it covers the sampling of the evaluated items, "
    "not the variation between training seeds. Differences from `none` are mean over seeds of "
    "rate(technique, s) - rate(none, s) on the same items, with a 95 % percentile interval from "
    "2,000 bootstrap replicates that resample the paired seeds and, independently, the items "
    "(the same items for both techniques): it covers both sources of variation."
)


def _spe_ref(table: ResultsTable) -> float | None:
    return row_ref([s.mean for s in table.seconds_per_epoch.values()])


def _ratio(r: float | None) -> str:
    return DASH if r is None else f"×{r:.2f}"


def header(k: str) -> str:
    """A column header: the metric's label, with (%) for percentages."""
    return f"{label(k)} (%)" if is_percent(k) else label(k)


def dataset_label(meta: dict[str, Any]) -> str:
    """The study's dataset, and where it ran on its fallback, what it wanted and why not."""
    name = str(meta.get("dataset", DASH))
    fb = meta.get("data_fallback")
    if not isinstance(fb, dict):
        return name
    return (
        f"{name} (the fallback: {fb.get('wanted', DASH)} was not available: "
        f"{fb.get('reason', DASH)})"
    )


def to_markdown(table: ResultsTable, study: StudyData) -> str:
    """``results.md``: the table (percentages), the protocol of every column, the models."""
    meta = study.meta
    seeds = ", ".join(str(s) for s in study.seeds) or DASH
    lines = [
        f"# Results: {study.name}",
        "",
        f"Dataset {dataset_label(meta)}, preset {meta.get('preset', DASH)}, "
        f"seeds {seeds}. Cells are mean ± std over seeds (sample std, ddof=1; no std with "
        "one seed), then, for rates, the Wilson 95 % interval in brackets; (n=k) marks a cell "
        "with fewer values than models.",
        "",
    ]
    cols = ["Technique", "Models"] + [header(k) for k in table.metrics]
    cols += ["Seconds/epoch", "Cost vs none"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|")
    for t in table.techniques:
        row = [f"`{t}`", str(len(table.models[t]))]
        row += [cell_text(table, t, k, ci=True) for k in table.metrics]
        s = table.seconds_per_epoch[t]
        row += [fmt_stat("seconds", s.mean, s.std, ref=_spe_ref(table)), _ratio(table.ratio[t])]
        lines.append("| " + " | ".join(row) + " |")
    lines += _diff_markdown(table)
    lines += ["", "## Protocol", ""]
    for k in table.metrics:
        lines.append(f"- **{header(k)}** (`{k}`): {table.protocol_line(k)}")
    lines.append(f"- **Seconds/epoch, cost vs none**: {table.cost_protocol}")
    lines.append(f"- **Intervals**: {INTERVAL_PROTOCOL}")
    lines += pool_markdown(pool_summary(study))
    lines += ["", "## Models", ""]
    lines.append("| Model | Technique | Seed | Evaluated | Checkpoint |")
    lines.append("|---|---|---:|---|---|")
    for m in study.models:
        seed = DASH if m.seed is None else str(m.seed)
        ev = "yes" if m.eval is not None else "**no**"
        lines.append(f"| {m.name} | {m.technique} | {seed} | {ev} | {m.checkpoint or DASH} |")
    lines += human_markdown(study.human)
    if study.notes:
        lines += ["", "## Missing", ""] + [f"- {n}" for n in study.notes]
    return "\n".join(lines) + "\n"


def _diff_markdown(table: ResultsTable) -> list[str]:
    """The paired differences from ``none``: technique × metric (percentage points)."""
    keys = [k for k in table.metrics if any(k in d for d in table.diffs.values())]
    techs = [t for t in table.techniques if table.diffs.get(t)]
    if not keys or not techs:
        return []
    seeds = {d.seeds for ds in table.diffs.values() for d in ds.values()}
    lines = [
        "",
        f"## Difference from `{BASELINE}`",
        "",
        "Technique minus `none`, mean over paired seeds, with its 95 % bootstrap interval over "
        f"seeds ({', '.join(str(s) for s in sorted(seeds))} paired) and items; percentage "
        "points for rates. An interval that excludes 0 is evidence of a difference.",
        "",
        "| Technique | " + " | ".join(header(k).replace(" (%)", " (pp)") for k in keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    for t in techs:
        cells = [diff_text(k, table.diffs[t][k]) if k in table.diffs[t] else DASH for k in keys]
        lines.append(f"| `{t}` | " + " | ".join(cells) + " |")
    return lines


def table_text(table: ResultsTable, study: StudyData, width: int = 100) -> str:
    """A terminal table, metrics × techniques (percent with one decimal), at most ``width``
    columns wide; more techniques than fit are split into blocks."""
    rows: list[tuple[str, dict[str, str]]] = [
        ("models evaluated", {t: str(len(table.models[t])) for t in table.techniques})
    ]
    for k in table.metrics:
        name = f"{k} %" if is_percent(k) else k
        rows.append((name, {t: cell_text(table, t, k, 1) for t in table.techniques}))
    rows.append(
        (
            "s/epoch",
            {
                t: fmt_stat("seconds", s.mean, s.std, ref=_spe_ref(table))
                for t, s in table.seconds_per_epoch.items()
            },
        )
    )
    rows.append(("cost vs none", {t: _ratio(table.ratio[t]) for t in table.techniques}))
    first = max(len(r[0]) for r in rows)
    colw = {t: max([len(t)] + [len(r[1][t]) for r in rows]) for t in table.techniques}
    blocks: list[list[str]] = [[]]
    used = first
    for t in table.techniques:
        if blocks[-1] and used + 2 + colw[t] > width:
            blocks.append([])
            used = first
        blocks[-1].append(t)
        used += 2 + colw[t]
    seeds = ",".join(str(s) for s in study.seeds) or DASH
    meta = study.meta
    out = [
        f"{study.name}: {dataset_label(meta)}, preset {meta.get('preset', DASH)}, "
        f"seeds {seeds} (mean ± std over seeds)"
    ]
    for block in blocks:
        out.append("")
        out.append(f"{'':<{first}}" + "".join(f"  {t:>{colw[t]}}" for t in block))
        for name, vals in rows:
            out.append(f"{name:<{first}}" + "".join(f"  {vals[t]:>{colw[t]}}" for t in block))
    if study.notes:
        out.append("")
        out += [f"missing: {n}" for n in study.notes]
    return "\n".join(out)


def write_tables(table: ResultsTable, study: StudyData, out_dir: Path) -> dict[str, Path]:
    """Write ``results.json``, ``results.csv`` and ``results.md`` into ``out_dir``."""
    return {
        "json": write_text(
            out_dir / "results.json", json.dumps(to_json(table, study), indent=2) + "\n"
        ),
        "csv": write_text(out_dir / "results.csv", to_csv(table)),
        "md": write_text(out_dir / "results.md", to_markdown(table, study)),
    }

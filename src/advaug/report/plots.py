"""The report's figures (matplotlib, Agg canvas, no pyplot state): learning curves, validation
curves by technique, the cost of each technique, and per-class accuracy.

Every function returns PNG bytes, or ``None`` when the study holds nothing to plot;
``make_plots`` writes the PNGs under the report folder and returns their paths.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from advaug.report.files import write_bytes
from advaug.report.load import ModelRun, StudyData, num
from advaug.report.tables import ResultsTable

DPI = 100
_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
}
# series of a learning-curve panel: (split, field, label, colour)
SERIES = [
    ("train", "clean_acc", "train: clean part", "#1f77b4"),
    ("train", "aug_acc", "train: augmented part", "#d62728"),
    ("val", "top1", "validation top-1", "#2ca02c"),
]


@contextmanager
def _figure(width: float, height: float) -> Iterator[Figure]:
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def colours(techniques: list[str]) -> dict[str, Any]:
    """One fixed colour per technique (the study's order), the same in every figure."""
    cmap = matplotlib.colormaps["tab10"]
    return {t: cmap(i % 10) for i, t in enumerate(techniques)}


def by_epoch(run: ModelRun, split: str, key: str) -> dict[float, float]:
    """``{epoch: value}`` of one split's field (the last record of each epoch wins)."""
    out: dict[float, float] = {}
    for r in run.split(split):
        x = num(r.get("epoch", r.get("step")))
        v = num(r.get(key))
        if x is not None and v is not None:
            out[x] = v
    return out


def mean_curve(
    curves: list[dict[float, float]],
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Epochs, mean, min and max over the seeds that reached each epoch."""
    xs = sorted({x for c in curves for x in c})
    mean, lo, hi = [], [], []
    for x in xs:
        vals = [c[x] for c in curves if x in c]
        mean.append(sum(vals) / len(vals))
        lo.append(min(vals))
        hi.append(max(vals))
    return xs, mean, lo, hi


def _plot_band(ax: Any, curves: list[dict[float, float]], colour: Any, name: str) -> bool:
    curves = [c for c in curves if c]
    if not curves:
        return False
    xs, mean, lo, hi = mean_curve(curves)
    pct = [100 * v for v in mean]
    marker = "o" if len(xs) <= 12 else None
    ax.plot(xs, pct, color=colour, label=name, lw=1.6, marker=marker, ms=3)
    if len(curves) > 1:
        ax.fill_between(xs, [100 * v for v in lo], [100 * v for v in hi], color=colour, alpha=0.15)
    return True


def learning_curves(study: StudyData) -> bytes | None:
    """One panel per technique: train clean-part and augmented-part accuracy and validation
    top-1 against epoch, mean over seeds (band: min–max over seeds)."""
    techs = [t for t in study.techniques if any(m.records for m in study.by_technique(t))]
    if not techs:
        return None
    ncols = min(2, len(techs))
    nrows = math.ceil(len(techs) / ncols)
    with _figure(5.2 * ncols, 3.0 * nrows + 0.4) as fig:
        axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
        handles: dict[str, Any] = {}
        for i, t in enumerate(techs):
            ax = axes[i // ncols][i % ncols]
            runs = study.by_technique(t)
            for split, key, name, colour in SERIES:
                _plot_band(ax, [by_epoch(r, split, key) for r in runs], colour, name)
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
            n = sum(1 for r in runs if r.records)
            ax.set_title(f"{t}  ({n} seed{'s' if n != 1 else ''})")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if i % ncols == 0:
                ax.set_ylabel("accuracy (%)")
        for j in range(len(techs), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        names = [name for _, _, name, _ in SERIES if name in handles]
        fig.legend([handles[n] for n in names], names, loc="outside upper center", ncols=len(names))
        return _png(fig)


def compare_curves(study: StudyData) -> bytes | None:
    """Validation top-1 of every technique on one axis (mean over seeds)."""
    col = colours(study.techniques)
    with _figure(7.0, 3.4) as fig:
        ax = fig.subplots()
        drawn = False
        for t in study.techniques:
            curves = [by_epoch(r, "val", "top1") for r in study.by_technique(t)]
            drawn |= _plot_band(ax, curves, col[t], t)
        if not drawn:
            return None
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("validation top-1 (%)")
        ax.legend(loc="lower right")
        return _png(fig)


def cost_chart(table: ResultsTable) -> bytes | None:
    """Seconds per epoch of each technique (error bar: std over seeds), labelled with the ratio
    to ``none``."""
    techs = [t for t in table.techniques if table.seconds_per_epoch[t].mean is not None]
    if not techs:
        return None
    col = colours(table.techniques)
    means = [table.seconds_per_epoch[t].mean or 0.0 for t in techs]
    errs = [table.seconds_per_epoch[t].std or 0.0 for t in techs]
    with _figure(max(4.0, 1.3 * len(techs) + 1.5), 3.0) as fig:
        ax = fig.subplots()
        bars = ax.bar(techs, means, yerr=errs, color=[col[t] for t in techs], capsize=4)
        labels = []
        for t, m in zip(techs, means):
            r = table.ratio[t]
            labels.append(f"{m:.3g} s" + (f"\n×{r:.2f}" if r is not None else ""))
        ax.bar_label(bars, labels, padding=3, fontsize=8)
        ax.set_ylabel("seconds per epoch")
        ax.set_ylim(0, max(m + e for m, e in zip(means, errs)) * 1.35 or 1.0)
        ax.grid(axis="x", visible=False)
        return _png(fig)


#: The most class names the per-class plot writes under its axis (more classes: every m-th).
MAX_CLASS_TICKS = 30


def per_class(study: StudyData) -> bytes | None:
    """Per-class test top-1 of each technique (mean over seeds). The classes are in one order
    for every technique, from the first technique's best class to its worst (``none`` in a
    study), so that the lines compare class by class; the axis names the classes (every one up
    to ``MAX_CLASS_TICKS``, else evenly spaced ones)."""
    col = colours(study.techniques)
    means: dict[str, list[float]] = {}
    for t in study.techniques:
        rows = [m.per_class for m in study.by_technique(t) if m.per_class]
        rows = [r for r in rows if len(r) == len(rows[0])]
        if rows:
            means[t] = [sum(c) / len(rows) for c in zip(*rows)]
    k = len(next(iter(means.values()))) if means else 0
    means = {t: m for t, m in means.items() if len(m) == k}
    if not means:
        return None
    first = next(iter(means))
    order = sorted(range(k), key=lambda c: -means[first][c])
    known = study.meta.get("classes")
    names = [str(known[c]) if isinstance(known, list) and c < len(known) else str(c)
             for c in order]  # fmt: skip
    with _figure(max(7.0, min(14.0, 0.28 * k + 2)), 3.8) as fig:
        ax = fig.subplots()
        for t, m in means.items():
            ax.plot(range(k), [100 * m[c] for c in order], color=col[t], label=t, lw=1.6,
                    marker="o" if k <= MAX_CLASS_TICKS else None, ms=3)  # fmt: skip
        step = max(1, math.ceil(k / MAX_CLASS_TICKS))
        ticks = list(range(0, k, step))
        ax.set_xticks(ticks, [names[i] for i in ticks], rotation=60, ha="right", fontsize=7.5)
        ax.set_xlabel(f"class (sorted by {first}'s accuracy, best first)")
        ax.set_ylabel("test top-1 of the class (%)")
        ax.set_ylim(0, 101)
        ax.legend(loc="lower left")
        return _png(fig)


def make_plots(study: StudyData, table: ResultsTable, out_dir: Path) -> dict[str, Path]:
    """Write every figure that has data as ``out_dir/<name>.png``; returns ``{name: path}``."""
    makers: dict[str, Callable[[], bytes | None]] = {
        "learning_curves": lambda: learning_curves(study),
        "val_curves": lambda: compare_curves(study),
        "cost": lambda: cost_chart(table),
        "per_class": lambda: per_class(study),
    }
    paths = {}
    for name, make in makers.items():
        png = make()
        if png is not None:
            paths[name] = write_bytes(out_dir / f"{name}.png", png)
    return paths

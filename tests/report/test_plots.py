"""The report figures: curve averaging by hand, and PNGs that exist only when there is data."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from advaug.report.load import ModelRun, load_study
from advaug.report.plots import (
    by_epoch,
    compare_curves,
    cost_chart,
    learning_curves,
    make_plots,
    mean_curve,
    per_class,
)
from advaug.report.tables import build_table

from .synth import make_study


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return im.size


def test_by_epoch_last_record_wins_and_skips_non_numbers():
    run = ModelRun("m", "none", 0, records=[
        {"split": "train", "epoch": 0, "clean_acc": 0.1},
        {"split": "train", "epoch": 0, "clean_acc": 0.2},
        {"split": "train", "epoch": 1, "clean_acc": "nan"},
        {"split": "val", "epoch": 1, "top1": 0.3},
        {"split": "train", "step": 7, "clean_acc": 0.4},
    ])  # fmt: skip
    assert by_epoch(run, "train", "clean_acc") == {0.0: 0.2, 7.0: 0.4}
    assert by_epoch(run, "val", "top1") == {1.0: 0.3}


def test_mean_curve_over_seeds_of_unequal_length():
    xs, mean, lo, hi = mean_curve([{0: 0.1, 1: 0.3}, {0: 0.3, 1: 0.5, 2: 0.9}])
    assert xs == [0, 1, 2]
    assert mean == [0.2, 0.4, 0.9]
    assert lo == [0.1, 0.3, 0.9] and hi == [0.3, 0.5, 0.9]


def test_make_plots_writes_pngs(study_dir: Path):
    study = load_study(study_dir)
    paths = make_plots(study, build_table(study), study_dir / "report")
    assert set(paths) == {"learning_curves", "val_curves", "cost", "per_class"}
    for p in paths.values():
        assert p.parent == study_dir / "report"
        w, h = _png_size(p.read_bytes())
        assert 200 < w <= 1200 and 150 < h <= 1200


def test_nothing_to_plot_gives_none(tmp_path: Path):
    root = make_study(tmp_path / "s", {"none-s0": {"clean_top1": 0.5}}, val=False)
    (root / "classifiers" / "none-s0" / "metrics.jsonl").unlink()
    (root / "classifiers" / "none-s0" / "result.json").unlink()
    (root / "eval" / "none-s0.json").write_text('{"metrics": {}}')
    study = load_study(root)
    assert learning_curves(study) is None
    assert compare_curves(study) is None
    assert per_class(study) is None
    assert cost_chart(build_table(study)) is None
    assert make_plots(study, build_table(study), root / "report") == {}


def test_curves_without_validation(tmp_path: Path):
    study = load_study(make_study(tmp_path / "s", val=False))
    assert learning_curves(study) is not None
    assert compare_curves(study) is None


def test_per_class_plot_names_its_classes_in_the_first_techniques_order(study_dir, monkeypatch):
    import matplotlib.axes

    meta = json.loads((study_dir / "study.json").read_text())
    meta["classes"] = ["apple", "bee", "cat", "dog"]
    (study_dir / "study.json").write_text(json.dumps(meta))
    for name in ("none-s0", "none-s1"):  # none: the last class best
        ev = json.loads((study_dir / "eval" / f"{name}.json").read_text())
        ev["per_class_top1"] = [0.1, 0.2, 0.3, 0.4]
        (study_dir / "eval" / f"{name}.json").write_text(json.dumps(ev))
    seen = {}
    real = matplotlib.axes.Axes.set_xticks

    def spy(self, ticks, labels=None, **kw):
        seen["labels"] = list(labels)
        return real(self, ticks, labels, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_xticks", spy)
    assert per_class(load_study(study_dir)) is not None
    # in none's order (the first technique), best first, for fgsm's line too
    assert seen["labels"] == ["dog", "cat", "bee", "apple"]

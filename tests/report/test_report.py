"""``write_report`` end to end: the files, a self-contained page, and tolerance of gaps."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from html import escape
from pathlib import Path

import pytest
from PIL import Image

from advaug.errors import ConfigError
from advaug.report import Report, write_report
from advaug.report.html import _display_size

from .synth import PROTO, make_study

IMG_SRC = re.compile(r'<img[^>]*\ssrc="([^"]*)"')


def _check_self_contained(page: str) -> list[str]:
    """Every image is an inline PNG that decodes; nothing is loaded from elsewhere."""
    low = page.lower()
    for bad in ['src="http', "src='http", 'src="file:', 'href="http', "<script", "<link", "url("]:
        assert bad not in low, bad
    srcs = IMG_SRC.findall(page)
    for src in srcs:
        assert src.startswith("data:image/png;base64,"), src[:40]
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.format == "PNG"
    return srcs


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Report]:
    root = make_study(tmp_path_factory.mktemp("full") / "study")
    return root, write_report(root)


def test_writes_every_file(full: tuple[Path, Report]):
    root, rep = full
    out = root / "report"
    assert rep.index_html == out / "index.html"
    assert (rep.results_md, rep.results_csv, rep.results_json) == (
        out / "results.md",
        out / "results.csv",
        out / "results.json",
    )
    for p in [rep.index_html, rep.results_md, rep.results_csv, rep.results_json]:
        assert p.is_file() and p.stat().st_size > 0
    assert set(rep.plots) == {"learning_curves", "val_curves", "cost", "per_class"}
    assert not list(out.glob(".*tmp"))  # no temporary files left
    assert "52.0 ± 2.8" in rep.table_text
    assert rep.missing == []


def test_html_is_self_contained_and_complete(full: tuple[Path, Report]):
    _, rep = full
    page = rep.index_html.read_text()
    srcs = _check_self_contained(page)
    # 4 plots + real, gan, gan final, one UAE grid
    assert len(srcs) == 8
    for t in ["none", "fgsm"]:
        assert f'<th class="num">{t}</th>' in page
    for line in PROTO.values():
        assert escape(line) in page
    assert escape("FID, 10000 samples vs CIFAR-100 train, Inception pool3") in page
    assert "52.00 ± 2.83" in page and "s0\u00a050.00 · s1\u00a054.00" in page
    assert "How to read this" in page
    assert "classifiers/fgsm-s1/checkpoints/final.pt" in page
    assert "cifar100" in page and "smoke" in page
    # best mean in a higher-is-better row is bold: clean top-1 of none (52 > 46)
    assert '<td class="num best">52.00 ± 2.83' in page
    assert "Missing or partial" not in page


def test_missing_parts_are_rendered_and_named(tmp_path: Path):
    root = make_study(tmp_path / "s", val=False)
    shutil.rmtree(root / "grids")
    shutil.rmtree(root / "gan")
    (root / "eval" / "fgsm-s1.json").unlink()
    meta = json.loads((root / "study.json").read_text())
    meta.pop("gan")
    meta["finished"] = False
    (root / "study.json").write_text(json.dumps(meta))
    rep = write_report(root)
    page = rep.index_html.read_text()
    assert len(_check_self_contained(page)) == 3  # curves, cost, per-class
    assert "Missing or partial" in page
    assert "no eval/fgsm-s1.json" in page
    assert "grids/real.png not found" in page
    assert "no validation records" in page
    assert "No GAN quality metrics" in page
    assert "not finished" in page
    assert any("fgsm-s1" in m for m in rep.missing)
    data = json.loads(rep.results_json.read_text())
    assert data["table"]["fgsm"]["clean_top1"]["n"] == 1
    assert "(n=1)" not in rep.results_md.read_text()  # n counts evaluated models only


def test_study_with_nothing_but_study_json(tmp_path: Path):
    (tmp_path / "study.json").write_text(json.dumps({"name": "empty", "techniques": ["none"]}))
    rep = write_report(tmp_path)
    page = rep.index_html.read_text()
    assert _check_self_contained(page) == []
    assert "No evaluation results yet" in page
    assert "none" in rep.table_text


def test_not_a_study(tmp_path: Path):
    with pytest.raises(ConfigError, match="no study.json"):
        write_report(tmp_path)


def test_grid_display_size():
    assert _display_size(73, 37, pixel=True, target=480) == (438, 222)  # ×6
    assert _display_size(68, 274, pixel=True, target=480) == (136, 548)  # height caps it: ×2
    assert _display_size(684, 684, pixel=True, target=480) == (684, 684)  # natural
    assert _display_size(2100, 300, pixel=False, target=None) == (1050, 150)

"""The report's Human evaluation block: "No human labels" without answers, the numbers next to
the proxy with them. The answers are scripted by the test, not given by people."""

from __future__ import annotations

import json
from pathlib import Path

from advaug.label.analysis import wilson
from advaug.label.store import NONE, Item, LabelStore
from advaug.report import write_report

from .synth import make_study
from .test_report import _check_self_contained


def _labels(study: Path, name: str = "transfer-uae.sqlite") -> LabelStore:
    # 4 UAEs (sources 0-3), 2 clean, 2 real; the proxy is right on UAEs 0 and 1 only
    items = [
        Item(0, "uae", 0, proxy_pred=0), Item(1, "uae", 1, proxy_pred=1),
        Item(2, "uae", 2, proxy_pred=0), Item(3, "uae", 3, proxy_pred=0),
        Item(4, "gan", 1, proxy_pred=1), Item(5, "gan", 2, proxy_pred=2),
        Item(6, "real", 0, proxy_pred=0), Item(7, "real", 3, proxy_pred=3),
    ]  # fmt: skip
    meta = {"classes": ["a", "b", "c", "<i>d</i>"], "proxy": "reference <wrn>", "real": "x"}
    return LabelStore.create(study / "labels" / name, [(it, b"png") for it in items], meta)


def test_a_study_without_labels_says_so(tmp_path: Path):
    root = make_study(tmp_path / "study")
    rep = write_report(root)
    page = rep.index_html.read_text()
    assert '<section id="human"><h2>Human evaluation</h2>' in page and "No human labels." in page
    md = rep.results_md.read_text()
    assert "## Human evaluation\n\nNo human labels." in md
    assert json.loads(rep.results_json.read_text())["human"] == []
    _labels(root)  # a set that nobody has answered yet: still no human labels
    rep = write_report(root)
    assert "No human labels." in rep.index_html.read_text()
    assert json.loads(rep.results_json.read_text())["human"] == []


def test_labelled_sets_show_human_numbers_next_to_the_proxy(tmp_path: Path):
    root = make_study(tmp_path / "study")
    store = _labels(root)
    script = {"r1": [(0, 0), (1, 1), (2, 1), (3, NONE), (4, 1), (6, 0)],
              "r2": [(0, 0), (1, 2), (2, 2), (5, 2), (7, 3)]}  # fmt: skip
    for rater, pairs in script.items():
        for item, choice in pairs:
            store.answer(rater, item, choice)
    rep = write_report(root)
    page = rep.index_html.read_text()
    _check_self_contained(page)
    block = page.split('<section id="human">')[1].split("</section>")[0]
    # UAEs: r1 0✓ 1✓ 2✗ 3✗, r2 0✓ 1✗ 2✓ → 4 of 7
    lo, hi = wilson(4, 7)
    assert f"57.1% [{100 * lo:.1f}, {100 * hi:.1f}]" in block
    assert "100.0% [" in block  # clean 2 of 2 and real 2 of 2
    assert "reference &lt;wrn&gt;" in block and "<wrn>" not in block
    assert "labels/transfer-uae.sqlite" in block and "No human labels" not in block
    assert "Krippendorff" in block and "Cohen" in block
    md = rep.results_md.read_text()
    assert "| UAE legitimacy: share of UAE successes seen as their source class | 57.1% [" in md
    human = json.loads(rep.results_json.read_text())["human"]
    assert len(human) == 1 and human[0]["human"]["uae"]["k"] == 4
    assert human[0]["proxy"]["automatic"]["uae"]["value"] == 0.5


def test_an_unreadable_set_is_a_note(tmp_path: Path):
    root = make_study(tmp_path / "study")
    (root / "labels").mkdir()
    (root / "labels" / "broken.sqlite").write_bytes(b"not sqlite" * 50)
    rep = write_report(root)
    assert any("labels/broken.sqlite could not be read" in m for m in rep.missing)
    assert "No human labels." in rep.index_html.read_text()

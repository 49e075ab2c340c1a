"""Crowd batches: the export a platform takes, and its results file back into the set. The
'workers' here are scripted rows written by the test."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from advaug.errors import ConfigError, DataError
from advaug.label import LabelStore, export_batch, import_results, summarize
from advaug.label.store import NONE

from .conftest import CLASSES


def test_export_writes_an_mturk_style_batch(store: LabelStore, tmp_path: Path):
    out = tmp_path / "batch"
    path = export_batch(store, out, base_url="https://example.org/hits")
    rows = list(csv.DictReader(path.open()))
    assert [r["item_id"] for r in rows] == [str(i) for i in range(store.num_items)]
    assert rows[5]["image_url"] == "https://example.org/hits/images/5.png"
    assert set(rows[0]) == {"item_id", "image_url"}  # nothing that tells the kind
    for r in rows:
        assert (out / "images" / f"{r['item_id']}.png").read_bytes() == store.image(
            int(r["item_id"])
        )
    classes = list(csv.reader((out / "classes.csv").open()))
    assert classes == [["index", "name"]] + [[str(i), c] for i, c in enumerate(CLASSES)]
    hit = (out / "hit.html").read_text()
    assert "${image_url}" in hit and "&lt;b&gt;owl&lt;/b&gt;" in hit and "<b>owl" not in hit
    assert 'value="-1"' in hit
    with pytest.raises(ConfigError, match="holds an export already"):
        export_batch(store, out)


def _results(path: Path, rows: list[dict[str, str]]) -> Path:
    header = ["HITId", "AssignmentId", "WorkerId", "AssignmentStatus", "Input.item_id",
              "Input.image_url", "Answer.class"]  # fmt: skip
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({"HITId": f"H{i}", "AssignmentId": f"A{i}", "AssignmentStatus": "Approved",
                        "Input.image_url": "x", **r})  # fmt: skip
    return path


def test_import_of_a_results_file(store: LabelStore, tmp_path: Path):
    items = store.items()
    rows = []
    for it in items:  # scripted workers: W1 answers the source index, W2 the class name, W3 none
        rows.append({"WorkerId": "W1", "Input.item_id": str(it.id), "Answer.class": str(it.source)})
        rows.append({"WorkerId": "W2", "Input.item_id": str(it.id),
                     "Answer.class": CLASSES[it.source].upper()})  # fmt: skip
    rows.append({"WorkerId": "W3", "Input.item_id": "0", "Answer.class": "none"})
    rows.append({"WorkerId": "W4", "Input.item_id": "1", "Answer.class": "0",
                 "AssignmentStatus": "Rejected"})  # fmt: skip
    path = _results(tmp_path / "Batch_1_batch_results.csv", rows)
    assert import_results(store, path) == (2 * len(items) + 1, 0)
    assert import_results(store, path) == (0, 2 * len(items) + 1)  # idempotent
    answers = store.answers()
    assert {a.rater for a in answers} == {"W1", "W2", "W3"}
    assert {a.origin for a in answers} == {"import:Batch_1_batch_results.csv"}
    assert [a.choice for a in answers if a.rater == "W3"] == [NONE]
    s = summarize(store)
    assert (
        s["per_rater"]["W1"]["uae"]["value"] == 1.0 and s["per_rater"]["W2"]["real"]["value"] == 1.0
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"WorkerId": "W1", "Input.item_id": "999", "Answer.class": "0"}, "item must be"),
        ({"WorkerId": "W1", "Input.item_id": "x", "Answer.class": "0"}, "not an item id"),
        ({"WorkerId": "W1", "Input.item_id": "0", "Answer.class": "7"}, "choice must be"),
        ({"WorkerId": "W1", "Input.item_id": "0", "Answer.class": "zebra"}, "neither a class"),
        ({"WorkerId": "bad name", "Input.item_id": "0", "Answer.class": "0"}, "rater name"),
    ],
)
def test_a_bad_row_stops_the_import_before_anything_is_written(store, tmp_path, row, message):
    good = {"WorkerId": "W1", "Input.item_id": "1", "Answer.class": "1"}
    path = _results(tmp_path / "r.csv", [good, row])
    with pytest.raises(DataError, match=rf"line 3: .*{message}") as e:
        import_results(store, path)
    assert "\n" not in str(e.value)
    assert store.answers() == []


def test_plain_csv_columns_and_missing_columns(store: LabelStore, tmp_path: Path):
    plain = tmp_path / "plain.csv"
    plain.write_text("item_id,worker_id,label\n0,ann,-1\n1,ann,dog\n")
    assert import_results(store, plain) == (2, 0)
    bad = tmp_path / "bad.csv"
    bad.write_text("item,who,what\n0,ann,1\n")
    with pytest.raises(DataError, match="has no column Input.item_id or item_id"):
        import_results(store, bad)
    with pytest.raises(ConfigError, match="no results file"):
        import_results(store, tmp_path / "missing.csv")

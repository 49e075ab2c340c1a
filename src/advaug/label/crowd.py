"""Export a labelling set for a crowd platform, and import the platform's results.

Export (``advaug label SOURCE --export DIR [--base-url URL]``) writes

- ``DIR/images/<id>.png``: every item, named by its (shuffled) id only, so the kind is hidden;
- ``DIR/input.csv``: one row per image, columns ``item_id,image_url``: the shape of an Amazon
  Mechanical Turk batch input file (each column becomes a ``${...}`` variable of the HIT), and
  what Prolific/Toloka-style task pools take too. ``image_url`` is ``URL + images/<id>.png``:
  upload ``images/`` to where ``--base-url`` points;
- ``DIR/classes.csv``: ``index,name``; and ``DIR/hit.html``: a plain HIT layout (the image and one
  radio button per class, field ``class``, value = class index, -1 = none / cannot tell).

Import (``advaug label SOURCE --import RESULTS.csv``) reads the platform's results file: one row
per worker and image, with the item id (``Input.item_id`` or ``item_id``), the worker
(``WorkerId``, ``worker_id`` or ``rater``) and the chosen class (``Answer.class``, ``class``,
``choice`` or ``label``: a class index, a class name, ``-1`` or ``none``). Rows whose
``AssignmentStatus`` is ``Rejected`` are skipped. Every row is checked before anything is written;
then all go in one transaction, and importing the same file twice adds nothing.
"""

from __future__ import annotations

import csv
import html
from pathlib import Path

from advaug.errors import ConfigError, DataError
from advaug.label.store import NONE, LabelInputError, LabelStore, check_rater
from advaug.log import get_logger

log = get_logger(__name__)

ITEM_COLUMNS = ("Input.item_id", "item_id")
WORKER_COLUMNS = ("WorkerId", "worker_id", "rater")
CHOICE_COLUMNS = ("Answer.class", "class", "choice", "label")
NONE_WORDS = {"-1", "none", "none / cannot tell", "cannot tell"}


def _hit_template(classes: list[str]) -> str:
    radios = "\n".join(
        f'  <label><input type="radio" name="class" value="{i}" required> '
        f"{i}: {html.escape(name)}</label><br>"
        for i, name in enumerate(classes)
    )
    return (
        "<!-- advaug HIT layout: paste into the platform's editor; ${image_url} is filled from "
        "input.csv -->\n"
        "<p>Which class is this image? If you cannot tell, choose the last option.</p>\n"
        '<img src="${image_url}" alt="image" width="256" height="256" '
        'style="image-rendering:pixelated">\n'
        f"<div>\n{radios}\n"
        f'  <label><input type="radio" name="class" value="{NONE}"> none / cannot tell</label>\n'
        "</div>\n"
    )


def export_batch(store: LabelStore, out: str | Path, base_url: str = "") -> Path:
    """Write the batch of the module docstring into ``out``; returns the input CSV."""
    out = Path(out)
    if (out / "input.csv").exists():
        raise ConfigError(f"{out} holds an export already; choose another folder")
    if base_url and not base_url.endswith("/"):
        base_url += "/"
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for item in store.items():
        png = store.image(item.id)
        assert png is not None
        (images / f"{item.id}.png").write_bytes(png)
        rows.append((item.id, f"{base_url}images/{item.id}.png"))
    with (out / "classes.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["index", "name"])
        w.writerows(enumerate(store.classes))
    (out / "hit.html").write_text(_hit_template(store.classes), encoding="utf-8")
    path = out / "input.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "image_url"])
        w.writerows(rows)
    log.info("exported %d images to %s", len(rows), out)
    return path


def _column(header: list[str], names: tuple[str, ...], path: Path) -> str:
    for n in names:
        if n in header:
            return n
    raise DataError(
        f"{path} has no column {' or '.join(names)}; is it the platform's results file?"
    )


def _choice(value: str, classes: list[str]) -> int:
    v = value.strip()
    if v.lower() in NONE_WORDS:
        return NONE
    if v.lstrip("-").isdigit():
        return int(v)
    lower = [c.lower() for c in classes]
    if v.lower() in lower:
        return lower.index(v.lower())
    raise LabelInputError(f"{value!r} is neither a class index nor a class name")


def read_results(store: LabelStore, path: str | Path) -> list[tuple[str, int, int]]:
    """``(rater, item, choice)`` for every accepted row of a results CSV, all checked."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no results file at {path}")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        c_item = _column(header, ITEM_COLUMNS, path)
        c_worker = _column(header, WORKER_COLUMNS, path)
        c_choice = _column(header, CHOICE_COLUMNS, path)
        rows = []
        for line, row in enumerate(reader, start=2):
            if (row.get("AssignmentStatus") or "").strip().lower() == "rejected":
                continue
            try:
                item_text = (row.get(c_item) or "").strip()
                if not item_text.isdigit():
                    raise LabelInputError(f"{c_item} {item_text!r} is not an item id")
                rater = check_rater((row.get(c_worker) or "").strip())
                choice = _choice(row.get(c_choice) or "", store.classes)
                rows.append((rater, *store.check_answer(int(item_text), choice)))
            except LabelInputError as e:
                raise DataError(f"{path} line {line}: {e}; fix or remove that row") from e
    return rows


def import_results(store: LabelStore, path: str | Path) -> tuple[int, int]:
    """Add the answers of a results CSV to the set; returns (added, already there)."""
    rows = read_results(store, path)
    added, skipped = store.add_answers(rows, origin=f"import:{Path(path).name}")
    log.info("imported %d answers from %s (%d already there)", added, path, skipped)
    return added, skipped

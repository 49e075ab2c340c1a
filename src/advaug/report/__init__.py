"""The report of a study folder: tables (md/csv/json), plots, and one self-contained HTML page.

``write_report(study_dir)`` reads what the study wrote, renders whatever exists (missing parts are
listed on the page, never fatal) and writes everything under ``study_dir/report/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from advaug.log import get_logger
from advaug.report.html import write_html
from advaug.report.load import StudyData, load_study
from advaug.report.plots import make_plots
from advaug.report.tables import ResultsTable, build_table, table_text, write_tables

log = get_logger(__name__)

REPORT_DIR = "report"


@dataclass
class Report:
    """Paths of the written report and the terminal version of the results table."""

    index_html: Path
    results_md: Path
    results_csv: Path
    results_json: Path
    table_text: str
    plots: dict[str, Path] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def write_report(study_dir: str | Path) -> Report:
    """Write ``study_dir/report/{index.html, results.md, results.csv, results.json, *.png}``.

    Raises ``ConfigError`` when ``study_dir`` is not a study folder (no ``study.json``).
    """
    study = load_study(study_dir)
    out = study.root / REPORT_DIR
    table = build_table(study)
    files = write_tables(table, study, out)
    plots = make_plots(study, table, out)
    index = write_html(study, table, plots, out / "index.html")
    log.info("report of %s written to %s", study.root, index)
    return Report(
        index_html=index,
        results_md=files["md"],
        results_csv=files["csv"],
        results_json=files["json"],
        table_text=table_text(table, study),
        plots=plots,
        missing=list(study.notes),
    )


__all__ = ["Report", "ResultsTable", "StudyData", "build_table", "load_study", "write_report"]

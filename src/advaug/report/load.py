"""Read a finished (or partly finished) study folder into plain Python objects.

Nothing here fails on a missing optional part: what is absent becomes ``None`` or an empty list,
and a one-line note in ``StudyData.notes`` says what is missing, so that the report can show it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advaug.errors import ConfigError
from advaug.log import get_logger

log = get_logger(__name__)

_SEED_SUFFIX = re.compile(r"^(?P<tech>.+)-s(?P<seed>\d+)$")
_STALE = re.compile(r"\.stale-[^/]+$")


def num(v: Any) -> float | None:
    """A finite float, or ``None`` for null, NaN, infinities, text and booleans."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        f = float(v)
    elif isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
    else:
        return None
    return f if math.isfinite(f) else None


def _read_json(path: Path, notes: list[str], root: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        notes.append(f"{path.relative_to(root)} could not be read ({type(e).__name__}); skipped")
        return None
    if not isinstance(data, dict):
        notes.append(f"{path.relative_to(root)} is not a JSON object; skipped")
        return None
    return data


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Records of a JSON-lines file and the number of lines that were not valid JSON."""
    out, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:  # a line cut by a kill
            bad += 1
            continue
        if isinstance(rec, dict):
            out.append(rec)
        else:
            bad += 1
    return out, bad


@dataclass
class ModelRun:
    """One trained classifier of the study: its evaluation, training result and metric log."""

    name: str
    technique: str
    seed: int | None
    eval: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """The evaluation metrics ``{key: {"value", "protocol"}}`` (empty without an eval)."""
        m = (self.eval or {}).get("metrics")
        return m if isinstance(m, dict) else {}

    @property
    def checkpoint(self) -> str | None:
        ckpt = (self.eval or {}).get("checkpoint")
        return str(ckpt) if ckpt else None

    @property
    def per_class(self) -> list[float] | None:
        pc = (self.eval or {}).get("per_class_top1")
        if not isinstance(pc, list) or not pc:
            return None
        vals = [num(v) for v in pc]
        return None if any(v is None for v in vals) else vals  # type: ignore[return-value]

    def outcomes(self, key: str) -> Any:
        """The per-item outcomes (numpy bool array) the evaluation saved for metric ``key``, or
        None (older evaluations saved none)."""
        from advaug.report.stats import unpack_outcomes

        per = (self.eval or {}).get("per_image")
        return unpack_outcomes(per.get(key)) if isinstance(per, dict) else None

    def cost(self) -> dict[str, float | None]:
        """Seconds per epoch, training seconds and epochs: from the eval, else the result."""
        c = (self.eval or {}).get("cost")
        c = c if isinstance(c, dict) else {}
        r = self.result or {}
        train_s = num(c.get("train_seconds", r.get("train_seconds")))
        epochs = num(c.get("epochs", r.get("epochs")))
        spe = num(c.get("seconds_per_epoch"))
        if spe is None and train_s is not None and epochs:
            spe = train_s / epochs
        return {"seconds_per_epoch": spe, "train_seconds": train_s, "epochs": epochs}

    def split(self, name: str) -> list[dict[str, Any]]:
        """The metric records of one split (``train``, ``val``, ``test`` ...), in log order."""
        return [r for r in self.records if r.get("split") == name]


@dataclass
class StudyData:
    """Everything the report needs from a study folder."""

    root: Path
    meta: dict[str, Any]
    models: list[ModelRun]
    notes: list[str] = field(default_factory=list)
    human: list[dict[str, Any]] = field(default_factory=list)  # labels/*.sqlite summaries

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.root.name)

    @property
    def techniques(self) -> list[str]:
        """The study's techniques in its own order, then any others that models use."""
        order = [str(t) for t in self.meta.get("techniques") or []]
        for m in self.models:
            if m.technique not in order:
                order.append(m.technique)
        return order

    @property
    def seeds(self) -> list[int]:
        seeds = self.meta.get("seeds")
        if isinstance(seeds, list) and seeds:
            return [int(s) for s in seeds if isinstance(s, int | float)]
        return sorted({m.seed for m in self.models if m.seed is not None})

    def by_technique(self, technique: str) -> list[ModelRun]:
        return [m for m in self.models if m.technique == technique]

    def image(self, rel: str) -> Path | None:
        """The PNG at ``rel`` inside the study, or ``None`` if absent."""
        p = self.root / rel
        return p if p.is_file() else None


def _technique_and_seed(
    name: str, ev: dict[str, Any] | None, res: dict[str, Any] | None
) -> tuple[str, int | None]:
    m = _SEED_SUFFIX.match(name)
    tech = (ev or {}).get("technique") or (res or {}).get("technique")
    tech = str(tech) if tech else (m.group("tech") if m else name)
    seed = (ev or {}).get("seed", (res or {}).get("seed"))
    if not isinstance(seed, int) or isinstance(seed, bool):
        seed = int(m.group("seed")) if m else None
    return tech, seed


def load_study(study_dir: str | Path) -> StudyData:
    """Read ``study_dir``; raise ``ConfigError`` when it is not a study folder."""
    root = Path(study_dir)
    meta_path = root / "study.json"
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; pass the folder that `advaug study` wrote")
    if not meta_path.is_file():
        raise ConfigError(
            f"{root} is not a study folder (no study.json); "
            "pass the folder that `advaug study --out` wrote"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{meta_path} is not valid JSON ({type(e).__name__}); rerun the study or repair it"
        ) from e
    if not isinstance(meta, dict):
        raise ConfigError(f"{meta_path} is not a JSON object; rerun the study or repair it")

    notes: list[str] = []
    names: list[str] = [str(n) for n in meta.get("models") or []]
    found = sorted(p.stem for p in (root / "eval").glob("*.json") if p.is_file())
    found += sorted(p.name for p in (root / "classifiers").glob("*") if p.is_dir())
    # runs that a changed config set aside (<name>.stale-<hash>) are not models of the study
    names += [n for n in dict.fromkeys(found) if n not in names and not _STALE.search(n)]

    models = []
    for name in names:
        ev = _read_json(root / "eval" / f"{name}.json", notes, root)
        cdir = root / "classifiers" / name
        res = _read_json(cdir / "result.json", notes, root)
        records: list[dict[str, Any]] = []
        if (cdir / "metrics.jsonl").is_file():
            records, bad = _read_jsonl(cdir / "metrics.jsonl")
            if bad:
                notes.append(f"classifiers/{name}/metrics.jsonl: {bad} unreadable line(s) skipped")
        tech, seed = _technique_and_seed(name, ev, res)
        if ev is None:
            notes.append(f"model {name}: no eval/{name}.json, so it is not in the results table")
        if not records:
            notes.append(f"model {name}: no classifiers/{name}/metrics.jsonl, so no curves")
        models.append(ModelRun(name, tech, seed, ev, res, records))
    if not models:
        notes.append("no trained models found (classifiers/ and eval/ are empty)")
    if meta.get("finished") is False:
        notes.append("the study has not finished: this report shows the parts written so far")
    from advaug.report.human import load_human

    human = load_human(root, notes)
    log.debug("loaded study %s: %d models, %d notes", root, len(models), len(notes))
    return StudyData(root=root, meta=meta, models=models, notes=notes, human=human)

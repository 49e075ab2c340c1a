"""Reading a study folder: what is found, what is inferred, what is reported missing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from advaug.errors import AdvaugError, ConfigError
from advaug.report.load import load_study, num

from .synth import make_study


def test_num_keeps_only_finite_numbers():
    assert num(3) == 3.0 and num(0.25) == 0.25 and num("0.5") == 0.5
    for bad in [None, True, "nan", "inf", float("nan"), -math.inf, "abc", [1]]:
        assert num(bad) is None, bad


def test_not_a_study_folder(tmp_path: Path):
    with pytest.raises(ConfigError) as e:
        load_study(tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "study.json" in msg and "\n" not in msg
    assert isinstance(e.value, AdvaugError) and e.value.exit_code == 2
    with pytest.raises(ConfigError, match="not a folder"):
        load_study(tmp_path / "nope")


def test_broken_study_json(tmp_path: Path):
    (tmp_path / "study.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_study(tmp_path)


def test_loads_models_in_study_order(study_dir: Path):
    s = load_study(study_dir)
    assert [m.name for m in s.models] == ["none-s0", "none-s1", "fgsm-s0", "fgsm-s1"]
    assert s.techniques == ["none", "fgsm"] and s.seeds == [0, 1]
    m = s.models[2]
    assert (m.technique, m.seed) == ("fgsm", 0)
    assert m.metrics["clean_top1"]["value"] == 0.45
    assert m.cost() == {"seconds_per_epoch": 20.0, "train_seconds": 60.0, "epochs": 3.0}
    assert [r["epoch"] for r in m.split("train")] == [0, 1, 2]
    assert s.notes == []


def test_infers_missing_parts_and_notes_them(study_dir: Path):
    (study_dir / "eval" / "fgsm-s1.json").unlink()
    (study_dir / "classifiers" / "none-s1" / "metrics.jsonl").write_text(
        '{"step": 1, "split": "train", "epoch": 0, "clean_acc": 0.1}\n{"step": 2, "spl'
    )
    extra = study_dir / "classifiers" / "gan-s3"  # not listed in study.json, no eval
    extra.mkdir()
    (extra / "result.json").write_text(json.dumps({"train_seconds": 50.0, "epochs": 5}))
    s = load_study(study_dir)
    names = [m.name for m in s.models]
    assert names[-1] == "gan-s3"
    gan = s.models[-1]
    assert (gan.technique, gan.seed, gan.eval) == ("gan", 3, None)
    assert gan.cost()["seconds_per_epoch"] == 10.0  # 50 s / 5 epochs, from result.json
    assert s.techniques == ["none", "fgsm", "gan"]
    assert len(s.models[1].records) == 1  # the cut line is skipped
    joined = "\n".join(s.notes)
    assert "fgsm-s1" in joined and "eval/fgsm-s1.json" in joined
    assert "1 unreadable line" in joined
    assert "gan-s3: no classifiers/gan-s3/metrics.jsonl" in joined


def test_unfinished_and_empty_study(tmp_path: Path):
    (tmp_path / "study.json").write_text(json.dumps({"name": "x", "finished": False}))
    s = load_study(tmp_path)
    assert s.models == [] and s.techniques == [] and s.seeds == []
    assert any("not finished" in n for n in s.notes)
    assert any("no trained models" in n for n in s.notes)


def test_single_seed_study(tmp_path: Path):
    s = load_study(make_study(tmp_path / "s", {"none-s0": {"clean_top1": 0.5}}))
    assert s.seeds == [0] and s.techniques == ["none"]


def test_runs_set_aside_by_a_changed_config_are_not_models(study_dir: Path):
    """A rerun with another config moves the old run to ``<name>.stale-<hash>``: it must not
    count as a second model (Runs 2, a std over old and new), a missing one or a technique."""
    import shutil

    from advaug.report.tables import build_table

    for name in ("fgsm-s0", "none-s1"):
        shutil.copytree(
            study_dir / "classifiers" / name,
            study_dir / "classifiers" / f"{name}.stale-0a1b2c3d4e5f",
        )
    gone = study_dir / "classifiers" / "fgsm-s1.stale-gan"
    shutil.copytree(study_dir / "classifiers" / "fgsm-s1", gone)
    result = json.loads((gone / "result.json").read_text())
    (gone / "result.json").write_text(json.dumps({**result, "technique": "old-technique"}))
    s = load_study(study_dir)
    assert [m.name for m in s.models] == ["none-s0", "none-s1", "fgsm-s0", "fgsm-s1"]
    assert s.techniques == ["none", "fgsm"] and s.notes == []
    table = build_table(s)
    assert table.techniques == ["none", "fgsm"]
    assert table.models == {"none": ["none-s0", "none-s1"], "fgsm": ["fgsm-s0", "fgsm-s1"]}
    assert table.seconds_per_epoch["fgsm"].mean == 22.0  # (20 + 24) / 2, no stale copies

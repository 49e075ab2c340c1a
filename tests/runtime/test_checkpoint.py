"""The checkpoint manager's parts by hand: manifests, which ones count, the fallback on load,
the best checkpoint, and the NaN guard. Whole runs that crash and resume are in
tests/reliability/."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path

import pytest
import torch

from advaug.errors import CheckpointError, NumericalError
from advaug.runtime.checkpoint import (
    CheckpointManager,
    _load_failure,
    first_nonfinite,
    load_file,
    versions,
)


def _state(v: float) -> dict:
    return {"w": torch.full((3,), v), "step": torch.tensor(int(v))}


def test_save_writes_the_file_and_its_manifest(tmp_path):
    """In a folder made on the first save (parents too); the manifest is indented JSON, one key
    per line, for people and diffs."""
    mgr = CheckpointManager(tmp_path / "run/ck", keep_last=3, meta={"config_hash": "abc"})
    path = mgr.save(_state(7.0), 7, metric=0.5)
    assert path == tmp_path / "run/ck/step-00000007.pt"
    data = path.read_bytes()
    text = path.with_suffix(".json").read_text()
    manifest = json.loads(text)
    assert text == json.dumps(manifest, indent=1)
    assert manifest.pop("time") > 0
    assert manifest == {"file": "step-00000007.pt", "sha256": hashlib.sha256(data).hexdigest(),
                        "bytes": len(data), "step": 7, "metric": 0.5, "versions": versions(),
                        "config_hash": "abc"}  # fmt: skip
    assert CheckpointManager(tmp_path / "run/ck").keep_last == 2  # the default retention


def test_entries_are_sorted_by_step_and_skip_invalid_manifests(tmp_path, caplog):
    mgr = CheckpointManager(tmp_path, keep_last=5)
    for step in (30, 5, 100):
        mgr.save(_state(step), step)
    good = json.loads((tmp_path / "step-00000005.json").read_text())
    bad = {
        "step-00000001.json": {**good, "file": "step-00000001.pt", "step": True},
        "step-00000002.json": {**good, "file": "step-00000002.pt", "step": -2},
        "step-00000003.json": {**good, "file": "step-00000005.pt", "step": 3},  # not its own
        "step-00000004.json": {**good, "file": "step-00000004.pt", "step": 4, "sha256": 1},
        "step-00000006.json": {**good, "file": "step-00000006.pt", "step": 6, "metric": True},
        "step-00000007.json": {**good, "file": "step-00000007.pt", "step": 7, "metric": "0.5"},
        "step-00000008.json": {**good, "file": "step-00000008.pt", "step": "8"},
        "step-00000009.json": [good],
        "step-9.json": {**good, "file": "step-9.pt", "step": 9},  # not an 8-digit name
    }
    for name, m in bad.items():
        (tmp_path / name).write_text(json.dumps(m))
    (tmp_path / "step-00000010.json").write_text("{not json")
    ok = {**good, "file": "step-00000011.pt", "step": 11, "metric": 1}  # an int metric counts
    (tmp_path / "step-00000011.json").write_text(json.dumps(ok))
    zero = {**good, "file": "step-00000000.pt", "step": 0}  # step 0 is a step
    (tmp_path / "step-00000000.json").write_text(json.dumps(zero))
    with caplog.at_level(logging.WARNING, logger="advaug"):
        steps = [e["step"] for e in mgr.entries()]
    assert steps == [0, 5, 11, 30, 100]
    warned = sorted(r.getMessage() for r in caplog.records)
    names = sorted([*bad, "step-00000010.json"])
    assert warned == [f"ignoring {tmp_path / n}: not a valid checkpoint manifest" for n in names]
    assert CheckpointManager(tmp_path / "nowhere").entries() == []


def test_load_latest_falls_back_past_bad_files_with_a_warning(tmp_path, caplog):
    mgr = CheckpointManager(tmp_path, keep_last=3)
    assert mgr.load_latest() is None
    for step in (1, 2, 3):
        mgr.save(_state(step), step)
    (tmp_path / "step-00000003.pt").write_bytes(b"truncated")
    (tmp_path / "step-00000002.pt").unlink()
    with caplog.at_level(logging.WARNING, logger="advaug"):
        state, manifest = mgr.load_latest()
    assert manifest["step"] == 1 and torch.equal(state["w"], torch.full((3,), 1.0))
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        f"checkpoint {tmp_path / 'step-00000003.pt'} is corrupted or truncated (sha256 does "
        "not match its manifest); falling back to the previous checkpoint",
        f"checkpoint {tmp_path / 'step-00000002.pt'} does not exist; check the path or the run "
        "folder; falling back to the previous checkpoint",
    ]


def test_a_checkpoint_that_is_not_a_dict_is_refused(tmp_path):
    mgr = CheckpointManager(tmp_path)
    mgr.save(_state(1.0), 1)
    data = _bytes([1, 2])
    (tmp_path / "step-00000001.pt").write_bytes(data)
    m = json.loads((tmp_path / "step-00000001.json").read_text())
    m["sha256"] = hashlib.sha256(data).hexdigest()
    (tmp_path / "step-00000001.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match=r"holds a list, not an advaug state dict$"):
        mgr.load_latest()


def _bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_best_is_the_highest_metric_and_the_latest_on_ties(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=10)
    assert mgr.best() is None
    mgr.save(_state(1), 1)
    assert mgr.best() is None  # no metric yet
    for step, metric in ((2, 0.5), (3, 0.9), (4, 0.2), (5, 0.9), (6, None)):
        mgr.save(_state(step), step, metric=metric)
    assert mgr.best()["step"] == 5


def test_first_nonfinite_names_the_key_path():
    assert first_nonfinite({"a": {"b": torch.ones(2)}, "c": [torch.ones(1)]}) is None
    assert first_nonfinite({"a": {"b": torch.tensor([1.0, float("nan")])}}) == "a.b"
    assert first_nonfinite({"opt": [torch.ones(1), torch.tensor([float("inf")])]}) == "opt[1]"
    assert first_nonfinite({"s": (torch.ones(1), [torch.tensor(-float("inf"))])}) == "s[1][0]"
    assert first_nonfinite(torch.tensor(float("nan"))) == "<state>"
    assert first_nonfinite({"z": torch.tensor([complex(float("nan"), 0)])}) == "z"
    assert first_nonfinite({"n": torch.tensor([1, 2]), "x": 3.0}) is None  # ints, not tensors


def test_a_nonfinite_state_is_refused_and_nothing_is_written(tmp_path):
    mgr = CheckpointManager(tmp_path / "ck")
    mgr.save(_state(1.0), 1)
    bad = {"model": {"w": torch.tensor([float("nan")])}}
    with pytest.raises(NumericalError) as e:
        mgr.save(bad, 2)
    assert str(e.value) == (
        "refused to write checkpoint step-00000002.pt: 'model.w' holds NaN or inf; the last good "
        f"checkpoint is kept in {tmp_path / 'ck'}; lower the learning rate (or raise "
        "gan.gp_weight) and resume"
    )
    assert [e["step"] for e in mgr.entries()] == [1]
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "step-00000001.json", "step-00000001.pt"]  # fmt: skip


def test_an_unloadable_file_that_matches_its_manifest_is_an_error_naming_it(tmp_path):
    """Not a fallback: a file that matches its manifest but will not load safely was not written
    by advaug (or was tampered with), and starting over would overwrite the evidence."""
    mgr = CheckpointManager(tmp_path)
    mgr.save(_state(1.0), 1)
    data = b"not a torch file"
    (tmp_path / "step-00000001.pt").write_bytes(data)
    m = json.loads((tmp_path / "step-00000001.json").read_text())
    (tmp_path / "step-00000001.json").write_text(
        json.dumps({**m, "sha256": hashlib.sha256(data).hexdigest()})
    )
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception as e:  # torch's own failure, reduced to its one useful line
        why = _load_failure(e)
    with pytest.raises(CheckpointError) as e:
        mgr.load_latest()
    assert str(e.value) == (
        f"checkpoint {tmp_path / 'step-00000001.pt'} cannot be loaded safely ({why}); it matches "
        "its manifest, so it was not written by advaug or was tampered with; move it out of the "
        "run folder to resume from the previous one"
    )


def test_load_latest_loads_onto_the_given_device(tmp_path):
    """map_location reaches torch.load ("meta" is a device a CPU-only test can see)."""
    mgr = CheckpointManager(tmp_path)
    mgr.save(_state(1.0), 1)
    assert mgr.load_latest()[0]["w"].device.type == "cpu"  # the default
    assert mgr.load_latest(map_location="meta")[0]["w"].device.type == "meta"


def test_loading_asks_torch_for_weights_only(tmp_path, monkeypatch):
    """Explicitly: torch's default changed in 2.6 and can be switched off by an environment
    variable (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD), so the call itself must say it."""
    mgr = CheckpointManager(tmp_path)
    mgr.save(_state(1.0), 1)
    seen = []
    real = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    mgr.load_latest()
    assert seen == [{"map_location": "cpu", "weights_only": True}]


def test_an_unreadable_file_is_one_line_naming_the_os_reason(tmp_path, monkeypatch):
    mgr = CheckpointManager(tmp_path)
    mgr.save(_state(1.0), 1)

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(CheckpointError) as e:
        load_file(tmp_path / "step-00000001.pt")
    assert str(e.value) == (
        f"cannot read checkpoint {tmp_path / 'step-00000001.pt'} (Permission denied); check its "
        "permissions"
    )


def test_files_that_vanish_during_a_prune_are_no_error(tmp_path, monkeypatch):
    """Another process (or a kill between the two unlinks) may have removed a file the prune
    meant to delete: a checkpoint without its .pt, a manifest gone after it was listed, an
    orphan .pt gone after the folder was listed."""
    mgr = CheckpointManager(tmp_path, keep_last=1)
    mgr.save(_state(1.0), 1)
    (tmp_path / "step-00000001.pt").unlink()  # its manifest still lists it
    mgr.save(_state(2.0), 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000002.json", "step-00000002.pt"]

    listed = mgr.entries

    def then_vanish():
        out = listed()
        for e in out:
            if e["step"] == 2:
                (tmp_path / e["file"]).with_suffix(".json").unlink()
        return out

    monkeypatch.setattr(mgr, "entries", then_vanish)
    mgr.save(_state(3.0), 3)  # prunes step 2, whose manifest is already gone
    monkeypatch.undo()
    assert [e["step"] for e in mgr.entries()] == [3]

    real_glob = Path.glob

    def glob_with_a_ghost(self, pattern):
        yield from real_glob(self, pattern)
        if pattern == "step-*.pt":
            yield self / "step-00000001.pt"  # listed, then removed by someone else

    monkeypatch.setattr(Path, "glob", glob_with_a_ghost)
    mgr.save(_state(4.0), 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000004.json", "step-00000004.pt"]


def test_pruning_a_folder_without_checkpoints_keeps_its_files(tmp_path):
    """No manifest, so no newest step: a .pt without one is not known to be stale yet."""
    (tmp_path / "step-00000001.pt").write_bytes(b"a kill before the manifest")
    CheckpointManager(tmp_path)._prune()
    assert (tmp_path / "step-00000001.pt").is_file()

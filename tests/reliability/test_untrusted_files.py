"""Untrusted files: malicious pickles in place of a dataset file and of checkpoints.

Two payloads: a ``__reduce__`` that calls ``os.system`` (it would create a marker file), and a
global from a module that is not imported yet (importing it would create another marker). Each is
placed as ``cifar-100-python/train`` (or ``meta``, or inside the official archive), as the newest
``checkpoints/step-*.pt`` with a manifest whose sha256 matches it, and as ``final.pt``. Asserted:
nothing runs (no marker), the CLI exits 1 with one clear line and no traceback, and no file of the
dataset or run folder changes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import uuid
import zipfile
from pathlib import Path

import pytest
import torch

from advaug.cli import main
from advaug.config import build_config
from advaug.data.splits import load_splits
from advaug.errors import CheckpointError
from advaug.runtime.checkpoint import load_file
from advaug.train.classifier import ClassifierJob, train_classifier
from tests.data.cifar_synth import cifar_files, dump_py2, write_folder
from tests.hooks import Interrupted, stop_after
from tests.reliability.helpers import child_env, one_line_error, tree_hash

PAYLOADS = ("system", "import")


class Payloads:
    """Malicious pickles for one test, with the markers they would create."""

    def __init__(self, tmp: Path):
        self.dir = tmp / "evil"
        self.dir.mkdir()
        self.module = f"advaug_evil_{uuid.uuid4().hex[:8]}"
        self.markers = {"system": self.dir / "ran-os-system", "import": self.dir / "imported"}
        (self.dir / f"{self.module}.py").write_text(
            "from pathlib import Path\n"
            f"Path({str(self.markers['import'])!r}).write_text('imported')\n"
            "def run(*args):\n    return {}\n"
        )

    def raw(self, kind: str) -> bytes:
        """A protocol-2 pickle whose loading runs the payload."""
        if kind == "system":
            marker = self.markers["system"]

            class Evil:
                def __reduce__(self):
                    return (os.system, (f"touch {marker}",))

            return pickle.dumps({"data": Evil()}, protocol=2)
        return (
            b"\x80\x02}q\x00X\x04\x00\x00\x00dataq\x01c"
            + f"{self.module}\nrun\n)R".encode()
            + (b"s.")
        )

    def torch_zip(self, kind: str, valid: dict | None = None) -> bytes:
        """A torch.save zip (of ``valid`` tensors) whose data.pkl is replaced by the payload."""
        buf = io.BytesIO()
        torch.save(valid or {"w": torch.zeros(3)}, buf)
        out = io.BytesIO()
        with zipfile.ZipFile(buf) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename.endswith("/data.pkl"):
                    data = self.raw(kind)
                dst.writestr(info.filename, data)
        return out.getvalue()

    def nothing_ran(self) -> None:
        for kind, marker in self.markers.items():
            assert not marker.exists(), f"the {kind} payload ran"
        assert self.module not in sys.modules


@pytest.fixture
def evil(tmp_path, monkeypatch):
    p = Payloads(tmp_path)
    monkeypatch.syspath_prepend(str(p.dir))  # a permissive unpickler *could* import the module
    yield p
    sys.modules.pop(p.module, None)


def _cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--quiet", *argv])
    return code, capsys.readouterr().err


def _console_script(*argv: str, extra_path: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("advaug")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "advaug.cli"]
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [*cmd, "--quiet", *argv], env=env, capture_output=True, text=True, timeout=120
    )


# ---------------------------------------------------------------------------------------------
# The payloads are real
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PAYLOADS)
def test_the_payloads_do_run_under_an_unrestricted_unpickler(evil, kind):
    """Without this, the tests below could pass with harmless files."""
    pickle.loads(evil.raw(kind))
    assert evil.markers[kind].exists()
    evil.markers[kind].unlink()
    sys.modules.pop(evil.module, None)
    torch.load(io.BytesIO(evil.torch_zip(kind)), weights_only=False)
    assert evil.markers[kind].exists()
    sys.modules.pop(evil.module, None)


# ---------------------------------------------------------------------------------------------
# Dataset files
# ---------------------------------------------------------------------------------------------


def _dataset(root: Path, bad_file: str, payload: bytes, archive: bool) -> Path:
    files: dict = dict(cifar_files("cifar100", train_per_class=1, test_per_class=1))
    files[bad_file] = payload
    if not archive:
        write_folder(root, "cifar100", files)
        return root
    root.mkdir(parents=True)
    with tarfile.open(root / "cifar-100-python.tar.gz", "w:gz") as tar:
        for fname, content in files.items():
            raw = content if isinstance(content, bytes) else dump_py2(content)
            info = tarfile.TarInfo(f"cifar-100-python/{fname}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return root


@pytest.mark.parametrize("verify", ["true", "false"])
@pytest.mark.parametrize(
    "bad_file, archive", [("train", False), ("meta", False), ("train", True)], ids=str
)
@pytest.mark.parametrize("kind", PAYLOADS)
def test_malicious_dataset_pickle_is_refused(
    tmp_path, capsys, evil, kind, bad_file, archive, verify
):
    root = _dataset(tmp_path / "data", bad_file, evil.raw(kind), archive)
    before = tree_hash(root)
    out = tmp_path / "run"
    code, err = _cli(
        capsys,
        "train-classifier",
        "--preset",
        "smoke",
        "--out",
        str(out),
        "data.name=cifar100",
        f"data.root={root}",
        f"data.verify={verify}",
    )
    line = one_line_error(err)
    assert code == 1
    evil.nothing_ran()
    if verify == "true":
        assert "md5" in line and "does not match the official" in line
    else:
        assert "refused to unpickle global" in line
        assert ("posix.system" in line) if kind == "system" else (evil.module in line)
    assert tree_hash(root) == before
    assert not (out / "result.json").exists()


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def _cli_job() -> ClassifierJob:
    """The job `advaug train-classifier --preset smoke` builds (so the CLI resumes our run)."""
    cfg = build_config("smoke")
    return ClassifierJob(
        data=cfg.data, runtime=cfg.runtime, classifier=cfg.classifier, seed=cfg.seeds[0]
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An interrupted run (checkpoints at 5 and 9) and a finished one, made once."""
    base = tmp_path_factory.mktemp("runs")
    splits = load_splits(build_config("smoke").data)
    with pytest.raises(Interrupted):
        train_classifier(_cli_job(), base / "cut", splits=splits, on_step=stop_after(5))
    with pytest.raises(Interrupted):
        train_classifier(_cli_job(), base / "cut", splits=splits, on_step=stop_after(9))
    train_classifier(_cli_job(), base / "done", splits=splits)
    return base


def _plant(pt: Path, data: bytes) -> None:
    """Replace ``pt`` and make its manifest's sha256 match, as an attacker would."""
    pt.write_bytes(data)
    manifest = pt.with_suffix(".json")
    m = json.loads(manifest.read_text())
    m["sha256"] = hashlib.sha256(data).hexdigest()
    manifest.write_text(json.dumps(m))


def _valid_state(run: Path) -> dict:
    return load_file(run / "checkpoints" / "final.pt")


@pytest.mark.parametrize("fmt", ["raw-pickle", "torch-zip"])
@pytest.mark.parametrize("kind", PAYLOADS)
def test_malicious_step_checkpoint_with_matching_manifest_is_refused(
    tmp_path, capsys, evil, runs, kind, fmt
):
    run = tmp_path / "cut"
    shutil.copytree(runs / "cut", run)
    newest = run / "checkpoints" / "step-00000009.pt"
    data = (
        evil.raw(kind) if fmt == "raw-pickle" else evil.torch_zip(kind, _valid_state(runs / "done"))
    )
    _plant(newest, data)
    before = tree_hash(run)
    code, err = _cli(capsys, "train-classifier", "--preset", "smoke", "--out", str(run))
    line = one_line_error(err)
    assert code == 1
    evil.nothing_ran()
    assert "step-00000009.pt cannot be loaded safely" in line
    assert "was not written by advaug or was tampered with" in line
    assert "weights_only=False" not in line  # torch's own advice must not reach the user
    assert tree_hash(run) == before, "a refused checkpoint must not start a run that overwrites it"


@pytest.mark.parametrize("kind", PAYLOADS)
def test_malicious_final_classifier_checkpoint_is_refused_by_evaluate(
    tmp_path, capsys, evil, runs, kind
):
    run = tmp_path / "done"
    shutil.copytree(runs / "done", run)
    _plant(run / "checkpoints" / "final.pt", evil.torch_zip(kind, _valid_state(runs / "done")))
    before = tree_hash(run)
    code, err = _cli(capsys, "evaluate", str(run), "--preset", "smoke")
    line = one_line_error(err)
    assert code == 1 and "final.pt cannot be loaded safely" in line
    evil.nothing_ran()
    assert tree_hash(run) == before


@pytest.mark.parametrize("kind", PAYLOADS)
def test_malicious_final_gan_checkpoint_is_refused_by_train_classifier(
    tmp_path, capsys, evil, kind
):
    gan = tmp_path / "gan" / "checkpoints"
    gan.mkdir(parents=True)
    data = evil.raw(kind)
    (gan / "final.pt").write_bytes(data)
    (gan / "final.json").write_text(
        json.dumps({"file": "final.pt", "sha256": hashlib.sha256(data).hexdigest(), "final": True})
    )
    before = tree_hash(tmp_path / "gan")
    out = tmp_path / "clf"
    code, err = _cli(
        capsys,
        "train-classifier",
        "--preset",
        "smoke",
        "--technique",
        "gan",
        "--gan",
        str(tmp_path / "gan"),
        "--out",
        str(out),
    )
    line = one_line_error(err)
    assert code == 1 and "cannot be loaded safely" in line
    evil.nothing_ran()
    assert tree_hash(tmp_path / "gan") == before
    assert not (out / "result.json").exists()


def test_load_file_refuses_a_payload_without_a_manifest_too(tmp_path, evil):
    for kind in PAYLOADS:
        (tmp_path / f"{kind}.pt").write_bytes(evil.torch_zip(kind))
        with pytest.raises(CheckpointError, match="cannot be loaded safely") as e:
            load_file(tmp_path / f"{kind}.pt")
        assert "\n" not in str(e.value) and "\x1b" not in str(e.value)
    evil.nothing_ran()


# ---------------------------------------------------------------------------------------------
# The real console script
# ---------------------------------------------------------------------------------------------


def test_console_script_refuses_a_malicious_checkpoint_with_exit_1_and_one_line(
    tmp_path, evil, runs
):
    run = tmp_path / "cut"
    shutil.copytree(runs / "cut", run)
    _plant(run / "checkpoints" / "step-00000009.pt", evil.torch_zip("import"))
    before = tree_hash(run)
    proc = _console_script(
        "train-classifier", "--preset", "smoke", "--out", str(run), extra_path=evil.dir
    )
    assert proc.returncode == 1, proc.stderr
    line = one_line_error(proc.stderr)
    assert "cannot be loaded safely" in line and evil.module in line
    evil.nothing_ran()
    assert tree_hash(run) == before

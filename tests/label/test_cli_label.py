"""``advaug label`` from the command line: a set built from a real (tiny) GAN run and the real
digits test split, the summary, crowd export and import, the server killed and restarted, and
one-line errors. Every answer is scripted."""

from __future__ import annotations

import csv
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from advaug.attacks import UnrestrictedResult
from advaug.cli import main
from advaug.label import LabelStore

from .helpers import start_server


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-iteration AC-GAN on the smoke preset's digits (about 7 s)."""
    from advaug.config import build_config
    from advaug.train.gan import GANJob, train_gan

    cfg = build_config("smoke", ["gan.iters=1", "gan.sample_every=1", "gan.eval_every=1"])
    out = tmp_path_factory.mktemp("gan") / "gan"
    train_gan(GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan, seed=0), out)
    return out


@pytest.fixture
def attack_dir(tmp_path: Path, gan_run: Path) -> Path:
    """What `advaug attack unrestricted` writes, 20 rows (4 failures), against the GAN run."""
    from advaug.loading import load_gan

    pair = load_gan(gan_run)
    n = 20
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(n, pair.generator.z_dim, generator=g)
    z = z0 + 0.1 * torch.randn(n, pair.generator.z_dim, generator=g)
    source = torch.arange(n) % 10
    with torch.no_grad():
        images = pair.generator(z, source)
    success = torch.ones(n, dtype=torch.bool)
    success[::5] = False
    res = UnrestrictedResult(
        images=images, z=z, z0=z0, source=source, target=torch.full((n,), -1),
        success=success, steps=torch.full((n,), 2), clf_pred=(source + 1) % 10,
        ac_pred=source.clone(), meta={"attack": "unrestricted", "gan": str(gan_run), "seed": 0},
    )  # fmt: skip
    out = tmp_path / "uae"
    res.save(out / "uae.safetensors")
    (out / "summary.json").write_text(json.dumps({"n": n}))
    return out


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_summary_export_and_import(capsys, attack_dir: Path, tmp_path: Path):
    code, out, _ = run(capsys, "label", str(attack_dir), "--summary")
    assert code == 0, out
    db = attack_dir / "labels" / "uae.sqlite"
    store = LabelStore(db)
    assert store.num_items == 3 * 16 and store.classes == [str(i) for i in range(10)]
    assert store.meta["real"] == "digits test split (100 images)"
    assert "48 items (16 uae, 16 gan, 16 real)" in out and "no human labels yet" in out
    code, out, _ = run(capsys, "label", str(attack_dir), "--export", str(tmp_path / "batch"))
    assert code == 0 and "input.csv" in out
    rows = list(csv.DictReader((tmp_path / "batch" / "input.csv").open()))
    results = tmp_path / "results.csv"
    with results.open("w", newline="") as f:  # a scripted worker who always answers "3"
        w = csv.writer(f)
        w.writerow(["WorkerId", "Input.item_id", "Answer.class"])
        w.writerows(["SCRIPTED1", r["item_id"], "3"] for r in rows)
    code, out, _ = run(capsys, "label", str(attack_dir), "--import", str(results))
    assert code == 0 and "imported 48 answers" in out
    code, out, _ = run(capsys, "label", str(db), "--summary")
    # "3" is right for the items of class 3: 2 of 16 in each kind (sources 0-9, rows 3 and 13)
    table = [line for line in out.splitlines() if line.startswith(("  UAE", "  clean", "  real"))]
    assert code == 0 and len(table) == 3 and "SCRIPTED1" in out
    assert all("12.5% [3.5, 36.0]" in line for line in table)  # Wilson of 2 of 16


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--rater", "bad name"], 2, "rater name must be"),
        (["--max-uae", "0"], 2, "--max-uae must be >= 1"),
        (["--gan", "nowhere"], 2, "(nowhere) is not there; pass --gan"),
        (["--summary", "--export", "x"], 2, "not allowed with argument"),
        (["--port", "x"], 2, "invalid int value"),
    ],
)
def test_bad_input_is_one_line(capsys, attack_dir: Path, args, code, message):
    got, out, err = run(capsys, "label", str(attack_dir), *args)
    assert got == code and message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_missing_source_and_newer_schema(capsys, attack_dir: Path, tmp_path: Path):
    got, _, err = run(capsys, "label", str(tmp_path / "nothing"))
    assert got == 2 and "is not a UAE set" in err
    assert run(capsys, "label", str(attack_dir), "--summary")[0] == 0
    import sqlite3

    with sqlite3.connect(attack_dir / "labels" / "uae.sqlite") as conn:
        conn.execute("PRAGMA user_version = 99")
    got, _, err = run(capsys, "label", str(attack_dir), "--summary")
    assert got == 1 and "schema version 99, newer than this advaug reads" in err


def test_exposed_host_warns_and_ctrl_c_stops(capsys, monkeypatch, attack_dir: Path):
    import advaug.label

    class FakeServer:  # no socket: exposure must not be tested by listening on a real network
        exposed = True

        def __init__(self, store, host, port):
            self.httpd = self
            self.host = host

        def url(self, rater):
            return f"http://{self.host}:1/?token=T&rater={rater}"

        def serve_forever(self):
            raise KeyboardInterrupt

        def server_close(self):
            pass

    monkeypatch.setattr(advaug.label, "LabelServer", FakeServer)
    code, out, err = run(capsys, "label", str(attack_dir), "--host", "192.0.2.1", "--rater", "a")
    assert code == 0 and "warning: listening on 192.0.2.1" in err
    assert "open: http://192.0.2.1:1/?token=T&rater=a" in out and "stopped;" in out


def api(url: str, path: str, body: dict | None = None) -> dict:
    base, query = url.split("/?", 1)
    token = query.split("token=")[1].split("&")[0]
    sep = "&rater=alice" if body is None else ""
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(f"{base}{path}?token={token}{sep}", data=data, timeout=10) as r:
        return json.loads(r.read())


def test_killed_server_loses_nothing(capsys, attack_dir: Path):
    assert run(capsys, "label", str(attack_dir), "--summary")[0] == 0
    db = attack_dir / "labels" / "uae.sqlite"
    proc, url = start_server(db, "alice")
    try:
        first = api(url, "/api/state")
        after = api(url, "/api/answer", {"rater": "alice", "item": first["item"], "choice": 4})
        api(url, "/api/answer", {"rater": "alice", "item": after["item"], "choice": -1})
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    proc2, url2 = start_server(db, "alice")
    try:
        assert url2 != url  # a new token for the new server
        with pytest.raises(urllib.error.HTTPError) as e:
            api(url2.replace("token=", "token=x"), "/api/state")
        assert e.value.code == 403
        state = api(url2, "/api/state")
        assert state["done"] == 2 and state["item"] == LabelStore(db).order("alice")[2]
    finally:
        proc2.send_signal(signal.SIGINT)
        proc2.wait(timeout=10)
    assert proc2.returncode == 0
    answers = LabelStore(db).answers("alice")
    assert [(a.item, a.choice) for a in answers] == [(first["item"], 4), (after["item"], -1)]

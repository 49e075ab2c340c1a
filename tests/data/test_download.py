"""Downloads run against local files (file:// URLs or an injected urlopen): verified, atomic,
and leaving nothing behind on failure."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tarfile
import urllib.error
import urllib.request

import pytest
import torch

import advaug.data.cifar as cifar
from advaug.data.cifar import CIFAR100, download_cifar, load_cifar
from advaug.errors import DataError, DownloadError

from .cifar_synth import ARCHIVES, cifar_files, dump_py2, write_targz


@pytest.fixture
def served(tmp_path):
    """A synthetic CIFAR-100 archive outside the download root, its file:// URL and md5."""
    src = tmp_path / "server"
    src.mkdir()
    archive = write_targz(src / ARCHIVES["cifar100"], "cifar100", cifar_files("cifar100"))
    return archive.as_uri(), hashlib.md5(archive.read_bytes()).hexdigest()


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_download_verifies_renames_and_extracts(tmp_path, served):
    url, md5 = served
    root = tmp_path / "data"
    folder = download_cifar("cifar100", root, url=url, md5=md5)
    assert folder == root / "cifar-100-python"
    assert _tree(root) == [
        "cifar-100-python",
        "cifar-100-python.tar.gz",
        "cifar-100-python/meta",
        "cifar-100-python/test",
        "cifar-100-python/train",
    ]
    data = load_cifar("cifar100", root, verify=False, check_sizes=False)
    assert data.train_x.shape == (200, 3, 32, 32)

    # a second call reuses the verified archive and the folder: nothing is fetched
    def no_network(url):
        raise AssertionError("fetched again")

    assert download_cifar("cifar100", root, md5=md5, urlopen=no_network) == folder


def test_md5_mismatch_leaves_nothing(tmp_path, served):
    url, _ = served
    root = tmp_path / "data"
    with pytest.raises(DownloadError) as info:
        download_cifar("cifar100", root, url=url)  # checked against the official md5
    msg = str(info.value)
    assert CIFAR100.archive_md5 in msg and url in msg
    assert _tree(root) == []


def test_no_network_names_url_and_folder(tmp_path):
    def offline(url):
        raise urllib.error.URLError("Name or service not known")

    root = tmp_path / "data"
    with pytest.raises(DownloadError) as info:
        download_cifar("cifar100", root, urlopen=offline)
    msg = str(info.value)
    assert CIFAR100.url in msg
    assert str(root.resolve()) in msg and str((root / "cifar-100-python").resolve()) in msg
    assert _tree(root) == []


class _Broken(io.BytesIO):
    """A response that fails after its first chunk."""

    def __init__(self, exc):
        super().__init__(b"x" * (3 << 20))
        self.exc = exc
        self.calls = 0

    def read(self, n=-1):
        self.calls += 1
        if self.calls > 1:
            raise self.exc
        return super().read(n)


def test_interrupted_download_removes_the_temp_file(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="ConnectionResetError"):
        download_cifar("cifar100", root, urlopen=lambda url: _Broken(ConnectionResetError()))
    assert _tree(root) == []
    with pytest.raises(KeyboardInterrupt):
        download_cifar("cifar100", root, urlopen=lambda url: _Broken(KeyboardInterrupt()))
    assert _tree(root) == []


def test_load_cifar_download_true_without_network(tmp_path, monkeypatch):
    def offline(url):
        raise urllib.error.URLError("no route")

    monkeypatch.setattr(cifar, "_default_opener", offline)
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match=CIFAR100.url.replace(".", r"\.")):
        load_cifar("cifar100", root, download=True)
    assert _tree(root) == []


def test_load_cifar_download_true_uses_the_downloaded_copy(tmp_path, served, monkeypatch):
    url, md5 = served
    monkeypatch.setattr(cifar, "_default_opener", lambda _official: urllib.request.urlopen(url))
    spec = dataclasses.replace(cifar.SPECS["cifar100"], archive_md5=md5)
    monkeypatch.setitem(cifar.SPECS, "cifar100", spec)
    data = load_cifar("cifar100", tmp_path / "d", download=True, verify=False, check_sizes=False)
    assert torch.equal(data.test_y, torch.arange(100))


def test_existing_archive_with_wrong_md5_is_not_overwritten(tmp_path, served):
    url, md5 = served
    root = tmp_path / "data"
    root.mkdir()
    (root / ARCHIVES["cifar100"]).write_bytes(b"user file")
    with pytest.raises(DownloadError, match="exists but its md5"):
        download_cifar("cifar100", root, url=url, md5=md5)
    assert (root / ARCHIVES["cifar100"]).read_bytes() == b"user file"


@pytest.mark.parametrize(
    "evil", ["../escape", "/tmp/abs_escape", "cifar-100-python/../../x", "link"]
)
def test_extraction_refuses_traversal_and_links(tmp_path, evil):
    archive = tmp_path / "server.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        raw = dump_py2({b"x": 1})
        if evil == "link":
            info = tarfile.TarInfo("cifar-100-python/train")
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
        else:
            info = tarfile.TarInfo(evil)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    root = tmp_path / "data"
    with pytest.raises(DataError, match="refusing to extract"):
        download_cifar("cifar100", root, url=archive.as_uri(), md5=md5)
    assert _tree(root) == ["cifar-100-python.tar.gz"]  # the verified archive only
    assert not (tmp_path / "escape").exists() and not (tmp_path / "x").exists()
    if evil.startswith("/"):
        assert not os.path.exists(evil)

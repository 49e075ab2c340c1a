"""MNIST / Fashion-MNIST loading from tiny official-layout files: md5s, checks, folders, and
downloads through file:// URLs (verified, atomic, nothing left behind on failure)."""

from __future__ import annotations

import dataclasses
import hashlib
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

import advaug.data.mnist as mnist
from advaug.data import load_dataset
from advaug.data.idx import encode_idx
from advaug.data.mnist import (
    FASHION_MNIST,
    FILES,
    MNIST,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    download_mnist,
    load_mnist,
)
from advaug.errors import ConfigError, DataError, DownloadError

from .mnist_synth import write_gz, write_mnist


def _md5s(folder):
    return {f: hashlib.md5((folder / f).read_bytes()).hexdigest() for f in FILES}


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def synth(tmp_path):
    return write_mnist(tmp_path / "mnist")


def test_loads_one_channel_28px_images_labels_and_class_names(synth):
    data = load_mnist("mnist", synth, verify=False, check_sizes=False)
    assert data.name == "mnist" and data.image_shape == (1, 28, 28)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert len(data.train_y) == 60 and len(data.test_y) == 20
    assert torch.bincount(data.train_y).tolist() == [6] * 10
    assert data.classes == [str(k) for k in range(10)]
    fashion = load_dataset("fashion-mnist", synth, verify=False, check_sizes=False)
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[-1] == "Ankle boot"
    assert fashion.classes == list(FASHION_MNIST.classes) and len(fashion.classes) == 10


def test_root_may_hold_the_dataset_folder(synth, monkeypatch):
    """$ADVAUG_DATA (or data.root) pointing at the folder above ``mnist/`` works, as for CIFAR."""
    monkeypatch.setenv("ADVAUG_DATA", str(synth.parent))
    assert load_dataset("MNIST", verify=False, check_sizes=False).num_classes == 10


def test_official_md5_is_checked_exactly_and_pins_accept_a_copy(synth):
    with pytest.raises(DataError) as info:
        load_mnist("mnist", synth, check_sizes=False)
    msg = str(info.value)
    assert MNIST.md5[TRAIN_IMAGES] in msg and "official" in msg and "verify=false" in msg
    data = load_mnist("mnist", synth, checksums=_md5s(synth), check_sizes=False)
    assert len(data.test_y) == 20
    pins = {**_md5s(synth), TEST_LABELS: "0" * 32}
    with pytest.raises(DataError, match=f"{TEST_LABELS}: md5 .* does not match the given"):
        load_mnist("mnist", synth, verify=False, checksums=pins, check_sizes=False)
    with pytest.raises(ConfigError, match="not a MNIST file"):
        load_mnist("mnist", synth, checksums={"train": "0" * 32})


def test_official_sizes_are_required_unless_told(synth):
    with pytest.raises(DataError, match="holds 60 images, expected 60000"):
        load_mnist("mnist", synth, verify=False)


def test_missing_files_name_the_folder(tmp_path, synth):
    with pytest.raises(DataError) as info:
        load_mnist("fashion-mnist", tmp_path / "nowhere")
    msg = str(info.value)
    assert str((tmp_path / "nowhere" / "fashion-mnist").resolve()) in msg
    assert FASHION_MNIST.base_url in msg and "data.download=true" in msg
    (synth / TEST_LABELS).unlink()
    with pytest.raises(DataError, match=f"lacks {TEST_LABELS}"):
        load_mnist("mnist", synth, verify=False, check_sizes=False)


def test_refuses_labels_out_of_range(synth):
    write_gz(synth / TRAIN_LABELS, encode_idx(np.full(60, 10, dtype=np.uint8)))
    with pytest.raises(DataError, match=r"label 10 is outside \[0, 10\)"):
        load_mnist("mnist", synth, verify=False, check_sizes=False)


def test_refuses_image_and_label_counts_that_disagree(synth):
    write_gz(synth / TRAIN_LABELS, encode_idx(np.zeros(59, dtype=np.uint8)))
    with pytest.raises(DataError, match="holds 60 images but .* holds 59 labels"):
        load_mnist("mnist", synth, verify=False, check_sizes=False)


def test_refuses_images_that_are_not_28px(synth):
    write_gz(synth / TRAIN_IMAGES, encode_idx(np.zeros((60, 32, 32), dtype=np.uint8)))
    with pytest.raises(DataError, match="images are 32x32"):
        load_mnist("mnist", synth, verify=False, check_sizes=False)


def test_refuses_swapped_files_by_their_magic(synth):
    (synth / "x").write_bytes((synth / TRAIN_IMAGES).read_bytes())
    (synth / TRAIN_IMAGES).write_bytes((synth / TRAIN_LABELS).read_bytes())
    (synth / TRAIN_LABELS).write_bytes((synth / "x").read_bytes())
    with pytest.raises(DataError, match="magic number 0x00000801, expected 0x00000803"):
        load_mnist("mnist", synth, verify=False, check_sizes=False)


# ----------------------------------------------------------------------------- download


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Synthetic files on a file:// 'server', with the spec's md5s set to theirs."""
    server = write_mnist(tmp_path / "server")
    spec = dataclasses.replace(MNIST, md5=_md5s(server))
    monkeypatch.setitem(mnist.SPECS, "mnist", spec)
    return server.as_uri() + "/"


def test_download_verifies_renames_and_loads(tmp_path, served):
    root = tmp_path / "data"
    folder = download_mnist("mnist", root, base_url=served)
    assert folder == root / "mnist"
    assert _tree(root) == ["mnist", *(f"mnist/{f}" for f in sorted(FILES))]
    data = load_mnist("mnist", root, check_sizes=False)  # verify=True: the (patched) md5s
    assert data.train_x.shape == (60, 1, 28, 28)

    def no_network(url):
        raise AssertionError("fetched again")

    assert download_mnist("mnist", root, urlopen=no_network) == folder


def test_load_with_download_true_uses_the_default_opener(tmp_path, served, monkeypatch):
    seen = []

    def opener(url):
        seen.append(url)
        return urllib.request.urlopen(served + url.rsplit("/", 1)[1])

    monkeypatch.setattr(mnist, "_default_opener", opener)
    data = load_mnist("mnist", tmp_path / "d", download=True, check_sizes=False)
    assert len(data.train_y) == 60
    assert seen == [MNIST.base_url + f for f in FILES]


def test_md5_mismatch_leaves_only_the_verified_files(tmp_path, served):
    server = tmp_path / "server"
    write_gz(server / TEST_LABELS, encode_idx(np.zeros(20, dtype=np.uint8)))  # changed
    root = tmp_path / "data"
    with pytest.raises(DownloadError) as info:
        download_mnist("mnist", root, base_url=served)
    assert served + TEST_LABELS in str(info.value)
    # the three files before it are verified and kept; no .part file remains
    assert _tree(root) == ["mnist", *(f"mnist/{f}" for f in sorted(FILES[:3]))]


def test_offline_error_names_the_folder_and_leaves_nothing(tmp_path):
    def offline(url):
        raise urllib.error.URLError("Name or service not known")

    root = tmp_path / "data"
    with pytest.raises(DownloadError) as info:
        download_mnist("fashion-mnist", root, urlopen=offline)
    msg = str(info.value)
    assert str((root / "fashion-mnist").resolve()) in msg and FASHION_MNIST.base_url in msg
    assert "\n" not in msg
    assert _tree(root) == ["fashion-mnist"]


def test_existing_file_with_wrong_md5_is_not_overwritten(tmp_path, served):
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    (folder / TRAIN_IMAGES).write_bytes(b"user file")
    with pytest.raises(DownloadError, match="exists but its md5"):
        download_mnist("mnist", tmp_path / "data", base_url=served)
    assert (folder / TRAIN_IMAGES).read_bytes() == b"user file"

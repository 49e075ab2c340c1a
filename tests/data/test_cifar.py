"""CIFAR loading on synthetic official-layout files: layouts, checksums and structural checks."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from advaug.data.cifar import CIFAR100, check_counts, load_cifar
from advaug.errors import ConfigError, DataError, UnsafePickleError

from .cifar_synth import ARCHIVES, FOLDERS, cifar_files, dump_py2, md5s, write_folder, write_targz


def _load(root, name="cifar100", **kw):
    kw.setdefault("verify", False)
    kw.setdefault("check_sizes", False)
    return load_cifar(name, root, **kw)


def _expected(files, fnames, label_key=b"fine_labels"):
    data = np.concatenate([files[f][b"data"] for f in fnames])
    labels = sum((list(files[f][label_key]) for f in fnames), [])
    return torch.from_numpy(data.reshape(-1, 3, 32, 32)), torch.tensor(labels)


# ----------------------------------------------------------------------------- happy paths


def test_cifar100_folder_contents(tmp_path):
    files = cifar_files("cifar100", train_per_class=2, test_per_class=1)
    # Image 0: planes R=10, G=20, B=30, to check the (N, 3072) -> N x 3 x 32 x 32 layout.
    files["train"][b"data"][0] = np.repeat(np.array([10, 20, 30], np.uint8), 1024)
    folder = write_folder(tmp_path, "cifar100", files)
    data = _load(folder)
    assert data.name == "cifar100"
    assert data.train_x.shape == (200, 3, 32, 32) and data.test_x.shape == (100, 3, 32, 32)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert data.train_x[0, 0].unique().tolist() == [10]
    assert data.train_x[0, 1].unique().tolist() == [20]
    assert data.train_x[0, 2].unique().tolist() == [30]
    x, y = _expected(files, ["train"])
    assert torch.equal(data.train_x, x) and torch.equal(data.train_y, y)
    x, y = _expected(files, ["test"])
    assert torch.equal(data.test_x, x) and torch.equal(data.test_y, y)
    assert data.classes == [f"fine{i:02d}" for i in range(100)]
    assert data.coarse_classes == [f"coarse{i:02d}" for i in range(20)]
    assert torch.equal(data.train_coarse, data.train_y % 20)
    assert torch.equal(data.test_coarse, data.test_y % 20)
    assert data.num_classes == 100 and data.image_shape == (3, 32, 32)


def test_cifar10_batches_are_concatenated_in_order(tmp_path):
    files = cifar_files("cifar10", train_per_class=5, test_per_class=2)
    folder = write_folder(tmp_path, "cifar10", files)
    data = _load(folder, "cifar10")
    x, y = _expected(files, [f"data_batch_{i}" for i in range(1, 6)], b"labels")
    assert torch.equal(data.train_x, x) and torch.equal(data.train_y, y)
    assert len(data.train_y) == 50 and len(data.test_y) == 20
    assert data.classes == [f"class{i}" for i in range(10)]
    assert data.train_coarse is None and data.coarse_classes is None


@pytest.mark.parametrize("layout", ["folder", "parent", "targz", "parent_of_targz"])
def test_root_layouts_give_the_same_data(tmp_path, layout):
    files = cifar_files("cifar100")
    if layout in ("folder", "parent"):
        folder = write_folder(tmp_path, "cifar100", files)
        root = folder if layout == "folder" else tmp_path
    else:
        archive = write_targz(tmp_path / ARCHIVES["cifar100"], "cifar100", files)
        root = archive if layout == "targz" else tmp_path
    data = _load(root)
    x, y = _expected(files, ["train"])
    assert torch.equal(data.train_x, x) and torch.equal(data.train_y, y)
    assert not (tmp_path / FOLDERS["cifar100"]).exists() or layout in ("folder", "parent")


def test_str_keys_are_accepted(tmp_path):
    files = cifar_files("cifar100")
    str_files = {f: {k.decode(): v for k, v in d.items()} for f, d in files.items()}
    raw = {f: pickle.dumps(d, protocol=4) for f, d in str_files.items()}
    data = _load(write_folder(tmp_path, "cifar100", raw))
    assert len(data.train_y) == 200


# ----------------------------------------------------------------------------- checksums


def test_verify_rejects_non_official_md5_with_the_fix(tmp_path):
    folder = write_folder(tmp_path, "cifar100", cifar_files("cifar100"))
    actual = md5s(folder)["meta"]
    with pytest.raises(DataError) as info:
        load_cifar("cifar100", folder, verify=True, check_sizes=False)
    msg = str(info.value)
    assert str(folder / "meta") in msg
    assert actual in msg and CIFAR100.md5["meta"] in msg
    assert "verify=False" in msg and "checksums=" in msg
    # the spellings the command line accepts (advaug ... data.verify=false)
    assert "data.verify=false" in msg and f"data.checksums.meta={actual}" in msg


def test_user_checksums_are_checked_instead(tmp_path):
    folder = write_folder(tmp_path, "cifar100", cifar_files("cifar100"))
    sums = md5s(folder)
    data = load_cifar("cifar100", folder, verify=True, checksums=sums, check_sizes=False)
    assert len(data.test_y) == 100
    wrong = dict(sums, test="0" * 32)
    with pytest.raises(DataError, match=r"test: md5 .* does not match the given 0{32}"):
        load_cifar("cifar100", folder, verify=False, checksums=wrong, check_sizes=False)


def test_checksums_in_tar_members(tmp_path):
    files = cifar_files("cifar100")
    archive = write_targz(tmp_path / "a.tar.gz", "cifar100", files)
    sums = {f: hashlib.md5(dump_py2(d)).hexdigest() for f, d in files.items()}
    assert len(_load(archive, checksums=sums).train_y) == 200
    with pytest.raises(DataError, match="cifar-100-python/train: md5"):
        _load(archive, checksums=dict(sums, train="f" * 32))


@pytest.mark.parametrize("bad", [{"trian": "0" * 32}, {"train": "xyz"}])
def test_bad_checksums_argument(tmp_path, bad):
    folder = write_folder(tmp_path, "cifar100", cifar_files("cifar100"))
    with pytest.raises(ConfigError):
        _load(folder, checksums=bad)


# ----------------------------------------------------------------------------- missing data


def test_missing_folder_names_url_and_path(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        load_cifar("cifar100", root)
    msg = str(info.value)
    assert CIFAR100.url in msg
    assert str((root / "cifar-100-python").resolve()) in msg
    assert "download=True" in msg and "data.download=true" in msg


def test_folder_missing_a_file(tmp_path):
    files = cifar_files("cifar10", train_per_class=5, test_per_class=1)
    del files["data_batch_3"]
    folder = write_folder(tmp_path, "cifar10", files)
    with pytest.raises(DataError, match="lacks data_batch_3"):
        _load(folder, "cifar10")


def test_archive_missing_a_member(tmp_path):
    files = cifar_files("cifar100")
    del files["test"]
    archive = write_targz(tmp_path / "x.tar.gz", "cifar100", files)
    with pytest.raises(DataError, match="lacks cifar-100-python/test"):
        _load(archive)


def test_truncated_archive(tmp_path):
    archive = write_targz(tmp_path / "x.tar.gz", "cifar100", cifar_files("cifar100"))
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="x.tar.gz"):
        _load(archive)


def test_corrupted_archive(tmp_path):
    archive = write_targz(tmp_path / "x.tar.gz", "cifar100", cifar_files("cifar100"))
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)
    archive.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="x.tar.gz"):
        _load(archive)


def test_symlink_member_is_refused(tmp_path):
    files = cifar_files("cifar100")
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for fname in ("meta", "test"):
            raw = dump_py2(files[fname])
            info = tarfile.TarInfo(f"cifar-100-python/{fname}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        link = tarfile.TarInfo("cifar-100-python/train")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(DataError, match="not a regular file"):
        _load(archive)


# ----------------------------------------------------------------------------- bad files


def test_malicious_train_file_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    files = cifar_files("cifar100")
    folder = write_folder(tmp_path, "cifar100", files)
    evil = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    (folder / "train").write_bytes(evil)
    with pytest.raises(UnsafePickleError, match="os.system"):
        _load(folder)
    assert not marker.exists()


def test_truncated_file_is_named(tmp_path):
    folder = write_folder(tmp_path, "cifar100", cifar_files("cifar100"))
    raw = (folder / "test").read_bytes()
    (folder / "test").write_bytes(raw[:1000])
    with pytest.raises(DataError, match=str(folder / "test")):
        _load(folder)


def _mutated(tmp_path, name, fname, key, value):
    files = cifar_files(name, train_per_class=5 if name == "cifar10" else 2)
    if value is None:
        del files[fname][key]
    else:
        files[fname][key] = value(files[fname][key]) if callable(value) else value
    return write_folder(tmp_path, name, files)


@pytest.mark.parametrize(
    "key,value,pattern",
    [
        (
            b"data",
            lambda d: d[:, :3071],
            r"train: 'data' must be a uint8 array of shape \(N, 3072\)",
        ),
        (b"data", lambda d: d.astype(np.float32), r"found float32"),
        (b"data", lambda d: d.reshape(-1, 3, 32, 32), r"found uint8 \(200, 3, 32, 32\)"),
        (b"data", [1, 2, 3], r"found list"),
        (b"data", None, r"train has no 'data' entry"),
        (b"fine_labels", lambda y: y[:-1], r"'fine_labels' has 199 entries for 200 images"),
        (
            b"fine_labels",
            lambda y: [100] + y[1:],
            r"'fine_labels' contains 100, outside \[0, 100\)",
        ),
        (b"fine_labels", lambda y: [-1] + y[1:], r"contains -1, outside \[0, 100\)"),
        (b"fine_labels", lambda y: [0.5] * len(y), r"holds float64, not integers"),
        (
            b"coarse_labels",
            lambda y: [20] + y[1:],
            r"'coarse_labels' contains 20, outside \[0, 20\)",
        ),
        (b"fine_labels", lambda y: [1] + y[1:], r"class 0 \('fine00'\) has 1 images, expected 2"),
    ],
)
def test_structural_errors_in_train(tmp_path, key, value, pattern):
    folder = _mutated(tmp_path, "cifar100", "train", key, value)
    with pytest.raises(DataError, match=pattern) as info:
        _load(folder)
    if "class 0" not in pattern:
        assert str(info.value).startswith(str(folder / "train"))


def test_fine_class_in_two_superclasses(tmp_path):
    folder = _mutated(tmp_path, "cifar100", "test", b"coarse_labels", lambda c: [5] + c[1:])
    with pytest.raises(DataError, match=r"fine class 0 has coarse labels \[0, 5\]"):
        _load(folder)


def test_meta_with_wrong_number_of_names(tmp_path):
    folder = _mutated(tmp_path, "cifar100", "meta", b"fine_label_names", lambda n: n[:99])
    with pytest.raises(DataError, match="must list 100 names, found 99"):
        _load(folder)


def test_file_that_is_not_a_dict(tmp_path):
    files = cifar_files("cifar10", train_per_class=5)
    files["test_batch"] = dump_py2([1, 2, 3])
    folder = write_folder(tmp_path, "cifar10", files)
    with pytest.raises(DataError, match="test_batch holds a list, not a dict"):
        _load(folder, "cifar10")


def test_unbalanced_cifar10_total_detected_across_batches(tmp_path):
    files = cifar_files("cifar10", train_per_class=5)
    labels = files["data_batch_5"][b"labels"]
    files["data_batch_5"][b"labels"] = [3] + labels[1:]  # one image of class labels[0] -> 3
    folder = write_folder(tmp_path, "cifar10", files)
    with pytest.raises(DataError, match=r"CIFAR-10 train: class \d \('class\d'\) has \d images"):
        _load(folder, "cifar10")


def test_check_sizes_requires_official_size(tmp_path):
    folder = write_folder(tmp_path, "cifar100", cifar_files("cifar100"))
    with pytest.raises(DataError, match="CIFAR-100 train has 200 images, expected 50000"):
        load_cifar("cifar100", folder, verify=False)


def test_check_counts_at_official_size():
    names = [f"c{i}" for i in range(100)]
    labels = np.arange(50_000) % 100
    check_counts(labels, CIFAR100, "train", 50_000, names)  # exactly 500 each: passes
    labels[3] = 4  # class 3 now has 499, class 4 has 501
    with pytest.raises(DataError, match=r"class 3 \('c3'\) has 499 images, expected 500"):
        check_counts(labels, CIFAR100, "train", 50_000, names)


def test_unknown_variant():
    with pytest.raises(ConfigError, match="cifar10, cifar100"):
        load_cifar("cifar1000", os.devnull)


def test_data_checksums_is_a_config_key_that_reaches_the_loader(monkeypatch):
    """The error above advises data.checksums.FILE=MD5: the config accepts it and passes it on."""
    from advaug.config import build_config
    from advaug.data import splits

    cfg = build_config("smoke", ["data.name=cifar100", f"data.checksums.meta={'a' * 32}"])
    assert cfg.data.checksums == {"meta": "a" * 32}
    seen = {}

    def fake_load(name, root, **kw):
        seen.update(kw)
        raise RuntimeError("stop here")

    monkeypatch.setattr(splits, "load_dataset", fake_load)
    with pytest.raises(RuntimeError, match="stop here"):
        splits.load_splits(cfg.data)
    assert seen["checksums"] == {"meta": "a" * 32}

"""The IDX reader on small files the tests write, malformed ones included."""

from __future__ import annotations

import gzip
import io
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import advaug.data.idx as idx
from advaug.data.idx import MAGIC_IMAGES, MAGIC_LABELS, encode_idx, read_idx
from advaug.errors import DataError

from .mnist_synth import write_gz

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]


def _gz(raw: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(raw)
    return buf.getvalue()


def _header(dims: list[int], code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)


@settings(max_examples=60, deadline=None)
@given(
    dims=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    dtype=st.sampled_from(DTYPES),
    compress=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_round_trip(dims, dtype, compress, seed):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(dims) * 100).astype(dtype)
    raw = encode_idx(a)
    got = read_idx("f.idx", data=_gz(raw) if compress else raw)
    assert got.dtype == np.dtype(dtype) and got.shape == tuple(dims)
    assert np.array_equal(got, a)
    assert got.flags.writeable


def test_reads_the_written_files_and_checks_the_magic(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    path = write_gz(tmp_path / "img.gz", encode_idx(images))
    assert np.array_equal(read_idx(path, magic=MAGIC_IMAGES), images)
    with pytest.raises(DataError) as info:
        read_idx(path, magic=MAGIC_LABELS)
    msg = str(info.value)
    assert "0x00000803" in msg and "0x00000801" in msg and str(path) in msg and "\n" not in msg


@pytest.mark.parametrize(
    "head",
    [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00", b"PK\x03\x04"],
    ids=["nonzero-lead", "bad-type", "zero-dims", "zip"],
)
def test_refuses_headers_that_are_not_idx(head):
    with pytest.raises(DataError, match="not an IDX header"):
        read_idx("bad", data=head + b"\0" * 16)


@settings(max_examples=40, deadline=None)
@given(
    dims=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    delta=st.integers(-3, 3).filter(lambda d: d != 0),
    which=st.integers(0, 2),
    compress=st.booleans(),
)
def test_refuses_a_header_whose_counts_disagree_with_the_data(dims, delta, which, compress):
    a = np.ones(dims, dtype=np.uint8)
    body = encode_idx(a)[4 + 4 * len(dims) :]
    i = which % len(dims)
    told = list(dims)
    told[i] = max(0, told[i] + delta)
    if told == dims:
        return
    raw = _header(told) + body
    declared = int(np.prod(told))
    expect = "truncated" if declared > len(body) else "goes on past"
    with pytest.raises(DataError, match=expect):
        read_idx("f", data=_gz(raw) if compress else raw)


def test_refuses_a_truncated_header():
    with pytest.raises(DataError, match="shorter than an IDX header"):
        read_idx("f", data=b"\0\0")
    with pytest.raises(DataError, match="declares 3 dimensions but ends after 1"):
        read_idx("f", data=_header([5, 2, 2])[:8])


def test_refuses_a_huge_declared_size_before_reading():
    raw = _header([0xFFFFFFFF, 0xFFFFFFFF, 28])
    with pytest.raises(DataError, match="more than the"):
        read_idx("f", data=_gz(raw))


class _Counting(gzip.GzipFile):
    """A GzipFile that counts the decompressed bytes it hands out."""

    total = 0

    def read(self, size=-1):
        out = super().read(size)
        _Counting.total += len(out)
        return out


def test_a_gzip_bomb_is_never_decompressed_past_its_declared_size(monkeypatch):
    """The header declares 10 bytes; 64 MiB of zeros follow. The reader stops after 11."""
    bomb = _gz(_header([10]) + bytes(64 << 20))
    assert len(bomb) < (1 << 20)
    monkeypatch.setattr(idx.gzip, "GzipFile", _Counting)
    _Counting.total = 0
    with pytest.raises(DataError, match=r"goes on past the 10 values \(10 bytes\)"):
        read_idx("bomb.gz", data=bomb)
    assert _Counting.total <= 4 + 4 + 10 + 1


def test_refuses_a_corrupt_gzip_stream():
    good = _gz(encode_idx(np.arange(100, dtype=np.uint8)))
    with pytest.raises(DataError, match="cannot decompress"):
        read_idx("cut.gz", data=good[:-12])  # the deflate end and the trailer are missing
    bad_crc = good[:-8] + bytes(b ^ 0xFF for b in good[-8:-4]) + good[-4:]
    with pytest.raises(DataError, match="cannot decompress"):
        read_idx("crc.gz", data=bad_crc)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "absent.gz")


def test_encode_refuses_unsupported_arrays():
    with pytest.raises(DataError, match="cannot write a uint16"):
        encode_idx(np.zeros(3, dtype=np.uint16))

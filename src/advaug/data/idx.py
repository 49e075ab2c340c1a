"""The IDX file format of MNIST and Fashion-MNIST, read without trusting the file.

An IDX file is a big-endian header and raw values (LeCun's format description):

- bytes 0-1: zero; byte 2: the value type (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16,
  ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64); byte 3: the number of dimensions d;
- d big-endian uint32 sizes; then ``prod(sizes)`` values in C order.

So the magic number (the first four bytes as one big-endian integer) is ``0x801`` for a label
file (uint8, 1 dimension) and ``0x803`` for an image file (uint8, 3 dimensions).

The reader decides the data size from the header, then reads at most that many bytes plus one
from the (gzip) stream, in chunks: a file whose data is shorter than its header says is
truncated, one with more is refused, and a gzip bomb is never decompressed beyond its declared
size. A file read to its exact end also has its gzip CRC-32 and length checked.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from pathlib import Path

import numpy as np

from advaug.data.fetch import read_bytes
from advaug.errors import DataError

#: IDX type code -> numpy dtype (big-endian, as stored).
IDX_TYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
#: The magic number of a uint8 label file (1 dimension) and of a uint8 image file (3).
MAGIC_LABELS = 0x00000801
MAGIC_IMAGES = 0x00000803
#: Refuse headers that declare more data than this (bytes); the largest official file is 47 MB.
MAX_BYTES = 1 << 30
_CHUNK = 1 << 20


def magic_for(dtype_code: int, ndim: int) -> int:
    """The magic number of an IDX file of values ``dtype_code`` with ``ndim`` dimensions."""
    return (dtype_code << 8) | ndim


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes (uncompressed) of ``array`` (uint8, int8, int16, int32, float32/64)."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_TYPES.items()}
    dt = array.dtype.newbyteorder("=")
    if dt not in codes or not 1 <= array.ndim <= 255:
        raise DataError(
            f"cannot write a {array.dtype} array with {array.ndim} dimensions as IDX; use one of "
            "uint8, int8, int16, int32, float32, float64 with 1..255 dimensions"
        )
    code = codes[dt]
    header = magic_for(code, array.ndim).to_bytes(4, "big")
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()


def _read_exact(stream: io.BufferedIOBase, n: int) -> bytearray:
    """At most ``n`` bytes, read in chunks, so memory grows only with what the stream holds."""
    out = bytearray()
    while len(out) < n:
        chunk = stream.read(min(_CHUNK, n - len(out)))
        if not chunk:
            break
        out += chunk
    return out


def _header(stream: io.BufferedIOBase, source: str, magic: int | None) -> tuple[str, list[int]]:
    head = _read_exact(stream, 4)
    if len(head) < 4:
        raise DataError(
            f"{source} is {len(head)} bytes long, shorter than an IDX header; the file is "
            "truncated: replace it"
        )
    got = int.from_bytes(head, "big")
    if magic is not None and got != magic:
        raise DataError(
            f"{source}: magic number {got:#010x}, expected {magic:#010x}; it is not the right "
            "IDX file (or not IDX at all): replace it"
        )
    if head[:2] != b"\0\0" or head[2] not in IDX_TYPES or head[3] == 0:
        raise DataError(
            f"{source}: magic number {got:#010x} is not an IDX header (00 00, a type code in "
            f"{', '.join(f'{k:#04x}' for k in IDX_TYPES)}, dimensions >= 1); replace the file"
        )
    ndim = head[3]
    raw = _read_exact(stream, 4 * ndim)
    if len(raw) < 4 * ndim:
        raise DataError(
            f"{source}: the header declares {ndim} dimensions but ends after "
            f"{len(raw) // 4}; the file is truncated: replace it"
        )
    dims = [int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(ndim)]
    return IDX_TYPES[head[2]], dims


def read_idx(
    path: str | Path,
    *,
    magic: int | None = None,
    max_bytes: int = MAX_BYTES,
    data: bytes | None = None,
) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip-compressed or plain), in native order.

    ``magic`` (e.g. :data:`MAGIC_IMAGES`) must match when given. ``data`` passes the file's
    bytes when the caller already read them (to check an md5); ``path`` then only names the
    file in messages. Raises :class:`DataError` with one line for a wrong magic number, a
    header whose sizes disagree with the data (truncated or longer), a declared size above
    ``max_bytes``, or a corrupt gzip stream.
    """
    source = str(path)
    raw = read_bytes(Path(path)) if data is None else data
    base: io.BufferedIOBase = io.BytesIO(raw)
    compressed = raw[:2] == b"\x1f\x8b"
    stream: io.BufferedIOBase = gzip.GzipFile(fileobj=base) if compressed else base
    try:
        dtype, dims = _header(stream, source, magic)
        itemsize = np.dtype(dtype).itemsize
        size = math.prod(dims) * itemsize
        if size > max_bytes:
            raise DataError(
                f"{source}: the header declares {' x '.join(map(str, dims))} values "
                f"({size:,} bytes), more than the {max_bytes:,} allowed; the header is corrupt: "
                "replace the file"
            )
        body = _read_exact(stream, size + 1)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(
            f"cannot decompress {source} ({type(e).__name__}: {e}); it is truncated or not gzip: "
            "replace it"
        ) from e
    shape = " x ".join(map(str, dims))
    if len(body) < size:
        raise DataError(
            f"{source}: the header declares {shape} values ({size:,} bytes) but the file holds "
            f"{len(body):,}; it is truncated or its header is wrong: replace it"
        )
    if len(body) > size:
        raise DataError(
            f"{source}: the data goes on past the {shape} values ({size:,} bytes) its header "
            "declares; its header is wrong or data was appended: replace it"
        )
    # a bytearray buffer: the array is writable, so torch.from_numpy takes it without a copy
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype[1:], copy=False)

"""A restricted unpickler for the official CIFAR python pickles.

The official files are Python-2 pickles of dicts holding lists, byte strings, ints and numpy
arrays. Unpickling them only ever needs numpy's array reconstruction, so :func:`safe_load`
resolves exactly those globals and refuses every other one *before* anything is called: a
pickle that asks for ``os.system`` or ``builtins.eval`` raises :class:`UnsafePickleError` and
nothing runs.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import IO, Any

import numpy as np

from advaug.errors import DataError, UnsafePickleError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

#: (module, name) -> object. Both numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) module
#: paths map to the same functions, resolved here once, so loading never imports a module by name.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    # numpy's pickle-protocol-5 array path (a re-pickled copy made with Python >= 3.14 defaults):
    # it only wraps ``np.frombuffer`` and can build nothing but arrays.
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose only reachable globals are :data:`ALLOWED_GLOBALS`."""

    def __init__(self, f: IO[bytes], source: str, encoding: str) -> None:
        super().__init__(f, encoding=encoding)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to unpickle global {module}.{name} from {self._source}: only numpy "
                "array types are allowed in dataset pickles; use an official CIFAR file"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"refused persistent id {pid!r} in {self._source}: dataset pickles never use them; "
            "use an official CIFAR file"
        )


def safe_load(path_or_fileobj: str | os.PathLike[str] | IO[bytes], encoding: str = "bytes") -> Any:
    """Unpickle a dataset file, allowing only numpy array reconstruction.

    ``encoding="bytes"`` keeps Python-2 strings as ``bytes`` (so dict keys read ``b"data"``);
    ``"latin1"`` turns them into ``str``. Raises :class:`UnsafePickleError` for a forbidden
    global and :class:`DataError` (naming the file) for a truncated or garbage file.
    """
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        path = Path(path_or_fileobj)
        try:
            with open(path, "rb") as f:
                return _load(f, str(path), encoding)
        except OSError as e:
            raise DataError(f"cannot read {path}: {e.strerror or e}; check the path") from e
    source = str(getattr(path_or_fileobj, "name", "<file object>"))
    return _load(path_or_fileobj, source, encoding)


def safe_loads(data: bytes, source: str = "<bytes>", encoding: str = "bytes") -> Any:
    """Like :func:`safe_load` for an in-memory pickle; ``source`` names it in errors."""
    return _load(io.BytesIO(data), source, encoding)


def _load(f: IO[bytes], source: str, encoding: str) -> Any:
    unpickler = _RestrictedUnpickler(f, source, encoding)
    try:
        return unpickler.load()
    except UnsafePickleError:
        raise
    except MemoryError as e:
        raise DataError(
            f"{source} asks for more memory than available: the file is corrupt; "
            "replace it with an official copy"
        ) from e
    except Exception as e:  # any parse error of a truncated or garbage file
        raise DataError(
            f"{source} is not a valid dataset pickle ({type(e).__name__}: {e}); the file is "
            "truncated or corrupt: delete it and place (or download) a fresh copy"
        ) from e

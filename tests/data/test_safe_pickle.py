"""The restricted unpickler: official-format pickles load, anything else is refused unrun."""

from __future__ import annotations

import builtins
import collections
import io
import os
import pickle
import subprocess

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from advaug.data.safe_pickle import (
    ALLOWED_GLOBALS,
    _RestrictedUnpickler,
    safe_load,
    safe_loads,
)
from advaug.errors import DataError, UnsafePickleError

from .cifar_synth import dump_py2


class _Evil:
    """Unpickling this would run ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def test_python2_style_pickle_loads_with_bytes_keys(tmp_path):
    arr = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    path = tmp_path / "batch"
    path.write_bytes(dump_py2({b"data": arr, b"labels": [3, 7], b"name": b"x"}))
    out = safe_load(path)
    assert set(out) == {b"data", b"labels", b"name"}
    assert out[b"data"].dtype == np.uint8
    np.testing.assert_array_equal(out[b"data"], arr)
    assert out[b"labels"] == [3, 7]


def test_latin1_encoding_gives_str_keys(tmp_path):
    path = tmp_path / "meta"
    path.write_bytes(dump_py2({b"label_names": [b"cat", b"dog"]}))
    assert safe_load(path, encoding="latin1") == {"label_names": ["cat", "dog"]}


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_numpy2_module_paths_and_scalars_load(protocol):
    obj = {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "s": np.int64(5), "f": np.float32(2.5)}
    out = safe_loads(pickle.dumps(obj, protocol=protocol))
    np.testing.assert_array_equal(out["a"], obj["a"])
    assert out["s"] == 5 and out["s"].dtype == np.int64
    assert out["f"] == np.float32(2.5)


def test_file_object_input():
    import io

    assert safe_load(io.BytesIO(dump_py2([1, 2]))) == [1, 2]


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize(
    "func,args,refused",
    [
        (os.system, "touch {marker}", r"(posix|os)\.system"),
        (builtins.eval, "open({marker!r}, 'w').close()", r"__builtin__\.eval|builtins\.eval"),
        (builtins.exec, "open({marker!r}, 'w').close()", r"__builtin__\.exec|builtins\.exec"),
        (subprocess.call, ["touch", "{marker}"], r"\.call"),
    ],
)
def test_code_execution_is_refused_and_nothing_runs(tmp_path, func, args, refused, protocol):
    marker = tmp_path / "pwned"
    arg = (
        [a.format(marker=str(marker)) for a in args]
        if isinstance(args, list)
        else args.format(marker=str(marker))
    )
    payload = pickle.dumps({"data": _Evil(func, arg)}, protocol=protocol)
    path = tmp_path / "train"
    path.write_bytes(payload)
    with pytest.raises(UnsafePickleError, match=refused) as info:
        safe_load(path)
    assert str(path) in str(info.value)
    assert not marker.exists()
    # The same payload really does run under the unrestricted unpickler, so the test can fail.
    pickle.loads(payload)
    assert marker.exists()


def test_handwritten_global_opcode_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    with pytest.raises(UnsafePickleError, match=r"os\.system"):
        safe_loads(payload, source="evil.pkl")
    assert not marker.exists()


def test_other_module_import_is_refused():
    payload = pickle.dumps(collections.OrderedDict(a=1), protocol=2)
    with pytest.raises(UnsafePickleError, match=r"collections\.OrderedDict"):
        safe_loads(payload)


def test_refused_global_after_valid_data_still_refused():
    payload = pickle.dumps([np.zeros(3, np.uint8), _Evil(print, "x")], protocol=4)
    with pytest.raises(UnsafePickleError, match="builtins.print"):
        safe_loads(payload)


def test_unsafe_pickle_error_is_a_data_error():
    assert issubclass(UnsafePickleError, DataError)


def test_truncated_file_names_the_file(tmp_path):
    full = dump_py2({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]})
    path = tmp_path / "data_batch_1"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match="data_batch_1.*truncated or corrupt") as info:
        safe_load(path)
    assert not isinstance(info.value, UnsafePickleError)


@pytest.mark.parametrize("content", [b"", b"garbage that is not a pickle", b"\x80\x02}q"])
def test_garbage_raises_data_error(tmp_path, content):
    path = tmp_path / "test_batch"
    path.write_bytes(content)
    with pytest.raises(DataError, match="test_batch"):
        safe_load(path)


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match=r"^cannot read \S+nope: No such file or directory; check"):
        safe_load(tmp_path / "nope")


def test_refusal_names_the_fix():
    payload = pickle.dumps(collections.OrderedDict(a=1), protocol=2)
    with pytest.raises(UnsafePickleError, match="only numpy array types are allowed in dataset "
                       "pickles; use an official CIFAR file$"):  # fmt: skip
        safe_loads(payload, source="x.pkl")


class _PersistentPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return "ext-1" if obj == "outside" else None


def test_persistent_ids_are_refused():
    buf = io.BytesIO()
    _PersistentPickler(buf, protocol=2).dump({"data": "outside"})
    with pytest.raises(UnsafePickleError, match=r"^refused persistent id 'ext-1' in p\.pkl: "
                       "dataset pickles never use them; use an official CIFAR file$"):  # fmt: skip
        safe_loads(buf.getvalue(), source="p.pkl")


def test_file_objects_are_named_by_their_name_or_as_a_file_object(tmp_path):
    path = tmp_path / "data_batch_2"
    path.write_bytes(b"garbage")
    with open(path, "rb") as f, pytest.raises(DataError, match=f"^{path} is not a valid"):
        safe_load(f)
    with pytest.raises(DataError, match="^<file object> is not a valid"):
        safe_load(io.BytesIO(b"garbage"))


_VALID = dump_py2({b"data": np.arange(3072, dtype=np.uint8).reshape(1, 3072), b"labels": [1]})


class _Reference(pickle.Unpickler):
    """The standard unpickler allowed the same global names, resolved by import (not through the
    module's table): what a correct restricted loader must agree with."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} not allowed")
        return super().find_class(module, name)


def _agrees_with_reference(data: bytes) -> None:
    """Loaded: the same object as the reference loads. Refused: a DataError naming the source,
    exactly where the reference fails too."""
    try:
        expected = _Reference(io.BytesIO(data), encoding="bytes").load()
    except Exception:
        with pytest.raises(DataError, match=r"(^|from |in )<bytes>[ :]"):
            safe_loads(data)
        return
    got = safe_loads(data)
    assert type(got) is type(expected)
    assert pickle.dumps(got, protocol=4) == pickle.dumps(expected, protocol=4)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
@example(b"NQ")  # a persistent id (None): refused "in <bytes>", found by CI's hypothesis run
def test_arbitrary_bytes_load_what_the_reference_loads_or_raise_data_error(data):
    _agrees_with_reference(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_VALID) - 1), st.integers(0, 255), st.integers(1, len(_VALID)))
def test_corrupted_official_pickle_loads_what_the_reference_loads_or_raises(pos, value, cut):
    data = bytearray(_VALID)
    data[pos] = value
    _agrees_with_reference(bytes(data[:cut]))


def test_reference_oracle_sees_the_official_content():
    """The oracle above is not vacuous: the intact file loads, equal to what was written."""
    _agrees_with_reference(_VALID)
    out = safe_loads(_VALID)
    assert out[b"labels"] == [1]
    np.testing.assert_array_equal(out[b"data"], np.arange(3072, dtype=np.uint8).reshape(1, 3072))


def test_parse_error_message_names_the_cause_and_the_fix():
    with pytest.raises(DataError) as info:
        safe_loads(b"", source="t")
    assert str(info.value) == (
        "t is not a valid dataset pickle (EOFError: Ran out of input); the file is truncated or "
        "corrupt: delete it and place (or download) a fresh copy"
    )


def test_memory_error_is_a_data_error_naming_the_fix(monkeypatch):
    def huge(self):
        raise MemoryError

    monkeypatch.setattr(_RestrictedUnpickler, "load", huge, raising=False)
    with pytest.raises(DataError) as info:
        safe_loads(_VALID, source="m")
    assert str(info.value) == (
        "m asks for more memory than available: the file is corrupt; replace it with an official "
        "copy"
    )
    assert isinstance(info.value.__cause__, MemoryError)

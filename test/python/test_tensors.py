"""Tensors ⇄ numpy arrays (`snakebridge_agent.tensors`).

The Rust side hands `to_numpy` a `TensorBuffer` (read-only bytes behind numpy's array
interface) and reads `from_numpy`'s `(address, size)` straight from memory; `_Buffer` and
`_bytes_at` below do the same from Python, so a round trip here is the one a tensor makes.
"""

from __future__ import annotations

import builtins
import ctypes
import sys
from typing import Any

import pytest

from snakebridge_agent import tensors
from snakebridge_agent.tensors import DTYPES, MissingNumpy

np = pytest.importorskip("numpy")

# Every dtype a tensor can have that numpy has by itself (bfloat16 needs ml_dtypes).
PLAIN_DTYPES = sorted(DTYPES - {"bfloat16"})


class _Buffer:
    """What `TensorBuffer` is to numpy: read-only bytes behind the array interface (v3)."""

    def __init__(self, data: bytes) -> None:
        self._keep = np.frombuffer(data, dtype=np.uint8)  # owns nothing: views `data`
        self._data = data
        self.address = self._keep.__array_interface__["data"][0]

    @property
    def __array_interface__(self) -> dict[str, Any]:
        return {
            "version": 3,
            "typestr": "|u1",
            "shape": (len(self._data),),
            "data": (self.address, True),
        }

    def __len__(self) -> int:
        return len(self._data)


def _bytes_at(address: int, size: int) -> bytes:
    """The `size` bytes at `address`, as the Rust side reads an array it sends."""
    return ctypes.string_at(address, size) if size else b""


def _sample(dtype: str, shape: tuple[int, ...] = (2, 3)) -> Any:
    """An array of `dtype` whose elements differ (and mean something in every dtype)."""
    count = int(np.prod(shape))
    if dtype == "bool":
        values = np.arange(count) % 3 == 0
    elif dtype.startswith("complex"):
        values = np.arange(count) + 1j * (np.arange(count) - 2.5)
    elif dtype.startswith("float"):
        values = np.arange(count) * 1.25 - 3
    elif dtype.startswith("uint"):
        values = np.arange(count) * 37 + 200
    else:
        values = np.arange(count) * 37 - 100
    return values.astype(dtype).reshape(shape)


def _round_trip(array: Any) -> tuple[Any, tuple[Any, ...]]:
    """`array` sent (from_numpy + reading its memory) and received (to_numpy)."""
    parts = tensors.from_numpy(array)
    assert parts is not None
    name, shape, _held, address, size = parts
    return tensors.to_numpy(_Buffer(_bytes_at(address, size)), name, shape), parts


def _assert_same(received: Any, original: Any) -> None:
    assert received.dtype == original.dtype.newbyteorder("=")
    assert received.dtype.isnative
    assert received.shape == original.shape
    assert np.array_equal(received, original)


def test_the_dtypes_are_numpys_names() -> None:
    for name in PLAIN_DTYPES:
        assert tensors.dtype_of(name) == np.dtype(name)
        assert np.dtype(name).name == name


@pytest.mark.parametrize("dtype", PLAIN_DTYPES)
def test_round_trip_of_every_dtype(dtype: str) -> None:
    original = _sample(dtype)
    received, (name, shape, held, address, size) = _round_trip(original)
    assert name == dtype
    assert shape == (2, 3)
    assert all(type(d) is int for d in shape)
    assert size == original.nbytes
    # already C-contiguous and native-endian: sent as it is, without a copy
    assert held is original
    assert address == original.__array_interface__["data"][0]
    _assert_same(received, original)


@pytest.mark.parametrize("dtype", PLAIN_DTYPES)
def test_round_trip_of_a_byte_swapped_array(dtype: str) -> None:
    native = _sample(dtype)
    swapped = native.astype(native.dtype.newbyteorder("S"))
    assert np.array_equal(swapped, native)
    received, (name, _, held, address, size) = _round_trip(swapped)
    assert name == dtype
    assert held.dtype.isnative
    if native.dtype.itemsize > 1:
        assert not swapped.dtype.isnative
        assert held is not swapped
    # what is sent is the native-endian bytes
    assert _bytes_at(address, size) == native.tobytes()
    _assert_same(received, native)


@pytest.mark.parametrize("dtype", PLAIN_DTYPES)
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda a: a[:, ::2], id="strided"),
        pytest.param(lambda a: a[::-1, ::-1], id="reversed"),
        pytest.param(lambda a: np.asfortranarray(a), id="fortran"),
        pytest.param(lambda a: a.T, id="transposed"),
    ],
)
def test_round_trip_of_a_non_contiguous_array(dtype: str, make: Any) -> None:
    original = make(_sample(dtype, (4, 5)))
    assert not original.flags.c_contiguous
    received, (_, shape, held, address, size) = _round_trip(original)
    assert shape == original.shape
    assert held.flags.c_contiguous
    assert size == original.nbytes
    assert _bytes_at(address, size) == np.ascontiguousarray(original).tobytes()
    _assert_same(received, original)


def test_round_trip_of_a_byte_swapped_non_contiguous_array() -> None:
    native = _sample("float64", (4, 5))
    original = native.astype(">f8")[:, 1::2]
    received, _ = _round_trip(original)
    _assert_same(received, native[:, 1::2])


@pytest.mark.parametrize("dtype", ["float64", "int8", "bool", "complex64"])
def test_zero_dimensional_arrays_stay_zero_dimensional(dtype: str) -> None:
    original = np.array(_sample(dtype, (1,))[0])
    assert original.shape == ()
    received, (_, shape, _, _, size) = _round_trip(original)
    assert shape == ()
    assert size == original.dtype.itemsize
    assert received.shape == ()
    _assert_same(received, original)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 2, 5)])
def test_empty_arrays(shape: tuple[int, ...]) -> None:
    original = np.zeros(shape, dtype=np.int32)
    received, (_, sent_shape, _, _, size) = _round_trip(original)
    assert sent_shape == shape
    assert size == 0
    _assert_same(received, original)


def test_to_numpy_is_a_read_only_view_of_the_buffer() -> None:
    values = np.arange(6, dtype=np.float32)
    buffer = _Buffer(values.tobytes())
    array = tensors.to_numpy(buffer, "float32", (2, 3))
    assert array.shape == (2, 3)
    assert array.dtype == np.float32
    assert array.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert not array.flags.writeable
    with pytest.raises(ValueError):
        array[0, 0] = 1
    # no copy: the array's data is the buffer's memory, and it keeps the buffer alive
    assert array.__array_interface__["data"][0] == buffer.address
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    assert base is buffer


def test_to_numpy_refuses_a_shape_that_does_not_fit_the_bytes() -> None:
    with pytest.raises(ValueError):
        tensors.to_numpy(_Buffer(bytes(8)), "float32", (3,))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: np.array([object(), 1], dtype=object), id="object"),
        pytest.param(lambda: np.array(["a", "bc"]), id="unicode"),
        pytest.param(lambda: np.array([b"a", b"bc"]), id="bytes"),
        pytest.param(lambda: np.array(["2024-01-01"], dtype="datetime64[D]"), id="datetime"),
        pytest.param(lambda: np.array([1, 2], dtype="timedelta64[s]"), id="timedelta"),
        pytest.param(lambda: np.zeros(2, dtype=[("x", "i4"), ("y", "f8")]), id="record"),
        pytest.param(lambda: np.zeros(2, dtype="V4"), id="void"),
    ],
)
def test_from_numpy_declines_dtypes_a_tensor_cannot_have(make: Any) -> None:
    assert tensors.from_numpy(make()) is None


def test_from_numpy_declines_extended_precision() -> None:
    longdouble = np.zeros(2, dtype=np.longdouble)
    if longdouble.dtype.name == "float64":
        pytest.skip("long double is double on this platform")
    assert tensors.from_numpy(longdouble) is None


def test_bfloat16_through_ml_dtypes() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    assert tensors.dtype_of("bfloat16") == np.dtype(ml_dtypes.bfloat16)
    original = np.array([1.5, -2.0, 0.25], dtype=ml_dtypes.bfloat16)
    received, (name, _, _, _, size) = _round_trip(original)
    assert name == "bfloat16"
    assert size == 6
    _assert_same(received, original)


def test_is_numpy_scalar() -> None:
    assert tensors.is_numpy_scalar(np.float32(1.5))
    assert tensors.is_numpy_scalar(np.int64(3))
    assert tensors.is_numpy_scalar(np.bool_(True))
    assert not tensors.is_numpy_scalar(1.5)
    assert not tensors.is_numpy_scalar(np.array(1.5))
    assert not tensors.is_numpy_scalar(np.array([1, 2]))


# -- without numpy (or ml_dtypes) -----------------------------------------------------------


def _block_import(monkeypatch: pytest.MonkeyPatch, blocked: str) -> None:
    """Makes `import <blocked>` fail as it does where the package is not installed."""
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == blocked or name.startswith(blocked + "."):
            raise ModuleNotFoundError(f"No module named {blocked!r}", name=blocked)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_missing_numpy_says_what_is_missing_where_and_how_to_add_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _block_import(monkeypatch, "numpy")
    with pytest.raises(MissingNumpy) as info:
        tensors.numpy()
    message = str(info.value)
    assert "tensors need the numpy package" in message
    assert f"({sys.executable})" in message
    assert "No module named 'numpy'" in message
    assert 'add "numpy" to a config\'s python_deps' in message
    assert "mix snakebridge.setup" in message
    assert isinstance(info.value, ImportError)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_tensors_fail_with_missing_numpy_when_numpy_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _block_import(monkeypatch, "numpy")
    with pytest.raises(MissingNumpy):
        tensors.to_numpy(_Buffer(bytes(4)), "float32", (1,))
    with pytest.raises(MissingNumpy):
        tensors.dtype_of("int8")


def test_missing_numpy_also_when_numpy_is_blocked_in_sys_modules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)
    with pytest.raises(MissingNumpy, match="tensors need the numpy package"):
        tensors.numpy()
    # and nothing is a numpy scalar without numpy
    assert not tensors.is_numpy_scalar(1.5)


def test_bfloat16_without_ml_dtypes_is_a_type_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _block_import(monkeypatch, "ml_dtypes")
    with pytest.raises(TypeError, match="a bfloat16 tensor needs the ml_dtypes package"):
        tensors.dtype_of("bfloat16")
    # the other dtypes do not need it
    assert tensors.dtype_of("float16") == np.dtype("float16")

"""Tensors (out-of-band buffers with a dtype and a shape) ⇄ numpy arrays.

The Rust side hands `to_numpy` an object exposing the bytes it received through numpy's
array interface, so the array is a zero-copy, read-only view of them; `from_numpy` gives
back the dtype name, the shape, and a C-contiguous, native-endian array with the address
and size of its data, which the Rust side sends without copying.

numpy is optional: it is imported only when a tensor crosses, and a worker without it
fails such a call with `MissingNumpy`, which names the package and the interpreter.
"""

from __future__ import annotations

import sys
from typing import Any

from snakebridge_agent import _native

__all__ = ["MissingNumpy", "from_numpy", "to_numpy", "dtype_of"]


class MissingNumpy(ImportError):
    """A tensor crossed, and the worker's Python has no numpy."""


def numpy() -> Any:
    """The numpy module, or `MissingNumpy` saying where it is missing and how to add it."""
    try:
        import numpy as np
    except ImportError as exc:
        raise MissingNumpy(
            "tensors need the numpy package, which the worker's Python "
            f'({sys.executable}) cannot import ({exc}); add "numpy" to a config\'s '
            "python_deps and run `mix snakebridge.setup`, or install it into that Python"
        ) from None
    return np


# numpy's names of the dtypes SnakeBridge tensors have (`bfloat16` needs ml_dtypes); the
# core owns the table.
DTYPES: frozenset[str] = _native.DTYPES


def dtype_of(name: str) -> Any:
    """The numpy dtype called `name`; bfloat16 comes from the ml_dtypes package."""
    np = numpy()

    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise TypeError(
                "a bfloat16 tensor needs the ml_dtypes package in the worker's Python"
            ) from None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def to_numpy(buffer: Any, dtype: str, shape: tuple[int, ...]) -> Any:
    """A read-only array viewing `buffer` (no copy): a flat `uint8` array through the
    buffer's array interface, viewed as `dtype` and reshaped."""
    np = numpy()
    return np.asarray(buffer).view(dtype_of(dtype)).reshape(shape)


def from_numpy(array: Any) -> tuple[str, tuple[int, ...], Any, int, int] | None:
    """`(dtype name, shape, array, data address, size in bytes)` of `array`, made
    C-contiguous and native-endian first (a copy only when it is not already); None for a
    dtype a tensor cannot have (object, strings, records, dates), which then crosses as a
    reference. The caller holds the returned array for as long as it reads the address."""

    name = array.dtype.name
    if name not in DTYPES:
        return None
    if array.dtype.byteorder not in ("=", "|") and array.dtype.byteorder != _native():
        array = array.astype(array.dtype.newbyteorder("="))
    if not array.flags.c_contiguous:
        # (not np.ascontiguousarray: it makes 0-d arrays 1-d)
        array = array.copy(order="C")
    address = array.__array_interface__["data"][0]
    return name, tuple(int(d) for d in array.shape), array, address, int(array.nbytes)


def _native() -> str:
    return "<" if sys.byteorder == "little" else ">"


def is_numpy_scalar(value: Any) -> bool:
    """Whether `value` is a numpy scalar (`np.float32(1.5)`, `np.int64(3)`, ...)."""
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.generic)

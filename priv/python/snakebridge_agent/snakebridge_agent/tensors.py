"""Tensors (out-of-band buffers with a dtype and a shape) ⇄ numpy arrays.

The Rust side hands `to_numpy` a read-only buffer over the bytes it received, so the array
is a zero-copy view (`np.frombuffer`); `from_numpy` gives back the dtype name, the shape
and a flat `uint8` view of a C-contiguous, native-endian array, whose buffer the Rust side
sends without copying. numpy is imported only when a tensor crosses.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["from_numpy", "to_numpy", "dtype_of"]

# numpy's names of the dtypes SnakeBridge tensors have (`bfloat16` needs ml_dtypes).
DTYPES = frozenset(
    [
        "bool",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "int8",
        "int16",
        "int32",
        "int64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    ]
)


def dtype_of(name: str) -> Any:
    """The numpy dtype called `name`; bfloat16 comes from the ml_dtypes package."""
    import numpy as np

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
    """A read-only array viewing `buffer` (no copy)."""
    import numpy as np

    return np.frombuffer(buffer, dtype=dtype_of(dtype)).reshape(shape)


def from_numpy(array: Any) -> tuple[str, tuple[int, ...], Any] | None:
    """`(dtype name, shape, flat uint8 view)` of `array`, made C-contiguous and
    native-endian first (a copy only when it is not already); None for a dtype a tensor
    cannot have (object, strings, records, dates), which then crosses as a reference."""
    import numpy as np

    name = array.dtype.name
    if name not in DTYPES:
        return None
    if array.dtype.byteorder not in ("=", "|") and array.dtype.byteorder != _native():
        array = array.astype(array.dtype.newbyteorder("="))
    if not array.flags.c_contiguous:
        # (not np.ascontiguousarray: it makes 0-d arrays 1-d)
        array = array.copy(order="C")
    return name, tuple(int(d) for d in array.shape), array.reshape(-1).view(np.uint8)


def _native() -> str:
    return "<" if sys.byteorder == "little" else ">"


def is_numpy_scalar(value: Any) -> bool:
    """Whether `value` is a numpy scalar (`np.float32(1.5)`, `np.int64(3)`, ...)."""
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.generic)

"""Helpers of bench/tensor_bench.exs, imported by a SnakeBridge worker.

The arrays and lists they return are built on the first call for a size and cached, so
later (timed) calls measure the transfer, not numpy's or Python's allocation.
"""

import numpy as np

_arrays = {}
_lists = {}


def nbytes(array):
    """The size of the array received, in bytes (a tiny reply)."""
    return int(array.nbytes)


def array(n):
    """A cached float32 array of n elements, all 1.5."""
    if n not in _arrays:
        _arrays[n] = np.full(n, 1.5, np.float32)
    return _arrays[n]


def float_list(n):
    """A cached list of n Python floats, all 1.5."""
    if n not in _lists:
        _lists[n] = [1.5] * n
    return _lists[n]

"""Python helpers for SnakeBridge's end-to-end tests (added to the workers' PYTHONPATH)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any


class FixtureError(ValueError):
    """A custom exception with a base class from the standard library."""


def echo(value: Any) -> Any:
    """Returns its argument unchanged."""
    return value


def type_name(value: Any) -> str:
    """The qualified type name of the argument, as Python sees it."""
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"


def describe(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Echoes how the arguments arrived."""
    return {"args": list(args), "kwargs": kwargs}


def fail(message: str) -> None:
    """Raises FixtureError."""
    raise FixtureError(message)


def fail_huge(size: int) -> None:
    """Raises ValueError with a message of `size` characters, made here (not sent)."""
    raise ValueError("x" * size)


def sleep_then(seconds: float, value: Any) -> Any:
    """Sleeps, then returns value."""
    time.sleep(seconds)
    return value


def pid() -> int:
    """The worker's OS pid."""
    return os.getpid()


def die(seconds: float = 0.0) -> None:
    """Kills the worker process with SIGKILL after an optional delay."""
    time.sleep(seconds)
    os.kill(os.getpid(), signal.SIGKILL)


def unsendable() -> object:
    """Returns an object that cannot cross the bridge yet."""
    return object()


_marks: list[str] = []


def mark(tag: str) -> str:
    """Records that a call ran (to prove that cancelled calls never run)."""
    _marks.append(tag)
    return tag


def marks() -> list[str]:
    """The tags recorded by `mark`, in order."""
    return list(_marks)


def sleep_then_pid(seconds: float) -> int:
    """Sleeps, then returns the worker's pid."""
    time.sleep(seconds)
    return os.getpid()


_generators = {"produced": 0, "closed": 0}


def tracked(limit: int | None = None) -> Any:
    """Yields 0, 1, 2, ... (forever without a limit), counting what it produced and
    whether it was closed."""
    i = 0
    try:
        while limit is None or i < limit:
            _generators["produced"] += 1
            yield i
            i += 1
    finally:
        _generators["closed"] += 1


def generator_state() -> dict[str, int]:
    """What `tracked` generators have done so far."""
    return dict(_generators)


def fail_after(n: int) -> Any:
    """Yields 0..n-1, then raises ValueError."""
    yield from range(n)
    raise ValueError(f"boom after {n}")


async def async_count(n: int) -> Any:
    """An async generator of 0..n-1."""
    import asyncio

    for i in range(n):
        await asyncio.sleep(0)
        yield i


async def async_double(x: int) -> int:
    """An async function: its coroutine is awaited by the worker."""
    import asyncio

    await asyncio.sleep(0)
    return 2 * x


def objects(n: int) -> Any:
    """Yields n objects that are not plain data."""
    for _ in range(n):
        yield object()


def call_with(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Calls `fn` (an Elixir function) with the given arguments."""
    return fn(*args, **kwargs)


def catch_elixir_error(fn: Any, *args: Any) -> dict[str, Any]:
    """Calls `fn`; returns how an ElixirError it raised looks from Python."""
    from snakebridge_agent import ElixirError

    try:
        return {"returned": fn(*args)}
    except ElixirError as exc:
        return {
            "python_type": type(exc).__qualname__,
            "message": str(exc),
            "elixir_type": getattr(exc, "elixir_type", None),
            "has_stacktrace": bool(getattr(exc, "elixir_stacktrace", "")),
        }


_kept: list[Any] = []


def keep(fn: Any) -> int:
    """Keeps a callable for later calls; returns how many are kept."""
    _kept.append(fn)
    return len(_kept)


def call_kept(index: int, *args: Any) -> Any:
    """Calls a callable kept earlier."""
    return _kept[index](*args)


def forget_kept() -> None:
    """Drops every kept callable."""
    _kept.clear()


_global: dict[str, Any] = {}


def set_global(value: Any) -> int:
    """Sets this worker's global state; returns the worker's pid."""
    _global["value"] = value
    return os.getpid()


def get_global() -> Any:
    """This worker's global state (None when unset)."""
    return _global.get("value")


def call_tool(name: str, *args: Any) -> Any:
    """Calls the SnakeBridge tool registered under `name`."""
    from snakebridge_agent import tools

    return tools.get(name)(*args)


_counts: dict[str, int] = {}


def counted(key: str, value: Any) -> Any:
    """Returns value, counting how often it ran for `key` (to observe the result cache)."""
    _counts[key] = _counts.get(key, 0) + 1
    return value


def count_of(key: str) -> int:
    """How often `counted` ran for `key`."""
    return _counts.get(key, 0)


def die_once(marker: str) -> str:
    """Kills the worker the first time it runs for `marker` (a file path); then returns."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return "second try"


class Counter:
    """A counter that lives in a worker (generated classes in tests)."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def add(self, n: int) -> int:
        """Adds `n` and returns the new value."""
        self.value += n
        return self.value

    def worker(self) -> int:
        """The pid of the worker the counter lives in."""
        return os.getpid()


class Named:
    """An object that needs a name to be made."""

    def __init__(self, name: str) -> None:
        self.name = name


def array_info(array: Any) -> dict[str, Any]:
    """What Python sees of a received array: type, dtype, shape, writeable, owns data."""
    return {
        "type": f"{type(array).__module__}.{type(array).__qualname__}",
        "dtype": array.dtype.name,
        "shape": list(array.shape),
        "writeable": bool(array.flags.writeable),
        "view": array.base is not None,
    }


def numpy_arrays() -> dict[str, Any]:
    """Arrays a tensor must be made from carefully, and things that are not tensors."""
    import numpy as np

    return {
        "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
        "strided": np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2],
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
        "zero_d": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.uint8),
        "objects": np.array([object(), 1], dtype=object),
        "strings": np.array(["a", "bc"]),
        "scalars": [np.float32(1.5), np.int64(7), np.bool_(True), np.complex64(1j)],
        "array_module": __import__("array").array("i", [1, 2]),
        "bytearray": bytearray(b"ab"),
        "memoryview": memoryview(b"xyz")[1:],
    }


def arange(dtype: str, n: int) -> Any:
    """`np.arange(n)` as `dtype` (bfloat16 through ml_dtypes)."""
    import numpy as np

    from snakebridge_agent.tensors import dtype_of

    return np.arange(n).astype(dtype_of(dtype))


_cached_arrays: dict[int, Any] = {}


def cached_array(n: int) -> Any:
    """The same float32 array of `n` elements every time (to time the transfer alone)."""
    import numpy as np

    if n not in _cached_arrays:
        _cached_arrays[n] = np.full(n, 1.5, dtype=np.float32)
    return _cached_arrays[n]


def segfault() -> None:
    """Crashes the worker with SIGSEGV (reads address 0)."""
    import ctypes

    ctypes.string_at(0)


def spin() -> None:
    """Loops forever in Python, never returning."""
    while True:
        pass


def start_once(log: str) -> str:
    """An init call that works the first time only: appends a line to `log` per attempt
    and raises ImportError from the second attempt on (a worker that cannot restart)."""
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    with open(log) as f:
        attempts = len(f.readlines())
    if attempts > 1:
        raise ImportError(f"cannot import a dependency (attempt {attempts})")
    return "started"


# Reached through an allowed module, but defined in (or being) modules outside it: the
# agent's allowlist refuses them although their path starts with "sb_fixtures".
run_shell = os.system


class Holder:
    """An object holding a module and a function from outside the allowlist."""

    def __init__(self) -> None:
        self.module = os
        self.shell = os.system
        self.label = "holder"


def leak_global() -> None:
    """Raises an exception whose message holds this worker's global state (a secret)."""
    raise ValueError(f"the service refused the key {_global.get('value')!s}")


def leak_global_and_die() -> None:
    """Prints this worker's global state (a secret) to stderr, then dies."""
    import sys

    print(f"connecting with key {_global.get('value')!s}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def deep(levels: int, kind: str = "list") -> Any:
    """A list (or dict, tuple) nested `levels` deep, built without recursion."""
    value: Any = []
    for _ in range(levels):
        if kind == "dict":
            value = {"k": value}
        elif kind == "tuple":
            value = (value,)
        else:
            value = [value]
    return value


def holding_itself() -> list[Any]:
    """A list that contains itself."""
    cycle: list[Any] = []
    cycle.append(cycle)
    return cycle


def call_with_deep(fn: Any, levels: int) -> Any:
    """Calls `fn` (an Elixir function) with a list nested `levels` deep."""
    return fn(deep(levels))

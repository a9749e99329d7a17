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

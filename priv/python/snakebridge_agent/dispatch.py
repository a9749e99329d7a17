"""Resolves call targets and runs them; describes the exceptions they raise.

The Rust server (`snakebridge_agent._native`) calls `call` for every call frame and
`describe_exception` for every exception that escapes it. A target is a dotted path such as
`"os.path.join"` or `"collections.OrderedDict"`: the longest importable module prefix is
imported and the rest is looked up with `getattr`.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import traceback
from types import TracebackType
from typing import Any

from snakebridge_agent import _native, allowlist
from snakebridge_agent.allowlist import NotAllowed
from snakebridge_agent.streams import iterate

__all__ = [
    "CallCancelled",
    "NotAllowed",
    "TargetNotFound",
    "call",
    "call_method",
    "call_nested",
    "describe_exception",
    "get_attr",
    "iterate",
    "resolve",
    "set_attr",
]


class TargetNotFound(LookupError):
    """A call target could not be resolved: its module or an attribute does not exist."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"cannot resolve {target!r}: {reason}")
        self.target = target
        self.reason = reason


class CallCancelled(BaseException):
    """Raised inside a call whose caller gave up on it (its deadline passed or its caller
    went away), so that a call looping in Python frees its thread. A `BaseException`, so
    that `except Exception` in library code does not swallow it."""


# Resolved targets, keyed by their dotted path. Only successes are cached, so a module
# installed later is still found. Dict operations are atomic under the GIL; two threads
# resolving the same target at once merely do the work twice.
_resolved: dict[str, Any] = {}


def call(target: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Calls the object named by `target` with the given arguments."""
    function = _resolved.get(target)
    if function is None:
        function = resolve(target)
    return _settle(function(*args, **kwargs))


# The key marking a nested call (the core owns it).
NESTED_CALL: str = _native.NESTED_CALL_KEY


def call_nested(target: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Calls `target` after replacing every nested call in its arguments by its result.

    A nested call is a dict `{"__snakebridge_call__": path, "args": [...], "kwargs": {...}}`
    (an integration config's `{:call, path, args, kwargs}`), made depth-first, so a worker's
    init can run `dspy.configure(lm=dspy.LM(...))` in one step.
    """
    return call(
        target, tuple(_build(arg) for arg in args), {k: _build(v) for k, v in kwargs.items()}
    )


def _build(value: Any) -> Any:
    """`value` with its nested calls made."""
    if isinstance(value, dict):
        if NESTED_CALL in value:
            args = value.get("args", [])
            kwargs = value.get("kwargs", {})
            return call_nested(value[NESTED_CALL], list(args), dict(kwargs))
        return {key: _build(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_build(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_build(item) for item in value)
    return value


def _settle(result: Any) -> Any:
    """The result itself, or for a coroutine (an `async def` called) its awaited value."""
    if inspect.iscoroutine(result):
        return asyncio.run(result)
    return result


def resolve(target: str) -> Any:
    """Returns the object named by the dotted path `target`, caching it."""
    parts = target.split(".")
    if not target or not all(part.isidentifier() for part in parts):
        raise TargetNotFound(target, "not a dotted path of Python identifiers")
    allowlist.check_target(target)
    module, consumed = _import_longest_prefix(target, parts)
    obj: Any = module
    owner = f"module {module.__name__!r}"
    for index in range(consumed, len(parts)):
        name = parts[index]
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise TargetNotFound(target, f"{owner} has no attribute {name!r}") from None
        owner = repr(".".join(parts[: index + 1]))
        allowlist.check_object(obj, ".".join(parts[: index + 1]))
    allowlist.check_object(obj, target)
    _resolved[target] = obj
    return obj


def _import_longest_prefix(target: str, parts: list[str]) -> tuple[Any, int]:
    """Imports the longest prefix of `parts` that is a module; returns it and its length.

    Only "this very module does not exist" moves on to a shorter prefix: an error raised
    while a module that does exist is being imported propagates as it is.
    """
    for length in range(len(parts), 0, -1):
        name = ".".join(parts[:length])
        try:
            return importlib.import_module(name), length
        except ModuleNotFoundError as exc:
            if exc.name is None or not _is_prefix_of(exc.name, name):
                raise
    raise TargetNotFound(target, f"module {parts[0]!r} not found")


def _is_prefix_of(module: str, name: str) -> bool:
    """Whether `module` is `name` or one of its parent packages."""
    return name == module or name.startswith(module + ".")


def describe_exception(exc: BaseException) -> tuple[str, str, list[str], str, str]:
    """Describes an exception for the wire: (type, module, mro, message, traceback).

    Each text is cut to `_native.MAX_ERROR_TEXT` characters (the core cuts them to as many
    bytes), and the message is sent once: the traceback stops before its last line when
    that line is only `Type: message` (the core puts it back, see
    `snakebridge_core::error`).
    """
    cls = type(exc)
    mro = [f"{klass.__module__}.{klass.__qualname__}" for klass in cls.__mro__]
    message = _safe_str(exc)
    return (
        cls.__qualname__,
        cls.__module__,
        mro,
        _clip(message),
        _clip(_format_traceback(exc, message), keep_end=True),
    )


def _clip(text: str, *, keep_end: bool = False) -> str:
    """`text` cut to fit `_native.MAX_ERROR_TEXT` UTF-8 bytes with a note of what was cut:
    its start, or its end (where a traceback's innermost frames are)."""
    limit = _native.MAX_ERROR_TEXT
    if len(text) <= limit // 4:
        return text  # even at four bytes a character
    if len(text) <= limit and len(text.encode("utf-8", "surrogatepass")) <= limit:
        return text
    room = limit - 64
    kept = text[-room:] if keep_end else text[:room]
    data = kept.encode("utf-8", "surrogatepass")
    data = data[-room:] if keep_end else data[:room]
    kept = data.decode("utf-8", "ignore")
    note = f"… ({len(text) - len(kept)} characters cut) …"
    return note + kept if keep_end else kept + note


def _safe_str(exc: BaseException) -> str:
    """`str(exc)`, or a placeholder when the exception cannot be printed."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the exception
        return f"<unprintable {type(exc).__qualname__} object>"


def _format_traceback(exc: BaseException, message: str) -> str:
    """The formatted traceback, without the frames of this module, and without its last
    line when that line is only the exception's type and `message` (sent on their own)."""
    try:
        tb = _skip_own_frames(exc.__traceback__)
        lines = traceback.format_exception(type(exc), exc, tb)
        cls = type(exc)
        name = cls.__qualname__
        if cls.__module__ not in ("__main__", "builtins"):
            name = f"{cls.__module__}.{name}"
        last = f"{name}: {message}\n" if message else f"{name}\n"
        if lines and lines[-1] == last:
            lines.pop()
        return "".join(lines)
    except Exception:  # noqa: BLE001 - formatting is best effort
        return ""


def _skip_own_frames(tb: TracebackType | None) -> TracebackType | None:
    """Drops the leading frames that belong to this module's entry points themselves."""
    own_codes = {
        call.__code__,
        resolve.__code__,
        _member.__code__,
        call_method.__code__,
        get_attr.__code__,
        set_attr.__code__,
    }
    while tb is not None and tb.tb_frame.f_code in own_codes and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def _member(obj: Any, name: str) -> Any:
    """Attribute `name` of `obj`, checked against the allowlist when there is one."""
    allowlist.check_name(name)
    allowlist.check_object(obj, f"<{type(obj).__qualname__} object>")
    value = getattr(obj, name)
    allowlist.check_object(value, f"<{type(obj).__qualname__} object>.{name}")
    return value


def call_method(obj: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Calls method `name` of `obj`."""
    return _settle(_member(obj, name)(*args, **kwargs))


def get_attr(obj: Any, name: str) -> Any:
    """Reads attribute `name` of `obj`."""
    return _member(obj, name)


def set_attr(obj: Any, name: str, value: Any) -> None:
    """Sets attribute `name` of `obj` to `value`."""
    allowlist.check_name(name)
    allowlist.check_object(obj, f"<{type(obj).__qualname__} object>")
    setattr(obj, name, value)

"""A hostile worker's code for SnakeBridge's end-to-end tests: Python that was handed one
Elixir function and rewrites the id inside the callable (as any code with `ctypes` can) to
call or release functions it was never given."""

from __future__ import annotations

import ctypes
import gc
import re
import secrets
from typing import Any

from snakebridge_agent import ElixirError, ElixirFunction, tools

_REPR = re.compile(r"<Elixir function #([0-9a-f]{32})>")

_kept: list[ElixirFunction] = []


def callable_id(fn: ElixirFunction) -> str:
    """The id `fn` crossed with (32 hex digits), as its repr shows it."""
    match = _REPR.fullmatch(repr(fn))
    if match is None:
        raise ValueError(f"not an Elixir function's repr: {fn!r}")
    return match.group(1)


def tool_id(name: str) -> str:
    """The id of the pool tool registered under `name`."""
    return callable_id(tools.get(name))


def _id_offset(fn: ElixirFunction) -> int:
    """Where in `fn`'s memory its id lies (found by its bytes, which are random)."""
    own = bytes.fromhex(callable_id(fn))
    memory = ctypes.string_at(id(fn), type(fn).__basicsize__)
    offset = memory.find(own)
    if offset < 0 or memory.find(own, offset + 1) >= 0:
        raise RuntimeError("the id is not in the callable's memory exactly once")
    return offset


def _rewrite(fn: ElixirFunction, offset: int, new_id: str) -> None:
    """Overwrites the id at `offset` in `fn`'s memory with `new_id`: the forgery under
    test."""
    ctypes.memmove(id(fn) + offset, bytes.fromhex(new_id), 16)
    if callable_id(fn) != new_id:
        raise RuntimeError("rewriting the id did not take")


def _outcome(fn: ElixirFunction, args: tuple[Any, ...]) -> dict[str, Any]:
    """What calling `fn` gave: `{"returned": value}` or the ElixirError it raised."""
    try:
        return {"returned": fn(*args)}
    except ElixirError as exc:
        return {"refused": str(exc), "elixir_type": getattr(exc, "elixir_type", None)}


def _guesses(fn: ElixirFunction, n: int) -> list[str]:
    """Ids a worker holding `fn` would try: small numbers (what a counter hands out), the
    neighbours of its own id, and `n` random ones."""
    own = int(callable_id(fn), 16)
    near = [(own + delta) % (1 << 128) for delta in (-1, 1)]
    ids = [f"{i:032x}" for i in [*range(0, 4), *near]]
    return ids + [secrets.token_hex(16) for _ in range(n)]


def forge(fn: ElixirFunction, ids: list[str], *args: Any) -> list[dict[str, Any]]:
    """Calls `fn` as if it were each of `ids` in turn, then gives it back its own id;
    returns what each call gave (see `_outcome`)."""
    own, offset = callable_id(fn), _id_offset(fn)
    try:
        outcomes = []
        for forged in ids:
            _rewrite(fn, offset, forged)
            outcomes.append(_outcome(fn, args))
        return outcomes
    finally:
        _rewrite(fn, offset, own)


def forge_guesses(fn: ElixirFunction, n: int, *args: Any) -> list[tuple[str, dict[str, Any]]]:
    """Calls `fn` as each id a worker would guess (see `_guesses`); returns each id with
    what the call gave."""
    ids = _guesses(fn, n)
    return list(zip(ids, forge(fn, ids, *args)))


def keep(fn: ElixirFunction) -> str:
    """Keeps `fn` for later calls; returns its id."""
    _kept.append(fn)
    return callable_id(fn)


def call_kept(index: int, *args: Any) -> dict[str, Any]:
    """Calls a kept callable; returns what it gave (see `_outcome`)."""
    return _outcome(_kept[index], args)


def release_kept_as(index: int, forged_id: str) -> None:
    """Drops kept callable `index` after rewriting its id to `forged_id`: the worker sends
    the release of `forged_id` before this call's answer."""
    fn = _kept.pop(index)
    _rewrite(fn, _id_offset(fn), forged_id)
    del fn
    gc.collect()


def forget_kept() -> None:
    """Drops every kept callable (each one's release goes with it)."""
    _kept.clear()
    gc.collect()

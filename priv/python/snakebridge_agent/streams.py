"""Iterating what a streaming call returned.

A call marked streaming may return a generator, an iterator, an async generator, an async
iterable or anything iterable. `iterate` turns each into a plain iterator that the worker
advances one element per chunk (as the consumer's credit allows) and closes when the
consumer stops early, so that the producer's cleanup (`finally`, `aclose`) runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import Any


def iterate(obj: Any) -> Iterator[Any]:
    """A plain iterator over `obj`'s elements, whether `obj` is sync or async."""
    if isinstance(obj, AsyncIterable):
        return _drive(obj.__aiter__())
    return iter(obj)


def _drive(iterator: AsyncIterator[Any]) -> Iterator[Any]:
    """Runs an async iterator on a private event loop, one element at a time."""
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                item = loop.run_until_complete(iterator.__anext__())
            except StopAsyncIteration:
                return
            yield item
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            loop.run_until_complete(aclose())
        loop.close()

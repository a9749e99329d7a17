"""Iterating streaming results (`snakebridge_agent.streams`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from snakebridge_agent import dispatch, streams


def test_iterate_is_exported_by_dispatch() -> None:
    assert dispatch.iterate is streams.iterate


def test_a_plain_iterable_becomes_its_iterator() -> None:
    assert list(streams.iterate([1, 2, 3])) == [1, 2, 3]
    assert list(streams.iterate(range(2))) == [0, 1]

    def numbers() -> Iterator[int]:
        yield from (4, 5)

    generator = numbers()
    assert streams.iterate(generator) is generator
    with pytest.raises(TypeError):
        streams.iterate(42)


def test_an_async_generator_is_driven_one_element_at_a_time() -> None:
    log: list[str] = []

    async def produce() -> AsyncIterator[int]:
        for i in range(3):
            log.append(f"made {i}")
            await asyncio.sleep(0)
            yield i
        log.append("done")

    iterator = streams.iterate(produce())
    assert log == []  # nothing runs before the first element is asked for
    assert next(iterator) == 0
    assert log == ["made 0"]
    assert list(iterator) == [1, 2]
    assert log == ["made 0", "made 1", "made 2", "done"]


def test_closing_early_runs_the_async_producers_cleanup() -> None:
    log: list[str] = []

    async def produce() -> AsyncIterator[int]:
        try:
            for i in range(100):
                yield i
        finally:
            await asyncio.sleep(0)
            log.append("cleaned up")

    iterator = streams.iterate(produce())
    assert [next(iterator), next(iterator)] == [0, 1]
    assert log == []
    iterator.close()  # what the worker does when the consumer stops early
    assert log == ["cleaned up"]


def test_an_async_iterable_without_aclose() -> None:
    class Countdown:
        def __init__(self, start: int) -> None:
            self.value = start

        def __aiter__(self) -> Countdown:
            return self

        async def __anext__(self) -> int:
            if self.value == 0:
                raise StopAsyncIteration
            self.value -= 1
            return self.value + 1

    assert list(streams.iterate(Countdown(3))) == [3, 2, 1]


def test_an_async_producers_error_reaches_the_consumer() -> None:
    async def produce() -> AsyncIterator[int]:
        yield 1
        raise ValueError("producer failed")

    iterator = streams.iterate(produce())
    assert next(iterator) == 1
    with pytest.raises(ValueError, match="producer failed"):
        next(iterator)
    with pytest.raises(StopIteration):
        next(iterator)

"""What a hostile library running inside a worker tries against the BEAM and the other
workers (see test/snakebridge/hostile_test.exs). Each attack records what it achieved, so
that the tests can check that it did reach its target and still changed nothing."""

from __future__ import annotations

import ctypes
import glob
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

_report: dict[str, Any] = {}


def _own_shared_dir() -> str | None:
    """The worker's shared-memory directory, found as an attacker would: from the path of
    a mapped file the BEAM sent (the call's tensor argument)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.rstrip("\n").split(maxsplit=5)[-1]
            if "/snakebridge-" in path:
                return os.path.dirname(path.removesuffix(" (deleted)"))
    return None


def tamper_with_result(probe: Any, size: int, delay: float) -> bytes:
    """Returns `size` bytes of b"A", keeping every file it sends through shared memory
    open, and `delay` seconds later overwrites and truncates them."""
    directory = _own_shared_dir()
    _report.clear()
    _report.update(directory=directory, caught=0, tampered=0, finished=False)
    if directory is None:
        return b""
    done = threading.Event()

    def keep_and_tamper() -> None:
        fds: dict[str, int] = {}
        deadline = time.monotonic() + 5.0
        while not fds and time.monotonic() < deadline:
            for entry in os.scandir(directory):
                if entry.name.startswith("w") and entry.name not in fds:
                    try:
                        fds[entry.name] = os.open(entry.path, os.O_RDWR)
                    except OSError:
                        pass
        _report["caught"] = len(fds)
        done.set()
        time.sleep(delay)
        for fd in fds.values():
            os.pwrite(fd, b"TAMPERED", 0)
            os.ftruncate(fd, 0)
            os.close(fd)
            _report["tampered"] += 1
        _report["finished"] = True

    threading.Thread(target=keep_and_tamper, daemon=True).start()
    del probe
    return b"A" * size


def report() -> dict[str, Any]:
    """What the last attack achieved."""
    return dict(_report)


def snoop(seconds: float) -> dict[str, Any]:
    """Looks for the other workers' shared-memory files for `seconds`, as a process of the
    application's own (unprivileged) user: the pool's directories are found from the
    BEAM's pid; returns what it could list and read. Runs in a thread of its own without
    capabilities (root may read anything: see `_unprivileged`)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(_unprivileged(_snoop, seconds))
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _snoop(seconds: float) -> dict[str, Any]:
    found = glob.glob(f"/dev/shm/snakebridge-{os.getppid()}-*")
    listable: list[str] = []
    read: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for pool_dir in found:
            try:
                connections = os.listdir(pool_dir)
            except OSError:  # not listable, or removed: another test's pool stopped
                continue
            listable.append(pool_dir)
            for connection in connections:
                for name in _listdir(os.path.join(pool_dir, connection)):
                    try:
                        with open(os.path.join(pool_dir, connection, name), "rb") as f:
                            read.append(f.read(16).decode("latin-1"))
                    except OSError:
                        pass
        time.sleep(0.0005)
    return {"pool_dirs": found, "listable": sorted(set(listable)), "read": read[:10]}


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _unprivileged(fn: Any, *args: Any) -> Any:
    """Runs `fn` in the calling thread with no effective capabilities (Linux keeps them
    per thread), so that a worker run as root here checks files as the app's own
    unprivileged user would: a root attacker reads every file of the machine, which no
    design of SnakeBridge's can prevent."""
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    saved = (_CapData * 2)(*data)
    for half in data:
        half.effective = 0
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    try:
        return fn(*args)
    finally:
        libc.capset(ctypes.byref(header), saved)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def huge_list(n: int) -> list[int]:
    """A result of `n` elements: 100M of them took the BEAM 5.9 GB per 50M before budgets."""
    return [0] * n


def huge_chunks(n: int) -> Iterator[list[int]]:
    """A stream whose second chunk is a list of `n` elements."""
    yield [1, 2, 3]
    yield [0] * n


def big_bytes(size: int) -> bytes:
    """`size` bytes: a result whose size alone is over a small `max_result_size`."""
    return b"x" * size


def call_back_with(fn: Any, n: int) -> Any:
    """Calls the Elixir function `fn` with a list of `n` elements, and reports what it
    raised, if anything."""
    try:
        return ["returned", fn([0] * n)]
    except Exception as error:  # noqa: BLE001 - what the Elixir side refused is the result
        return ["raised", type(error).__name__, str(error)]

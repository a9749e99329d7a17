"""The worker's entry point: parses the command line, prepares the socket, runs the server.

`python -m snakebridge_agent --socket PATH --token-file PATH [--threads N]
[--carrier local|grpc] [--allowed-modules a,b.c]`

The server itself is Rust (`snakebridge_agent._native.serve`): gRPC, or the core's local
carrier (length-prefixed frames without HTTP/2), which the core asks for. Once it listens it
writes `SNAKEBRIDGE_READY <protocol version> <pid>` to the process's standard output; from
then on the process exits by itself when its standard input reaches end of file or its
parent process dies. Python's `sys.stdout` points at `sys.stderr` while the server runs, so
that `print()` in user code cannot corrupt the line the core reads.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Sequence

from snakebridge_agent import _native, allowlist, dispatch

# When the core does not say (it always does); the core owns the default.
DEFAULT_THREADS: int = _native.DEFAULT_THREADS


class StartupError(Exception):
    """The worker cannot start; the message says why."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parses the worker's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m snakebridge_agent",
        description="A SnakeBridge Python worker (started by the SnakeBridge core).",
    )
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument("--token-file", required=True, help="file holding the per-run token")
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"size of the Python thread pool, 1 = strictly serial (default {DEFAULT_THREADS})",
    )
    parser.add_argument(
        "--carrier",
        choices=["local", "grpc"],
        default="grpc",
        help="how the socket is served: the core's local carrier or gRPC (default grpc)",
    )
    parser.add_argument(
        "--allowed-modules",
        default=None,
        help="comma-separated modules calls may reach (default: any)",
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def read_token(path: str) -> str:
    """Reads the per-run token, without surrounding whitespace."""
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StartupError(f"cannot read the token file {path!r}: {exc}") from exc
    if not token:
        raise StartupError(f"the token file {path!r} is empty")
    return token


def remove_stale_socket(path: str) -> None:
    """Removes a socket left at `path` by an earlier worker; refuses to remove anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StartupError(f"cannot inspect {path!r}: {exc}") from exc
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"{path!r} exists and is not a socket; refusing to replace it")
    try:
        os.unlink(path)
    except OSError as exc:
        raise StartupError(f"cannot remove the stale socket {path!r}: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the worker until it is told to stop; returns the process exit status."""
    args = parse_args(argv)
    if args.allowed_modules is not None:
        allowlist.configure(m for m in args.allowed_modules.split(",") if m)
    try:
        token = read_token(args.token_file)
        remove_stale_socket(args.socket)
        # The readiness line is written by the server straight to file descriptor 1; user
        # output goes to stderr from the start.
        sys.stdout.flush()
        sys.stdout = sys.stderr
        _native.serve(args.socket, token, args.threads, dispatch, args.carrier)
    except StartupError as exc:
        print(f"snakebridge_agent: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"snakebridge_agent: cannot start the server: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"snakebridge_agent: the server failed: {exc}", file=sys.stderr)
        return 1
    return 0

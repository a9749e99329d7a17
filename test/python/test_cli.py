"""The worker's entry point (`snakebridge_agent.cli`, `python -m snakebridge_agent`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snakebridge_agent import _native, allowlist, cli, dispatch
from snakebridge_agent.cli import DEFAULT_THREADS, StartupError

# -- parse_args ------------------------------------------------------------------------------


def test_parse_args_defaults() -> None:
    args = cli.parse_args(["--socket", "/run/s.sock", "--token-file", "/run/token"])
    assert args.socket == "/run/s.sock"
    assert args.token_file == "/run/token"
    assert args.threads == DEFAULT_THREADS == 4
    assert args.allowed_modules is None


def test_parse_args_all_options() -> None:
    args = cli.parse_args(
        ["--socket=s", "--token-file", "t", "--threads", "1", "--allowed-modules", "a,b.c"]
    )
    assert (args.socket, args.token_file, args.threads) == ("s", "t", 1)
    assert args.allowed_modules == "a,b.c"


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--token-file", "t"], "the following arguments are required: --socket"),
        (["--socket", "s"], "the following arguments are required: --token-file"),
        (["--socket", "s", "--token-file", "t", "--threads", "0"], "--threads must be at least 1"),
        (["--socket", "s", "--token-file", "t", "--threads", "-2"], "--threads must be at least 1"),
        (["--socket", "s", "--token-file", "t", "--threads", "two"], "invalid int value: 'two'"),
        (["--socket", "s", "--token-file", "t", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_parse_args_refuses_bad_command_lines(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m snakebridge_agent")
    assert complaint in err


# -- read_token ------------------------------------------------------------------------------


def test_read_token_strips_surrounding_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  s3cr3t token\n\n", encoding="utf-8")
    assert cli.read_token(str(path)) == "s3cr3t token"


@pytest.mark.parametrize("content", ["", " \n\t\n"])
def test_read_token_refuses_an_empty_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "token"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(StartupError, match=r"the token file '.*token' is empty"):
        cli.read_token(str(path))


def test_read_token_reports_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="cannot read the token file .*No such file") as info:
        cli.read_token(str(tmp_path / "missing"))
    assert isinstance(info.value.__cause__, FileNotFoundError)
    with pytest.raises(StartupError, match="cannot read the token file .*Is a directory"):
        cli.read_token(str(tmp_path))
    bad = tmp_path / "latin1"
    bad.write_bytes(b"caf\xe9")
    with pytest.raises(StartupError, match="cannot read the token file .*utf-8") as info:
        cli.read_token(str(bad))
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


# -- remove_stale_socket ---------------------------------------------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path (a Unix socket's path has ~100 bytes at most)."""
    path = Path(tempfile.mkdtemp(prefix="sb-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _make_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))


def test_remove_stale_socket_removes_a_socket(short_dir: Path) -> None:
    path = short_dir / "w.sock"
    _make_socket(path)
    assert path.is_socket()
    cli.remove_stale_socket(str(path))
    assert not os.path.lexists(path)


def test_remove_stale_socket_without_anything_there(short_dir: Path) -> None:
    cli.remove_stale_socket(str(short_dir / "nothing"))
    assert list(short_dir.iterdir()) == []


def test_remove_stale_socket_refuses_anything_else(short_dir: Path) -> None:
    regular = short_dir / "file"
    regular.write_text("keep me", encoding="utf-8")
    directory = short_dir / "dir"
    directory.mkdir()
    target = short_dir / "real.sock"
    _make_socket(target)
    link = short_dir / "link.sock"
    link.symlink_to(target)
    dangling = short_dir / "dangling"
    dangling.symlink_to(short_dir / "nowhere")
    for path in (regular, directory, link, dangling):
        with pytest.raises(
            StartupError, match="exists and is not a socket; refusing to replace it"
        ):
            cli.remove_stale_socket(str(path))
        assert os.path.lexists(path)
    assert regular.read_text(encoding="utf-8") == "keep me"
    assert target.is_socket()


def test_remove_stale_socket_reports_a_path_it_cannot_inspect(short_dir: Path) -> None:
    regular = short_dir / "file"
    regular.write_text("", encoding="utf-8")
    with pytest.raises(StartupError, match="cannot inspect .*Not a directory"):
        cli.remove_stale_socket(str(regular / "below"))


def test_remove_stale_socket_reports_a_socket_it_cannot_remove(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = short_dir / "w.sock"
    _make_socket(path)

    def refuse(path: Any) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cli.os, "unlink", refuse)
    with pytest.raises(StartupError, match="cannot remove the stale socket .*Permission denied"):
        cli.remove_stale_socket(str(path))


# -- main ------------------------------------------------------------------------------------


@pytest.fixture
def worker_files(short_dir: Path) -> tuple[Path, Path]:
    token = short_dir / "token"
    token.write_text("the-token\n", encoding="utf-8")
    return short_dir / "w.sock", token


@pytest.fixture
def fake_serve(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Replaces the Rust server with one that records how it was started and returns."""
    calls: list[tuple[Any, ...]] = []

    def serve(socket_path: str, token: str, threads: int, module: Any, carrier: str) -> None:
        calls.append((socket_path, token, threads, module, carrier, sys.stdout))

    monkeypatch.setattr(_native, "serve", serve)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # main() points it at stderr
    return calls


def test_main_starts_the_server(
    worker_files: tuple[Path, Path], fake_serve: list[tuple[Any, ...]]
) -> None:
    sock, token = worker_files
    _make_socket(sock)  # a stale one, left by an earlier worker
    status = cli.main(["--socket", str(sock), "--token-file", str(token), "--threads", "3"])
    assert status == 0
    assert fake_serve == [(str(sock), "the-token", 3, dispatch, "grpc", sys.stderr)]
    assert not os.path.lexists(sock)
    assert not allowlist.restricted()


def test_main_serves_the_carrier_it_is_asked_for(
    worker_files: tuple[Path, Path], fake_serve: list[tuple[Any, ...]]
) -> None:
    sock, token = worker_files
    assert cli.main(["--socket", str(sock), "--token-file", str(token), "--carrier", "local"]) == 0
    assert [call[4] for call in fake_serve] == ["local"]
    with pytest.raises(SystemExit):
        cli.parse_args(["--socket", str(sock), "--token-file", str(token), "--carrier", "h2"])


def test_main_configures_the_allowlist(
    worker_files: tuple[Path, Path], fake_serve: list[tuple[Any, ...]]
) -> None:
    sock, token = worker_files
    argv = ["--socket", str(sock), "--token-file", str(token), "--allowed-modules", "json,,os.path"]
    assert cli.main(argv) == 0
    assert allowlist.restricted()
    assert allowlist.allows("json.decoder")
    assert allowlist.allows("os.path")
    assert not allowlist.allows("os")
    assert not allowlist.allows("")


def test_main_reports_startup_errors(
    worker_files: tuple[Path, Path],
    fake_serve: list[tuple[Any, ...]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sock, token = worker_files
    missing = token.parent / "missing-token"
    assert cli.main(["--socket", str(sock), "--token-file", str(missing)]) == 1
    assert capsys.readouterr().err.startswith("snakebridge_agent: cannot read the token file")
    sock.write_text("not a socket", encoding="utf-8")
    assert cli.main(["--socket", str(sock), "--token-file", str(token)]) == 1
    assert "exists and is not a socket" in capsys.readouterr().err
    assert sock.read_text(encoding="utf-8") == "not a socket"
    assert fake_serve == []


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            OSError("cannot listen on /x: Address in use"),
            "cannot start the server: cannot listen on /x: Address in use",
        ),
        (RuntimeError("gRPC server failed: boom"), "the server failed: gRPC server failed: boom"),
    ],
)
def test_main_reports_server_failures(
    worker_files: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    said: str,
) -> None:
    def serve(*args: Any) -> None:
        raise error

    monkeypatch.setattr(_native, "serve", serve)
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    sock, token = worker_files
    assert cli.main(["--socket", str(sock), "--token-file", str(token)]) == 1
    assert capsys.readouterr().err == f"snakebridge_agent: {said}\n"


def test_main_with_the_real_server_and_a_socket_it_cannot_bind(
    worker_files: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The Rust server fails before it serves anything: the directory does not exist.
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    _, token = worker_files
    sock = token.parent / "no-such-dir" / "w.sock"
    assert cli.main(["--socket", str(sock), "--token-file", str(token)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"snakebridge_agent: cannot start the server: cannot listen on {sock}")


# -- python -m snakebridge_agent ----------------------------------------------------------------


def _agent(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(cli.__file__).parents[1])  # priv/python
    return subprocess.run(
        [sys.executable, "-m", "snakebridge_agent", *argv],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_module_entry_point_help() -> None:
    done = _agent("--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: python -m snakebridge_agent")
    assert "--allowed-modules" in done.stdout


def test_module_entry_point_exit_status(short_dir: Path) -> None:
    done = _agent("--socket", str(short_dir / "w.sock"), "--token-file", str(short_dir / "none"))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("snakebridge_agent: cannot read the token file")

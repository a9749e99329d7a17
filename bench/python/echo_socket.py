"""Length-prefixed frame echo server on a Unix socket (physical-floor baseline).

Usage: echo_socket.py SOCKET_PATH

Frames are a 4-byte big-endian length followed by the payload. Every complete
frame received is echoed back unchanged and in order; frames pipelined on one
connection are answered in FIFO order, and all complete frames from one read
are written back with a single send. Each connection is served by its own
thread; the process runs until killed.
"""

import os
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import announce_ready, exit_when_orphaned, remove_stale_socket  # noqa: E402

_HEADER = struct.Struct(">I")
_RECV_SIZE = 1 << 16


def serve_connection(conn: socket.socket) -> None:
    buf = bytearray()
    unpack_from = _HEADER.unpack_from
    header_len = _HEADER.size
    recv = conn.recv
    sendall = conn.sendall
    try:
        while True:
            chunk = recv(_RECV_SIZE)
            if not chunk:
                return
            buf += chunk
            # Find the end of the last complete frame in the buffer.
            end = 0
            available = len(buf)
            while available - end >= header_len:
                (length,) = unpack_from(buf, end)
                frame_end = end + header_len + length
                if frame_end > available:
                    break
                end = frame_end
            if end:
                sendall(buf[:end])
                del buf[:end]
    except (ConnectionResetError, BrokenPipeError):
        return
    finally:
        conn.close()


def main() -> int:
    if len(sys.argv) != 2:
        sys.stderr.write("usage: echo_socket.py SOCKET_PATH\n")
        return 2
    path = sys.argv[1]
    exit_when_orphaned()
    remove_stale_socket(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    announce_ready(path)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())

"""Plain grpcio unary echo server on a Unix socket (pure-Python gRPC baseline).

Usage: grpcio_echo_server.py SOCKET_PATH [THREADS]

Serves /bench.Echo/Echo with identity (de)serializers: the handler receives
the raw request bytes and returns them unchanged, so no protoc-generated code
is needed. The request bytes are a valid bench.EchoMessage encoding and so is
the echoed response. Runs until killed (SIGTERM/SIGINT stop it gracefully).
"""

import os
import signal
import sys
from concurrent import futures

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import announce_ready, exit_when_orphaned, remove_stale_socket  # noqa: E402


def _identity(data: bytes) -> bytes:
    return data


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def main() -> int:
    if len(sys.argv) not in (2, 3):
        sys.stderr.write("usage: grpcio_echo_server.py SOCKET_PATH [THREADS]\n")
        return 2
    path = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) == 3 else 4
    exit_when_orphaned()
    remove_stale_socket(path)

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                _echo,
                request_deserializer=_identity,
                response_serializer=_identity,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix:{path}")
    server.start()

    def stop(_signum, _frame):
        server.stop(grace=None)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    announce_ready(path)
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())

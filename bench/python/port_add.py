"""Erlang-port baseline: the cheapest out-of-process bridge an Elixir user could write by
hand, a `Port` opened with `{:packet, 4}` on this script.

Each packet on stdin holds two big-endian signed 64-bit integers; the script answers each
with one packet holding their sum from `operator.add` (what the SnakeBridge rows call), in
order. It exits when stdin closes (the port's owner died or closed it).
"""

import operator
import struct
import sys

_HEADER = struct.Struct(">I")
_PAIR = struct.Struct(">qq")
_ANSWER = struct.Struct(">Iq")


def main() -> int:
    read = sys.stdin.buffer.read
    out = sys.stdout.buffer
    add = operator.add
    while True:
        head = read(_HEADER.size)
        if len(head) < _HEADER.size:
            return 0
        (length,) = _HEADER.unpack(head)
        a, b = _PAIR.unpack(read(length))
        out.write(_ANSWER.pack(8, add(a, b)))
        out.flush()


if __name__ == "__main__":
    sys.exit(main())

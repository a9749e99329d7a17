"""The Python half of a SnakeBridge worker.

The worker process is started by the SnakeBridge core (`python -m snakebridge_agent`); the
gRPC server lives in the Rust extension `snakebridge_agent._native`, which calls into
`snakebridge_agent.dispatch` to run Python code.

`ElixirFunction` is the type of the callables that stand for Elixir functions passed to
Python; calling one runs the function in the BEAM, and `ElixirError` is what it raises when
the Elixir function fails.
"""

from snakebridge_agent._native import ElixirError, ElixirFunction

__all__ = ["ElixirError", "ElixirFunction", "dispatch", "registry", "server", "streams"]

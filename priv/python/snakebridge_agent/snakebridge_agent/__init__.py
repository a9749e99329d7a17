"""The Python half of a SnakeBridge worker.

The worker process is started by the SnakeBridge core (`python -m snakebridge_agent`); the
gRPC server lives in the Rust extension `snakebridge_agent._native`, which calls into
`snakebridge_agent.dispatch` to run Python code.
"""

__all__ = ["dispatch", "server"]

"""`snakebridge_agent._native`: the Rust half of a SnakeBridge Python worker."""

import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol, final

__all__ = [
    "serve",
    "registry_size",
    "ElixirFunction",
    "TensorBuffer",
    "ElixirError",
    "DEFAULT_THREADS",
    "NESTED_CALL_KEY",
    "MAX_ERROR_TEXT",
    "ALWAYS_ALLOWED",
    "DTYPES",
]

# The core's cross-language constants (`snakebridge_core::contract`).

DEFAULT_THREADS: int
"""Python threads per worker when the pool does not say."""

NESTED_CALL_KEY: str
"""The key marking a map as a call to make inside an init call's arguments."""

MAX_ERROR_TEXT: int
"""The most bytes of each text of an error sent to the BEAM (message, traceback, class names)."""

ALWAYS_ALLOWED: tuple[str, ...]
"""What every restricted pool may still reach: the tool registry and the nested-call runner."""

DTYPES: frozenset[str]
"""numpy's names of the dtypes tensors may have."""

class _Dispatch(Protocol):
    """The agent's dispatch module (`snakebridge_agent.dispatch`), as `serve` reads it."""

    # Read-only members (properties), so that the module's own, narrower types match.
    @property
    def call(self) -> Callable[[str, tuple[Any, ...], dict[str, Any]], Any]: ...
    @property
    def call_method(self) -> Callable[[Any, str, tuple[Any, ...], dict[str, Any]], Any]: ...
    @property
    def get_attr(self) -> Callable[[Any, str], Any]: ...
    @property
    def set_attr(self) -> Callable[[Any, str, Any], None]: ...
    @property
    def iterate(self) -> Callable[[Any], Iterator[Any]]: ...
    @property
    def describe_exception(
        self,
    ) -> Callable[[BaseException], tuple[str, str, list[str], str, str]]: ...
    @property
    def TargetNotFound(self) -> type[BaseException]: ...
    @property
    def NotAllowed(self) -> type[BaseException]: ...

def serve(
    socket_path: str | os.PathLike[str],
    token: str,
    threads: int,
    dispatch: _Dispatch,
    carrier: str = "grpc",
) -> None:
    """Serves the worker protocol on the Unix socket `socket_path` until the process ends."""

def registry_size() -> int:
    """How many objects the worker's registry holds for the BEAM."""

@final
class ElixirFunction:
    """A Python callable that runs an Elixir function in the BEAM."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the function: positional arguments are its arguments, keywords one more (a map)."""

    def __repr__(self) -> str:
        """`<Elixir function #ID>`, ID being the core's callback id (32 hex digits)."""

@final
class TensorBuffer:
    """A tensor's bytes, read-only, for numpy's array interface."""

    @property
    def __array_interface__(self) -> dict[str, Any]:
        """numpy's array interface (version 3): one read-only, contiguous run of `uint8`."""

    def __len__(self) -> int:
        """The number of bytes."""

class ElixirError(Exception):
    """An Elixir function called from Python raised (or could not be called)."""

    elixir_type: str
    """The Elixir exception's module (set when the core sent the exception)."""
    elixir_stacktrace: str
    """The Elixir exception's stacktrace (set when the core sent the exception)."""

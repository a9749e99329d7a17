"""The Python half of a SnakeBridge worker.

The worker process is started by the SnakeBridge core (`python -m snakebridge_agent`), with
this package's directory on `PYTHONPATH`: nothing is installed into the interpreter. The
server lives in the Rust extension `snakebridge_agent._native`, built once for CPython's
stable ABI (3.10 and newer); the core names its file in `SNAKEBRIDGE_AGENT_NATIVE`, and
without that variable it is imported from this package's directory as usual. The
extension calls into `snakebridge_agent.dispatch` to run Python code.

`ElixirFunction` is the type of the callables that stand for Elixir functions passed to
Python; calling one runs the function in the BEAM, and `ElixirError` is what it raises when
the Elixir function fails.
"""

import os
import sys

MINIMUM_PYTHON = (3, 10)
NATIVE_ENV = "SNAKEBRIDGE_AGENT_NATIVE"

if sys.version_info < MINIMUM_PYTHON:
    raise ImportError(
        "snakebridge_agent needs CPython %d.%d or newer, and %s is %s"
        % (MINIMUM_PYTHON + (sys.executable, sys.version.split()[0]))
    )


def _load_native() -> None:
    """Loads the extension named by `SNAKEBRIDGE_AGENT_NATIVE` as `snakebridge_agent._native`."""
    path = os.environ.get(NATIVE_ENV)
    if not path or __name__ + "._native" in sys.modules:
        return
    import importlib.util

    if not os.path.isfile(path):
        raise ImportError(
            f"the worker's native extension {path} is missing: SnakeBridge's Mix compiler "
            "puts it there (`mix compile`, or `mix deps.compile snakebridge` in an app)"
        )
    spec = importlib.util.spec_from_file_location(__name__ + "._native", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python extension module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    # As an import from the package's directory would: `snakebridge_agent._native`.
    globals()["_native"] = module


_load_native()

from snakebridge_agent._native import ElixirError, ElixirFunction  # noqa: E402

__all__ = ["ElixirError", "ElixirFunction", "dispatch", "cli", "registry", "streams"]

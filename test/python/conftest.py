"""Shared set-up of the agent's Python tests.

The agent is not installed anywhere: a worker gets it through `PYTHONPATH` and names its
compiled half in `SNAKEBRIDGE_AGENT_NATIVE` (see `snakebridge_agent/__init__.py`). These
tests do the same, defaulting both to this checkout (`mix compile` builds the extension),
so that a plain `pytest test/python` works as well as the command `make test` runs.
"""

from __future__ import annotations

import importlib
import itertools
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENT_DIR = ROOT / "priv" / "python"
NATIVE = ROOT / "priv" / "native" / "snakebridge_agent_native.abi3.so"

if str(AGENT_DIR) not in sys.path:
    sys.path.insert(0, str(AGENT_DIR))
os.environ.setdefault("SNAKEBRIDGE_AGENT_NATIVE", str(NATIVE))
if not os.path.isfile(os.environ["SNAKEBRIDGE_AGENT_NATIVE"]):
    pytest.exit(
        f"the worker's extension {os.environ['SNAKEBRIDGE_AGENT_NATIVE']} is missing: "
        "run `mix compile` first",
        returncode=4,
    )

from snakebridge_agent import allowlist, dispatch, tools  # noqa: E402

_names = itertools.count()


@pytest.fixture(autouse=True)
def _isolate_agent_state() -> Iterator[None]:
    """Every test starts with no allowlist, an empty target cache and no tools."""
    saved_allowed = allowlist._allowed
    saved_resolved = dict(dispatch._resolved)
    saved_tools = dict(tools._tools)
    allowlist.configure(None)
    dispatch._resolved.clear()
    tools._tools.clear()
    yield
    allowlist._allowed = saved_allowed
    dispatch._resolved.clear()
    dispatch._resolved.update(saved_resolved)
    tools._tools.clear()
    tools._tools.update(saved_tools)


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Module names no other test (nor an earlier run of this one) has imported."""

    def make(prefix: str) -> str:
        return f"{prefix}_{os.getpid()}_{next(_names)}"

    return make


@pytest.fixture
def make_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[dict[str, str]], Path]]:
    """Writes modules (`{"relative/path.py": source}`) under a directory put on `sys.path`;
    the modules imported from it are forgotten afterwards."""
    root = tmp_path / "modules"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    before = set(sys.modules)

    def make(files: dict[str, str]) -> Path:
        for relative, source in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source), encoding="utf-8")
        importlib.invalidate_caches()
        return root

    yield make
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        if str(root) in str(getattr(module, "__file__", None) or ""):
            del sys.modules[name]

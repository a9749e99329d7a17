"""The worker's object registry, seen from Python.

Objects that cross to Elixir as references are held by the registry in the extension
(`snakebridge_agent._native`); this module lets Python code (and tests, through the bridge)
observe it.
"""

from __future__ import annotations

from snakebridge_agent import _native


def size() -> int:
    """How many objects the BEAM currently holds references to in this worker."""
    return int(_native.registry_size())

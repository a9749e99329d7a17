"""Elixir functions exported to Python by name (a pool's `tools` option).

Every worker of such a pool registers each tool here when it starts, so Python code can
reach them as `snakebridge_agent.tools.<python_name>` (or `tools.get(name)`), for example
to hand them to a library that calls tools by name.
"""

from __future__ import annotations

from typing import Any

_tools: dict[str, Any] = {}


def register(name: str, function: Any) -> None:
    """Registers `function` (an Elixir function) under `name`."""
    if not name.isidentifier():
        raise ValueError(f"tool name {name!r} is not a Python identifier")
    _tools[name] = function


def get(name: str) -> Any:
    """The tool registered under `name`; KeyError when there is none."""
    return _tools[name]


def names() -> list[str]:
    """The names of the registered tools."""
    return sorted(_tools)


def __getattr__(name: str) -> Any:
    try:
        return _tools[name]
    except KeyError:
        raise AttributeError(f"no SnakeBridge tool named {name!r}") from None

"""Elixir functions exported to Python by name (`snakebridge_agent.tools`)."""

from __future__ import annotations

import pytest

from snakebridge_agent import tools


def test_register_get_names_and_attribute_access() -> None:
    def search(query: str) -> str:
        return f"results for {query}"

    def lookup() -> None:
        pass

    assert tools.names() == []
    tools.register("search", search)
    tools.register("lookup", lookup)
    assert tools.get("search") is search
    assert tools.search is search  # module attribute: `snakebridge_agent.tools.search`
    assert tools.names() == ["lookup", "search"]
    tools.register("search", lookup)  # registering again replaces
    assert tools.get("search") is lookup


def test_a_tool_name_must_be_an_identifier() -> None:
    for name in ("", "two words", "1st", "a.b", "dash-ed"):
        with pytest.raises(ValueError, match="is not a Python identifier"):
            tools.register(name, print)
    assert tools.names() == []


def test_missing_tools() -> None:
    with pytest.raises(KeyError):
        tools.get("nothing")
    with pytest.raises(AttributeError, match="no SnakeBridge tool named 'nothing'"):
        _ = tools.nothing
    assert not hasattr(tools, "nothing")

"""The agent's allowlist (`snakebridge_agent.allowlist`)."""

from __future__ import annotations

import collections
import json
import os
import posixpath
import sys

import pytest

from snakebridge_agent import allowlist
from snakebridge_agent.allowlist import ALWAYS_ALLOWED, NotAllowed


def test_without_an_allowlist_everything_passes() -> None:
    assert not allowlist.restricted()
    assert allowlist.allows("anything.at.all")
    allowlist.check_target("os.system")
    allowlist.check_target("sys._getframe")
    allowlist.check_name("__class__")
    allowlist.check_object(os, "os")
    allowlist.check_object(os.system, "os.system")


def test_configure_adds_the_always_allowed_entries_sorted_and_deduplicated() -> None:
    allowlist.configure(["json", "collections", "json"])
    assert allowlist.restricted()
    assert allowlist._allowed == tuple(sorted({"json", "collections", *ALWAYS_ALLOWED}))


def test_configure_accepts_a_generator_and_none_lifts_the_list() -> None:
    allowlist.configure(m for m in "json,,os".split(",") if m)
    assert allowlist._allowed == tuple(sorted({"json", "os", *ALWAYS_ALLOWED}))
    allowlist.configure(None)
    assert not allowlist.restricted()
    assert allowlist._allowed is None


def test_an_empty_allowlist_still_allows_the_agents_own_entry_points() -> None:
    allowlist.configure([])
    assert allowlist.restricted()
    assert allowlist.allows("snakebridge_agent.tools")
    assert allowlist.allows("snakebridge_agent.tools.register")
    assert allowlist.allows("snakebridge_agent.dispatch.call_nested")
    assert not allowlist.allows("snakebridge_agent.dispatch")
    assert not allowlist.allows("snakebridge_agent.dispatch.call")
    assert not allowlist.allows("json")


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("json", True),
        ("json.decoder", True),
        ("json.decoder.JSONDecoder", True),
        ("jsonschema", False),  # a prefix only counts at a dot
        ("js", False),
        ("os", False),
        ("", False),
    ],
)
def test_allows_matches_whole_dotted_components(module: str, allowed: bool) -> None:
    allowlist.configure(["json"])
    assert allowlist.allows(module) is allowed


def test_allows_maps_c_modules_to_the_module_that_re_exports_them() -> None:
    allowlist.configure(["os", "operator"])
    assert allowlist.allows("posix")
    assert allowlist.allows("nt")
    assert allowlist.allows("_operator")
    assert not allowlist.allows("_functools")
    allowlist.configure(["functools"])
    assert allowlist.allows("_functools")
    assert not allowlist.allows("posix")


def test_allows_the_module_an_allowed_name_imports() -> None:
    # `os.path` is `posixpath`: functions defined there carry that module's name.
    assert sys.modules["os.path"] is posixpath
    allowlist.configure(["os.path"])
    assert allowlist.allows("posixpath")
    assert allowlist.allows("os.path.join")
    assert not allowlist.allows("os")
    assert not allowlist.allows("genericpath")


def test_check_target_refuses_a_target_outside_the_list_and_names_the_list() -> None:
    allowlist.configure(["json"])
    allowlist.check_target("json.dumps")
    with pytest.raises(NotAllowed) as info:
        allowlist.check_target("os.system")
    message = str(info.value)
    assert "'os.system' is outside the pool's allowed modules" in message
    assert "(allowed_modules: json, snakebridge_agent.dispatch.call_nested," in message


@pytest.mark.parametrize(
    "target", ["json._default_decoder", "_json.scanstring", "json.decoder.__dict__"]
)
def test_check_target_refuses_private_components(target: str) -> None:
    allowlist.configure(["json", "_json"])
    with pytest.raises(NotAllowed, match="the private name '_"):
        allowlist.check_target(target)


def test_not_allowed_is_a_permission_error() -> None:
    assert issubclass(NotAllowed, PermissionError)


def test_check_name_refuses_private_names_only_under_an_allowlist() -> None:
    allowlist.check_name("_private")
    allowlist.configure(["json"])
    allowlist.check_name("public_name")
    for name in ("_private", "__class__", "__globals__", "_"):
        with pytest.raises(NotAllowed, match=repr(name)):
            allowlist.check_name(name)


def test_check_object_refuses_a_module_outside_the_list() -> None:
    allowlist.configure(["json"])
    allowlist.check_object(json, "json")
    allowlist.check_object(sys.modules["json.decoder"], "json.decoder")
    with pytest.raises(NotAllowed, match="'json.os' is the module 'os'"):
        allowlist.check_object(os, "json.os")


def test_check_object_refuses_functions_and_classes_defined_outside_the_list() -> None:
    allowlist.configure(["json"])
    allowlist.check_object(json.dumps, "json.dumps")
    allowlist.check_object(json.JSONDecoder, "json.JSONDecoder")
    with pytest.raises(NotAllowed, match="'json.x' is defined in 'posixpath'"):
        allowlist.check_object(os.path.join, "json.x")
    with pytest.raises(NotAllowed, match="defined in 'collections'"):
        allowlist.check_object(collections.OrderedDict, "json.y")
    # A C function: `os.system` is defined in `posix`.
    with pytest.raises(NotAllowed, match="defined in 'posix'"):
        allowlist.check_object(os.system, "json.z")


def test_check_object_accepts_a_c_function_through_its_alias() -> None:
    allowlist.configure(["os"])
    assert os.system.__module__ == "posix"
    allowlist.check_object(os.system, "os.system")


def test_check_object_lets_plain_values_through() -> None:
    allowlist.configure(["json"])
    for value in (42, "text", [1, 2], object(), json.JSONDecoder()):
        allowlist.check_object(value, "json.value")


def test_check_object_skips_the_always_allowed_paths() -> None:
    allowlist.configure(["json"])
    allowlist.check_object(os.system, "snakebridge_agent.dispatch.call_nested")
    allowlist.check_object(os, "snakebridge_agent.tools")
    with pytest.raises(NotAllowed):
        allowlist.check_object(os, "snakebridge_agent.tools.os")

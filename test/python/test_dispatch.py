"""Target resolution, calls and exception descriptions (`snakebridge_agent.dispatch`)."""

from __future__ import annotations

import collections
import importlib
import operator
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from snakebridge_agent import _native, allowlist, dispatch
from snakebridge_agent.dispatch import CallCancelled, NotAllowed, TargetNotFound

# -- resolve ---------------------------------------------------------------------------------


def test_resolve_imports_the_longest_module_prefix_and_walks_the_rest() -> None:
    assert dispatch.resolve("os.path.join") is os.path.join
    assert dispatch.resolve("collections.OrderedDict") is collections.OrderedDict
    assert dispatch.resolve("collections.OrderedDict.fromkeys") == collections.OrderedDict.fromkeys
    assert dispatch.resolve("os.path") is os.path
    assert dispatch.resolve("os") is os


def test_resolve_caches_successes() -> None:
    dispatch.resolve("operator.add")
    assert dispatch._resolved["operator.add"] is operator.add


@pytest.mark.parametrize("target", ["", "os..path", ".os", "os.", "1abc.f", "os.path-join", "a b"])
def test_resolve_refuses_what_is_not_a_dotted_path(target: str) -> None:
    with pytest.raises(TargetNotFound) as info:
        dispatch.resolve(target)
    assert info.value.target == target
    assert info.value.reason == "not a dotted path of Python identifiers"
    assert str(info.value) == f"cannot resolve {target!r}: not a dotted path of Python identifiers"
    assert target not in dispatch._resolved


def test_target_not_found_is_a_lookup_error() -> None:
    assert issubclass(TargetNotFound, LookupError)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("no_such_module_sb_xyz.f", "module 'no_such_module_sb_xyz' not found"),
        ("no_such_module_sb_xyz", "module 'no_such_module_sb_xyz' not found"),
        ("os.no_such_attribute", "module 'os' has no attribute 'no_such_attribute'"),
        ("os.path.join.nope", "'os.path.join' has no attribute 'nope'"),
        ("collections.OrderedDict.nope", "'collections.OrderedDict' has no attribute 'nope'"),
    ],
)
def test_resolve_says_which_part_is_missing(target: str, reason: str) -> None:
    with pytest.raises(TargetNotFound) as info:
        dispatch.resolve(target)
    assert info.value.reason == reason
    assert target not in dispatch._resolved


def test_resolve_names_the_module_it_imported_when_an_attribute_is_missing() -> None:
    # `os.path` is `posixpath`: the message names the module that was searched.
    with pytest.raises(TargetNotFound, match="module 'posixpath' has no attribute 'nope'"):
        dispatch.resolve("os.path.nope")


def test_an_error_inside_an_existing_module_propagates(
    make_modules: Callable[[dict[str, str]], Path], unique_name: Callable[[str], str]
) -> None:
    missing_dep = unique_name("sb_missing_dep")
    broken = unique_name("sb_broken")
    failing = unique_name("sb_failing")
    make_modules(
        {
            f"{broken}.py": f"import {missing_dep}\ndef f(): pass\n",
            f"{failing}.py": "raise ValueError('broken at import')\n",
        }
    )
    with pytest.raises(ModuleNotFoundError) as info:
        dispatch.resolve(f"{broken}.f")
    assert info.value.name == missing_dep
    with pytest.raises(ValueError, match="broken at import"):
        dispatch.resolve(f"{failing}.f")


def test_a_missing_submodule_of_a_package_falls_back_to_an_attribute(
    make_modules: Callable[[dict[str, str]], Path], unique_name: Callable[[str], str]
) -> None:
    pkg = unique_name("sb_pkg")
    make_modules({f"{pkg}/__init__.py": "def helper():\n    return 'from the package'\n"})
    assert dispatch.resolve(f"{pkg}.helper")() == "from the package"


def test_a_failed_resolution_is_not_cached(
    make_modules: Callable[[dict[str, str]], Path], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("sb_later")
    with pytest.raises(TargetNotFound):
        dispatch.resolve(f"{name}.f")
    make_modules({f"{name}.py": "def f():\n    return 'installed later'\n"})
    assert dispatch.call(f"{name}.f", (), {}) == "installed later"


# -- calls -----------------------------------------------------------------------------------


def test_call_passes_positional_and_keyword_arguments() -> None:
    assert dispatch.call("operator.add", (2, 3), {}) == 5
    assert dispatch.call("builtins.int", ("ff",), {"base": 16}) == 255
    assert dispatch.call("builtins.sorted", ([3, 1, 2],), {"reverse": True}) == [3, 2, 1]


def test_call_uses_the_cached_target() -> None:
    dispatch._resolved["sb_not_a_module.f"] = lambda x: x * 2
    assert dispatch.call("sb_not_a_module.f", (21,), {}) == 42


def test_call_awaits_a_coroutine(
    make_modules: Callable[[dict[str, str]], Path], unique_name: Callable[[str], str]
) -> None:
    name = unique_name("sb_async")
    make_modules(
        {
            f"{name}.py": """
            import asyncio

            async def double(x):
                await asyncio.sleep(0)
                return 2 * x
            """
        }
    )
    assert dispatch.call(f"{name}.double", (21,), {}) == 42


def test_call_raises_what_the_target_raises() -> None:
    with pytest.raises(ZeroDivisionError):
        dispatch.call("operator.truediv", (1, 0), {})


def test_call_of_a_non_callable_target_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        dispatch.call("os.sep", (), {})


def _nested(target: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {dispatch.NESTED_CALL: target, "args": list(args), "kwargs": kwargs}


def test_call_nested_makes_the_nested_calls_first() -> None:
    result = dispatch.call_nested(
        "builtins.dict",
        [],
        {
            "plain": 1,
            "abs": _nested("builtins.abs", -7),
            "in_list": [_nested("builtins.len", "abc"), 4],
            "in_tuple": (_nested("builtins.str", 5),),
            "in_dict": {"x": _nested("builtins.int", "ff", base=16)},
            # depth-first: the inner call's result is the outer call's argument
            "deep": _nested("builtins.abs", _nested("operator.sub", 2, 9)),
        },
    )
    assert result == {
        "plain": 1,
        "abs": 7,
        "in_list": [3, 4],
        "in_tuple": ("5",),
        "in_dict": {"x": 255},
        "deep": 7,
    }


def test_call_nested_defaults_missing_args_and_kwargs() -> None:
    assert (
        dispatch.call_nested("builtins.list", [{dispatch.NESTED_CALL: "builtins.tuple"}], {}) == []
    )


def test_call_nested_checks_every_nested_target_against_the_allowlist() -> None:
    allowlist.configure(["operator"])
    assert dispatch.call_nested("operator.add", [_nested("operator.neg", 1), 3], {}) == 2
    with pytest.raises(NotAllowed, match="'os.getcwd' is outside"):
        dispatch.call_nested("operator.add", [_nested("os.getcwd"), 3], {})


class _Counter:
    def __init__(self) -> None:
        self.count = 0
        self._secret = "hidden"
        self.module = os

    def add(self, n: int, *, times: int = 1) -> int:
        self.count += n * times
        return self.count

    async def later(self, value: str) -> str:
        return value.upper()


def test_call_method_get_attr_and_set_attr() -> None:
    counter = _Counter()
    assert dispatch.call_method(counter, "add", (2,), {"times": 3}) == 6
    assert dispatch.get_attr(counter, "count") == 6
    dispatch.set_attr(counter, "count", 10)
    assert counter.count == 10
    assert dispatch.call_method(counter, "later", ("shout",), {}) == "SHOUT"
    with pytest.raises(AttributeError):
        dispatch.get_attr(counter, "missing")


def test_members_are_checked_under_an_allowlist() -> None:
    allowlist.configure(["json"])
    counter = _Counter()
    assert dispatch.get_attr(counter, "count") == 0
    with pytest.raises(NotAllowed, match="'_secret'"):
        dispatch.get_attr(counter, "_secret")
    with pytest.raises(NotAllowed, match="'__class__'"):
        dispatch.call_method(counter, "__class__", (), {})
    with pytest.raises(NotAllowed, match="'_secret'"):
        dispatch.set_attr(counter, "_secret", "changed")
    assert counter._secret == "hidden"
    # an attribute read must not hand out a module outside the list
    with pytest.raises(NotAllowed, match=r"<_Counter object>\.module' is the module 'os'"):
        dispatch.get_attr(counter, "module")
    # nor may a module outside the list be used as the object
    with pytest.raises(NotAllowed, match="is the module 'os'"):
        dispatch.get_attr(os, "sep")
    with pytest.raises(NotAllowed, match="is the module 'os'"):
        dispatch.set_attr(os, "sb_marker", 1)
    assert not hasattr(os, "sb_marker")


def test_resolve_under_an_allowlist(
    make_modules: Callable[[dict[str, str]], Path], unique_name: Callable[[str], str]
) -> None:
    allowed = unique_name("sb_allowed")
    other = unique_name("sb_other")
    make_modules(
        {
            f"{allowed}.py": """
            import os
            from os.path import join

            def own():
                return "own"

            def _private():
                return "private"
            """,
            f"{other}.py": "def f():\n    return 'other'\n",
        }
    )
    allowlist.configure([allowed])
    assert dispatch.call(f"{allowed}.own", (), {}) == "own"
    # a module met on the way
    with pytest.raises(NotAllowed, match=f"'{allowed}.os' is the module 'os'"):
        dispatch.resolve(f"{allowed}.os.system")
    # a function re-exported from elsewhere
    with pytest.raises(NotAllowed, match=f"'{allowed}.join' is defined in 'posixpath'"):
        dispatch.resolve(f"{allowed}.join")
    with pytest.raises(NotAllowed, match="the private name '_private'"):
        dispatch.resolve(f"{allowed}._private")
    # refused on the name, before anything is imported
    with pytest.raises(NotAllowed, match=f"'{other}.f' is outside"):
        dispatch.resolve(f"{other}.f")
    assert other not in sys.modules
    assert sorted(dispatch._resolved) == [f"{allowed}.own"]


def test_a_bound_method_re_exported_from_elsewhere_is_refused(
    make_modules: Callable[[dict[str, str]], Path], unique_name: Callable[[str], str]
) -> None:
    allowed = unique_name("sb_reexports")
    make_modules({f"{allowed}.py": "from random import randint\n"})
    allowlist.configure([allowed])
    with pytest.raises(NotAllowed, match="defined in 'random'"):
        dispatch.resolve(f"{allowed}.randint")


def test_the_agents_own_entry_points_stay_reachable_under_an_allowlist() -> None:
    allowlist.configure(["json"])
    from snakebridge_agent import tools

    assert dispatch.resolve("snakebridge_agent.tools.register") is tools.register
    assert dispatch.resolve("snakebridge_agent.dispatch.call_nested") is dispatch.call_nested
    with pytest.raises(NotAllowed):
        dispatch.resolve("snakebridge_agent.dispatch.call")


# -- describe_exception -----------------------------------------------------------------------


class Outer:
    class InnerError(KeyError):
        pass


def _raise(exc: BaseException) -> None:
    raise exc


def _caught(function: Callable[[], Any]) -> BaseException:
    try:
        function()
    except BaseException as exc:  # noqa: BLE001 - the test inspects whatever was raised
        return exc
    raise AssertionError("nothing was raised")


def test_describe_exception_of_a_builtin_exception() -> None:
    exc = _caught(lambda: _raise(ValueError("boom")))
    name, module, mro, message, tb = dispatch.describe_exception(exc)
    assert (name, module, message) == ("ValueError", "builtins", "boom")
    assert mro == [
        "builtins.ValueError",
        "builtins.Exception",
        "builtins.BaseException",
        "builtins.object",
    ]
    assert tb.startswith("Traceback (most recent call last):\n")
    assert "in _raise" in tb
    # The `ValueError: boom` line is not sent: the core puts it back from the message.
    assert tb.endswith("    raise exc\n")


def test_describe_exception_uses_qualified_names() -> None:
    name, module, mro, message, _ = dispatch.describe_exception(Outer.InnerError("k"))
    assert name == "Outer.InnerError"
    assert module == __name__
    assert mro[:3] == [f"{__name__}.Outer.InnerError", "builtins.KeyError", "builtins.LookupError"]
    assert message == "'k'"


def test_describe_exception_without_a_traceback() -> None:
    described = dispatch.describe_exception(RuntimeError("no frames"))
    assert described[3] == "no frames"
    # Only the `Type: message` line, which the core puts back from the message.
    assert described[4] == ""


def test_describe_exception_sends_a_huge_message_once_and_cut() -> None:
    def fail() -> None:
        raise ValueError("x" * (10 << 20))

    described = dispatch.describe_exception(_caught(fail))
    limit = _native.MAX_ERROR_TEXT
    assert len(described[3].encode()) <= limit
    assert described[3].endswith("characters cut) …")
    assert "in fail" in described[4]
    assert "xxxx" not in described[4]


def test_describe_exception_cuts_by_utf8_bytes() -> None:
    limit = _native.MAX_ERROR_TEXT
    for text in ("é" * limit, "😀" * (limit // 2), "a" + "😀" * limit):
        described = dispatch.describe_exception(ValueError(text))
        assert len(described[3].encode()) <= limit
        assert described[3].endswith("characters cut) …")
    short = "😀" * (limit // 4)
    assert dispatch.describe_exception(ValueError(short))[3] == short


def test_describe_exception_keeps_a_last_line_that_says_more_than_the_message() -> None:
    exc = _caught(lambda: compile("x y", "<string>", "exec"))
    assert isinstance(exc, SyntaxError)
    assert described_tail(exc).endswith("SyntaxError: invalid syntax\n")


def described_tail(exc: BaseException) -> str:
    return dispatch.describe_exception(exc)[4][-200:]


def test_describe_exception_of_the_agents_own_errors() -> None:
    exc = _caught(lambda: dispatch.resolve("os.nope"))
    name, module, mro, message, _ = dispatch.describe_exception(exc)
    assert (name, module) == ("TargetNotFound", "snakebridge_agent.dispatch")
    assert "builtins.LookupError" in mro
    assert message == "cannot resolve 'os.nope': module 'os' has no attribute 'nope'"
    allowlist.configure(["json"])
    name, module, mro, _, _ = dispatch.describe_exception(
        _caught(lambda: dispatch.resolve("os.sep"))
    )
    assert (name, module) == ("NotAllowed", "snakebridge_agent.allowlist")
    assert "builtins.PermissionError" in mro


def test_describe_exception_survives_a_broken_str() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    described = dispatch.describe_exception(Unprintable())
    assert described[0] == "test_describe_exception_survives_a_broken_str.<locals>.Unprintable"
    assert described[3] == (
        "<unprintable test_describe_exception_survives_a_broken_str.<locals>.Unprintable object>"
    )


def test_describe_exception_drops_the_leading_dispatch_frames() -> None:
    def user_function() -> None:
        raise ValueError("from user code")

    dispatch._resolved["sb_user.user_function"] = user_function
    exc = _caught(lambda: dispatch.call("sb_user.user_function", (), {}))
    # The Rust server calls `dispatch.call` itself: its traceback starts at that frame.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code is not dispatch.call.__code__:
        tb = tb.tb_next
    assert tb is not None
    exc = exc.with_traceback(tb)
    text = dispatch.describe_exception(exc)[4]
    assert "in user_function" in text
    assert "snakebridge_agent/dispatch.py" not in text
    assert text.endswith('raise ValueError("from user code")\n')


def test_describe_exception_keeps_the_last_frame_even_when_it_is_dispatchs() -> None:
    exc = _caught(lambda: dispatch.call("os.sep", (), {}))
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code is not dispatch.call.__code__:
        tb = tb.tb_next
    described = dispatch.describe_exception(exc.with_traceback(tb))
    assert "snakebridge_agent/dispatch.py" in described[4]
    assert described[0] == "TypeError"
    assert described[3] == "'str' object is not callable"


def test_call_cancelled_is_not_an_exception() -> None:
    assert issubclass(CallCancelled, BaseException)
    assert not issubclass(CallCancelled, Exception)


def test_dispatch_has_what_the_server_looks_up() -> None:
    # native/snakebridge_py/src/call.rs (Dispatch::from_module) and pool.rs read these.
    for name in (
        "call",
        "call_method",
        "get_attr",
        "set_attr",
        "iterate",
        "describe_exception",
        "TargetNotFound",
        "NotAllowed",
        "CallCancelled",
    ):
        assert hasattr(dispatch, name), name
    assert importlib.import_module("snakebridge_agent.dispatch") is dispatch

"""Library introspection (`snakebridge_agent.introspect`)."""

from __future__ import annotations

import collections.abc
import json
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from snakebridge_agent import allowlist, introspect
from snakebridge_agent.allowlist import NotAllowed
from snakebridge_agent.introspect import ModuleImportError

MakeModules = Callable[[dict[str, str]], Path]
UniqueName = Callable[[str], str]


def T(kind: str, name: str = "", args: list | None = None, literals: list | None = None) -> dict:
    """A TypeDescriptor dict."""
    return {"kind": kind, "name": name, "args": args or [], "literals": literals or []}


INT = T("PRIMITIVE", "int")
STR = T("PRIMITIVE", "str")
FLOAT = T("PRIMITIVE", "float")
BOOL = T("PRIMITIVE", "bool")
BYTES = T("PRIMITIVE", "bytes")
NONE = T("PRIMITIVE", "None")
ANY = T("ANY")

SAMPLE = '''
"""A small library."""

import functools
import json
from json import dumps
from typing import Literal, Optional

__version__ = "1.2.3"


def add(a: int, b: int = 2, /, c: float = 1.5, *args: str, d: Optional[str] = None,
        e: Literal["x", "y"] = "x", **kwargs: bool) -> list[int]:
    """Adds things.

    Details:
        indented.
    """
    return []


def simple(x: int, y: str = "a") -> bool:
    return True


def numbers(n: int):
    """Counts."""
    yield n


async def fetch(url: str) -> bytes:
    return b""


async def stream():
    yield 1


def with_object_default(x=object()):
    pass


class Unrepresentable:
    def __repr__(self):
        raise RuntimeError("no repr")


def with_bad_default(x=Unrepresentable()):
    pass


def _private():
    pass


class Base:
    """The base."""

    def base_method(self, x: dict[str, int]) -> None:
        """From the base."""


class Thing(Base):
    """A thing.

    With details.
    """

    def __init__(self, name: str, *, size: int = 3) -> None:
        """Makes a thing."""
        self.name = name

    def method(self, y: tuple[int, str]) -> set[int]:
        """A method."""
        return set()

    @staticmethod
    def static(z: bytes) -> bytes:
        return z

    @classmethod
    def make(cls, n: int) -> "Thing":
        return cls(str(n))

    @property
    def prop(self) -> int:
        """A property."""
        return 1

    @prop.setter
    def prop(self, value: int) -> None:
        pass

    @property
    def ro(self) -> str:
        return ""

    @functools.cached_property
    def cached(self) -> float:
        return 1.0

    def _hidden(self):
        pass

    def __call__(self, q: int) -> int:
        return q

    def __len__(self) -> int:
        return 0


class Encoder(json.JSONEncoder):
    """Inherits from another library."""

    def extra(self) -> None:
        pass


class _Meta(type):
    def __call__(cls, *args, **kwargs):
        return super().__call__(*args, **kwargs)


class WithMeta(metaclass=_Meta):
    def __init__(self, a: int, b: str = "b") -> None:
        pass
'''


@pytest.fixture
def sample(make_modules: MakeModules, unique_name: UniqueName) -> str:
    name = unique_name("sb_sample")
    make_modules({f"{name}.py": SAMPLE})
    return name


def _params(function: dict) -> list[tuple[str, str, bool, str | None]]:
    return [
        (p["name"], p["kind"], p["required"], p.get("default_repr")) for p in function["parameters"]
    ]


# -- the result's shape ----------------------------------------------------------------------


def test_the_result_has_the_proto_fields(sample: str) -> None:
    result = introspect.describe(sample)
    assert set(result) == {"version", "classes", "functions", "warnings"}
    assert result["version"] == "1.2.3"
    assert list(result["functions"]) == sorted(result["functions"])
    assert list(result["classes"]) == sorted(result["classes"])
    assert result["warnings"] == [f"{sample}.with_bad_default: the default of x has no repr()"]


def test_public_functions_and_classes_defined_in_the_module(sample: str) -> None:
    result = introspect.describe(sample)
    assert sorted(result["functions"]) == [
        f"{sample}.{name}"
        for name in (
            "add",
            "fetch",
            "numbers",
            "simple",
            "stream",
            "with_bad_default",
            "with_object_default",
        )
    ]
    # not `_private`, not `dumps` (imported from json), not the modules `json`, `functools`
    assert sorted(result["classes"]) == [
        f"{sample}.{name}" for name in ("Base", "Encoder", "Thing", "Unrepresentable", "WithMeta")
    ]


def test_parameter_kinds_defaults_and_annotations(sample: str) -> None:
    add = introspect.describe(sample)["functions"][f"{sample}.add"]
    assert add["name"] == "add"
    assert add["python_path"] == f"{sample}.add"
    assert add["kind"] == "KIND_FUNCTION"
    assert _params(add) == [
        ("a", "POSITIONAL_ONLY", True, None),
        ("b", "POSITIONAL_ONLY", False, "2"),
        ("c", "POSITIONAL_OR_KEYWORD", False, "1.5"),
        ("args", "VAR_POSITIONAL", False, None),
        ("d", "KEYWORD_ONLY", False, "None"),
        ("e", "KEYWORD_ONLY", False, "'x'"),
        ("kwargs", "VAR_KEYWORD", False, None),
    ]
    # `default_repr` is absent (not empty) when there is no default
    assert "default_repr" not in add["parameters"][0]
    assert [p["annotation"] for p in add["parameters"]] == [
        INT,
        INT,
        FLOAT,
        STR,
        T("OPTIONAL", args=[STR]),
        T("LITERAL", literals=["'x'", "'y'"]),
        BOOL,
    ]
    assert add["return_type"] == T("LIST", args=[INT])
    assert add["docstring"] == "Adds things.\n\nDetails:\n    indented."


def test_signature_text_and_flags(sample: str) -> None:
    functions = introspect.describe(sample)["functions"]
    simple = functions[f"{sample}.simple"]
    assert simple["signature"] == "(x: int, y: str = 'a') -> bool"
    assert simple["docstring"] == ""
    flags = {
        name.rsplit(".", 1)[1]: (f["is_generator"], f["is_async"], f["is_async_generator"])
        for name, f in functions.items()
    }
    assert flags["simple"] == (False, False, False)
    assert flags["numbers"] == (True, False, False)
    assert flags["fetch"] == (False, True, False)
    assert flags["stream"] == (False, False, True)
    assert functions[f"{sample}.fetch"]["return_type"] == BYTES


def test_defaults_are_printed_without_addresses_or_failures(sample: str) -> None:
    functions = introspect.describe(sample)["functions"]
    plain = functions[f"{sample}.with_object_default"]
    assert plain["parameters"][0]["default_repr"] == "<object object>"
    assert plain["signature"] == "(x=<object object>)"
    bad = functions[f"{sample}.with_bad_default"]
    assert bad["parameters"][0]["default_repr"] == "<Unrepresentable>"
    assert bad["signature"] == "(x=<Unrepresentable>)"


def test_a_class(sample: str) -> None:
    thing = introspect.describe(sample)["classes"][f"{sample}.Thing"]
    assert thing["name"] == "Thing"
    assert thing["python_path"] == f"{sample}.Thing"
    assert thing["docstring"] == "A thing.\n\nWith details."
    assert thing["bases"] == [f"{sample}.Base"]

    constructor = thing["constructor"]
    assert constructor["name"] == "__init__"
    assert constructor["python_path"] == f"{sample}.Thing.__init__"
    assert constructor["kind"] == "KIND_METHOD"
    assert constructor["docstring"] == "Makes a thing."
    assert _params(constructor) == [
        ("name", "POSITIONAL_OR_KEYWORD", True, None),
        ("size", "KEYWORD_ONLY", False, "3"),
    ]
    assert constructor["return_type"] == T("CLASS", f"{sample}.Thing")

    methods = thing["methods"]
    # public methods, `__call__`, and those inherited from the same library
    assert sorted(methods) == ["__call__", "base_method", "make", "method", "static"]
    assert methods["method"]["kind"] == "KIND_METHOD"
    assert methods["method"]["python_path"] == f"{sample}.Thing.method"
    assert methods["method"]["docstring"] == "A method."
    assert _params(methods["method"]) == [("y", "POSITIONAL_OR_KEYWORD", True, None)]
    assert methods["method"]["parameters"][0]["annotation"] == T("TUPLE", args=[INT, STR])
    assert methods["method"]["return_type"] == T("SET", args=[INT])
    assert methods["static"]["kind"] == "KIND_STATICMETHOD"
    assert _params(methods["static"]) == [("z", "POSITIONAL_OR_KEYWORD", True, None)]
    assert methods["make"]["kind"] == "KIND_CLASSMETHOD"
    assert _params(methods["make"]) == [("n", "POSITIONAL_OR_KEYWORD", True, None)]
    assert methods["make"]["return_type"] == T("CLASS", f"{sample}.Thing")
    assert methods["base_method"]["docstring"] == "From the base."
    assert methods["base_method"]["parameters"][0]["annotation"] == T("DICT", args=[STR, INT])
    assert methods["base_method"]["return_type"] == NONE
    assert _params(methods["__call__"]) == [("q", "POSITIONAL_OR_KEYWORD", True, None)]

    assert thing["properties"] == [
        {"name": "cached", "readonly": False, "type": FLOAT, "docstring": ""},
        {"name": "prop", "readonly": False, "type": INT, "docstring": "A property."},
        {"name": "ro", "readonly": True, "type": STR, "docstring": ""},
    ]


def test_members_inherited_from_another_library_are_left_out(sample: str) -> None:
    encoder = introspect.describe(sample)["classes"][f"{sample}.Encoder"]
    assert encoder["bases"] == ["json.encoder.JSONEncoder"]
    assert sorted(encoder["methods"]) == ["extra"]
    assert encoder["properties"] == []
    # the constructor is json's, described, but its docstring is not this library's
    assert encoder["constructor"]["docstring"] == ""
    assert "skipkeys" in [p["name"] for p in encoder["constructor"]["parameters"]]


def test_a_metaclass_call_does_not_hide_the_constructor(sample: str) -> None:
    with_meta = introspect.describe(sample)["classes"][f"{sample}.WithMeta"]
    assert _params(with_meta["constructor"]) == [
        ("a", "POSITIONAL_OR_KEYWORD", True, None),
        ("b", "POSITIONAL_OR_KEYWORD", False, "'b'"),
    ]
    assert with_meta["constructor"]["return_type"] == T("CLASS", f"{sample}.WithMeta")


def test_the_description_is_deterministic(sample: str) -> None:
    first = introspect.canonical_json(introspect.describe(sample))
    second = introspect.canonical_json(introspect.describe(sample))
    assert first == second
    assert " at 0x" not in first


def test_exclude_patterns(sample: str) -> None:
    result = introspect.describe(sample, exclude_patterns=[f"{sample}.Thing.m*", "*.add"])
    assert f"{sample}.add" not in result["functions"]
    assert f"{sample}.simple" in result["functions"]
    assert sorted(result["classes"][f"{sample}.Thing"]["methods"]) == [
        "__call__",
        "base_method",
        "static",
    ]


# -- __all__, packages, submodules -------------------------------------------------------------


def test_all_lists_what_is_described_including_re_exports(
    make_modules: MakeModules, unique_name: UniqueName
) -> None:
    name = unique_name("sb_all")
    make_modules(
        {
            f"{name}.py": """
            from json import dumps

            __all__ = ["dumps", "own", "_private", "missing", "own"]

            def own():
                pass

            def other():
                pass

            def _private():
                pass
            """
        }
    )
    result = introspect.describe(name)
    assert sorted(result["functions"]) == [f"{name}.dumps", f"{name}.own"]
    assert result["functions"][f"{name}.dumps"]["docstring"].startswith("Serialize ``obj``")
    assert result["warnings"] == [
        f"{name}.missing is listed in __all__ but cannot be read: "
        f"AttributeError: module '{name}' has no attribute 'missing'"
    ]


@pytest.fixture
def package(make_modules: MakeModules, unique_name: UniqueName) -> str:
    name = unique_name("sb_pkg")
    make_modules(
        {
            f"{name}/__init__.py": f"""
            from {name}.sub import helper

            __all__ = ["helper", "top"]

            def top():
                pass
            """,
            f"{name}/sub.py": """
            def helper():
                pass

            def sub_only():
                pass
            """,
            f"{name}/_hidden.py": "def hidden():\n    pass\n",
            f"{name}/broken.py": "1 / 0\n",
            f"{name}/nested/__init__.py": "",
            f"{name}/nested/leaf.py": "def leaf():\n    pass\n",
        }
    )
    return name


def test_depth_zero_describes_the_top_module_only(package: str) -> None:
    result = introspect.describe(package)
    assert sorted(result["functions"]) == [f"{package}.helper", f"{package}.top"]
    assert result["warnings"] == []
    assert introspect.module_names(package, [], 0, []) == [package]


def test_depth_walks_public_submodules_and_warns_about_broken_ones(package: str) -> None:
    result = introspect.describe(package, depth=1)
    # `helper` is described once, where it is first seen (the package re-exports it)
    assert sorted(result["functions"]) == [
        f"{package}.helper",
        f"{package}.sub.sub_only",
        f"{package}.top",
    ]
    assert result["warnings"] == [
        f"cannot import {package}.broken: ZeroDivisionError: division by zero"
    ]
    assert introspect.module_names(package, [], 1, []) == [
        package,
        f"{package}.nested",
        f"{package}.sub",
    ]
    assert introspect.module_names(package, [], 2, [])[-1] == f"{package}.nested.leaf"


def test_listed_submodules_and_excluded_modules(package: str) -> None:
    names = introspect.module_names(package, ["sub", f"{package}.nested.leaf", ".sub"], 0, [])
    assert names == [package, f"{package}.sub", f"{package}.nested.leaf"]
    assert introspect.module_names(package, [], 1, [f"{package}.b*"]) == [
        package,
        f"{package}.nested",
        f"{package}.sub",
    ]
    result = introspect.describe(package, submodules=["nested.leaf"])
    assert f"{package}.nested.leaf.leaf" in result["functions"]


def test_a_top_module_that_cannot_be_imported(
    make_modules: MakeModules, unique_name: UniqueName
) -> None:
    with pytest.raises(ModuleImportError, match="cannot import 'sb_no_such_library'") as info:
        introspect.describe("sb_no_such_library")
    assert info.value.name == "sb_no_such_library"
    assert isinstance(info.value, ImportError)
    exiting = unique_name("sb_exits")
    make_modules({f"{exiting}.py": "raise SystemExit(3)\n"})
    with pytest.raises(ModuleImportError, match="SystemExit: 3"):
        introspect.describe(exiting)


def test_describe_checks_the_allowlist_before_importing(
    make_modules: MakeModules, unique_name: UniqueName
) -> None:
    name = unique_name("sb_refused")
    make_modules({f"{name}.py": "def f():\n    pass\n"})
    allowlist.configure(["json"])
    with pytest.raises(NotAllowed):
        introspect.describe(name)
    with pytest.raises(NotAllowed):
        introspect.describe(name, known_version="1", known_python_version=sys.version)
    assert name not in sys.modules
    assert "json.dumps" in introspect.describe("json")["functions"]


# -- callables Python cannot read a signature of -------------------------------------------------

OPAQUE = """
class _Opaque:
    # A `__signature__` that is not a Signature: `inspect.signature` gives up.
    __signature__ = "not a signature"

    def __init__(self, name, text_signature=None):
        self.__name__ = self.__qualname__ = name
        self.__module__ = __name__
        if text_signature is not None:
            self.__text_signature__ = text_signature

    def __call__(self, *args, **kwargs):
        pass


stubbed = _Opaque("stubbed")
textual = _Opaque("textual", "($module, a, b=1, *, c=None)")
unknown = _Opaque("unknown")
"""

OPAQUE_STUB = """
def stubbed(x: int, /, y: str = ..., *, z: bool = True) -> list[str]: ...
"""


def test_signatures_from_a_stub_a_text_signature_or_nothing(
    make_modules: MakeModules, unique_name: UniqueName
) -> None:
    name = unique_name("sb_opaque")
    make_modules({f"{name}.py": OPAQUE, f"{name}.pyi": OPAQUE_STUB})
    result = introspect.describe(name)
    functions = result["functions"]

    stubbed = functions[f"{name}.stubbed"]
    assert _params(stubbed) == [
        ("x", "POSITIONAL_ONLY", True, None),
        ("y", "POSITIONAL_OR_KEYWORD", False, "..."),
        ("z", "KEYWORD_ONLY", False, "True"),
    ]
    assert [p["annotation"] for p in stubbed["parameters"]] == [INT, STR, BOOL]
    assert stubbed["return_type"] == T("LIST", args=[STR])
    assert stubbed["signature"] == "(x: int, /, y: str=..., *, z: bool=True) -> list[str]"

    textual = functions[f"{name}.textual"]
    assert _params(textual) == [
        ("a", "POSITIONAL_OR_KEYWORD", True, None),
        ("b", "POSITIONAL_OR_KEYWORD", False, "1"),
        ("c", "KEYWORD_ONLY", False, "None"),
    ]
    assert textual["signature"] == "(a, b=1, *, c=None)"

    unknown = functions[f"{name}.unknown"]
    assert unknown["signature"] == "(*args, **kwargs)"
    assert _params(unknown) == [
        ("args", "VAR_POSITIONAL", False, None),
        ("kwargs", "VAR_KEYWORD", False, None),
    ]
    assert result["warnings"] == [
        f"no signature for {name}.unknown: described as (*args, **kwargs)"
    ]


def test_string_annotations(make_modules: MakeModules, unique_name: UniqueName) -> None:
    name = unique_name("sb_strings")
    make_modules(
        {
            f"{name}.py": """
            from __future__ import annotations

            class Thing:
                pass

            def known(x: Thing, y: list[Thing] | None) -> dict[str, int]:
                pass

            def unknown(x: "Undefined") -> Thing:
                pass
            """
        }
    )
    functions = introspect.describe(name)["functions"]
    thing = T("CLASS", f"{name}.Thing")
    known = functions[f"{name}.known"]
    assert [p["annotation"] for p in known["parameters"]] == [
        thing,
        T("OPTIONAL", args=[T("LIST", args=[thing])]),
    ]
    assert known["return_type"] == T("DICT", args=[STR, INT])
    assert (
        known["signature"] == f"(x: {name}.Thing, y: list[{name}.Thing] | None) -> dict[str, int]"
    )
    unknown = functions[f"{name}.unknown"]
    assert unknown["parameters"][0]["annotation"] == T("ANY", "Undefined")
    assert unknown["return_type"] == thing


@pytest.mark.skipif(not hasattr(typing, "get_overloads"), reason="typing.get_overloads: 3.11+")
def test_overloads_are_listed_in_the_docstring(
    make_modules: MakeModules, unique_name: UniqueName
) -> None:
    name = unique_name("sb_overloads")
    make_modules(
        {
            f"{name}.py": """
            from typing import overload

            @overload
            def parse(x: int) -> int: ...
            @overload
            def parse(x: str) -> str: ...
            def parse(x):
                \"\"\"Parses.\"\"\"
                return x
            """
        }
    )
    parse = introspect.describe(name)["functions"][f"{name}.parse"]
    assert parse["docstring"] == (
        "Parses.\n\nOverloads:\n    parse(x: int) -> int\n    parse(x: str) -> str"
    )


# -- type descriptors ------------------------------------------------------------------------------

_T = typing.TypeVar("_T")
_Bounded = typing.TypeVar("_Bounded", bound=int)
UserId = typing.NewType("UserId", str)


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (introspect._EMPTY, ANY),
        (typing.Any, ANY),
        (object, ANY),
        (None, NONE),
        (type(None), NONE),
        (int, INT),
        (bytes, BYTES),
        # typing's older spellings are what the library under description may use
        (typing.Optional[int], T("OPTIONAL", args=[INT])),  # noqa: UP045
        (int | None, T("OPTIONAL", args=[INT])),
        (typing.Union[int, str, None], T("OPTIONAL", args=[T("UNION", args=[INT, STR])])),  # noqa: UP007
        (int | str, T("UNION", args=[INT, STR])),
        (typing.Literal[1, "a"], T("LITERAL", literals=["1", "'a'"])),
        (list[int], T("LIST", args=[INT])),
        (typing.List[str], T("LIST", args=[STR])),  # noqa: UP006
        (collections.abc.Sequence[int], T("LIST", args=[INT])),
        (list, T("LIST")),
        (dict[str, list[int]], T("DICT", args=[STR, T("LIST", args=[INT])])),
        (collections.abc.Mapping, T("DICT")),
        (tuple[int, ...], T("TUPLE", args=[INT, T("ANY", "...")])),
        (tuple, T("TUPLE")),
        (frozenset[str], T("SET", args=[STR])),
        (typing.Annotated[int, "meta"], INT),
        (_T, T("ANY", "_T")),
        (_Bounded, INT),
        (UserId, STR),
        (Path, T("CLASS", "pathlib.Path")),
        # a generic class other than the builtin containers and their ABCs is a class
        (collections.OrderedDict[str, int], T("CLASS", "collections.OrderedDict", [STR, INT])),
        (collections.abc.Iterator[int], T("CLASS", "collections.abc.Iterator", args=[INT])),
        ("int", INT),
        ("NoSuchName", T("ANY", "NoSuchName")),
        (42, T("ANY", "42")),
    ],
)
def test_type_descriptor(annotation: Any, expected: dict) -> None:
    assert introspect.type_descriptor(annotation) == expected


def test_type_descriptor_stops_at_its_depth_limit() -> None:
    deep: Any = int
    for _ in range(introspect.MAX_TYPE_DEPTH + 5):
        deep = list[deep]
    descriptor = introspect.type_descriptor(deep)
    depth = 0
    while descriptor["kind"] == "LIST":
        descriptor = descriptor["args"][0]
        depth += 1
    assert descriptor == ANY
    assert depth == introspect.MAX_TYPE_DEPTH + 1


# -- a standard library module -------------------------------------------------------------------


def test_describe_json() -> None:
    result = introspect.describe("json")
    assert result["version"] == json.__version__
    assert sorted(result["functions"]) == ["json.dump", "json.dumps", "json.load", "json.loads"]
    assert sorted(result["classes"]) == [
        "json.JSONDecodeError",
        "json.JSONDecoder",
        "json.JSONEncoder",
    ]
    dumps = result["functions"]["json.dumps"]
    assert dumps["docstring"].startswith("Serialize ``obj`` to a JSON formatted ``str``.")
    params = {p["name"]: p for p in dumps["parameters"]}
    assert params["obj"]["kind"] == "POSITIONAL_OR_KEYWORD"
    assert params["obj"]["required"] is True
    assert params["skipkeys"]["kind"] == "KEYWORD_ONLY"
    assert params["skipkeys"]["default_repr"] == "False"
    assert params["kw"]["kind"] == "VAR_KEYWORD"
    error = result["classes"]["json.JSONDecodeError"]
    assert error["bases"] == ["builtins.ValueError"]
    assert [p["name"] for p in error["constructor"]["parameters"]] == ["msg", "doc", "pos"]
    decoder = result["classes"]["json.JSONDecoder"]
    assert {"decode", "raw_decode"} <= set(decoder["methods"])
    assert result["warnings"] == []


# -- the disk cache ------------------------------------------------------------------------------


def test_canonical_json() -> None:
    assert introspect.canonical_json({"b": [1, {"d": 2, "c": 3}], "a": "é"}) == (
        '{"a":"é","b":[1,{"c":3,"d":2}]}'
    )


# -- the versions of a descriptor the core holds ----------------------------------------------


def test_an_unchanged_library_is_not_introspected_again(sample: str) -> None:
    answer = introspect.describe(sample, known_version="1.2.3", known_python_version=sys.version)
    assert answer == {
        "version": "1.2.3",
        "classes": {},
        "functions": {},
        "warnings": [],
        "unchanged": True,
    }


def test_another_library_or_python_version_is_introspected(sample: str) -> None:
    full = introspect.describe(sample)
    assert "unchanged" not in full
    assert (
        introspect.describe(sample, known_version="1.2.2", known_python_version=sys.version) == full
    )
    assert introspect.describe(sample, known_version="1.2.3", known_python_version="2.7") == full
    assert introspect.describe(sample, known_version="1.2.3") == full


def test_the_answer_reads_as_the_protos_message(sample: str) -> None:
    text = introspect.canonical_json(introspect.describe(sample))
    assert json.loads(text)["version"] == "1.2.3"

"""Library introspection: describes a Python library's public classes and functions.

`describe(module_path, submodules, depth, exclude_patterns)` returns a dict shaped like the
`DescribeLibraryResponse` message of `proto/snakebridge.proto` (without `descriptor_hash`):

    {"version": str,
     "classes": {python_path: ClassDescriptor},
     "functions": {python_path: FunctionDescriptor},
     "warnings": [str]}

Nested dicts use the proto field names; enum values are their proto names
("POSITIONAL_ONLY", "KIND_CLASSMETHOD", "LIST", ...). Every field is present except
`ParameterDescriptor.default_repr`, which is left out when the parameter has no default.

Only importing the top module can fail (`ModuleImportError`); everything else a hostile
library can do (attributes raising on access, signatures that cannot be read, submodules
that do not import) becomes a warning string.

Given the library and Python versions of a descriptor the core already holds
(`known_version`, `known_python_version`), `describe` answers `{"version": ...,
"unchanged": True}` without introspecting while both are still this process's: the core's
descriptor cache is the only cache. The Rust side computes `descriptor_hash`.
"""

from __future__ import annotations

import ast
import builtins
import collections.abc
import fnmatch
import importlib
import inspect
import json
import os
import pkgutil
import re
import sys
import types
import typing
from collections.abc import Iterable
from typing import Any

from snakebridge_agent import allowlist

__all__ = ["ModuleImportError", "describe"]

PRIMITIVES = {int: "int", float: "float", str: "str", bool: "bool", bytes: "bytes"}
LIST_ORIGINS = (list, collections.abc.Sequence, collections.abc.MutableSequence)
DICT_ORIGINS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
SET_ORIGINS = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)
KEPT_DUNDERS = ("__init__", "__call__")
MAX_TYPE_DEPTH = 12
MAX_NAME_CHARS = 200

_EMPTY = inspect.Parameter.empty
_ANY: dict = {"kind": "ANY", "name": "", "args": [], "literals": []}
_UNION_TYPES: tuple = (typing.Union,) + ((types.UnionType,) if hasattr(types, "UnionType") else ())


class ModuleImportError(ImportError):
    """The top module of the library could not be imported."""


def describe(
    module_path: str,
    submodules: Iterable[str] = (),
    depth: int = 0,
    exclude_patterns: Iterable[str] = (),
    known_version: str | None = None,
    known_python_version: str | None = None,
) -> dict:
    """Describes `module_path`, its submodules to `depth` and the listed `submodules`; or,
    when the library's version is `known_version` and this Python's `sys.version` is
    `known_python_version`, answers `unchanged` (only `version` set) without introspecting."""
    # Submodules are always taken inside `module_path`: checking it covers them.
    allowlist.check_target(module_path)
    if known_version is not None and known_python_version == sys.version:
        version = _library_version(_import_top(module_path))
        if version == known_version:
            return {
                "version": version,
                "classes": {},
                "functions": {},
                "warnings": [],
                "unchanged": True,
            }
    return _Describer(module_path, list(submodules), int(depth), list(exclude_patterns)).run()


def module_names(
    module_path: str, submodules: list[str], depth: int, exclude_patterns: list[str]
) -> list[str]:
    """The modules `describe` walks for these arguments, in order (importing them)."""
    describer = _Describer(module_path, list(submodules), depth, list(exclude_patterns))
    return [module.__name__ for module in describer.modules(_import_top(module_path))]


def canonical_json(result: dict) -> str:
    """The result as sorted JSON text, without insignificant whitespace."""
    return json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------------------------
# Helpers


def _import_top(module_path: str) -> types.ModuleType:
    try:
        return importlib.import_module(module_path)
    except (Exception, SystemExit) as exc:
        raise ModuleImportError(
            f"cannot import {module_path!r}: {type(exc).__name__}: {exc}", name=module_path
        ) from exc


def _library_version(module: types.ModuleType) -> str:
    try:
        version = getattr(module, "__version__", None)
    except Exception:
        version = None
    if isinstance(version, str):
        return version
    if version is not None:
        return _safe_str(version)
    # No `__version__`: the installed distribution of the same name, when there is one.
    name = module.__name__.split(".")[0]
    try:
        import importlib.metadata

        return importlib.metadata.version(name)
    except Exception:
        return ""


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _safe_repr(value: Any) -> str | None:
    """`repr(value)` without memory addresses (the output must be deterministic)."""
    try:
        text = repr(value)
    except Exception:
        return None
    return _ADDRESS.sub("", text) if isinstance(text, str) else None


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_safe_str(exc)}"


def _getdoc(obj: Any) -> str:
    try:
        doc = inspect.getdoc(obj)
    except Exception:
        return ""
    return doc if isinstance(doc, str) else ""


def _own_doc(obj: Any) -> str:
    """The object's own docstring, cleaned, without inheriting one."""
    try:
        doc = obj.__doc__
    except Exception:
        return ""
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def _qualified_name(obj: Any) -> str:
    try:
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    except Exception:
        return _safe_str(obj)
    if not isinstance(qualname, str):
        return _truncate(_safe_repr(obj) or "")
    if not isinstance(module, str) or module == "":
        return qualname
    return f"{module}.{qualname}"


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_NAME_CHARS else text[: MAX_NAME_CHARS - 3] + "..."


def _in_package(module_name: Any, package: str) -> bool:
    return isinstance(module_name, str) and (
        module_name == package or module_name.startswith(package + ".")
    )


def _is_public(name: str) -> bool:
    return not name.startswith("_")


def _type(
    kind: str, name: str = "", args: list | None = None, literals: list | None = None
) -> dict:
    return {"kind": kind, "name": name, "args": args or [], "literals": literals or []}


# ---------------------------------------------------------------------------------------
# Types


def type_descriptor(annotation: Any, namespace: dict | None = None, _depth: int = 0) -> dict:
    """A TypeDescriptor dict for an annotation (`inspect.Parameter.empty` = missing)."""
    try:
        return _type_descriptor(annotation, namespace, _depth)
    except Exception:
        return _type("ANY", _truncate(_safe_repr(annotation) or ""))


def _type_descriptor(t: Any, namespace: dict | None, depth: int) -> dict:
    if depth > MAX_TYPE_DEPTH:
        return _type("ANY")
    if t is _EMPTY or t is inspect.Signature.empty or t is typing.Any or t is object:
        return _type("ANY")
    if t is None or t is type(None):
        return _type("PRIMITIVE", "None")
    if isinstance(t, str):
        evaluated = _evaluate(t, namespace)
        if evaluated is _EMPTY or isinstance(evaluated, str):
            return _type("ANY", _truncate(t))
        return _type_descriptor(evaluated, namespace, depth + 1)
    if isinstance(t, typing.ForwardRef):
        return _type_descriptor(t.__forward_arg__, namespace, depth + 1)
    if t in PRIMITIVES:
        return _type("PRIMITIVE", PRIMITIVES[t])
    if t is Ellipsis:
        return _type("ANY", "...")

    def sub(x: Any) -> dict:
        return type_descriptor(x, namespace, depth + 1)

    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin is typing.Annotated:
        return sub(args[0]) if args else _type("ANY")
    if origin in _UNION_TYPES:
        others = [a for a in args if a is not type(None) and a is not None]
        if len(others) < len(args):
            if len(others) == 1:
                return _type("OPTIONAL", args=[sub(others[0])])
            return _type("OPTIONAL", args=[_type("UNION", args=[sub(a) for a in others])])
        return _type("UNION", args=[sub(a) for a in args])
    if origin is typing.Literal:
        return _type("LITERAL", literals=[_safe_repr(a) or "?" for a in args])
    if origin is not None:
        if origin in LIST_ORIGINS:
            return _type("LIST", args=[sub(a) for a in args])
        if origin in DICT_ORIGINS:
            return _type("DICT", args=[sub(a) for a in args])
        if origin is tuple:
            return _type("TUPLE", args=[sub(a) for a in args])
        if origin in SET_ORIGINS:
            return _type("SET", args=[sub(a) for a in args])
        return _type("CLASS", _qualified_name(origin), args=[sub(a) for a in args])
    if t in LIST_ORIGINS:
        return _type("LIST")
    if t in DICT_ORIGINS:
        return _type("DICT")
    if t is tuple:
        return _type("TUPLE")
    if t in SET_ORIGINS:
        return _type("SET")
    if isinstance(t, typing.TypeVar):
        bound = t.__bound__
        if bound is not None:
            return sub(bound)
        return _type("ANY", t.__name__)
    supertype = getattr(t, "__supertype__", None)  # typing.NewType
    if supertype is not None:
        return sub(supertype)
    if isinstance(t, type):
        return _type("CLASS", _qualified_name(t))
    return _type("ANY", _truncate(_safe_repr(t) or ""))


def _evaluate(text: str, namespace: dict | None) -> Any:
    """Evaluates a string annotation; `inspect.Parameter.empty` when it cannot be."""
    scope = namespace if isinstance(namespace, dict) else {}
    try:
        return eval(text, dict(scope) if "__builtins__" not in scope else scope)  # noqa: S307
    except Exception:
        pass
    try:
        return eval(text, {"__builtins__": builtins, **vars(typing)})  # noqa: S307
    except Exception:
        return _EMPTY


def _namespace_of(func: Any) -> dict | None:
    try:
        unwrapped = inspect.unwrap(func)
    except Exception:
        unwrapped = func
    try:
        namespace = getattr(unwrapped, "__globals__", None)
        if isinstance(namespace, dict):
            return namespace
        module = sys.modules.get(getattr(unwrapped, "__module__", None) or "")
        return vars(module) if module is not None else None
    except Exception:
        return None


# ---------------------------------------------------------------------------------------
# Stubs (`.pyi` next to a module, for callables whose signature Python cannot read)

_stub_cache: dict[str, ast.Module | None] = {}


def _stub_for(module_name: str | None) -> tuple[ast.Module, dict | None] | None:
    if not isinstance(module_name, str):
        return None
    module = sys.modules.get(module_name)
    filename = getattr(module, "__file__", None) if module is not None else None
    if not isinstance(filename, str):
        return None
    base = os.path.basename(filename)
    directory = os.path.dirname(filename)
    stem = base.split(".", 1)[0]
    candidates = [os.path.join(directory, f"{stem}.pyi")]
    if stem == "__init__":
        candidates.append(os.path.join(directory, "__init__.pyi"))
    for path in candidates:
        if path not in _stub_cache:
            tree = None
            if os.path.isfile(path):
                try:
                    with open(path, encoding="utf-8") as file:
                        tree = ast.parse(file.read(), filename=path)
                except (OSError, SyntaxError, ValueError):
                    tree = None
            _stub_cache[path] = tree
        tree = _stub_cache[path]
        if tree is not None:
            return tree, vars(module)
    return None


def _stub_function(
    tree: ast.Module, qualname: str
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    parts = qualname.split(".")
    body: list = tree.body
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        found = None
        for node in body:
            if (
                last
                and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.name == part
            ):
                found = node  # the first overload wins
                break
            if not last and isinstance(node, ast.ClassDef) and node.name == part:
                found = node
                break
        if found is None:
            return None
        if last:
            return found
        body = found.body
    return None


def _stub_signature(
    node: ast.FunctionDef | ast.AsyncFunctionDef, drop_first: bool, namespace: dict | None
):
    """(parameters, return type, signature text) from a stub's function definition."""
    a = node.args
    params: list[dict] = []

    def param(arg: ast.arg, kind: str, default: ast.expr | None, has_default: bool) -> dict:
        annotation = ast.unparse(arg.annotation) if arg.annotation is not None else _EMPTY
        p = {
            "name": arg.arg,
            "kind": kind,
            "required": not has_default and kind not in ("VAR_POSITIONAL", "VAR_KEYWORD"),
            "annotation": type_descriptor(annotation, namespace),
        }
        if has_default:
            p["default_repr"] = ast.unparse(default) if default is not None else "..."
        return p

    positional = [(arg, "POSITIONAL_ONLY") for arg in a.posonlyargs] + [
        (arg, "POSITIONAL_OR_KEYWORD") for arg in a.args
    ]
    defaults: list = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    for (arg, kind), default in zip(positional, defaults):
        params.append(param(arg, kind, default, default is not None))
    if a.vararg is not None:
        params.append(param(a.vararg, "VAR_POSITIONAL", None, False))
    for arg, default in zip(a.kwonlyargs, a.kw_defaults):
        params.append(param(arg, "KEYWORD_ONLY", default, default is not None))
    if a.kwarg is not None:
        params.append(param(a.kwarg, "VAR_KEYWORD", None, False))
    if drop_first and params and params[0]["kind"] in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD"):
        params = params[1:]
        a = ast.arguments(
            posonlyargs=a.posonlyargs[1:],
            args=a.args if a.posonlyargs else a.args[1:],
            vararg=a.vararg,
            kwonlyargs=a.kwonlyargs,
            kw_defaults=a.kw_defaults,
            kwarg=a.kwarg,
            defaults=a.defaults,
        )
    returns = ast.unparse(node.returns) if node.returns is not None else _EMPTY
    text = f"({ast.unparse(a)})"
    if node.returns is not None:
        text += f" -> {returns}"
    return params, type_descriptor(returns, namespace), text


# ---------------------------------------------------------------------------------------
# The describer


class _Describer:
    def __init__(self, module_path: str, submodules: list[str], depth: int, excludes: list[str]):
        self.module_path = module_path
        self.package = module_path.split(".")[0]
        self.submodules = submodules
        self.depth = max(0, depth)
        self.excludes = [p for p in excludes if isinstance(p, str) and p]
        self.warnings: list[str] = []
        self.classes: dict[str, dict] = {}
        self.functions: dict[str, dict] = {}
        self.seen: dict[int, str] = {}
        self.keep_alive: list = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def excluded(self, dotted: str) -> bool:
        return any(fnmatch.fnmatchcase(dotted, pattern) for pattern in self.excludes)

    def run(self) -> dict:
        top = _import_top(self.module_path)
        for module in self.modules(top):
            self.describe_module(module)
        return {
            "version": _library_version(top),
            "classes": dict(sorted(self.classes.items())),
            "functions": dict(sorted(self.functions.items())),
            "warnings": sorted(set(self.warnings)),
        }

    # -- modules -------------------------------------------------------------------------

    def modules(self, top: types.ModuleType) -> list[types.ModuleType]:
        modules = [top]
        names = {top.__name__}
        level = [top]
        for _ in range(self.depth):
            children = []
            for package in level:
                for name in self.child_names(package):
                    if name in names or self.excluded(name):
                        continue
                    names.add(name)
                    module = self.import_module(name)
                    if module is not None:
                        modules.append(module)
                        children.append(module)
            level = children
        for name in self.submodules:
            if not isinstance(name, str) or not name:
                continue
            if not _in_package(name, self.module_path):
                name = f"{self.module_path}.{name.lstrip('.')}"
            if name in names or self.excluded(name):
                continue
            names.add(name)
            module = self.import_module(name)
            if module is not None:
                modules.append(module)
        return modules

    def child_names(self, package: types.ModuleType) -> list[str]:
        try:
            path = getattr(package, "__path__", None)
            if path is None:
                return []
            infos = list(pkgutil.iter_modules(path))
        except Exception as exc:
            self.warn(f"cannot list the submodules of {package.__name__}: {_error(exc)}")
            return []
        return sorted(f"{package.__name__}.{info.name}" for info in infos if _is_public(info.name))

    def import_module(self, name: str) -> types.ModuleType | None:
        try:
            return importlib.import_module(name)
        except (Exception, SystemExit) as exc:
            self.warn(f"cannot import {name}: {_error(exc)}")
            return None

    def module_members(self, module: types.ModuleType) -> list[tuple[str, Any]]:
        modname = module.__name__
        try:
            exported = module.__dict__.get("__all__")
        except Exception:
            exported = None
        members: list[tuple[str, Any]] = []
        if isinstance(exported, (list, tuple)):
            names = []
            for name in exported:
                if isinstance(name, str) and _is_public(name):
                    names.append(name)
            for name in sorted(set(names)):
                try:
                    members.append((name, getattr(module, name)))
                except Exception as exc:
                    self.warn(
                        f"{modname}.{name} is listed in __all__ but cannot be read: {_error(exc)}"
                    )
            return members
        try:
            names = sorted(n for n in dir(module) if isinstance(n, str) and _is_public(n))
        except Exception as exc:
            self.warn(f"cannot list the attributes of {modname}: {_error(exc)}")
            return members
        for name in names:
            try:
                value = getattr(module, name)
            except Exception as exc:
                self.warn(f"cannot read {modname}.{name}: {_error(exc)}")
                continue
            try:
                defined_in = getattr(value, "__module__", None)
            except Exception:
                continue
            if _in_package(defined_in, self.module_path):
                members.append((name, value))
        return members

    def describe_module(self, module: types.ModuleType) -> None:
        modname = module.__name__
        for name, value in self.module_members(module):
            path = f"{modname}.{name}"
            if self.excluded(path):
                continue
            try:
                if isinstance(value, types.ModuleType):
                    continue
                if inspect.isclass(value):
                    if self.first_sight(value, path):
                        self.classes[path] = self.describe_class(value, name, path)
                elif self.is_function(value):
                    if self.first_sight(value, path):
                        self.functions[path] = self.describe_function(
                            value, name, path, "KIND_FUNCTION"
                        )
            except Exception as exc:
                self.warn(f"cannot describe {path}: {_error(exc)}")

    def first_sight(self, value: Any, path: str) -> bool:
        key = id(value)
        if key in self.seen:
            return False
        self.seen[key] = path
        self.keep_alive.append(value)
        return True

    @staticmethod
    def is_function(value: Any) -> bool:
        if inspect.isroutine(value):
            return True
        if not callable(value):
            return False
        # typing constructs (`Optional`, `List[int]`, ...) are callable but not functions.
        return type(value).__module__ not in ("typing", "typing_extensions")

    # -- functions -----------------------------------------------------------------------

    def describe_function(
        self,
        func: Any,
        name: str,
        path: str,
        kind: str,
        drop_first: bool = False,
        owner: type | None = None,
        signature_of: Any = None,
        return_type: dict | None = None,
    ) -> dict:
        target = func if signature_of is None else signature_of
        params, returns, text = self.signature(target, path, drop_first, owner, name)
        doc = _getdoc(func)
        overloads = self.overloads(func, name)
        if overloads:
            doc = (
                (doc + "\n\n" if doc else "")
                + "Overloads:\n"
                + "\n".join(f"    {name}{sig}" for sig in overloads)
            )
        return {
            "name": name,
            "python_path": path,
            "docstring": doc,
            "parameters": params,
            "return_type": returns if return_type is None else return_type,
            "is_generator": _flag(inspect.isgeneratorfunction, func),
            "is_async": _flag(inspect.iscoroutinefunction, func),
            "is_async_generator": _flag(inspect.isasyncgenfunction, func),
            "kind": kind,
            "signature": text,
        }

    @staticmethod
    def overloads(func: Any, name: str) -> list[str]:
        get_overloads = getattr(typing, "get_overloads", None)
        if get_overloads is None:
            return []
        try:
            return [str(inspect.signature(o)) for o in get_overloads(func)]
        except Exception:
            return []

    def signature(self, target: Any, path: str, drop_first: bool, owner: type | None, name: str):
        """(parameters, return type, signature text) of `target`, with the fallbacks."""
        namespace = _namespace_of(target)
        sig = _signature_or_none(target)
        if sig is None:
            sig = self.text_signature(target)
        if sig is not None:
            params = [self.parameter(p, namespace, path) for p in sig.parameters.values()]
            if (
                drop_first
                and params
                and params[0]["kind"] in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")
            ):
                params = params[1:]
                sig = sig.replace(parameters=list(sig.parameters.values())[1:])
            return params, type_descriptor(sig.return_annotation, namespace), _signature_text(sig)
        # A constructor's stub is `__init__(self, ...)`: `self` goes.
        stub_drop = drop_first or (name == "__init__" and owner is target)
        stub = self.stub_signature(target, stub_drop, owner, name)
        if stub is not None:
            return stub
        self.warn(f"no signature for {path}: described as (*args, **kwargs)")
        params = [
            {"name": "args", "kind": "VAR_POSITIONAL", "required": False, "annotation": dict(_ANY)},
            {"name": "kwargs", "kind": "VAR_KEYWORD", "required": False, "annotation": dict(_ANY)},
        ]
        return params, dict(_ANY), "(*args, **kwargs)"

    @staticmethod
    def text_signature(target: Any) -> inspect.Signature | None:
        try:
            text = getattr(target, "__text_signature__", None)
        except Exception:
            return None
        if not isinstance(text, str) or not text:
            return None
        text = (
            text.replace("($self, /", "(self, /")
            .replace("($self", "(self")
            .replace("($module", "(")
        )
        text = text.replace("(, ", "(").replace("$", "")
        try:
            tree = ast.parse(f"def f{text}: pass")
        except SyntaxError:
            return None
        func = tree.body[0]
        assert isinstance(func, ast.FunctionDef)
        a = func.args
        params = []

        def default_of(node: ast.expr | None):
            if node is None:
                return _EMPTY
            try:
                return ast.literal_eval(node)
            except Exception:
                return _Unparsed(ast.unparse(node))

        positional = [(x, inspect.Parameter.POSITIONAL_ONLY) for x in a.posonlyargs] + [
            (x, inspect.Parameter.POSITIONAL_OR_KEYWORD) for x in a.args
        ]
        defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
        try:
            for (x, kind), d in zip(positional, defaults):
                params.append(inspect.Parameter(x.arg, kind, default=default_of(d)))
            if a.vararg:
                params.append(inspect.Parameter(a.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
            for x, d in zip(a.kwonlyargs, a.kw_defaults):
                params.append(
                    inspect.Parameter(x.arg, inspect.Parameter.KEYWORD_ONLY, default=default_of(d))
                )
            if a.kwarg:
                params.append(inspect.Parameter(a.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
            return inspect.Signature(params)
        except (ValueError, TypeError):
            return None

    def stub_signature(self, target: Any, drop_first: bool, owner: type | None, name: str):
        try:
            if owner is not None:
                module_name = getattr(owner, "__module__", None)
                qualname = f"{owner.__qualname__}.{name}"
            else:
                module_name = getattr(target, "__module__", None)
                qualname = getattr(target, "__qualname__", None) or getattr(
                    target, "__name__", None
                )
            if not isinstance(qualname, str):
                return None
            found = _stub_for(module_name)
            if found is None:
                return None
            tree, namespace = found
            node = _stub_function(tree, qualname)
            if node is None:
                return None
            return _stub_signature(node, drop_first, namespace)
        except Exception:
            return None

    def parameter(self, p: inspect.Parameter, namespace: dict | None, path: str) -> dict:
        kind = p.kind.name
        out = {
            "name": p.name,
            "kind": kind,
            "required": p.default is _EMPTY and kind not in ("VAR_POSITIONAL", "VAR_KEYWORD"),
            "annotation": type_descriptor(p.annotation, namespace),
        }
        if p.default is not _EMPTY:
            text = _safe_repr(p.default)
            if text is None:
                self.warn(f"{path}: the default of {p.name} has no repr()")
                text = f"<{type(p.default).__name__}>"
            out["default_repr"] = text
        return out

    # -- classes -------------------------------------------------------------------------

    def describe_class(self, cls: type, name: str, path: str) -> dict:
        constructor = self.constructor(cls, path)
        methods: dict[str, dict] = {}
        properties: dict[str, dict] = {}
        try:
            mro = list(cls.__mro__)
        except Exception:
            mro = [cls]
        names: set[str] = set()
        for klass in mro:
            try:
                names.update(k for k in vars(klass) if isinstance(k, str))
            except Exception:
                continue
        for attr in sorted(names):
            if attr != "__call__" and not _is_public(attr):
                continue
            member_path = f"{path}.{attr}"
            if self.excluded(member_path):
                continue
            owner, raw = _lookup(mro, attr)
            if owner is None or owner is object:
                continue
            if owner is not cls and not _in_package(
                getattr(owner, "__module__", None), self.package
            ):
                continue
            try:
                described = self.member(cls, owner, attr, raw, member_path)
            except Exception as exc:
                self.warn(f"cannot describe {member_path}: {_error(exc)}")
                continue
            if described is None:
                continue
            if described[0] == "method":
                methods[attr] = described[1]
            else:
                properties[attr] = described[1]
        bases = []
        try:
            for base in cls.__bases__:
                if base is not object:
                    bases.append(_qualified_name(base))
        except Exception:
            pass
        doc = _own_doc(cls)
        return {
            "name": name,
            "python_path": path,
            "docstring": doc,
            "bases": bases,
            "constructor": constructor,
            "methods": methods,
            "properties": [properties[k] for k in sorted(properties)],
        }

    def constructor(self, cls: type, path: str) -> dict:
        doc = ""
        for klass in _mro(cls):
            try:
                if "__init__" in vars(klass):
                    if _in_package(getattr(klass, "__module__", None), self.package):
                        doc = _own_doc(vars(klass)["__init__"])
                    break
            except Exception:
                continue
        try:
            returns = _type("CLASS", _qualified_name(cls))
            init = getattr(cls, "__init__", None)
            if type(cls).__call__ is not type.__call__ and inspect.isfunction(init):
                # A metaclass `__call__` (e.g. `(*args, **kwargs)`) hides the real
                # constructor from `inspect.signature(cls)`: describe `__init__` instead.
                described = self.describe_function(
                    init,
                    "__init__",
                    f"{path}.__init__",
                    "KIND_METHOD",
                    drop_first=True,
                    owner=cls,
                    return_type=returns,
                )
            else:
                described = self.describe_function(
                    cls,
                    "__init__",
                    f"{path}.__init__",
                    "KIND_METHOD",
                    owner=cls,
                    return_type=returns,
                )
        except Exception as exc:
            self.warn(f"cannot describe the constructor of {path}: {_error(exc)}")
            return self.describe_function(
                lambda *args, **kwargs: None, "__init__", f"{path}.__init__", "KIND_METHOD"
            )
        described["docstring"] = doc
        described["is_generator"] = described["is_async"] = described["is_async_generator"] = False
        return described

    def member(self, cls: type, owner: type, attr: str, raw: Any, path: str):
        if isinstance(raw, staticmethod):
            func = raw.__func__
            return "method", self.describe_function(
                func, attr, path, "KIND_STATICMETHOD", owner=owner
            )
        if isinstance(raw, classmethod):
            func = raw.__func__
            return "method", self.describe_function(
                func, attr, path, "KIND_CLASSMETHOD", drop_first=True, owner=owner
            )
        if isinstance(raw, types.ClassMethodDescriptorType):
            bound = getattr(cls, attr)
            return "method", self.describe_function(
                bound, attr, path, "KIND_CLASSMETHOD", owner=owner
            )
        if isinstance(raw, property):
            return "property", self.property(raw, attr, readonly=raw.fset is None)
        if hasattr(raw, "func") and type(raw).__name__ == "cached_property":
            return "property", self.property(raw, attr, readonly=False, getter=raw.func)
        if isinstance(raw, (types.GetSetDescriptorType, types.MemberDescriptorType)):
            return "property", self.property(raw, attr, readonly=False, getter=None)
        if inspect.isroutine(raw):
            return "method", self.describe_function(
                raw, attr, path, "KIND_METHOD", drop_first=True, owner=owner
            )
        return None

    def property(self, raw: Any, name: str, readonly: bool, getter: Any = _EMPTY) -> dict:
        if getter is _EMPTY:
            getter = getattr(raw, "fget", None)
        prop_type = dict(_ANY)
        if getter is not None:
            sig = _signature_or_none(getter)
            if sig is not None:
                prop_type = type_descriptor(sig.return_annotation, _namespace_of(getter))
        return {
            "name": name,
            "readonly": readonly,
            "type": prop_type,
            "docstring": _getdoc(raw),
        }


class _Unparsed:
    """A default value that only exists as source text (from `__text_signature__`)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _signature_or_none(obj: Any) -> inspect.Signature | None:
    """`inspect.signature(obj)` with string annotations evaluated when they can be, else
    as written; None when Python cannot tell the signature."""
    try:
        return inspect.signature(obj, eval_str=True)
    except Exception:
        try:
            return inspect.signature(obj)
        except Exception:
            return None


def _signature_text(sig: inspect.Signature) -> str:
    try:
        return _ADDRESS.sub("", str(sig))
    except Exception:
        pass
    # A default or an annotation whose repr() raises: print those as placeholders.
    params = []
    for p in sig.parameters.values():
        default = p.default
        if default is not _EMPTY and _safe_repr(default) is None:
            default = _Unparsed(f"<{type(default).__name__}>")
        annotation = p.annotation
        if annotation is not _EMPTY and _safe_repr(annotation) is None:
            annotation = _EMPTY
        params.append(p.replace(default=default, annotation=annotation))
    returns = sig.return_annotation
    if returns is not _EMPTY and _safe_repr(returns) is None:
        returns = _EMPTY
    try:
        return _ADDRESS.sub("", str(sig.replace(parameters=params, return_annotation=returns)))
    except Exception:
        return "(...)"


def _flag(check, func: Any) -> bool:
    try:
        return bool(check(func))
    except Exception:
        return False


def _mro(cls: type) -> list:
    try:
        return list(cls.__mro__)
    except Exception:
        return [cls]


def _lookup(mro: list, attr: str) -> tuple[Any, Any]:
    for klass in mro:
        try:
            namespace = vars(klass)
        except Exception:
            continue
        if attr in namespace:
            return klass, namespace[attr]
    return None, None

"""The agent's side of a pool's `allowed_modules` (the core checks the names first).

With no allowlist (the default) anything may be called. With one, set once at start-up by
`--allowed-modules`, every object a request reaches is checked before it runs:

* a call target must lie inside an allowed module (checked on the name, before anything
  is imported), and each part of its path must be public;
* every module met while resolving a path, and the module a resolved function, bound
  method or class was defined in, must be allowed: `numpy.os.system` and a function
  re-exported from elsewhere are refused even though their path starts with an allowed
  module;
* on objects the pool holds (refs), methods and attributes must be public, the object
  must not be a module outside the list, and an attribute read must not hand out one.

Private names are refused because dunder and private attributes are how attribute chains
escape a sandbox (`x.__class__.__subclasses__()`, `f.__globals__`, `sys._getframe`).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable
from typing import Any

from snakebridge_agent import _native

__all__ = ["NotAllowed", "configure", "check_target", "check_name", "check_object", "restricted"]

# Always reachable: SnakeBridge's own tool registry (the pool's init registers tools) and
# the runner of init calls with nested calls (whose targets are checked one by one); the
# core owns the list.
ALWAYS_ALLOWED: tuple[str, ...] = _native.ALWAYS_ALLOWED

# Modules whose functions C code re-exports under another module's name.
_ALIASES = {"posix": "os", "nt": "os", "_operator": "operator", "_functools": "functools"}

_allowed: tuple[str, ...] | None = None


class NotAllowed(PermissionError):
    """A request reached outside the pool's allowed modules."""


def configure(modules: Iterable[str] | None) -> None:
    """Sets the allowlist (None: anything may be called). Called once, at start-up."""
    global _allowed
    _allowed = None if modules is None else tuple(sorted(set(modules) | set(ALWAYS_ALLOWED)))


def restricted() -> bool:
    """Whether an allowlist is in force."""
    return _allowed is not None


def allows(module: str) -> bool:
    """Whether the module (or dotted path) `module` lies inside an allowed module, or is
    the very module an allowed name imports (`os.path` is `posixpath`)."""
    if _allowed is None:
        return True
    module = _ALIASES.get(module, module)
    if any(module == m or module.startswith(m + ".") for m in _allowed):
        return True
    loaded = sys.modules.get(module)
    return loaded is not None and any(sys.modules.get(m) is loaded for m in _allowed)


def _refuse(what: str) -> NotAllowed:
    return NotAllowed(f"{what} (allowed_modules: {', '.join(_allowed or ())})")


def check_target(target: str) -> None:
    """Refuses a dotted call target outside the allowed modules, before any import."""
    if _allowed is None:
        return
    for part in target.split("."):
        check_name(part)
    if not allows(target):
        raise _refuse(f"{target!r} is outside the pool's allowed modules")


def check_name(name: str) -> None:
    """Refuses a private attribute or method name."""
    if _allowed is not None and name.startswith("_"):
        raise _refuse(f"the private name {name!r} may not be reached")


def check_object(obj: Any, path: str) -> None:
    """Refuses a module outside the list, or a function or class defined in one."""
    if _allowed is None or path in ALWAYS_ALLOWED:
        return
    if isinstance(obj, types.ModuleType):
        if not allows(obj.__name__):
            raise _refuse(
                f"{path!r} is the module {obj.__name__!r}, outside the pool's allowed modules"
            )
        return
    if isinstance(obj, types.MethodType):
        # A bound method (`from random import randint`: a method of random's own
        # instance) is where its function was defined.
        check_object(obj.__func__, path)
        return
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, type)):
        module = getattr(obj, "__module__", None)
        if isinstance(module, str) and not allows(module):
            raise _refuse(f"{path!r} is defined in {module!r}, outside the pool's allowed modules")

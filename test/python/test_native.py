"""The compiled half (`snakebridge_agent._native`), its stub, and how the package loads it.

Nothing here starts a server: `serve` is only called with arguments it refuses before it
binds its socket.
"""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path
from typing import Any

import pytest

import snakebridge_agent
from snakebridge_agent import _native, dispatch, registry

# Even a `serve` that went too far could not bind (and serve) there.
NOWHERE = "/nonexistent-snakebridge-dir/w.sock"
STUB = Path(snakebridge_agent.__file__).with_name("_native.pyi")


def _stub() -> ast.Module:
    return ast.parse(STUB.read_text(encoding="utf-8"), filename=str(STUB))


def _public(names: Any) -> set[str]:
    return {name for name in names if not name.startswith("_")}


def _normalized(text: str | None) -> str:
    return " ".join((text or "").split())


# -- the stub matches the extension -----------------------------------------------------------


def test_the_stub_declares_exactly_what_the_extension_exports() -> None:
    tree = _stub()
    declared = {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")
    } | {
        node.target.id
        for node in tree.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }
    exported = _public(vars(_native))
    assert declared == exported == set(_native.__all__)
    stub_all = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", "") == "__all__" for t in node.targets)
    )
    assert stub_all == list(_native.__all__)


def test_the_stubs_functions_have_the_extensions_parameters() -> None:
    for node in _stub().body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            runtime = inspect.signature(getattr(_native, node.name))
            assert [a.arg for a in node.args.args] == list(runtime.parameters), node.name


def test_the_stubs_docstrings_are_the_rust_doc_comments() -> None:
    # The extension's own docstrings are the Rust doc comments; the stub's one-liners
    # open them.
    checked = 0
    for node in _stub().body:
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name.startswith("_"):
            continue
        runtime = getattr(_native, node.name)
        doc = ast.get_docstring(node)
        assert doc, node.name
        assert _normalized(runtime.__doc__).startswith(_normalized(doc)), node.name
        checked += 1
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, ast.FunctionDef):
                    assert hasattr(runtime, member.name), f"{node.name}.{member.name}"
                    assert ast.get_docstring(member), f"{node.name}.{member.name}"
    constants = [name for name in _native.__all__ if name.isupper()]
    assert checked + len(constants) == len(_native.__all__)
    getter_doc = ast.get_docstring(
        next(
            m
            for n in _stub().body
            if isinstance(n, ast.ClassDef) and n.name == "TensorBuffer"
            for m in n.body
            if isinstance(m, ast.FunctionDef) and m.name == "__array_interface__"
        )
    )
    assert getter_doc is not None
    runtime_doc = _native.TensorBuffer.__array_interface__.__doc__
    assert _normalized(runtime_doc).startswith(_normalized(getter_doc))


# -- the extension's behaviour that needs no server ---------------------------------------------


def test_registry_is_empty_in_a_process_that_serves_nothing() -> None:
    assert _native.registry_size() == 0
    assert registry.size() == 0
    assert type(registry.size()) is int


@pytest.mark.parametrize("cls", [_native.ElixirFunction, _native.TensorBuffer])
def test_the_classes_are_made_by_the_worker_only(cls: type) -> None:
    with pytest.raises(TypeError, match="cannot create"):
        cls()
    with pytest.raises(TypeError, match="not an acceptable base type"):
        type("Sub", (cls,), {})


def test_elixir_error() -> None:
    assert issubclass(_native.ElixirError, Exception)
    assert snakebridge_agent.ElixirError is _native.ElixirError
    assert snakebridge_agent.ElixirFunction is _native.ElixirFunction
    assert _native.ElixirError.__module__ == "snakebridge_agent"
    assert _native.ElixirFunction.__module__ == "snakebridge_agent"
    assert _native.TensorBuffer.__module__ == "snakebridge_agent._native"
    error = _native.ElixirError("it failed")
    assert str(error) == "it failed"
    error.elixir_type = "Elixir.ArgumentError"
    assert error.elixir_type == "Elixir.ArgumentError"


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((NOWHERE, "t", 0, dispatch), ValueError, "threads must be at least 1"),
        ((NOWHERE, "t", -1, dispatch), OverflowError, "negative"),
        ((NOWHERE.encode(), "t", 1, dispatch), TypeError, "'bytes' object"),
        ((NOWHERE, "t", 1, object()), AttributeError, "'call'"),
        ((NOWHERE, "t", 1, dispatch, "http"), ValueError, 'unknown carrier "http"'),
    ],
)
def test_serve_refuses_bad_arguments_before_binding(
    args: tuple[Any, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        _native.serve(*args)


def test_serve_raises_os_error_when_it_cannot_listen(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "w.sock"
    with pytest.raises(OSError, match=f"cannot listen on {path}"):
        _native.serve(path, "token", 1, dispatch)  # a path-like is accepted too


# -- how the package loads the extension ----------------------------------------------------------


@pytest.fixture
def unloaded(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """`snakebridge_agent._native` forgotten for the test (and restored after it): the
    module and the package's attribute."""
    monkeypatch.delitem(sys.modules, "snakebridge_agent._native")
    monkeypatch.delattr(snakebridge_agent, "_native")
    return monkeypatch


def test_load_native_does_nothing_without_the_variable(unloaded: pytest.MonkeyPatch) -> None:
    unloaded.delenv("SNAKEBRIDGE_AGENT_NATIVE")
    snakebridge_agent._load_native()
    assert "snakebridge_agent._native" not in sys.modules


def test_load_native_does_nothing_once_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNAKEBRIDGE_AGENT_NATIVE", "/nonexistent/native.so")
    snakebridge_agent._load_native()
    assert sys.modules["snakebridge_agent._native"] is _native


def test_load_native_names_a_missing_file(unloaded: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "native.abi3.so"
    unloaded.setenv("SNAKEBRIDGE_AGENT_NATIVE", str(missing))
    with pytest.raises(ImportError, match=f"the worker's native extension {missing} is missing"):
        snakebridge_agent._load_native()
    assert "snakebridge_agent._native" not in sys.modules


def test_load_native_refuses_a_file_that_is_no_module(
    unloaded: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = tmp_path / "native.txt"
    text.write_text("not a module", encoding="utf-8")
    unloaded.setenv("SNAKEBRIDGE_AGENT_NATIVE", str(text))
    with pytest.raises(ImportError, match="is not a Python extension module"):
        snakebridge_agent._load_native()


def test_load_native_forgets_a_module_that_fails_to_load(
    unloaded: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    failing = tmp_path / "native.py"
    failing.write_text("raise RuntimeError('half-loaded')\n", encoding="utf-8")
    unloaded.setenv("SNAKEBRIDGE_AGENT_NATIVE", str(failing))
    with pytest.raises(RuntimeError, match="half-loaded"):
        snakebridge_agent._load_native()
    assert "snakebridge_agent._native" not in sys.modules


def test_load_native_registers_the_module(unloaded: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "native.py"
    fake.write_text("LOADED = True\n", encoding="utf-8")
    unloaded.setenv("SNAKEBRIDGE_AGENT_NATIVE", str(fake))
    snakebridge_agent._load_native()
    module = sys.modules["snakebridge_agent._native"]
    assert module.LOADED is True
    assert module.__name__ == "snakebridge_agent._native"
    assert snakebridge_agent._native is module


def test_the_loaded_extension_is_an_attribute_of_the_package() -> None:
    assert snakebridge_agent._native is sys.modules["snakebridge_agent._native"]


def test_the_cores_constants_are_the_ones_the_agent_uses() -> None:
    from snakebridge_agent import allowlist, cli, dispatch, tensors

    assert allowlist.ALWAYS_ALLOWED == _native.ALWAYS_ALLOWED
    assert "snakebridge_agent.tools" in _native.ALWAYS_ALLOWED
    assert dispatch.NESTED_CALL == _native.NESTED_CALL_KEY == "__snakebridge_call__"
    assert cli.DEFAULT_THREADS == _native.DEFAULT_THREADS >= 1
    assert tensors.DTYPES == _native.DTYPES
    assert {"bool", "bfloat16", "float32", "complex128"} <= _native.DTYPES

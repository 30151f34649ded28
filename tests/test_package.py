"""Ring 1: the shape of the package (public namespace, purity of the core, typing marker)."""

from __future__ import annotations

import ast
import pathlib

import patchworks_async

PACKAGE = pathlib.Path(patchworks_async.__file__).parent
PURE = [
    "_adaptive",
    "_breaker",
    "_constants",
    "_convert",
    "_errors",
    "_events",
    "_outcomes",
    "_ratelimit",
    "_retry",
    "_sansio",
    "_validation",
    "_version",
    "_windows",
    "models",
    # The fake server's pure parts (its aiohttp adapter is testing/_server.py).
    "testing/_faults",
    "testing/_model",
    "testing/_quota",
    "testing/_records",
    "testing/_rules",
]


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = "." * node.level
            module = node.module or ""
            names.add(prefix + module)
            if node.level and not node.module:
                names.update(prefix + alias.name for alias in node.names)
    return names


def test_all_is_sorted_and_complete() -> None:
    exported = patchworks_async.__all__
    assert exported == sorted(exported)
    public = {name for name in vars(patchworks_async) if not name.startswith("_")}
    # Public submodules become attributes once something imports them.
    public -= {"models", "testing", "cli", "redis"}
    assert public <= set(exported) | {"annotations"}
    for name in exported:
        assert hasattr(patchworks_async, name), name


def _resolve(name: str, imported: str) -> str:
    """A relative import of module ``name`` as a PURE-style name (``testing/_quota``)."""
    level = len(imported) - len(imported.lstrip("."))
    package = name.split("/")[:-level]
    return "/".join([*package, imported.lstrip(".").split(".")[0]])


def test_pure_core_imports_neither_aiohttp_nor_asyncio() -> None:
    for name in PURE:
        imports = _imports(PACKAGE / f"{name}.py")
        for imported in imports:
            root = imported.lstrip(".").split(".")[0]
            assert root not in {"aiohttp", "asyncio", "aiolimiter", "backoff", "yarl"}, (
                name,
                imported,
            )
            if imported.startswith(".") and root:
                assert _resolve(name, imported) in PURE, (name, imported)


def test_only_the_transport_imports_aiohttp_in_the_client() -> None:
    users = {
        path.stem
        for path in PACKAGE.glob("_*.py")
        if any(imported.split(".")[0] == "aiohttp" for imported in _imports(path))
    }
    # _client only names aiohttp.ClientSession in its signature (the transport checks it).
    assert users <= {"_transport", "_client"}


def test_py_typed_ships() -> None:
    assert (PACKAGE / "py.typed").exists()


def test_errors_module_is_a_leaf() -> None:
    assert not [name for name in _imports(PACKAGE / "_errors.py") if name.startswith(".")]


def test_testing_all_is_sorted_and_complete() -> None:
    from patchworks_async import testing
    from patchworks_async.testing import _faults, _model, _quota, _records, _server

    exported = testing.__all__
    assert exported == sorted(exported)
    # Everything public that the package defines or re-exports, and everything public
    # that its modules (the adapter, the model, the faults, the quota, the records) declare,
    # FaultKind included, each the very object its module defines.
    public = {name for name in vars(testing) if not name.startswith("_")}
    public -= {"annotations"}
    assert public == set(exported)
    modules = (_server, _faults, _model, _quota, _records)
    declared = [name for module in modules for name in module.__all__]
    assert sorted(declared) == exported
    assert "FaultKind" in exported
    for module in modules:
        for name in module.__all__:
            assert getattr(testing, name) is getattr(module, name), name


def test_no_bare_assert_checks_anything_at_run_time() -> None:
    # ``python -O`` strips asserts: a runtime check raises a proper error instead.
    found = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Assert)
    ]
    assert found == []

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
    "testing/_core",
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


def _aiohttp_users(package_dir: pathlib.Path = PACKAGE) -> set[str]:
    """Every module of the package, at any depth, that imports aiohttp (or a submodule)."""
    return {
        path.relative_to(package_dir).as_posix()
        for path in package_dir.rglob("*.py")
        if any(imported.split(".")[0] == "aiohttp" for imported in _imports(path))
    }


def test_only_the_transport_and_the_fakes_adapter_import_aiohttp() -> None:
    # Issue 13: the whole package, subpackages (cli/, redis/, testing/) included.
    # _client names the session type as _transport.ClientSession.
    assert _aiohttp_users() == {"_transport.py", "testing/_server.py"}


def test_the_aiohttp_guard_looks_into_subpackages(tmp_path: pathlib.Path) -> None:
    (tmp_path / "cli").mkdir()
    (tmp_path / "_transport.py").write_text("import aiohttp\n")
    (tmp_path / "cli" / "_app.py").write_text("def f() -> None:\n    from aiohttp import web\n")
    (tmp_path / "cli" / "_other.py").write_text("import aiohttp_retry_lookalike\n")
    assert _aiohttp_users(tmp_path) == {"_transport.py", "cli/_app.py"}


def test_py_typed_ships() -> None:
    assert (PACKAGE / "py.typed").exists()


def test_errors_module_is_a_leaf() -> None:
    assert not [name for name in _imports(PACKAGE / "_errors.py") if name.startswith(".")]


def test_testing_all_is_sorted_and_complete() -> None:
    from patchworks_async import testing
    from patchworks_async.testing import _core, _faults, _model, _quota, _records, _server

    exported = testing.__all__
    assert exported == sorted(exported)
    # Everything public that the package defines or re-exports, and everything public
    # that its modules (the adapter, its core, the model, the faults, the quota, the
    # records) declare, FaultKind included, each the very object its module defines.
    public = {name for name in vars(testing) if not name.startswith("_")}
    public -= {"annotations"}
    assert public == set(exported)
    modules = (_server, _core, _faults, _model, _quota, _records)
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


def _module_graph(package_dir: pathlib.Path = PACKAGE) -> dict[str, set[str]]:
    """Every module of the package -> the package's modules it imports (TYPE_CHECKING too).

    ``from . import x`` counts as importing the module ``x``; an import of a package
    counts as its ``__init__``. Imports inside functions count as well: a cycle hidden
    in a function body or behind ``TYPE_CHECKING`` is still a cycle for a reader.
    """
    root = package_dir.parent
    modules = {
        ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): path
        for path in package_dir.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            edges.update(target for target in targets if target in modules and target != name)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of ``graph`` (one path each, from a module back to itself)."""
    found: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                found.append([*path, nxt])
            elif nxt not in path and nxt > start:  # each cycle once, from its smallest name
                walk(start, nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return found


def test_the_package_has_no_import_cycle() -> None:
    graph = _module_graph()
    assert graph["patchworks_async._oauth"] >= {"patchworks_async._pipeline"}
    assert graph["patchworks_async._bulk"] >= {"patchworks_async._pipeline"}
    # Before issue 13: _client -> _oauth -> _bulk => _client, _client -> _otel => _client,
    # _adaptive -> _ratelimit => _adaptive (=>: under TYPE_CHECKING).
    assert _cycles(graph) == []


def test_the_cycle_finder_sees_type_checking_imports(tmp_path: pathlib.Path) -> None:
    # The shape of the old cycle: _client -> _oauth -> _bulk, and _bulk importing
    # _client only under TYPE_CHECKING.
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from ._client import Client\n")
    (package / "_client.py").write_text("from . import _oauth\n")
    (package / "_oauth.py").write_text("from ._bulk import run\n")
    (package / "_bulk.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._client import Client\n"
    )
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "_a.py").write_text("from .. import _oauth\nfrom ._b import x\n")
    (package / "sub" / "_b.py").write_text("def f() -> None:\n    from ._a import y\n")
    graph = _module_graph(package)
    assert graph["pkg.sub._a"] == {"pkg._oauth", "pkg.sub._b"}
    assert _cycles(graph) == [
        ["pkg._bulk", "pkg._client", "pkg._oauth", "pkg._bulk"],
        ["pkg.sub._a", "pkg.sub._b", "pkg.sub._a"],
    ]


_REASON = "# Over 40 lines"


def test_long_functions_say_why() -> None:
    # Issue 13: no function over about 40 lines (docstring included) anywhere in the
    # package without a reason written on the line above it ("# Over 40 lines ...").
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(PACKAGE))
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            above = " ".join(line.strip() for line in lines[max(first - 3, 0) : first - 1])
            body = " ".join(line.strip() for line in lines[node.lineno : node.lineno + 30])
            if length > 40 and _REASON not in above and _REASON not in body:
                unexplained.append(f"{name}.{node.name}: {length} lines")
    assert unexplained == []


def test_the_readme_architecture_names_every_module() -> None:
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    names = {f"`{path.name}`" for path in PACKAGE.glob("*.py")}
    names |= {f"`{path.parent.name}/`" for path in PACKAGE.glob("*/__init__.py")}
    # The command line's and the Redis backend's modules, one line each too (the fake
    # server's parts are named in its own section: see the next test).
    for folder in ("cli", "redis"):
        names |= {
            f"`{folder}/{path.name}`"
            for path in (PACKAGE / folder).glob("_*.py")
            if path.name != "__init__.py"
        }
    assert sorted(name for name in names if name not in section) == []


def test_the_readme_says_how_the_fake_is_built_naming_every_part() -> None:
    # Issue 13: the fake server in parts; its README section names each of them.
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme.split("## Testing against FakePatchworks", 1)[1].split("\n## ", 1)[0]
    built = section.split("**How it is built.**", 1)[1].split("\n\n", 1)[0]
    built = " ".join(built.split())  # a name may be wrapped at a line's end
    parts = {f"`testing/{path.name}`" for path in (PACKAGE / "testing").glob("*.py")}
    assert sorted(part for part in parts - {"`testing/__init__.py`"} if part not in built) == []


def test_only_the_backoff_module_imports_python_backoff() -> None:
    # Issue 13: the backoff priming is written once (retries and Redis reconnects).
    users = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(imported.split(".")[0] == "backoff" for imported in _imports(path))
    }
    assert users == {"_backoff.py"}


def test_every_type_a_backend_author_needs_is_public() -> None:
    # Issue 13 (review): a backend written against LimiterBackend names its types from
    # the public namespace (typing_examples.py does), never from a private module.
    import typing

    from patchworks_async import LimiterBackend

    named: set[type] = set()
    for method in ("client_limiter", "instance_limiter", "bind", "attach", "pause", "aclose"):
        hints = typing.get_type_hints(getattr(LimiterBackend, method))
        for hint in hints.values():
            named.update(arg for arg in (hint, *typing.get_args(hint)) if isinstance(arg, type))
    exported = {getattr(patchworks_async, name) for name in patchworks_async.__all__}
    private = sorted(
        f"{kind.__module__}.{kind.__qualname__}"
        for kind in named
        if kind.__module__.startswith("patchworks_async") and kind not in exported
    )
    assert private == []
    assert {"Limiter", "PauseTarget"} <= set(patchworks_async.__all__)


def test_dead_seams_stay_removed() -> None:
    # Issue 13 (review): InstanceRegistry(factory=...) was passed by one test only,
    # client._backend and client._loop were read by nobody, and aiohttp.payload is not
    # aiohttp's public API (the transport imports its payloads from aiohttp itself).
    import inspect

    from patchworks_async import PatchworksClient
    from patchworks_async._limits import InstanceRegistry

    assert list(inspect.signature(InstanceRegistry).parameters) == ["max_size"]
    assert [name for name in ("_backend", "_loop") if hasattr(PatchworksClient, name)] == []
    aiohttp_modules = {
        name for name in _imports(PACKAGE / "_transport.py") if name.startswith("aiohttp")
    }
    assert aiohttp_modules == {"aiohttp"}

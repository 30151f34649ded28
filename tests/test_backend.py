"""``LimiterBackend`` is a runtime-checkable protocol: any class with its methods is one."""

from __future__ import annotations

import ast
import pathlib

import pytest

from patchworks_async import InvalidRequestError, LimiterBackend, PatchworksClient, RateLimit
from patchworks_async._limits import StrictLimiter


class DuckBackend:
    """A backend of a user's own: it does not subclass ``LimiterBackend``."""

    def __init__(self) -> None:
        self.fingerprints: list[str] = []

    def client_limiter(self, rate: RateLimit) -> StrictLimiter:
        return StrictLimiter(rate)

    def instance_limiter(self, connector: str, rate: RateLimit) -> StrictLimiter:
        return StrictLimiter(rate)

    def bind(self, credential_fingerprint: str) -> None:
        self.fingerprints.append(credential_fingerprint)

    def attach(self, gate: object) -> None:
        """Takes the gate."""

    def pause(self, seconds: float) -> None:
        """Shares nothing."""

    async def aclose(self) -> None:
        """Holds nothing."""


class Incomplete:
    def client_limiter(self, rate: RateLimit) -> StrictLimiter:
        return StrictLimiter(rate)


def test_a_class_with_the_methods_is_a_backend_and_is_bound() -> None:
    backend = DuckBackend()
    assert isinstance(backend, LimiterBackend)
    PatchworksClient(api_key="k", limiter=backend)
    assert len(backend.fingerprints) == 1
    assert "k" not in backend.fingerprints[0]


@pytest.mark.parametrize("limiter", [object(), Incomplete(), "redis://127.0.0.1"])
def test_anything_else_is_refused_naming_limiter(limiter: object) -> None:
    with pytest.raises(InvalidRequestError, match="LimiterBackend") as info:
        PatchworksClient(api_key="k", limiter=limiter)  # type: ignore[arg-type]
    assert info.value.field == "limiter"


def test_a_subclass_inherits_the_no_op_methods() -> None:
    class Mine(LimiterBackend):
        def client_limiter(self, rate: RateLimit) -> StrictLimiter:
            return StrictLimiter(rate)

        def instance_limiter(self, connector: str, rate: RateLimit) -> StrictLimiter:
            return StrictLimiter(rate)

    mine = Mine()
    PatchworksClient(api_key="k", limiter=mine)
    mine.pause(1.0)


def _imports(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names.add(node.module)
    return names


def test_the_redis_modules_import_each_other_without_a_cycle() -> None:
    package = pathlib.Path(__file__).parent.parent / "patchworks_async" / "redis"
    graph = {path.stem: _imports(path) for path in package.glob("_*.py")}

    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(
            name == goal or (name not in seen and reaches(name, goal, seen | {name}))
            for name in graph.get(start, set())
        )

    assert graph["_backend"] >= {"_connection", "_shared"}
    assert [name for name in graph if reaches(name, name)] == []

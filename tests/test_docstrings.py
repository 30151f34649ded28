"""Every public callable is documented, and the README's API reference lists every public name.

Pure: the public API is walked by ``tests/public_api.py``, nothing is called.
"""

from __future__ import annotations

import enum
import inspect
from typing import Any

from tests.public_api import README, public_callables, readme_section, reference, summary

NO_RETURN = {"None", "NoReturn", "Never"}


def _parameters(value: Any) -> list[str]:
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):  # a builtin without one: nothing to document
        return []
    return [name for name in signature.parameters if name not in ("self", "cls")]


def _returns_a_value(value: Any) -> bool:
    annotation = inspect.signature(value).return_annotation
    return annotation is not inspect.Signature.empty and str(annotation) not in NO_RETURN


def problems(name: str, value: Any) -> list[str]:
    """What the docstring of one public callable lacks."""
    if not summary(value):
        return [f"{name}: no docstring"]
    if isinstance(value, property):
        return []  # its summary says what it is
    if inspect.isclass(value):
        init = vars(value).get("__init__")
        if init is None or issubclass(value, enum.Enum) or getattr(value, "_is_protocol", False):
            return []  # documented where its __init__ is (a base class), or not constructed
        doc = (inspect.getdoc(value) or "") + (inspect.getdoc(init) or "")
        if _parameters(value) and "Args:" not in doc and "Attributes:" not in doc:
            return [f"{name}: takes arguments but has no Args: (or Attributes:) section"]
        return []
    doc = inspect.getdoc(value) or ""
    found = []
    if _parameters(value) and "Args:" not in doc:
        found.append(f"{name}: takes arguments but has no Args: section")
    generator = inspect.isgeneratorfunction(value) or inspect.isasyncgenfunction(value)
    if generator and "Yields:" not in doc:
        found.append(f"{name}: yields but has no Yields: section")
    if not generator and _returns_a_value(value) and not ("Returns:" in doc or "Yields:" in doc):
        found.append(f"{name}: returns a value but has no Returns: section")
    return found


def test_every_public_callable_has_its_docstring_sections() -> None:
    found = [problem for name, value in public_callables() for problem in problems(name, value)]
    assert found == []


def test_the_walk_sees_methods_properties_and_submodules() -> None:
    names = {name for name, _ in public_callables()}
    assert {
        "patchworks_async.PatchworksClient",
        "patchworks_async.OAuth.reauthorise_many",
        "patchworks_async.testing.FakePatchworks.add_instance",
        "patchworks_async.redis.RedisLimiter.from_url",
        "patchworks_async.LimiterBackend.client_limiter",
    } <= names


def test_the_checker_catches_what_is_missing() -> None:
    def bare(x: int) -> int:
        return x

    def no_args(x: int) -> None:
        """Summary only."""

    def no_returns() -> int:
        """Summary.

        Raises:
            ValueError: never.
        """
        return 1

    assert problems("bare", bare) == ["bare: no docstring"]
    assert problems("no_args", no_args) == ["no_args: takes arguments but has no Args: section"]
    assert problems("r", no_returns) == ["r: returns a value but has no Returns: section"]


def test_the_readme_api_reference_is_up_to_date() -> None:
    # Regenerate with: python -m tests.public_api
    assert readme_section(README.read_text()) == reference()

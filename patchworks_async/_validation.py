"""How the models report bad input: every bad field at once, by the path the caller wrote.

attrs' generated ``__init__`` raises a bare ``TypeError`` for a missing or unknown
argument, and its validators stop at the first bad field. :func:`report_errors`
wraps the generated ``__init__`` so that any failure becomes one
:class:`ModelValidationError` naming every bad field. The wrapper costs one call
on the success path (a ``try`` is free until it raises); the fields are examined
one by one only after the attrs ``__init__`` has failed.

:func:`from_mapping` is the models' ``from_dict``: plain data in, every problem
out, nested ``variables`` reported as ``variables[2].key``.

Pure: no I/O, no asyncio. Messages never hold a value (a value may be a secret).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Final, Self, TypeVar

import attrs

from ._errors import InvalidRequestError, ModelValidationError

T = TypeVar("T")

#: The pass-through field: never suggested, never listed as a field to use.
_EXTRA: Final = "extra"


def field_names(cls: type[Any]) -> tuple[str, ...]:
    """The model's argument names, in declaration order, ``extra`` left out."""
    return tuple(
        field.alias or field.name
        for field in attrs.fields(cls)
        if field.init and field.name != _EXTRA
    )


#: Longer unknown names are cut in messages (a hostile key could be megabytes long).
_MAX_SHOWN: Final = 80


def shown(name: object) -> str:
    """An unknown name as a message may show it: printable, escaped, at most 80 characters."""
    text = str(name)
    if not text.isprintable():  # a newline must not forge a log line
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def closest(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate ``name`` was most likely meant to be (difflib), or ``None``."""
    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(name: str, candidates: Sequence[str]) -> str:
    """`` (did you mean x?)`` for the closest candidate, or ``""`` when none is close.

    The one place a near miss is worded (model fields, CSV columns, command options).

    Args:
        name: what the user wrote.
        candidates: what it could have meant.

    Returns:
        The hint, with its leading space, or ``""``.
    """
    match = closest(name, candidates)
    return f" (did you mean {match}?)" if match else ""


def unknown_problem(name: str, candidates: Sequence[str]) -> str:
    """What to say about an unknown field or column: ``is not a field (did you mean y?)``.

    The message names the model (or the file) once, before its problems, so the
    problem does not repeat it.

    Args:
        name: the unknown name.
        candidates: the valid field names.

    Returns:
        The problem, to follow the name.
    """
    return f"is not a field{did_you_mean(name, candidates)}"


def _problem(error: InvalidRequestError, path: str) -> str:
    # The models' checks write "<path> <problem>": keep the problem, the path is the key.
    message = str(error)
    return message[len(path) + 1 :] if message.startswith(path + " ") else message


def _value_problems(stub: object, field: attrs.Attribute[Any], value: object) -> dict[str, str]:
    converter: Callable[[Any], Any] | None = field.converter  # type: ignore[assignment]  # ours are plain callables
    try:
        if converter is not None:
            value = converter(value)
        if field.validator is not None:
            field.validator(stub, field, value)
    except InvalidRequestError as error:
        path = error.field or field.name
        return {path: _problem(error, path)}
    except (TypeError, ValueError) as error:
        return {field.name: f"is not valid ({type(error).__name__})"}
    return {}


def field_problems(
    cls: type[Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> dict[str, str]:
    """Every problem of building ``cls(*args, **kwargs)``: path -> what is wrong.

    Unknown arguments come first, then the fields in declaration order.
    """
    fields = [field for field in attrs.fields(cls) if field.init]
    names = [field.alias or field.name for field in fields]
    problems: dict[str, str] = {}
    given = dict(kwargs)
    positional = [field for field in fields if not field.kw_only]
    for index, value in enumerate(args):
        if index >= len(positional):
            problems[f"argument {index + 1}"] = (
                f"is one positional argument too many: {cls.__name__} takes "
                f"{len(positional) or 'no'} positional argument(s); name the fields"
            )
            break
        name = positional[index].alias or positional[index].name
        if name in given:
            problems[name] = "is given twice (by position and by name)"
        given[name] = value
    for key in given:
        if key not in names:
            problems[shown(key)] = unknown_problem(str(key), field_names(cls))
    stub = object.__new__(cls)  # only its type is looked at (by the ``extra`` check)
    for field, name in zip(fields, names, strict=True):
        if name not in given:
            if field.default is attrs.NOTHING:
                problems[name] = "is required"
            continue
        problems.update(_value_problems(stub, field, given[name]))
    return problems


def construction_error(
    cls: type[Any], args: Sequence[Any], kwargs: Mapping[str, Any], error: Exception
) -> ModelValidationError:
    """The one error for a failed ``cls(*args, **kwargs)``, naming every bad field."""
    problems = field_problems(cls, args, kwargs)
    if not problems:
        # Nothing found field by field: say what attrs or a check said, as it is.
        if isinstance(error, InvalidRequestError) and error.field:
            problems = {error.field: _problem(error, error.field)}
        else:
            problems = {cls.__name__: str(error)}
    names = {field.alias or field.name for field in attrs.fields(cls) if field.init}
    unknown = any(name not in names for name in kwargs)
    return ModelValidationError(
        cls.__name__, problems, valid_fields=field_names(cls) if unknown else ()
    )


def report_errors(cls: type[T]) -> type[T]:
    """Wrap the attrs ``__init__`` of ``cls`` so any failure is one ModelValidationError.

    The signature stays attrs' (``functools.wraps``), for ``help()`` and ``inspect``;
    type checkers see attrs' own through its plugin.
    """
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ModelValidationError:
            raise
        except (TypeError, InvalidRequestError) as error:
            raise construction_error(cls, args, kwargs, error) from None

    setattr(cls, "__init__", __init__)  # noqa: B010  # mypy refuses a direct assignment to a method
    return cls


# Over 40 lines only by its docstring; the steps are the helpers below it.
def from_mapping(
    cls: type[T],
    data: object,
    *,
    allow_extra: bool,
    nested: Mapping[str, type[Any]],
) -> T:
    """Build ``cls`` from plain data; any problem raises one ModelValidationError.

    Args:
        cls: the model.
        data: a mapping of field names to plain values.
        allow_extra: put unknown keys in ``extra`` (when the model has one) instead of
            refusing them.
        nested: list field name -> the model of its items (built by its ``from_dict``).

    Returns:
        The model.

    Raises:
        ModelValidationError: every bad, missing or unknown field, by path.
    """
    if not isinstance(data, Mapping):
        raise ModelValidationError(
            cls.__name__,
            {},
            message=f"{cls.__name__} needs a mapping of fields, got {type(data).__name__}",
        )
    # ``extra`` is no key of the data: a key named so is unknown like any other, and
    # only ``allow_extra`` puts unknown keys into ``extra`` (never the data itself).
    names = set(field_names(cls))
    kwargs = {key: value for key, value in data.items() if key in names}
    unknown = {key: value for key, value in data.items() if key not in names}
    problems = _unknown_problems(cls, unknown, allow_extra)
    if _passes_extra(cls, allow_extra) and unknown and not problems:
        kwargs[_EXTRA] = unknown
    problems.update(_build_nested(kwargs, nested))
    if problems:
        problems.update(field_problems(cls, (), kwargs))
        refused = any(shown(key) in problems for key in unknown)
        valid = field_names(cls) if refused else ()
        raise ModelValidationError(cls.__name__, problems, valid_fields=valid)
    return cls(**kwargs)


def _passes_extra(cls: type[Any], allow_extra: bool) -> bool:
    """True when unknown keys go into the model's ``extra`` (asked, and it has one)."""
    return allow_extra and any(field.name == _EXTRA for field in attrs.fields(cls))


def _unknown_problems(
    cls: type[Any], unknown: Mapping[object, object], allow_extra: bool
) -> dict[str, str]:
    """A problem for each unknown key, unless ``extra`` takes them (never ``extra`` itself)."""
    passed = _passes_extra(cls, allow_extra)
    return {
        shown(key): unknown_problem(str(key), field_names(cls))
        for key in unknown
        # extra's own name is no key the API knows
        if not passed or key == _EXTRA
    }


def _build_nested(kwargs: dict[str, Any], nested: Mapping[str, type[Any]]) -> dict[str, str]:
    """Build the list fields' items in ``kwargs`` in place; return their problems by path.

    A list with a bad item is taken out of ``kwargs`` (its problems say why).
    """
    problems: dict[str, str] = {}
    for name, model in nested.items():
        items = kwargs.get(name)
        if isinstance(items, list | tuple):
            kwargs[name], inner = _build_items(name, items, model)
            if inner:
                problems.update(inner)
                del kwargs[name]
    return problems


def _build_items(
    name: str, items: Sequence[Any], model: type[Any]
) -> tuple[list[Any], dict[str, str]]:
    built: list[Any] = []
    problems: dict[str, str] = {}
    for index, item in enumerate(items):
        prefix = f"{name}[{index}]"
        if isinstance(item, model):
            built.append(item)
            continue
        if not isinstance(item, Mapping):
            problems[prefix] = f"must be an object, got {type(item).__name__}"
            continue
        try:
            built.append(model.from_dict(item))
        except ModelValidationError as error:
            for path, problem in error.errors.items():
                problems[f"{prefix}.{path}"] = problem
    return built, problems


class FromDict:
    """The models' ``from_dict`` (a mixin): plain data in, every bad field reported by its path."""

    __slots__ = ()

    #: List fields whose items are built from mappings by another model's from_dict.
    _nested: ClassVar[Mapping[str, type[FromDict]]] = {}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, allow_extra: bool = False) -> Self:
        """Build the model from plain data, such as JSON from a web request or a CSV row.

        Values must already have their JSON types (``rate_limit_duration`` an
        integer, not ``"60"``); ``variables`` may be a list of objects, each built as a
        :class:`Variable`. Unknown keys are refused, with the closest field suggested,
        unless ``allow_extra`` puts them in ``extra`` (the API tolerates extra keys;
        models without ``extra`` always refuse them).

        Args:
            data: field name -> plain value.
            allow_extra: pass unknown keys through in ``extra`` instead of refusing them.

        Returns:
            The model.

        Raises:
            ModelValidationError: every bad, missing or unknown field at once, by its
                path (``variables[2].key``), before anything is sent. It is an
                ``InvalidRequestError`` (a ``ValueError``) and a ``TypeError``.
        """
        return from_mapping(cls, data, allow_extra=allow_extra, nested=cls._nested)

"""What the command line turns into library values: credentials, the client, request fields.

Nothing here prints; problems raise :class:`InputError` (the command exits 2) or the
library's :class:`~patchworks_async.InvalidRequestError`. No message built here ever
holds a credential or a field's value (values such as ``variables`` may be secrets).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeVar

import orjson

from .. import _constants
from .._errors import ModelValidationError, problems_text
from .._validation import shown, unknown_problem
from ..models import AuthoriseRequest, Login, RateLimit, RateLimitUnit, ReauthoriseRequest

Model = TypeVar("Model", AuthoriseRequest, ReauthoriseRequest)

#: The option that sends fields and columns the models do not know, as they are.
ALLOW_UNKNOWN_FLAG: Final = "--allow-unknown-fields"

ENV_API_KEY: Final = _constants.ENV_API_KEY
ENV_TOKEN: Final = "PATCHWORKS_TOKEN"  # noqa: S105  # a variable's name, not a secret
ENV_USERNAME: Final = "PATCHWORKS_USERNAME"
ENV_PASSWORD: Final = "PATCHWORKS_PASSWORD"  # noqa: S105  # a variable's name, not a secret
ENV_LOGIN_URL: Final = "PATCHWORKS_LOGIN_URL"
ENV_BASE_URL: Final = _constants.ENV_BASE_URL

#: Columns and fields given as text that the API types as integers.
INT_FIELDS: Final = frozenset({"rate_limit_duration", "connection_pool_id"})
_INTEGER: Final = re.compile(r"[+-]?[0-9]+")
_RATE: Final = re.compile(r"\s*([0-9]+)\s*/\s*([a-z]+?)s?\s*")


class InputError(Exception):
    """Bad command-line input: a file that cannot be read, a bad format or option value.

    The command exits 2 and nothing has been sent.
    """


def api_key_from_file(path: str) -> str:
    """The first line of ``path``, stripped (the rest of the file is ignored).

    Raises:
        InputError: the file cannot be read, is not text, or its first line is blank.
    """
    try:
        with open(path, encoding="utf-8") as file:
            first = file.readline()
    except OSError as exc:
        raise InputError(f"cannot read --api-key-file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"--api-key-file {path} is not UTF-8 text") from None
    key = first.strip()
    if not key:
        raise InputError(f"--api-key-file {path}: the first line is empty")
    return key


def credentials(api_key_file: str | None, environ: Mapping[str, str]) -> dict[str, Any]:
    """The credential keyword for :class:`PatchworksClient`, by precedence.

    ``--api-key-file``, then ``PATCHWORKS_API_KEY``, then ``PATCHWORKS_TOKEN``,
    then ``PATCHWORKS_USERNAME`` with ``PATCHWORKS_PASSWORD`` (and
    ``PATCHWORKS_LOGIN_URL``). Empty variables count as unset.

    Raises:
        InputError: no credentials, or a username without a password (or the reverse).
    """
    if api_key_file is not None:
        return {"api_key": api_key_from_file(api_key_file)}
    api_key = environ.get(ENV_API_KEY)
    if api_key:
        return {"api_key": api_key}
    token = environ.get(ENV_TOKEN)
    if token:
        return {"token": token}
    username = environ.get(ENV_USERNAME)
    password = environ.get(ENV_PASSWORD)
    if username or password:
        if not (username and password):
            raise InputError(f"set both {ENV_USERNAME} and {ENV_PASSWORD} to log in")
        login_url = environ.get(ENV_LOGIN_URL) or _constants.DEFAULT_LOGIN_URL
        return {"login": Login(username, password, url=login_url)}
    raise InputError(
        f"no credentials: set {ENV_API_KEY} (or {ENV_TOKEN}, or {ENV_USERNAME} and "
        f"{ENV_PASSWORD}), or pass --api-key-file"
    )


def base_url(given: str | None, environ: Mapping[str, str]) -> str | None:
    """``--base-url``, else ``PATCHWORKS_BASE_URL``, else ``None`` (the library's default)."""
    return given or environ.get(ENV_BASE_URL) or None


def parse_rate_limit(text: str) -> RateLimit | None:
    """``"240/minute"`` (also ``240/minutes``) as a RateLimit; ``"none"`` or ``"off"`` as None.

    Raises:
        ValueError: any other text (argparse turns it into a usage error).
    """
    lowered = text.strip().lower()
    if lowered in ("none", "off"):
        return None
    match = _RATE.fullmatch(lowered)
    units = ", ".join(unit.value for unit in RateLimitUnit)
    if match is None or match.group(2) not in {unit.value for unit in RateLimitUnit}:
        raise ValueError(f"expected N/UNIT with UNIT one of {units} (or 'none'), got {text!r}")
    count = int(match.group(1))
    if count < 1:
        raise ValueError("the rate must be at least 1")
    return RateLimit(RateLimitUnit(match.group(2)), count)


def text_fields(cells: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Fields given as text (CSV cells, ``--field`` options) as JSON-ready values.

    Empty text means unset. ``rate_limit_duration`` and ``connection_pool_id`` become
    integers; ``variables`` is taken as JSON when it starts with ``[`` (a JSON array),
    else kept as a string (the spec types it as a string). Everything else stays text.
    Text that cannot be what its field needs is not guessed at: it is reported.

    Args:
        cells: field name -> text.

    Returns:
        The fields that could be read, and field name -> what is wrong with the others
        (worded as the models word it, to be merged with their problems).
    """
    fields: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for key, text in cells.items():
        if text == "":
            continue
        if key in INT_FIELDS:
            if _INTEGER.fullmatch(text.strip()):
                fields[key] = int(text)
            else:
                problems[key] = "must be an integer"
        elif key == "variables":
            value = _variables(text)
            if value is None:
                problems[key] = "starts with [ but is not a JSON array (invalid JSON)"
            else:
                fields[key] = value
        else:
            fields[key] = text
    return fields, problems


def _variables(text: str) -> Any:
    """A JSON array as a list, other text as it is; ``None`` for a broken JSON array."""
    if not text.lstrip().startswith("["):
        return text
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def build_request(
    cls: type[Model], data: Mapping[str, Any], problems: Mapping[str, str], *, allow_unknown: bool
) -> Model:
    """``cls.from_dict(data)``, its problems merged with those found reading the text.

    Args:
        cls: the request model.
        data: the fields that could be read.
        problems: field -> what is wrong, for the fields that could not (``text_fields``).
        allow_unknown: send unknown fields as they are (``extra``) instead of refusing them.

    Returns:
        The request.

    Raises:
        ModelValidationError: every problem at once, those of ``problems`` first.
    """
    try:
        built = cls.from_dict(data, allow_extra=allow_unknown)
    except ModelValidationError as error:
        merged = {**problems}
        merged.update((path, text) for path, text in error.errors.items() if path not in problems)
        raise ModelValidationError(cls.__name__, merged, valid_fields=error.valid_fields) from None
    if problems:
        raise ModelValidationError(cls.__name__, problems)
    return built


def field_options(pairs: Sequence[str]) -> dict[str, str]:
    """``["key=value", ...]`` from ``--field`` options as a dict.

    Raises:
        InputError: an option without ``=``, with an empty key, or a key given twice
            (which value was meant is not guessed).
    """
    fields: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError("--field expects KEY=VALUE, e.g. --field timezone=Europe/London")
        if key in fields:
            raise InputError(f"--field {shown(key)} is given twice: give each field once")
        fields[key] = value
    return fields


def json_object(text: str | None, file: str | None) -> dict[str, Any]:
    """The object given by ``--json TEXT`` or ``--json-file PATH`` (``-`` is stdin); ``{}``.

    Raises:
        InputError: unreadable file, invalid JSON, or JSON that is not an object.
    """
    if file is not None:
        text = _read_text(file)
    if text is None:
        return {}
    where = "--json-file" if file is not None else "--json"
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a JSON object, got {_json_type(value)}")
    return value


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as exc:
        raise InputError(f"cannot read --json-file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"--json-file {path} is not UTF-8 text") from None


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def request_from_options(
    cls: type[Model],
    json_text: str | None,
    json_file: str | None,
    fields: Sequence[str],
    *,
    allow_unknown: bool = False,
) -> Model:
    """Build a request model from ``--json``/``--json-file`` overlaid with ``--field`` options.

    Args:
        cls: AuthoriseRequest or ReauthoriseRequest.
        json_text, json_file: ``--json`` and ``--json-file`` (at most one is given).
        fields: the ``--field KEY=VALUE`` options.
        allow_unknown: send fields the model does not know as they are (``extra``)
            instead of refusing them.

    Returns:
        The request.

    Raises:
        InputError: a bad option or file.
        ModelValidationError: the fields do not fit ``cls``: every bad, missing or
            unknown one is named (an unknown one with the closest field).
    """
    data = json_object(json_text, json_file)
    given, problems = text_fields(field_options(fields))
    data.update(given)
    return build_request(cls, data, problems, allow_unknown=allow_unknown)


def unknown_columns_error(
    where: str, unknown: Sequence[str], valid: Sequence[str], *, kind: str = "column"
) -> InputError:
    """The refusal of columns (or JSON keys) that are not reauthorise fields.

    Worded as a request's unknown fields are (``_validation.unknown_problem``,
    ``problems_text``), names cut to 80 printable characters.

    Args:
        where: the file, for the message.
        unknown: the unknown names, in the order found.
        valid: the fields the names could have meant.
        kind: ``"column"`` (CSV) or ``"key"`` (JSON Lines).

    Returns:
        An :class:`InputError` naming each column, its closest field, the valid fields
        and the two options that accept it.
    """
    problems = {f"{kind} {shown(name)}": unknown_problem(name, valid) for name in unknown}
    return InputError(
        f"{where}: {problems_text(problems, valid)}; pass {ALLOW_UNKNOWN_FLAG} to send "
        f"unknown {kind}s as they are, or --ignore-column NAME to leave one out"
    )

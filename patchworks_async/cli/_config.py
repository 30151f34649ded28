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
from .._errors import InvalidRequestError
from .._validation import closest
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


def text_fields(cells: Mapping[str, str]) -> dict[str, Any]:
    """Fields given as text (CSV cells, ``--field`` options) as JSON-ready values.

    Empty text means unset. ``rate_limit_duration`` and ``connection_pool_id`` become
    integers; ``variables`` is taken as JSON when it parses as a JSON array, else
    kept as a string (the spec types it as a string). Everything else stays text.

    Raises:
        InvalidRequestError: an integer field that is not an integer.
    """
    fields: dict[str, Any] = {}
    for key, text in cells.items():
        if text == "":
            continue
        if key in INT_FIELDS:
            if not _INTEGER.fullmatch(text.strip()):
                raise InvalidRequestError(f"{key} must be an integer", field=key)
            fields[key] = int(text)
        elif key == "variables":
            fields[key] = _variables(text)
        else:
            fields[key] = text
    return fields


def _variables(text: str) -> Any:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    return value if isinstance(value, list) else text


def field_options(pairs: Sequence[str]) -> dict[str, str]:
    """``["key=value", ...]`` from ``--field`` options as a dict (a later key wins).

    Raises:
        InputError: an option without ``=`` or with an empty key.
    """
    fields: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError("--field expects KEY=VALUE, e.g. --field timezone=Europe/London")
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
    data.update(text_fields(field_options(fields)))
    return cls.from_dict(data, allow_extra=allow_unknown)


def unknown_columns_error(
    where: str, unknown: Sequence[str], valid: Sequence[str], *, allow_flag: str
) -> InputError:
    """The refusal of columns (or JSON keys) that are not reauthorise fields.

    Args:
        where: the file, for the message.
        unknown: the unknown names, in the order found.
        valid: the fields the names could have meant.
        allow_flag: the option that sends them anyway.

    Returns:
        An :class:`InputError` naming each column, its closest field, the valid fields
        and the two options that accept it.
    """
    described = []
    for name in unknown:
        match = closest(name, valid)
        described.append(f"{name} (did you mean {match}?)" if match else name)
    return InputError(
        f"{where}: column(s) or key(s) {', '.join(described)} are not reauthorise fields "
        f"(valid fields: {', '.join(valid)}); pass {allow_flag} to send them as they are, "
        f"or --ignore-column NAME to leave one out"
    )

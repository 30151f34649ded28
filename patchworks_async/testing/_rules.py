"""The fake's request rules: the routes, the body they take, Laravel's 422 validation.

Pure (no aiohttp, no asyncio): which raw path takes which method and names which
connector; whether a body is a JSON object; and a body (a parsed JSON object) checked
against a list of rules, the errors out, each field's messages in the order of the
rules, as the platform answers them. Change a rule here without reading anything else
of the fake.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import unquote

import orjson

JSON: Final = "application/json"

LOGIN_PATH: Final = "/fabric/api/login"
AUTHENTICATE: Final = "/api/v1/oauth/authenticate"
AUTHORISE: Final = "/api/v1/oauth/authorise"
WOO_APP_AUTH: Final = "/api/v1/oauth/woo-app-auth"
_REAUTHORISE: Final = re.compile(r"/api/v1/oauth/([^/]+)/reauthorise")
_METHODS: Final[Mapping[str, str]] = {
    AUTHENTICATE: "POST",
    AUTHORISE: "POST",
    WOO_APP_AUTH: "POST",
    LOGIN_PATH: "POST",
}

UNITS: Final = ("second", "minute", "hour", "day")

# A field's kind: how its value is checked.
STRING: Final = "string"
INTEGER: Final = "integer"
DURATION: Final = "duration"
UNIT: Final = "unit"
VARIABLES: Final = "variables"

Rules = Sequence[tuple[str, str]]

LOGIN_REQUIRED: Final[Rules] = (("username", STRING), ("password", STRING))
AUTHORISE_REQUIRED: Final[Rules] = (
    ("authentication_implementation_id", STRING),
    ("timezone", STRING),
    ("date_format", STRING),
    ("rate_limit_unit", UNIT),
    ("rate_limit_duration", DURATION),
)
AUTHORISE_OPTIONAL: Final[Rules] = (
    ("connection_pool_id", INTEGER),
    ("variables", VARIABLES),
    ("session_id", STRING),
    ("platform_app_key", STRING),
    ("certificate_id", STRING),
    ("name", STRING),
)
REAUTHORISE_OPTIONAL: Final[Rules] = (
    ("authentication_implementation_id", STRING),
    ("type", STRING),
    ("timezone", STRING),
    ("date_format", STRING),
    ("rate_limit_unit", UNIT),
    ("rate_limit_duration", DURATION),
    ("connection_pool_id", INTEGER),
    ("variables", VARIABLES),
    ("name", STRING),
)


def route(path: str) -> tuple[str, str | None] | None:
    """The method a raw path takes, and the connector it names.

    Args:
        path: the raw path (percent-encoding kept), without the query.

    Returns:
        ``(method, connector)``, the connector percent-decoded (a ``%2F`` stays in one
        segment) or ``None`` for the routes without one; ``None`` for no route.
    """
    method = _METHODS.get(path)
    if method is not None:
        return method, None
    match = _REAUTHORISE.fullmatch(path)
    if match is None or match.group(1) in (".", ".."):
        return None
    return "PATCH", unquote(match.group(1))


def loads(body: bytes) -> tuple[Any, bool]:
    """Parse a JSON body.

    Args:
        body: the bytes.

    Returns:
        ``(value, True)``, or ``(None, False)`` when it is not JSON.
    """
    try:
        return orjson.loads(body), True
    except orjson.JSONDecodeError:
        return None, False


def json_object(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, Any] | None, bool]:
    """The body as a JSON object, as a route that takes one reads it.

    Args:
        headers: the request's headers (``Content-Type`` is read).
        body: the body bytes.

    Returns:
        ``(object, False)``; ``(None, True)`` when the content type is not JSON or the
        body is not JSON (a request a client should not send); ``(None, False)`` for
        JSON that is not an object.
    """
    content_type = headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if content_type != JSON and not content_type.endswith("+json"):
        return None, True
    value, ok = loads(body)
    if not ok:
        return None, True
    if not isinstance(value, dict):
        return None, False
    return value, False


def _label(field: str) -> str:
    return field.replace("_", " ")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_variables(field: str, value: Any, errors: dict[str, list[str]]) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        errors[field] = [f"The {_label(field)} field must be a string or an array."]
        return
    for index, item in enumerate(value):
        where = f"{field}.{index}"
        if not isinstance(item, dict):
            errors[where] = [f"The {where} field must be an array."]
            continue
        key = item.get("key")
        if key is None or (isinstance(key, str) and not key.strip()):
            errors[f"{where}.key"] = [f"The {where}.key field is required."]
        elif not isinstance(key, str):
            errors[f"{where}.key"] = [f"The {where}.key field must be a string."]


def _check_field(field: str, kind: str, value: Any, errors: dict[str, list[str]]) -> None:
    label = _label(field)
    if kind == STRING:
        if not isinstance(value, str):
            errors[field] = [f"The {label} field must be a string."]
    elif kind == INTEGER:
        if not _is_int(value):
            errors[field] = [f"The {label} field must be an integer."]
    elif kind == DURATION:
        if not _is_int(value):
            errors[field] = [f"The {label} field must be an integer."]
        elif value < 1:
            errors[field] = [f"The {label} field must be at least 1."]
    elif kind == UNIT:
        if value not in UNITS:
            errors[field] = [f"The selected {label} is invalid."]
    elif kind == VARIABLES:
        _check_variables(field, value, errors)


def validate(body: Mapping[str, Any], required: Rules, optional: Rules) -> dict[str, list[str]]:
    """Check a body against Laravel-style rules.

    A required field that is missing, ``null`` or a blank string is "required"; an
    optional one is checked only when present.

    Args:
        body: the request's JSON object.
        required: ``(field, kind)`` pairs that must be present.
        optional: ``(field, kind)`` pairs checked when present.

    Returns:
        Field (or ``variables.N.key``) -> its messages, in the order of the rules;
        empty when the body is valid.
    """
    errors: dict[str, list[str]] = {}
    for field, kind in required:
        value = body.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            errors[field] = [f"The {_label(field)} field is required."]
        else:
            _check_field(field, kind, value, errors)
    for field, kind in optional:
        if field in body:
            _check_field(field, kind, body[field], errors)
    return errors


def validation_payload(errors: Mapping[str, list[str]]) -> dict[str, Any]:
    """Laravel's 422 body: the first message (with how many more) and every error.

    Args:
        errors: what :func:`validate` found; not empty.

    Returns:
        ``{"message": ..., "errors": ...}``.
    """
    messages = [message for field_messages in errors.values() for message in field_messages]
    message = messages[0]
    more = len(messages) - 1
    if more == 1:
        message += " (and 1 more error)"
    elif more > 1:
        message += f" (and {more} more errors)"
    return {"message": message, "errors": dict(errors)}

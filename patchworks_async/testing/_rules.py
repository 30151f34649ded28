"""The fake's request-body rules: Laravel's 422 validation, as the platform answers it.

Pure (no aiohttp, no asyncio): a body (a parsed JSON object) and a list of rules in,
the errors out, each field's messages in the order of the rules. Change a rule here
without reading anything else of the fake.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

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

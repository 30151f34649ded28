"""Payloads and configuration values of the Patchworks Core API, as frozen attrs records.

Field names are the spec's (``../shared/spec/patchworks-oauth.openapi.json``).
Every value is checked when the record is built, so bad input raises
:class:`~patchworks_async.ModelValidationError` (an ``InvalidRequestError``, and a
``TypeError`` like attrs' own) naming every bad field at once, before anything is
sent: wrong types and values, missing required fields and unknown arguments alike.
Messages name the field by its path as the caller wrote it (``rate_limit_unit``,
``variables[2].key``) and the wrong type, never the value (values such as
``variables`` may hold secrets). ``from_dict`` builds a record from plain data
(JSON from a web request, a CSV row) with the same checks.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, TypeAlias

import attrs

from ._errors import InvalidRequestError
from ._validation import FromDict, report_errors

__all__ = [
    "AuthoriseRequest",
    "Connector",
    "ErrorResponse",
    "Instance",
    "Login",
    "RateLimit",
    "RateLimitUnit",
    "RateLimitUnitName",
    "ReauthoriseRequest",
    "Variable",
]

#: An instance id, the ``{connector}`` of ``/api/v1/oauth/{connector}/reauthorise``:
#: a string or an integer (``1`` and ``"1"`` name the same instance).
Connector: TypeAlias = str | int

#: The spec's ``rate_limit_unit`` values as text; a type checker refuses any other string.
RateLimitUnitName: TypeAlias = Literal["second", "minute", "hour", "day"]

# PHP (and orjson) integers are 64-bit: anything wider cannot be sent faithfully.
_INT64_MAX: Final = 2**63 - 1


class RateLimitUnit(enum.StrEnum):
    """The spec's ``rate_limit_unit`` enum."""

    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    @property
    def seconds(self) -> float:
        """The length of one unit in seconds."""
        return _UNIT_SECONDS[self]


_UNIT_SECONDS: Final = {
    RateLimitUnit.SECOND: 1.0,
    RateLimitUnit.MINUTE: 60.0,
    RateLimitUnit.HOUR: 3600.0,
    RateLimitUnit.DAY: 86400.0,
}


def _type_name(value: object) -> str:
    return type(value).__name__


def _coerce_unit(value: object, field: str) -> RateLimitUnit:
    if isinstance(value, RateLimitUnit):
        return value
    if isinstance(value, str):
        try:
            return RateLimitUnit(value)
        except ValueError:
            pass
        allowed = ", ".join(unit.value for unit in RateLimitUnit)
        raise InvalidRequestError(f"{field} must be one of {allowed}", field=field)
    raise InvalidRequestError(
        f"{field} must be a string (one of second, minute, hour, day), got {_type_name(value)}",
        field=field,
    )


# The converters' parameter types are the constructors' (attrs' mypy plugin): a string
# that is not one of the four units is a type error as well as a runtime error.
def _unit(value: RateLimitUnit | RateLimitUnitName) -> RateLimitUnit:
    return _coerce_unit(value, "unit")


def _optional_rate_limit_unit(
    value: RateLimitUnit | RateLimitUnitName | None,
) -> RateLimitUnit | None:
    return None if value is None else _coerce_unit(value, "rate_limit_unit")


def _rate_limit_unit(value: RateLimitUnit | RateLimitUnitName) -> RateLimitUnit:
    return _coerce_unit(value, "rate_limit_unit")


def _check_int(field: str, value: object, *, minimum: int | None = None) -> None:
    """Raise unless ``value`` is a 64-bit int (a bool is not an int) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(
            f"{field} must be an integer, got {_type_name(value)}", field=field
        )
    if minimum is not None and value < minimum:
        raise InvalidRequestError(f"{field} must be at least {minimum}", field=field)
    if abs(value) > _INT64_MAX:
        raise InvalidRequestError(f"{field} does not fit in a 64-bit integer", field=field)


def _check_str(field: str, value: object, *, non_empty: bool = False) -> None:
    """Raise unless ``value`` is a str (non-empty when asked)."""
    if not isinstance(value, str):
        raise InvalidRequestError(f"{field} must be a string, got {_type_name(value)}", field=field)
    if non_empty and not value:
        raise InvalidRequestError(f"{field} must not be empty", field=field)


def _check_key(field: str, key: object) -> None:
    """Raise unless the key of the object at ``field`` is a str (the error names ``field``)."""
    if not isinstance(key, str):
        raise InvalidRequestError(
            f"{field} keys must be strings, got {_type_name(key)}", field=field
        )


def _required_str(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _check_str(attribute.name, value, non_empty=True)


def _optional_str(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _check_str(attribute.name, value)


def _positive_int(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _check_int(attribute.name, value, minimum=1)


def _optional_positive_int(
    _instance: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    if value is not None:
        _check_int(attribute.name, value, minimum=1)


def _optional_int(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _check_int(attribute.name, value)


def _check_json_value(field: str, value: object, *, depth: int = 0) -> None:
    """Raise unless ``value`` can be sent as JSON faithfully (no NaN, no huge ints, no cycles)."""
    if depth > 32:
        raise InvalidRequestError(f"{field} is nested more than 32 levels deep", field=field)
    if value is None or isinstance(value, str | bool):
        return
    if isinstance(value, int):
        _check_int(field, value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequestError(f"{field} must be a finite number", field=field)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_key(field, key)
            _check_json_value(f"{field}.{key}", item, depth=depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json_value(f"{field}[{index}]", item, depth=depth + 1)
    else:
        raise InvalidRequestError(
            f"{field} must be a JSON value, got {_type_name(value)}", field=field
        )


def _json_scalar(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, Mapping | list | tuple):
        raise InvalidRequestError(
            f"{attribute.name} must be a string, number, boolean or null, got {_type_name(value)}",
            field=attribute.name,
        )
    _check_json_value(attribute.name, value)


def _optional_bool(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise InvalidRequestError(
            f"{attribute.name} must be a boolean, got {_type_name(value)}", field=attribute.name
        )


def _optional_json_object(
    _instance: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"{attribute.name} must be a mapping, got {_type_name(value)}", field=attribute.name
        )
    _check_json_value(attribute.name, value)


@attrs.frozen(kw_only=True)
class Variable(FromDict):
    """One entry of ``variables`` as the documentation's validation rules describe it.

    ``variables.*.key``, ``.value``, ``.label``, ``.secret``, ``.locked``,
    ``.pivot.*`` and (for reauthorise) ``.id``. Fields left ``None`` are not sent.
    ``value`` is hidden from ``repr`` because a variable may be a secret.

    Attributes:
        key: the variable's key (required).
        value: its value: a string, number, boolean or ``None`` (hidden from ``repr``).
        label: a label to show.
        secret: whether the value is a secret.
        locked: whether the variable is locked.
        id: the variable's id (reauthorise only).
        pivot: the pivot object, a JSON object sent as given.
    """

    key: str = attrs.field(validator=_required_str)
    value: str | int | float | bool | None = attrs.field(validator=_json_scalar, repr=False)
    label: str | None = attrs.field(default=None, validator=_optional_str)
    secret: bool | None = attrs.field(default=None, validator=_optional_bool)
    locked: bool | None = attrs.field(default=None, validator=_optional_bool)
    id: int | None = attrs.field(default=None, validator=_optional_int)
    pivot: Mapping[str, Any] | None = attrs.field(default=None, validator=_optional_json_object)


def _variables(value: str | Sequence[Variable] | None) -> str | tuple[Variable, ...] | None:
    """Keep a string as it is; freeze a sequence of Variable into a tuple."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return tuple(value)
    raise InvalidRequestError(
        f"variables must be a string or a sequence of Variable, got {_type_name(value)}",
        field="variables",
    )


def _check_variables(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None or isinstance(value, str):
        return
    for index, item in enumerate(value if isinstance(value, tuple) else ()):
        if not isinstance(item, Variable):
            raise InvalidRequestError(
                f"variables[{index}] must be a Variable, got {_type_name(item)}",
                field=f"variables[{index}]",
            )


def _check_extra(instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"extra must be a mapping, got {_type_name(value)}", field="extra"
        )
    known = {field.name for field in attrs.fields(type(instance))}  # type: ignore[arg-type]
    for key in value:
        _check_key("extra", key)
        if key in known:
            raise InvalidRequestError(
                f"extra.{key} repeats a field of {type(instance).__name__}: set the field instead",
                field=f"extra.{key}",
            )
    _check_json_value("extra", value)


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return {} if value is None else dict(value) if isinstance(value, Mapping) else value


@attrs.frozen(kw_only=True)
class AuthoriseRequest(FromDict):
    """Body of ``POST /api/v1/oauth/authorise``: creates a new authenticated instance.

    The five required and five optional fields of the spec's
    ``OauthAuthoriseAuthoriseRequest``. ``rate_limit_duration`` is the number of
    requests per one ``rate_limit_unit`` (DOMAIN.md). ``variables`` is either a
    string, sent unchanged as the spec types it, or a sequence of
    :class:`Variable`, sent as a JSON array as the validation rules describe.
    ``extra`` passes further fields through unchanged (the documentation's
    validation rules also list ``name``, which the spec leaves out).

    Attributes:
        authentication_implementation_id: the authentication implementation (required).
        timezone: the instance's timezone, e.g. ``"Europe/London"`` (required).
        date_format: the instance's date format (required).
        rate_limit_unit: the unit of the instance's rate limit (required).
        rate_limit_duration: requests per ``rate_limit_unit`` (required, positive).
        connection_pool_id: the connection pool to use.
        variables: a string, or a sequence of :class:`Variable` (hidden from ``repr``).
        session_id: a session id (hidden from ``repr``).
        platform_app_key: the platform's app key (hidden from ``repr``).
        certificate_id: a certificate id.
        extra: further fields, sent unchanged (hidden from ``repr``).
    """

    authentication_implementation_id: str = attrs.field(validator=_required_str)
    timezone: str = attrs.field(validator=_required_str)
    date_format: str = attrs.field(validator=_required_str)
    rate_limit_unit: RateLimitUnit = attrs.field(converter=_rate_limit_unit)
    rate_limit_duration: int = attrs.field(validator=_positive_int)
    connection_pool_id: int | None = attrs.field(default=None, validator=_optional_int)
    variables: str | tuple[Variable, ...] | None = attrs.field(
        default=None, converter=_variables, validator=_check_variables, repr=False
    )
    session_id: str | None = attrs.field(default=None, validator=_optional_str, repr=False)
    platform_app_key: str | None = attrs.field(default=None, validator=_optional_str, repr=False)
    certificate_id: str | None = attrs.field(default=None, validator=_optional_str)
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_frozen_mapping, validator=_check_extra, repr=False
    )

    # Cached (attrs keeps it in a slot, outside the fields: not compared, not pickled): a
    # request sent again gives the same RateLimit, so the limiter registry sees the same
    # value by identity, and no RateLimit is built and checked again (about 1 us a call).
    @functools.cached_property
    def rate_limit(self) -> RateLimit:
        """The instance's rate limit as one value."""
        return RateLimit(self.rate_limit_unit, self.rate_limit_duration)


@attrs.frozen(kw_only=True)
class ReauthoriseRequest(FromDict):
    """Body of ``PATCH /api/v1/oauth/{connector}/reauthorise``: all eight fields optional.

    Fields left ``None`` are omitted from the body, not sent as null.

    Attributes:
        authentication_implementation_id: a new authentication implementation.
        type: a new type.
        timezone: a new timezone.
        date_format: a new date format.
        rate_limit_unit: a new unit of the instance's rate limit.
        rate_limit_duration: new requests per ``rate_limit_unit`` (positive).
        connection_pool_id: a new connection pool.
        variables: a string, or a sequence of :class:`Variable` (hidden from ``repr``).
        extra: further fields, sent unchanged (hidden from ``repr``).
    """

    authentication_implementation_id: str | None = attrs.field(
        default=None, validator=_optional_str
    )
    type: str | None = attrs.field(default=None, validator=_optional_str)
    timezone: str | None = attrs.field(default=None, validator=_optional_str)
    date_format: str | None = attrs.field(default=None, validator=_optional_str)
    rate_limit_unit: RateLimitUnit | None = attrs.field(
        default=None, converter=_optional_rate_limit_unit
    )
    rate_limit_duration: int | None = attrs.field(default=None, validator=_optional_positive_int)
    connection_pool_id: int | None = attrs.field(default=None, validator=_optional_int)
    variables: str | tuple[Variable, ...] | None = attrs.field(
        default=None, converter=_variables, validator=_check_variables, repr=False
    )
    extra: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_frozen_mapping, validator=_check_extra, repr=False
    )

    # Cached as AuthoriseRequest.rate_limit is: every reauthorise with rate fields asks.
    @functools.cached_property
    def rate_limit(self) -> RateLimit | None:
        """The new rate limit when the request carries both rate fields, else ``None``."""
        if self.rate_limit_unit is None or self.rate_limit_duration is None:
            return None
        return RateLimit(self.rate_limit_unit, self.rate_limit_duration)


@attrs.frozen
class RateLimit(FromDict):
    """A rate: ``duration`` requests per one ``unit`` (the API's pair of fields as one value).

    ``RateLimit("minute", 240)`` is 240 requests a minute, the Core API's quota.

    By default the limiter built from it is strict: requests are spaced about
    evenly (with a little credit for late timer wake-ups, see ``_limits``), so no
    sliding window of one unit ever holds more than ``duration`` of them.
    ``burst`` > 1 lets that many go at once after an idle spell (a window can
    then hold up to ``duration + burst - 1``).

    Attributes:
        unit: the unit, a :class:`RateLimitUnit` or its name (``"minute"``).
        duration: requests per one ``unit`` (positive).
        burst: requests that may leave at once after an idle spell (default 1).
    """

    unit: RateLimitUnit = attrs.field(converter=_unit)
    duration: int = attrs.field(validator=_positive_int)
    burst: int = attrs.field(default=1, kw_only=True, validator=_positive_int)

    @property
    def period(self) -> float:
        """The length of one unit, in seconds."""
        return self.unit.seconds

    @property
    def interval(self) -> float:
        """The even spacing between two requests, in seconds."""
        return self.period / self.duration

    @property
    def per_second(self) -> float:
        """The rate in requests per second."""
        return self.duration / self.period


def _login_repr(_value: str) -> str:
    return "'***'"


@attrs.frozen
class Login(FromDict):
    """Credentials for the bearer-token login (``POST .../fabric/api/login``).

    ``url`` is configurable because other login URLs exist (DOMAIN.md). The
    password never appears in ``repr``.

    Attributes:
        username: the login's user name.
        password: the login's password (never in ``repr``).
        url: the login URL.
    """

    username: str = attrs.field(validator=_required_str)
    password: str = attrs.field(validator=_required_str, repr=_login_repr)
    url: str = attrs.field(
        default="https://app.wearepatchworks.com/fabric/api/login",
        kw_only=True,
        validator=_required_str,
    )


@attrs.frozen(kw_only=True)
class ErrorResponse:
    """The Laravel validation error body of a 422: ``{"message": ..., "errors": {...}}``.

    Attributes:
        message: the error's message.
        errors: the messages of each field that failed validation.
    """

    message: str = ""
    errors: dict[str, list[str]] = attrs.field(factory=dict)


_VARIABLES: Final[Mapping[str, type[FromDict]]] = {"variables": Variable}
AuthoriseRequest._nested = _VARIABLES
ReauthoriseRequest._nested = _VARIABLES
for _model in (Variable, AuthoriseRequest, ReauthoriseRequest, RateLimit, Login):
    report_errors(_model)


class Instance(dict[str, Any]):
    """The JSON object Patchworks answers ``authorise`` and ``reauthorise`` with: the instance.

    The spec leaves the response's shape undocumented, so every key the server
    sent is kept: it is a ``dict`` (``result["timezone"]``, ``json.dumps(result)``
    and code written for the plain dict of earlier versions keep working), with
    the one field the client relies on typed.
    """

    __slots__ = ()

    @property
    def id(self) -> Connector | None:
        """The instance's id (``None`` when the answer has none, or not a str or an int)."""
        value = self.get("id")
        if isinstance(value, str | int) and not isinstance(value, bool):
            return value
        return None

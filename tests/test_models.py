"""Ring 1 (pure): models validate before anything is sent, and unstructure as the spec says."""

from __future__ import annotations

import math
import pickle
from typing import Any

import attrs
import pytest

from patchworks_async import (
    AuthoriseRequest,
    InvalidRequestError,
    Login,
    RateLimit,
    RateLimitUnit,
    ReauthoriseRequest,
    Variable,
)
from patchworks_async._convert import encode_json, unstructure

REQUIRED: dict[str, Any] = {
    "authentication_implementation_id": "impl-1",
    "timezone": "Europe/London",
    "date_format": "Y-m-d",
    "rate_limit_unit": "minute",
    "rate_limit_duration": 60,
}


def test_authorise_body_has_required_fields_and_omits_unset_optionals() -> None:
    body = unstructure(AuthoriseRequest(**REQUIRED))
    assert body == REQUIRED


def test_authorise_all_optional_fields_are_sent() -> None:
    request = AuthoriseRequest(
        **REQUIRED,
        connection_pool_id=7,
        variables="raw-string",
        session_id="s",
        platform_app_key="k",
        certificate_id="c",
    )
    body = unstructure(request)
    assert body["connection_pool_id"] == 7
    assert body["variables"] == "raw-string"
    assert body["session_id"] == "s"
    assert body["platform_app_key"] == "k"
    assert body["certificate_id"] == "c"


def test_variables_list_is_sent_as_json_array_of_objects() -> None:
    request = ReauthoriseRequest(
        variables=[
            Variable(key="shop", value="acme"),
            Variable(key="secret", value="x", secret=True, locked=False, label="S", id=3),
        ]
    )
    assert unstructure(request) == {
        "variables": [
            {"key": "shop", "value": "acme"},
            {"key": "secret", "value": "x", "label": "S", "secret": True, "locked": False, "id": 3},
        ]
    }


def test_reauthorise_with_nothing_set_is_an_empty_object() -> None:
    assert encode_json(unstructure(ReauthoriseRequest())) == b"{}"


def test_extra_fields_pass_through_and_cannot_shadow_fields() -> None:
    assert unstructure(ReauthoriseRequest(timezone="UTC", extra={"name": "Shop"})) == {
        "timezone": "UTC",
        "name": "Shop",
    }
    with pytest.raises(InvalidRequestError) as info:
        ReauthoriseRequest(extra={"timezone": "UTC"})
    assert info.value.field == "extra.timezone"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("authentication_implementation_id", ""),
        ("authentication_implementation_id", 5),
        ("timezone", None),
        ("date_format", b"Y"),
        ("rate_limit_unit", "week"),
        ("rate_limit_unit", 1),
        ("rate_limit_duration", 0),
        ("rate_limit_duration", -3),
        ("rate_limit_duration", True),
        ("rate_limit_duration", 1.5),
        ("rate_limit_duration", "60"),
        ("rate_limit_duration", 2**63),
    ],
)
def test_bad_authorise_field_is_named(field: str, value: object) -> None:
    with pytest.raises(InvalidRequestError) as info:
        AuthoriseRequest(**{**REQUIRED, field: value})
    assert info.value.field == field
    assert field in str(info.value)


def test_missing_required_field_raises_naming_it() -> None:
    data = dict(REQUIRED)
    del data["timezone"]
    with pytest.raises(InvalidRequestError) as info:
        AuthoriseRequest.from_dict(data)
    assert info.value.field == "timezone"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("connection_pool_id", True),
        ("connection_pool_id", "7"),
        ("type", 3),
        ("variables", 12),
        ("variables", [{"key": "a", "value": "b"}]),  # dicts must be Variable objects here
        ("rate_limit_duration", False),
    ],
)
def test_bad_reauthorise_field_is_named(field: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        ReauthoriseRequest(**{field: value})
    assert info.value.field is not None
    assert info.value.field.startswith(field)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 2**70, {"a": 1}, [1]])
def test_variable_value_must_be_a_finite_json_scalar(value: object) -> None:
    with pytest.raises(InvalidRequestError) as info:
        Variable(key="k", value=value)  # type: ignore[arg-type]
    assert info.value.field == "value"


def test_errors_never_echo_values() -> None:
    with pytest.raises(InvalidRequestError) as info:
        AuthoriseRequest(**{**REQUIRED, "timezone": 12345678})
    assert "12345678" not in str(info.value)


def test_from_dict_keeps_unknown_keys_in_extra_when_allowed() -> None:
    # Ported from _convert.structure (deleted, review of issue 11 finding 10), which let
    # unknown keys through unasked: from_dict does only with allow_extra=True.
    with pytest.raises(InvalidRequestError, match="name is not a field"):
        ReauthoriseRequest.from_dict({"timezone": "UTC", "name": "Shop"})
    request = ReauthoriseRequest.from_dict({"timezone": "UTC", "name": "Shop"}, allow_extra=True)
    assert request.extra == {"name": "Shop"}
    assert unstructure(request) == {"timezone": "UTC", "name": "Shop"}


def test_from_dict_is_strict_about_types() -> None:
    with pytest.raises(InvalidRequestError) as info:
        ReauthoriseRequest.from_dict({"rate_limit_duration": "60"})
    assert info.value.field == "rate_limit_duration"


def test_from_dict_variables_from_plain_data() -> None:
    request = ReauthoriseRequest.from_dict({"variables": [{"key": "a", "value": 1}]})
    assert request.variables == (Variable(key="a", value=1),)


def test_rate_limit_value() -> None:
    rate = RateLimit("minute", 240)
    assert rate.unit is RateLimitUnit.MINUTE
    assert rate.period == 60.0
    assert rate.interval == 0.25
    assert RateLimit(RateLimitUnit.DAY, 2).period == 86400.0
    assert AuthoriseRequest(**REQUIRED).rate_limit == RateLimit("minute", 60)
    assert ReauthoriseRequest(rate_limit_unit="hour").rate_limit is None
    assert ReauthoriseRequest(rate_limit_unit="hour", rate_limit_duration=5).rate_limit == (
        RateLimit("hour", 5)
    )
    with pytest.raises(InvalidRequestError):
        RateLimit("fortnight", 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        RateLimit("second", 0)


def test_unit_enum_matches_the_spec() -> None:
    assert [unit.value for unit in RateLimitUnit] == ["second", "minute", "hour", "day"]


def test_secrets_are_not_in_reprs() -> None:
    login = Login("user@example.com", "hunter2-password")
    assert "hunter2" not in repr(login)
    variable = Variable(key="api_secret", value="s3cr3t-value", secret=True)
    assert "s3cr3t" not in repr(variable)
    request = AuthoriseRequest(
        **REQUIRED, variables=[variable], platform_app_key="app-key-123", session_id="sess-9"
    )
    text = repr(request)
    assert "s3cr3t" not in text
    assert "app-key-123" not in text
    assert "sess-9" not in text


def test_models_are_frozen() -> None:
    request = ReauthoriseRequest(timezone="UTC")
    with pytest.raises(AttributeError):
        request.timezone = "x"  # type: ignore[misc]


def test_unknown_variable_keys_are_refused_not_dropped() -> None:
    with pytest.raises(InvalidRequestError) as info:
        ReauthoriseRequest.from_dict(
            {"variables": [{"key": "a", "value": "b", "description": "x"}]}
        )
    assert info.value.field == "variables[0].description"  # the path as written (issue 11)
    assert "description" in str(info.value)


def test_a_requests_rate_limit_is_built_once_and_stays_out_of_its_value() -> None:
    # Asked on every reauthorise with rate fields: the same RateLimit each time, so the
    # limiter registry knows it by identity. Cached outside the fields: equality, repr,
    # evolve and pickling see only the fields.
    rated = ReauthoriseRequest(rate_limit_unit="hour", rate_limit_duration=5)
    assert rated.rate_limit is rated.rate_limit
    authorise = AuthoriseRequest(**REQUIRED)
    assert authorise.rate_limit is authorise.rate_limit
    assert rated == ReauthoriseRequest(rate_limit_unit="hour", rate_limit_duration=5)
    assert "rate_limit=" not in repr(rated)
    changed = attrs.evolve(rated, rate_limit_duration=6)
    assert changed.rate_limit == RateLimit("hour", 6)
    copied = pickle.loads(pickle.dumps(rated))  # noqa: S301  # our own bytes, just made
    assert copied == rated
    assert copied.rate_limit == rated.rate_limit
    assert unstructure(rated) == {"rate_limit_unit": "hour", "rate_limit_duration": 5}

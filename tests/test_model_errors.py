"""Ring 1 (pure): a model that cannot be built says so once, naming every bad field by path.

Issue 11: attrs' bare ``TypeError`` for a missing or unknown argument became a 500 in a
web service; ``from_dict`` builds a model from a web request's JSON with the same checks.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from patchworks_async import (
    AuthoriseRequest,
    InvalidRequestError,
    Login,
    ModelValidationError,
    PatchworksError,
    RateLimit,
    RateLimitUnit,
    ReauthoriseRequest,
    Variable,
)
from patchworks_async._convert import unstructure

REQUIRED: dict[str, Any] = {
    "authentication_implementation_id": "impl-1",
    "timezone": "Europe/London",
    "date_format": "Y-m-d",
    "rate_limit_unit": "minute",
    "rate_limit_duration": 60,
}
SECRET = "s3cr3t-variable-value"


def test_unknown_argument_is_an_invalid_request_naming_it_with_the_closest_field() -> None:
    with pytest.raises(ModelValidationError) as info:
        ReauthoriseRequest(timezon="UTC")  # type: ignore[call-arg]
    error = info.value
    assert isinstance(error, InvalidRequestError | PatchworksError | ValueError | TypeError)
    assert error.field == "timezon"
    assert error.errors == {"timezon": "is not a field (did you mean timezone?)"}
    assert "valid fields: authentication_implementation_id, type, timezone" in str(error)
    assert "extra" not in error.valid_fields


def test_missing_arguments_are_all_named_at_once() -> None:
    with pytest.raises(ModelValidationError) as info:
        AuthoriseRequest(timezone="UTC")  # type: ignore[call-arg]
    assert list(info.value.errors) == [
        "authentication_implementation_id",
        "date_format",
        "rate_limit_unit",
        "rate_limit_duration",
    ]
    assert set(info.value.errors.values()) == {"is required"}
    assert info.value.field == "authentication_implementation_id"


def test_every_bad_field_is_named_not_only_the_first() -> None:
    with pytest.raises(ModelValidationError) as info:
        ReauthoriseRequest(
            timezone=5,  # type: ignore[arg-type]
            rate_limit_unit="fortnite",  # type: ignore[arg-type]
            rate_limit_duration=0,
            variables=[Variable(key="a", value=SECRET), 3],  # type: ignore[list-item]
        )
    assert info.value.errors == {
        "timezone": "must be a string, got int",
        "rate_limit_unit": "must be one of second, minute, hour, day",
        "rate_limit_duration": "must be at least 1",
        "variables[1]": "must be a Variable, got int",
    }
    message = str(info.value)
    assert message.startswith("ReauthoriseRequest: timezone must be a string, got int; ")
    assert "@ $" not in message  # no converter internals
    assert SECRET not in message


def test_positional_rate_limit_and_login_report_too() -> None:
    with pytest.raises(ModelValidationError) as info:
        RateLimit("fortnite", 0)  # type: ignore[arg-type]
    assert info.value.errors == {
        "unit": "must be one of second, minute, hour, day",
        "duration": "must be at least 1",
    }
    with pytest.raises(ModelValidationError) as info:
        RateLimit("minute", 1, 2)  # type: ignore[call-arg]
    assert info.value.field == "argument 3"
    with pytest.raises(ModelValidationError) as info:
        Login("user", password="")
    assert info.value.errors == {"password": "must not be empty"}
    assert "user" not in str(info.value)


def test_construction_succeeds_and_keeps_the_attrs_signature() -> None:
    request = ReauthoriseRequest(timezone="UTC", rate_limit_unit="hour", rate_limit_duration=5)
    assert request.rate_limit == RateLimit(RateLimitUnit.HOUR, 5)
    # The wrapper keeps attrs' signature for help() and inspect.
    assert "timezone" in inspect.signature(ReauthoriseRequest).parameters


def test_from_dict_builds_nested_variables() -> None:
    request = ReauthoriseRequest.from_dict(
        {"timezone": "UTC", "variables": [{"key": "shop", "value": "acme", "secret": True}]}
    )
    assert request.variables == (Variable(key="shop", value="acme", secret=True),)
    authorise = AuthoriseRequest.from_dict(REQUIRED)
    assert unstructure(authorise) == REQUIRED


def test_from_dict_reports_every_bad_field_by_path() -> None:
    data = {
        "timezon": "UTC",
        "rate_limit_unit": "fortnite",
        "rate_limit_duration": "60",
        "variables": [
            {"key": "a", "value": SECRET},
            {"key": "b", "value": SECRET},
            {"key": 3, "value": SECRET, "lable": "x"},
        ],
    }
    with pytest.raises(ModelValidationError) as info:
        ReauthoriseRequest.from_dict(data)
    assert info.value.errors == {
        "timezon": "is not a field (did you mean timezone?)",
        "variables[2].lable": "is not a field (did you mean label?)",
        "variables[2].key": "must be a string, got int",
        "rate_limit_unit": "must be one of second, minute, hour, day",
        "rate_limit_duration": "must be an integer, got str",
    }
    assert SECRET not in str(info.value)


def test_from_dict_passes_unknown_keys_through_only_when_asked() -> None:
    with pytest.raises(ModelValidationError):
        ReauthoriseRequest.from_dict({"notes": "x"})
    request = ReauthoriseRequest.from_dict({"notes": "x", "timezone": "UTC"}, allow_extra=True)
    assert unstructure(request) == {"timezone": "UTC", "notes": "x"}
    with pytest.raises(ModelValidationError) as info:  # Variable has no extra: always refused
        Variable.from_dict({"key": "a", "value": 1, "notes": "x"}, allow_extra=True)
    assert info.value.field == "notes"


def test_a_non_string_key_is_named_by_its_objects_path() -> None:
    with pytest.raises(ModelValidationError) as info:
        ReauthoriseRequest.from_dict(
            {"variables": [{"key": "a", "value": 1}, {"key": "b", "value": 2, "pivot": {1: 2}}]}
        )
    assert info.value.errors == {"variables[1].pivot": "keys must be strings, got int"}
    with pytest.raises(ModelValidationError) as info:
        ReauthoriseRequest(extra={3: "x"})  # type: ignore[dict-item]
    assert info.value.errors == {"extra": "keys must be strings, got int"}


def test_none_in_extra_is_left_out_like_any_unset_field() -> None:
    # A regression of 9222f9e that Hypothesis found (test_hostile_field_values).
    assert unstructure(ReauthoriseRequest(extra={"": None, "notes": "x"})) == {"notes": "x"}
    assert unstructure(ReauthoriseRequest.from_dict({"notes": None}, allow_extra=True)) == {}


def test_hostile_unknown_keys_make_a_short_one_line_message() -> None:
    data = {"x" * 100_000: 1, "forged\nERROR root: hacked": 2, **{f"k{i}": i for i in range(500)}}
    with pytest.raises(ModelValidationError) as info:
        ReauthoriseRequest.from_dict(data)
    message = str(info.value)
    assert len(info.value.errors) == 502
    assert "\n" not in message
    assert "forged\\nERROR" in message
    assert "x" * 81 not in message
    assert "; and 482 more" in message
    assert len(message) < 3000


@pytest.mark.parametrize("data", [[1, 2], "timezone=UTC", None])
def test_from_dict_refuses_what_is_not_a_mapping(data: Any) -> None:
    with pytest.raises(ModelValidationError) as info:
        ReauthoriseRequest.from_dict(data)
    assert info.value.field is None
    assert "needs a mapping of fields" in str(info.value)


def test_a_missing_required_variable_field_is_named_by_path() -> None:
    with pytest.raises(ModelValidationError) as info:
        AuthoriseRequest.from_dict({**REQUIRED, "variables": [{"key": "a"}, "x"]})
    assert info.value.errors == {
        "variables[0].value": "is required",
        "variables[1]": "must be an object, got str",
    }

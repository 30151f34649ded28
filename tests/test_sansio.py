"""Ring 1 (pure): request building, path encoding, response decoding and the error table."""

from __future__ import annotations

import re
from urllib.parse import unquote

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from patchworks_async import (
    APIError,
    AuthenticationError,
    AuthoriseRequest,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ReauthoriseRequest,
    ResponseDecodeError,
    ServerError,
    UnprocessableEntityError,
    __version__,
)
from patchworks_async._sansio import (
    Safety,
    api_error,
    build_authenticate,
    build_authorise,
    build_reauthorise,
    build_woo_app_auth,
    decode_success,
    encode_segment,
)

SEGMENT = re.compile(r"^/api/v1/oauth/([A-Za-z0-9\-._~%]+)/reauthorise$")


def test_paths_and_methods_follow_the_spec() -> None:
    assert (build_authenticate().method, build_authenticate().path) == (
        "POST",
        "/api/v1/oauth/authenticate",
    )
    assert build_woo_app_auth().path == "/api/v1/oauth/woo-app-auth"
    request = build_authorise(
        AuthoriseRequest(
            authentication_implementation_id="i",
            timezone="UTC",
            date_format="Y",
            rate_limit_unit="second",
            rate_limit_duration=1,
        )
    )
    assert (request.method, request.path, request.safety) == (
        "POST",
        "/api/v1/oauth/authorise",
        Safety.CREATES,
    )
    re_request = build_reauthorise(42, ReauthoriseRequest(timezone="UTC"))
    assert (re_request.method, re_request.path) == ("PATCH", "/api/v1/oauth/42/reauthorise")
    assert re_request.connector == "42"
    assert orjson.loads(re_request.body or b"") == {"timezone": "UTC"}


def test_headers() -> None:
    with_body = build_reauthorise("a", ReauthoriseRequest()).headers
    assert with_body["Accept"] == "application/json"
    assert with_body["Content-Type"] == "application/json"
    assert with_body["User-Agent"] == f"patchworks-async/{__version__}"
    without_body = build_authenticate().headers
    # DOMAIN.md: Accept and Content-Type on every request, bodiless ones too.
    assert without_body["Content-Type"] == "application/json"
    assert without_body["Accept"] == "application/json"


@pytest.mark.parametrize(
    ("connector", "segment"),
    [
        ("a/b", "a%2Fb"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("a..b", "a..b"),
        ("x?y=1", "x%3Fy%3D1"),
        ("x#y", "x%23y"),
        ("100%", "100%25"),
        ("%2F", "%252F"),
        ("a b", "a%20b"),
        ("a\r\nX-Injected: 1", "a%0D%0AX-Injected%3A%201"),
        ("é", "%C3%A9"),
    ],
)
def test_connector_is_exactly_one_encoded_segment(connector: str, segment: str) -> None:
    request = build_reauthorise(connector, ReauthoriseRequest())
    assert request.path == f"/api/v1/oauth/{segment}/reauthorise"


@given(
    st.text(min_size=1, max_size=200).filter(
        lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)
    )
)
def test_any_connector_round_trips_as_one_segment(connector: str) -> None:
    path = build_reauthorise(connector, ReauthoriseRequest()).path
    match = SEGMENT.match(path)
    assert match is not None
    assert unquote(match.group(1)) == connector


@given(st.integers(min_value=-(2**63), max_value=2**63))
def test_integer_connectors(connector: int) -> None:
    assert build_reauthorise(connector, ReauthoriseRequest()).connector == str(connector)


@pytest.mark.parametrize("connector", ["", None, True, 1.5, b"abc", "x" * 1025, "\ud800"])
def test_bad_connector_is_refused(connector: object) -> None:
    with pytest.raises(InvalidRequestError) as info:
        build_reauthorise(connector, ReauthoriseRequest())  # type: ignore[arg-type]
    assert info.value.field == "connector"


def test_wrong_request_type_is_refused() -> None:
    with pytest.raises(InvalidRequestError):
        build_reauthorise("a", {"timezone": "UTC"})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        build_authorise(ReauthoriseRequest())  # type: ignore[arg-type]


def test_encode_segment_leaves_unreserved_alone() -> None:
    assert encode_segment("AZaz09-._~") == "AZaz09-._~"


def test_decode_success() -> None:
    assert decode_success(status=200, method="POST", url="u", body=b"") == {}
    assert decode_success(status=200, method="POST", url="u", body=b'{"id": 1, "x": [1]}') == {
        "id": 1,
        "x": [1],
    }
    with pytest.raises(ResponseDecodeError):
        decode_success(status=200, method="POST", url="u", body=b'{"id": ')
    with pytest.raises(ResponseDecodeError):
        decode_success(status=200, method="POST", url="u", body=b"[1, 2]")
    with pytest.raises(ResponseDecodeError):
        decode_success(status=200, method="POST", url="u", body=b"<html></html>")


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, APIError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, APIError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (599, ServerError),
    ],
)
def test_error_table(status: int, cls: type[APIError]) -> None:
    error = api_error(
        status=status,
        method="PATCH",
        url="https://x/api",
        headers={"X-Request-Id": "req-1"},
        body=b'{"message": "nope"}',
        now=0.0,
    )
    assert type(error) is cls
    assert error.status == status
    assert error.request_id == "req-1"
    assert error.message == "nope"
    assert "nope" in str(error)


def test_422_is_structured() -> None:
    body = b'{"message": "The timezone field is required.", "errors": {"timezone": ["req"]}}'
    error = api_error(status=422, method="POST", url="u", headers={}, body=body, now=0.0)
    assert isinstance(error, UnprocessableEntityError)
    assert error.errors == {"timezone": ["req"]}
    assert error.message == "The timezone field is required."


def test_429_carries_retry_after() -> None:
    error = api_error(
        status=429, method="POST", url="u", headers={"Retry-After": "7"}, body=b"", now=0.0
    )
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 7.0
    missing = api_error(status=429, method="POST", url="u", headers={}, body=b"", now=0.0)
    assert isinstance(missing, RateLimitError)
    assert missing.retry_after is None


def test_html_error_body_is_kept_as_text() -> None:
    error = api_error(
        status=502, method="GET", url="u", headers={}, body=b"<html>Bad gateway</html>", now=0
    )
    assert error.body == "<html>Bad gateway</html>"

"""Ring 1: the fake server's pure parts, without an event loop or a socket.

The model (``testing/_model.py``) answers ``(method, raw path, headers, body)`` on an
injected clock; the fault rules (``testing/_faults.py``) pick and shape faults. The
end-to-end suites cover the same behaviour through the aiohttp adapter.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from patchworks_async.testing import Fault
from patchworks_async.testing._faults import FaultRules, refusal, reshaped
from patchworks_async.testing._model import Answer, PatchworksModel, json_answer
from patchworks_async.testing._rules import (
    LOGIN_PATH,
    REAUTHORISE_OPTIONAL,
    json_object,
    route,
    validate,
)

KEY = "pw_test_model"
AUTHORISE = "/api/v1/oauth/authorise"
AUTHENTICATE = "/api/v1/oauth/authenticate"
VALID = {
    "authentication_implementation_id": "impl",
    "timezone": "UTC",
    "date_format": "Y-m-d",
    "rate_limit_unit": "minute",
    "rate_limit_duration": 60,
}


class Clock:
    """A clock a test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _model(**kwargs: Any) -> PatchworksModel:
    model = PatchworksModel(api_key=KEY, password="secret", clock=Clock(), **kwargs)
    model.add_instance("7", timezone="UTC")
    model.add_instance("a/b")
    return model


def _send(
    model: PatchworksModel,
    method: str,
    path: str,
    body: Any = None,
    *,
    auth: str | None = KEY,
    content_type: str = "application/json",
) -> Answer:
    headers = {"Content-Type": content_type}
    if auth is not None:
        headers["Authorization"] = auth
    raw = body if isinstance(body, bytes) else b"" if body is None else orjson.dumps(body)
    return model.handle(method, path, headers, raw)


CASES = [
    # (name, method, path, body, auth, content type, status, malformed, body check)
    ("unknown path", "GET", "/api/v1/nothing", None, KEY, "application/json", 404, True,
     {"message": "Not Found."}),
    ("dot segment", "PATCH", "/api/v1/oauth/../reauthorise", None, KEY, "application/json",
     404, True, {"message": "Not Found."}),
    ("wrong method", "GET", AUTHORISE, None, KEY, "application/json", 405, True,
     {"message": "The GET method is not supported for this route."}),
    ("no credential", "POST", AUTHENTICATE, None, None, "application/json", 401, False,
     {"message": "Unauthenticated."}),
    ("wrong key", "POST", AUTHENTICATE, None, "pw_other", "application/json", 401, False,
     {"message": "Unauthenticated."}),
    ("api key", "POST", AUTHENTICATE, None, KEY, "application/json", 200, False,
     {"authenticated": True, "user": {"email": "fake-user@example.com", "role": "manager"}}),
    ("unknown instance", "PATCH", "/api/v1/oauth/8/reauthorise", {}, KEY, "application/json",
     404, False, {"message": "No query results for instance [8]."}),
    ("%2F stays one segment", "PATCH", "/api/v1/oauth/a%2Fb/reauthorise", {"name": "n"}, KEY,
     "application/json", 200, False, {"id": "a/b", "name": "n"}),
    ("not JSON", "POST", AUTHORISE, b"{", KEY, "application/json", 422, True, None),
    ("not a JSON content type", "POST", AUTHORISE, VALID, KEY, "text/plain", 422, True, None),
    ("a JSON array", "POST", AUTHORISE, [1], KEY, "application/json", 422, False,
     {"message": "The request body must be a JSON object.",
      "errors": {"body": ["The request body must be a JSON object."]}}),
    ("422 in Laravel's shape", "POST", AUTHORISE, {"timezone": 3}, KEY, "application/json",
     422, False, None),
    ("authorise", "POST", AUTHORISE, VALID, KEY, "application/problem+json", 200, False,
     {"id": 1, **VALID}),
    ("reauthorise", "PATCH", "/api/v1/oauth/7/reauthorise", {"timezone": "Europe/London"},
     KEY, "application/json", 200, False, {"id": "7", "timezone": "Europe/London"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body", "auth", "content_type", "status", "malformed", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_one_request(
    method: str,
    path: str,
    body: Any,
    auth: str | None,
    content_type: str,
    status: int,
    malformed: bool,
    expected: Any,
) -> None:
    answer = _send(_model(), method, path, body, auth=auth, content_type=content_type)
    assert (answer.status, answer.malformed) == (status, malformed)
    assert len(answer.headers["X-Request-Id"]) == 32
    if expected is not None:
        assert orjson.loads(answer.body) == expected


def test_a_validation_error_names_every_field_in_the_order_of_the_rules() -> None:
    answer = _send(_model(), "POST", AUTHORISE, {"timezone": 3, "rate_limit_duration": 0})
    payload = orjson.loads(answer.body)
    assert list(payload["errors"]) == [
        "authentication_implementation_id",
        "timezone",
        "date_format",
        "rate_limit_unit",
        "rate_limit_duration",
    ]
    assert payload["message"] == (
        "The authentication implementation id field is required. (and 4 more errors)"
    )
    assert payload["errors"]["rate_limit_duration"] == [
        "The rate limit duration field must be at least 1."
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (LOGIN_PATH, ("POST", None)),
        (AUTHORISE, ("POST", None)),
        (AUTHENTICATE, ("POST", None)),
        ("/api/v1/oauth/woo-app-auth", ("POST", None)),
        ("/api/v1/oauth/7/reauthorise", ("PATCH", "7")),
        ("/api/v1/oauth/a%2Fb/reauthorise", ("PATCH", "a/b")),  # one segment, decoded
        ("/api/v1/oauth/%20/reauthorise", ("PATCH", " ")),
        ("/api/v1/oauth/./reauthorise", None),
        ("/api/v1/oauth/../reauthorise", None),
        ("/api/v1/oauth/a/b/reauthorise", None),
        ("/api/v1/oauth/authorise/", None),
        ("/api/v1/nothing", None),
    ],
)
def test_routes(path: str, expected: tuple[str, str | None] | None) -> None:
    assert route(path) == expected


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json", b'{"a": 1}', ({"a": 1}, False)),
        ("Application/JSON; charset=utf-8", b"{}", ({}, False)),
        ("application/merge-patch+json", b"{}", ({}, False)),
        ("application/json", b"[1]", (None, False)),  # JSON, not an object: a 422 only
        ("application/json", b"{", (None, True)),
        ("application/json", b"", (None, True)),
        ("text/plain", b"{}", (None, True)),
        (None, b"{}", (None, True)),
    ],
)
def test_a_body_is_read_as_a_json_object(
    content_type: str | None, body: bytes, expected: tuple[Any, bool]
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    assert json_object(headers, body) == expected


def test_variables_rules() -> None:
    errors = validate({"variables": [{"key": " "}, 3, {"key": 1}]}, (), REAUTHORISE_OPTIONAL)
    assert errors == {
        "variables.0.key": ["The variables.0.key field is required."],
        "variables.1": ["The variables.1 field must be an array."],
        "variables.2.key": ["The variables.2.key field must be a string."],
    }


def test_authorise_and_reauthorise_change_the_instances() -> None:
    model = _model()
    assert _send(model, "POST", AUTHORISE, VALID).status == 200
    assert model.authorise_count == 1
    assert model.instances["1"]["timezone"] == "UTC"
    _send(model, "PATCH", "/api/v1/oauth/1/reauthorise", {"timezone": "Asia/Tokyo"})
    assert model.instances["1"]["timezone"] == "Asia/Tokyo"
    assert model.instances["1"]["reauthorise_count"] == 1


def test_login_tokens_expire_on_the_injected_clock() -> None:
    clock = Clock(50.0)
    model = PatchworksModel(api_key=KEY, password="secret", token_ttl=10, clock=clock)
    credentials = {"username": model.username, "password": "secret"}
    login = _send(model, "POST", LOGIN_PATH, credentials, auth=None)
    assert (login.status, model.login_count) == (200, 1)
    token = orjson.loads(login.body)["token"]
    assert _send(model, "POST", AUTHENTICATE, auth=f"Bearer {token}").status == 200
    clock.now += 10
    assert _send(model, "POST", AUTHENTICATE, auth=f"Bearer {token}").status == 401
    wrong = {"username": model.username, "password": "nope"}
    assert _send(model, "POST", LOGIN_PATH, wrong, auth=None).status == 401


def test_quota_window_on_the_injected_clock() -> None:
    clock = Clock(100.0)
    model = PatchworksModel(
        api_key=KEY, quota=2, quota_window=30.0, clock=clock, wall_clock=lambda: 1_700_000_000.5
    )
    first = _send(model, "POST", AUTHENTICATE)
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == (
        "2",
        "1",
    )
    clock.now += 10
    assert _send(model, "POST", AUTHENTICATE).headers["X-RateLimit-Remaining"] == "0"
    refused = _send(model, "POST", AUTHENTICATE)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "20"
    assert refused.headers["X-RateLimit-Reset"] == str(1_700_000_000 + 20)
    clock.now += 20  # the window started at the first request: a new one now
    assert _send(model, "POST", AUTHENTICATE).headers["X-RateLimit-Remaining"] == "1"


def test_scripted_faults_go_first_in_order_and_skip_the_login() -> None:
    rules = FaultRules()
    first, second = Fault.status_code(500), Fault.dropped()
    rules.add_faults(first, second)
    rules.add_faults(Fault.slow(1), paths="/reauthorise")
    rules.set_fault_rate(1.0, [Fault.malformed()])
    assert rules._pick_fault(LOGIN_PATH) is None
    assert rules._pick_fault("/api/v1/oauth/1/reauthorise") is first
    assert rules._pick_fault(AUTHORISE) is second
    assert rules._pick_fault(AUTHORISE) == Fault.malformed()  # the rate, now
    assert rules._pick_fault("/api/v1/oauth/1/reauthorise") == Fault.slow(1)


def test_the_fault_rate_replays_with_its_seed() -> None:
    def schedule(seed: int) -> list[str | None]:
        rules = FaultRules()
        rules.set_fault_rate(0.5, [Fault.status_code(503), Fault.dropped()], seed=seed)
        picked = [rules._pick_fault(AUTHORISE) for _ in range(40)]
        return [None if fault is None else fault.kind for fault in picked]

    assert schedule(7) == schedule(7)
    assert schedule(7) != schedule(8)
    assert {None, "status", "drop"} == set(schedule(7))
    with pytest.raises(ValueError, match="rate"):
        FaultRules().set_fault_rate(1.5, [Fault.dropped()])


@pytest.mark.parametrize(
    ("fault", "status", "header", "value"),
    [
        (Fault.too_many(retry_after=1.0), 429, "Retry-After", "1"),
        (Fault.too_many(retry_after=0.5), 429, "Retry-After", "0.5"),
        (Fault.status_code(503, retry_after="Wed, 21 Oct 2026 07:28:00 GMT"), 503,
         "Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT"),
        (Fault.redirected(), 307, "Location", "http://127.0.0.1:1/p?q=1"),
    ],
)  # fmt: skip
def test_refusals(fault: Fault, status: int, header: str, value: str) -> None:
    answer = refusal(fault, "http://127.0.0.1:1/p?q=1")
    assert (answer.status, answer.headers[header]) == (status, value)


def test_bad_bodies_keep_the_headers() -> None:
    answer = json_answer(200, {"id": 1}, {"X-Request-Id": "r", "X-RateLimit-Remaining": "3"})
    html = reshaped(Fault.html(502), answer)
    assert (html.status, html.content_type, html.headers) == (502, "text/html", answer.headers)
    assert reshaped(Fault.malformed(), answer).body == b'{"id": '
    assert reshaped(Fault.non_object(), answer).body == b"[1, 2, 3]"

"""FakePatchworks itself, driven by a plain aiohttp.ClientSession (not by our client)."""

from __future__ import annotations

import asyncio
import io
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from patchworks_async.testing import FakePatchworks, Fault, RecordedRequest

AUTHENTICATE = "/api/v1/oauth/authenticate"
AUTHORISE = "/api/v1/oauth/authorise"
WOO = "/api/v1/oauth/woo-app-auth"
LOGIN = "/fabric/api/login"
BODY: dict[str, Any] = {
    "authentication_implementation_id": "impl-1",
    "timezone": "Europe/London",
    "date_format": "Y-m-d",
    "rate_limit_unit": "minute",
    "rate_limit_duration": 60,
}


def reauthorise(raw_connector: str) -> str:
    return f"/api/v1/oauth/{raw_connector}/reauthorise"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


class Call:
    """A tiny driver: send one request to the fake and read the whole answer."""

    def __init__(self, fake: FakePatchworks, session: aiohttp.ClientSession) -> None:
        self.fake = fake
        self.session = session

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | io.BytesIO | None = None,
        auth: str | None = "key",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        sent = dict(headers or {})
        if auth == "key":
            sent["Authorization"] = self.fake.api_key
        elif auth is not None:
            sent["Authorization"] = auth
        url = URL(self.fake.url + path, encoded=True)
        async with self.session.request(
            method, url, json=json, data=data, headers=sent, allow_redirects=False
        ) as response:
            raw = await response.read()
            body: Any = raw
            if response.content_type == "application/json" and raw:
                body = await response.json()
        return response.status, body, response


@pytest.fixture
def call(fake: FakePatchworks, session: aiohttp.ClientSession) -> Call:
    return Call(fake, session)


# -- lifecycle and shape ----------------------------------------------------------------


async def test_urls_and_credentials(fake: FakePatchworks) -> None:
    assert fake.url.startswith("http://127.0.0.1:")
    assert not fake.url.endswith("/")
    assert fake.login_url == fake.url + LOGIN
    assert fake.api_key.startswith("pw_test_")
    assert fake.username == "fake-user@example.com"
    assert fake.password
    assert fake.redirect_url != fake.url
    assert FakePatchworks().api_key != FakePatchworks().api_key


async def test_close_is_idempotent_and_final() -> None:
    fake = FakePatchworks(api_key="k", password="p")
    await fake.start()
    await fake.start()  # a second start does nothing
    await fake.close()
    await fake.close()
    with pytest.raises(RuntimeError):
        await fake.start()
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientConnectionError):
            await s.post(fake.url + AUTHENTICATE)


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="must be in"):
        Fault(kind="boom")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="HTTP status"):
        Fault.status_code(42)
    with pytest.raises(ValueError, match=">= 0"):
        Fault.slow(-1.0)
    assert not Fault.status_code(500).after_processing
    assert not Fault.redirected().after_processing
    for fault in (
        Fault.slow(1.0),
        Fault.dropped(),
        Fault.truncated(),
        Fault.malformed(),
        Fault.html(),
        Fault.non_object(),
    ):
        assert fault.after_processing
    assert Fault.too_many(retry_after=2) == Fault(kind="status", status=429, retry_after=2)
    assert Fault.html().status == 502
    with pytest.raises(ValueError, match="rate"):
        FakePatchworks().set_fault_rate(1.5, [Fault.dropped()])


# -- authentication ---------------------------------------------------------------------


@pytest.mark.spec_exempt(reason="requests without a credential on purpose")
async def test_api_key_and_401s(fake: FakePatchworks, call: Call) -> None:
    status, body, response = await call("POST", AUTHENTICATE)
    assert status == 200
    assert body == {
        "authenticated": True,
        "user": {"email": fake.username, "role": "manager"},
    }
    assert response.content_type == "application/json"
    assert len(response.headers["X-Request-Id"]) == 32
    for auth in (None, "wrong", f"Bearer {fake.api_key}", "Bearer nope", ""):
        status, body, response = await call("POST", AUTHENTICATE, auth=auth)
        assert (status, body) == (401, {"message": "Unauthenticated."}), auth
        assert response.headers["X-Request-Id"]
    assert fake.request_count == 6
    assert [r.status for r in fake.requests] == [200, 401, 401, 401, 401, 401]
    assert fake.malformed == []


async def test_bearer_tokens_and_expiry(fake: FakePatchworks, call: Call) -> None:
    token = fake.issue_token()
    status, body, _ = await call("POST", AUTHENTICATE, auth=f"Bearer {token}")
    assert status == 200
    assert body["user"]["role"] == "administrator"
    assert (await call("POST", AUTHENTICATE, auth=f"Bearer {fake.issue_token(ttl=0)}"))[0] == 401
    fake.expire_tokens()
    assert (await call("POST", AUTHENTICATE, auth=f"Bearer {token}"))[0] == 401
    fresh = fake.issue_token()  # issued after expire_tokens(): valid
    assert (await call("POST", AUTHENTICATE, auth=f"Bearer {fresh}"))[0] == 200


async def test_token_expires_on_the_fake_clock(fake: FakePatchworks, call: Call) -> None:
    now = [1000.0]
    fake._clock = lambda: now[0]
    token = fake.issue_token(ttl=10)
    assert (await call("POST", AUTHENTICATE, auth=f"Bearer {token}"))[0] == 200
    now[0] += 10
    assert (await call("POST", AUTHENTICATE, auth=f"Bearer {token}"))[0] == 401


async def test_login(fake: FakePatchworks, call: Call) -> None:
    credentials = {"username": fake.username, "password": fake.password}
    status, body, _ = await call("POST", LOGIN, json=credentials, auth=None)
    assert status == 200
    assert set(body) == {"message", "token", "expires_in"}
    assert body["expires_in"] == 86400
    assert fake.login_count == 1
    assert (await call("POST", AUTHENTICATE, auth=f"Bearer {body['token']}"))[0] == 200

    wrong = {**credentials, "password": "nope"}
    assert (await call("POST", LOGIN, json=wrong, auth=None))[0] == 401
    status, body, _ = await call("POST", LOGIN, json={"username": fake.username}, auth=None)
    assert status == 422
    assert body["errors"] == {"password": ["The password field is required."]}
    assert (await call("POST", LOGIN, data=b"user=x", auth=None))[0] == 422
    assert fake.login_count == 1
    assert [r.path for r in fake.malformed] == [LOGIN]


async def test_login_token_with_a_short_ttl_expires() -> None:
    async with FakePatchworks(token_ttl=0.0) as fake, aiohttp.ClientSession() as s:
        call = Call(fake, s)
        credentials = {"username": fake.username, "password": fake.password}
        status, body, _ = await call("POST", LOGIN, json=credentials, auth=None)
        assert (status, body["expires_in"]) == (200, 0)
        assert (await call("POST", AUTHENTICATE, auth=f"Bearer {body['token']}"))[0] == 401


# -- endpoints --------------------------------------------------------------------------


async def test_authorise_and_reauthorise(fake: FakePatchworks, call: Call) -> None:
    extra = {**BODY, "connection_pool_id": 3, "variables": [{"key": "shop", "value": "x"}]}
    status, first, response = await call("POST", AUTHORISE, json={**extra, "unknown": 1})
    assert status == 200
    assert response.content_type == "application/json"
    assert first == {"id": 1, **extra}  # unknown fields are accepted, not stored
    status, second, _ = await call("POST", AUTHORISE, json=BODY)
    assert second["id"] == 2
    assert fake.authorise_count == 2
    assert set(fake.instances) == {"1", "2"}

    change = {"rate_limit_duration": 5, "rate_limit_unit": "second", "type": "oauth"}
    status, updated, _ = await call("PATCH", reauthorise("1"), json=change)
    assert status == 200
    assert updated == {**first, **change}
    assert fake.instances["1"]["reauthorise_count"] == 1
    assert fake.instances["2"]["reauthorise_count"] == 0
    assert (await call("PATCH", reauthorise("1"), json={}))[0] == 200
    assert fake.instances["1"]["reauthorise_count"] == 2

    status, body, _ = await call("PATCH", reauthorise("99"), json={})
    assert status == 404
    assert "message" in body
    assert fake.requests[0].json == {**extra, "unknown": 1}
    assert fake.malformed == []


async def test_woo_app_auth_is_empty(fake: FakePatchworks, call: Call) -> None:
    status, body, response = await call("POST", WOO)
    assert (status, body) == (200, b"")
    assert "Content-Type" not in response.headers
    assert response.headers["X-Request-Id"]


async def test_add_instance(fake: FakePatchworks, call: Call) -> None:
    assert fake.add_instance() == "1"
    assert fake.add_instance(2, timezone="UTC") == "2"
    assert fake.add_instance("a/b") == "a/b"
    assert fake.instances["2"] == {"id": 2, "timezone": "UTC", "reauthorise_count": 0}
    created = (await call("POST", AUTHORISE, json=BODY))[1]
    assert created["id"] == 3  # preseeded ids are skipped
    assert fake.authorise_count == 1


# -- validation -------------------------------------------------------------------------


@pytest.mark.spec_exempt(reason="bodies that break the spec on purpose, to see the fake's 422s")
@pytest.mark.parametrize(
    ("change", "errors"),
    [
        (
            {"rate_limit_duration": True},
            {"rate_limit_duration": ["The rate limit duration field must be an integer."]},
        ),
        (
            {"rate_limit_duration": 0},
            {"rate_limit_duration": ["The rate limit duration field must be at least 1."]},
        ),
        (
            {"rate_limit_duration": "60"},
            {"rate_limit_duration": ["The rate limit duration field must be an integer."]},
        ),
        (
            {"rate_limit_unit": "week"},
            {"rate_limit_unit": ["The selected rate limit unit is invalid."]},
        ),
        ({"timezone": 5}, {"timezone": ["The timezone field must be a string."]}),
        (
            {"connection_pool_id": False},
            {"connection_pool_id": ["The connection pool id field must be an integer."]},
        ),
        ({"name": 5}, {"name": ["The name field must be a string."]}),
        ({"variables": 7}, {"variables": ["The variables field must be a string or an array."]}),
        (
            {"variables": [{"value": "x"}, "y", {"key": 1}]},
            {
                "variables.0.key": ["The variables.0.key field is required."],
                "variables.1": ["The variables.1 field must be an array."],
                "variables.2.key": ["The variables.2.key field must be a string."],
            },
        ),
    ],
)
async def test_422_shapes(
    fake: FakePatchworks, call: Call, change: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    status, body, _ = await call("POST", AUTHORISE, json={**BODY, **change})
    assert status == 422
    assert body["errors"] == errors
    first = next(iter(errors.values()))[0]
    suffix = ["", " (and 1 more error)", " (and 2 more errors)"][len(errors) - 1]
    assert body["message"] == first + suffix
    assert fake.instances == {}
    fake.add_instance("7")
    status, body, _ = await call("PATCH", reauthorise("7"), json=change)
    assert (status, body["errors"]) == (422, errors)
    assert fake.instances["7"]["reauthorise_count"] == 0


@pytest.mark.spec_exempt(reason="bodies that break the spec on purpose")
async def test_422_missing_fields_and_accepted_variants(fake: FakePatchworks, call: Call) -> None:
    status, body, _ = await call("POST", AUTHORISE, json={"timezone": "UTC", "date_format": ""})
    assert status == 422
    assert list(body["errors"]) == [
        "authentication_implementation_id",
        "date_format",
        "rate_limit_unit",
        "rate_limit_duration",
    ]
    assert body["message"] == (
        "The authentication implementation id field is required. (and 3 more errors)"
    )
    assert (await call("POST", AUTHORISE, json={**BODY, "variables": "raw"}))[0] == 200
    variables = [{"key": "k", "value": "v", "label": "L", "secret": True, "locked": False}]
    assert (await call("POST", AUTHORISE, json={**BODY, "variables": variables}))[0] == 200
    assert fake.malformed == []


@pytest.mark.spec_exempt(reason="bodies that are not JSON objects on purpose")
async def test_bodies_that_are_not_json_objects(fake: FakePatchworks, call: Call) -> None:
    fake.add_instance("1")
    status, body, _ = await call("POST", AUTHORISE, json=[BODY])
    assert status == 422
    assert body["errors"] == {"body": ["The request body must be a JSON object."]}
    assert fake.malformed == []  # JSON, just not an object
    assert (await call("POST", AUTHORISE, data=b"{nope", headers=_json_type()))[0] == 422
    assert (await call("PATCH", reauthorise("1")))[0] == 422  # no body at all
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert (await call("PATCH", reauthorise("1"), data=b"{}", headers=form))[0] == 422
    assert [r.body for r in fake.malformed] == [b"{nope", b"", b"{}"]
    assert [r.json for r in fake.malformed] == [None, None, {}]
    assert fake.authorise_count == 0


def _json_type() -> dict[str, str]:
    return {"Content-Type": "application/json"}


# -- raw-path routing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connector", "raw"),
    [("a/b", "a%2Fb"), ("..", "%2E%2E"), ("50% off", "50%25%20off"), ("ü", "%C3%BC")],
)
async def test_connector_is_one_raw_segment(
    fake: FakePatchworks, call: Call, connector: str, raw: str
) -> None:
    fake.add_instance(connector)
    status, body, _ = await call("PATCH", reauthorise(raw), json={"timezone": "UTC"})
    assert (status, body["timezone"]) == (200, "UTC")
    assert fake.requests[0].path == reauthorise(raw)
    assert fake.instances[connector]["reauthorise_count"] == 1
    assert fake.malformed == []


@pytest.mark.spec_exempt(reason="paths and methods the spec does not have, on purpose")
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PATCH", "/api/v1/oauth/a/b/reauthorise", 404),
        ("PATCH", "/api/v1/oauth//reauthorise", 404),
        ("PATCH", "/api/v1/oauth/1/reauthorise/", 404),
        ("POST", "/api/v1/oauth/nope", 404),
        ("GET", "/", 404),
        ("POST", reauthorise("1"), 405),
        ("GET", AUTHORISE, 405),
    ],
)
async def test_unknown_routes_are_malformed(
    fake: FakePatchworks, call: Call, method: str, path: str, status: int
) -> None:
    fake.add_instance("1")
    got, body, _ = await call(method, path, json={})
    assert got == status
    assert "message" in body
    assert [r.path for r in fake.malformed] == [path]
    assert fake.instances["1"]["reauthorise_count"] == 0


async def test_query_is_recorded_apart(fake: FakePatchworks, call: Call) -> None:
    await call("POST", AUTHENTICATE + "?a=1&b=%2F")
    (request,) = fake.requests
    assert (request.path, request.query) == (AUTHENTICATE, "a=1&b=%2F")
    assert request.method == "POST"
    assert request.headers["Authorization"] == fake.api_key
    assert request.arrived <= time.monotonic()
    assert request.connection == 1


# -- quota ------------------------------------------------------------------------------


async def test_quota_429_and_headers(session: aiohttp.ClientSession) -> None:
    async with FakePatchworks(quota=2, quota_window=30.0) as fake:
        call = Call(fake, session)
        now = [500.0]
        fake._clock = lambda: now[0]
        first = (await call("POST", AUTHENTICATE))[2]
        assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == (
            "2",
            "1",
        )
        now[0] += 10
        second = (await call("POST", WOO))[2]
        assert second.headers["X-RateLimit-Remaining"] == "0"
        fake.add_instance("1")
        status, body, third = await call("PATCH", reauthorise("1"), json={})
        assert (status, body) == (429, {"message": "Too Many Attempts."})
        assert third.headers["Retry-After"] == "20"  # the window started 10 s ago
        assert third.headers["X-RateLimit-Remaining"] == "0"
        assert abs(int(third.headers["X-RateLimit-Reset"]) - (time.time() + 20)) <= 2
        assert fake.instances["1"]["reauthorise_count"] == 0  # refused before acting

        token = fake.issue_token()  # another credential, another window
        assert (await call("POST", AUTHENTICATE, auth=f"Bearer {token}"))[0] == 200
        # 401s and login are outside the quota and carry no rate headers.
        unauthenticated = (await call("POST", AUTHENTICATE, auth="wrong"))[2]
        assert "X-RateLimit-Limit" not in unauthenticated.headers
        login = {"username": fake.username, "password": fake.password}
        logged_in = (await call("POST", LOGIN, json=login, auth=None))[2]
        assert logged_in.status == 200
        assert "X-RateLimit-Limit" not in logged_in.headers

        now[0] += 19.5
        assert (await call("POST", AUTHENTICATE))[2].headers["Retry-After"] == "1"  # at least 1
        now[0] += 0.5  # the window is over
        assert (await call("POST", AUTHENTICATE))[0] == 200
        assert (await call("POST", AUTHENTICATE))[0] == 200
        assert (await call("POST", AUTHENTICATE))[0] == 429
        fake.reset_quota()
        assert (await call("POST", AUTHENTICATE))[0] == 200


async def test_no_quota_no_rate_headers(call: Call) -> None:
    response = (await call("POST", AUTHENTICATE))[2]
    assert "X-RateLimit-Limit" not in response.headers


# -- faults -----------------------------------------------------------------------------


async def test_status_fault_refuses_before_acting(fake: FakePatchworks, call: Call) -> None:
    fake.add_faults(Fault.status_code(503), Fault.too_many(retry_after=2))
    status, body, _ = await call("POST", AUTHORISE, json=BODY)
    assert status == 503
    assert "message" in body
    status, body, response = await call("POST", AUTHORISE, json=BODY)
    assert (status, response.headers["Retry-After"]) == (429, "2")
    assert fake.instances == {}
    assert fake.authorise_count == 0
    assert (await call("POST", AUTHORISE, json=BODY))[0] == 200  # the script is used up
    assert [fault.kind for _, fault in fake.faults_injected] == ["status", "status"]
    assert fake.fault_counts == {"status": 2}


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(2.0, "2"), (0.5, "0.5"), ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT")],
)
async def test_retry_after_formats(
    fake: FakePatchworks, call: Call, retry_after: float | str, header: str
) -> None:
    fake.add_faults(Fault.status_code(503, retry_after=retry_after))
    assert (await call("POST", AUTHENTICATE))[2].headers["Retry-After"] == header


async def test_drop_acts_then_closes(fake: FakePatchworks, call: Call) -> None:
    fake.add_faults(Fault.dropped())
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call("POST", AUTHORISE, json=BODY)
    assert fake.authorise_count == 1  # created, though the client never heard of it
    assert "1" in fake.instances
    assert fake.requests[0].status is None
    assert fake.requests[0].fault == Fault.dropped()
    assert (await call("POST", AUTHENTICATE))[0] == 200


async def test_truncate_acts_then_cuts_the_body(fake: FakePatchworks, call: Call) -> None:
    fake.add_faults(Fault.truncated(), Fault.truncated())
    with pytest.raises(aiohttp.ClientPayloadError):
        await call("POST", AUTHORISE, json=BODY)
    assert fake.authorise_count == 1
    with pytest.raises(aiohttp.ClientPayloadError):
        await call("POST", WOO)  # even an empty answer gets a cut body


@pytest.mark.parametrize(
    ("fault", "status", "content_type", "raw"),
    [
        (Fault.malformed(), 200, "application/json", b'{"id": '),
        (Fault.html(status=200), 200, "text/html", b"<html><body>Bad gateway</body></html>"),
        (Fault.html(), 502, "text/html", b"<html><body>Bad gateway</body></html>"),
        (Fault.non_object(), 200, "application/json", b"[1, 2, 3]"),
    ],
)
async def test_bad_bodies_act_first(
    fake: FakePatchworks,
    session: aiohttp.ClientSession,
    fault: Fault,
    status: int,
    content_type: str,
    raw: bytes,
) -> None:
    fake.add_faults(fault)
    headers = {"Authorization": fake.api_key}
    async with session.post(fake.url + AUTHORISE, json=BODY, headers=headers) as response:
        assert response.status == status
        assert response.content_type == content_type
        assert await response.read() == raw
        assert response.headers["X-Request-Id"]
    assert fake.authorise_count == 1


async def test_slow_fault_acts_then_waits(fake: FakePatchworks, call: Call) -> None:
    fake.add_faults(Fault.slow(0.05))
    started = time.monotonic()
    status, body, _ = await call("POST", AUTHORISE, json=BODY)
    assert time.monotonic() - started >= 0.05
    assert (status, body["id"]) == (200, 1)


async def test_slow_fault_still_creates_when_the_client_gives_up(
    fake: FakePatchworks, session: aiohttp.ClientSession
) -> None:
    fake.add_faults(Fault.slow(5.0))
    headers = {"Authorization": fake.api_key}
    with pytest.raises(asyncio.TimeoutError):
        await session.post(
            fake.url + AUTHORISE,
            json=BODY,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=0.1),
        )
    assert fake.authorise_count == 1  # close() does not wait the 5 s out


async def test_redirect_goes_to_another_origin_without_acting(
    fake: FakePatchworks, session: aiohttp.ClientSession
) -> None:
    fake.add_faults(Fault.redirected())
    headers = {"Authorization": fake.api_key}
    url = fake.url + AUTHORISE + "?x=1"
    async with session.post(url, json=BODY, headers=headers, allow_redirects=False) as response:
        assert response.status == 307
        assert response.headers["Location"] == fake.redirect_url + AUTHORISE + "?x=1"
    assert fake.redirect_target_requests == []
    fake.add_faults(Fault.redirected())
    async with session.post(url, json=BODY, headers=headers) as response:  # followed
        assert response.status == 200
        assert await response.json() == {}
    (target,) = fake.redirect_target_requests
    assert (target.method, target.path, target.query, target.json) == (
        "POST",
        AUTHORISE,
        "x=1",
        BODY,
    )
    assert "Authorization" not in target.headers  # aiohttp drops it across origins
    assert fake.instances == {}


async def test_fault_paths_filter_and_login(fake: FakePatchworks, call: Call) -> None:
    fake.add_instance("1")
    fake.add_faults(Fault.status_code(500), paths="/reauthorise")
    fake.add_faults(Fault.status_code(502))
    login = {"username": fake.username, "password": fake.password}
    assert (await call("POST", LOGIN, json=login, auth=None))[0] == 200  # never for login
    assert (await call("POST", AUTHENTICATE))[0] == 502  # the first fault needs /reauthorise
    assert (await call("PATCH", reauthorise("1"), json={}))[0] == 500
    assert (await call("PATCH", reauthorise("1"), json={}))[0] == 200
    fake.add_faults(Fault.status_code(503), paths=LOGIN)
    assert (await call("POST", LOGIN, json=login, auth=None))[0] == 503
    assert [request.path for request, _ in fake.faults_injected] == [
        AUTHENTICATE,
        reauthorise("1"),
        LOGIN,
    ]


async def test_fault_rate_is_seeded(fake: FakePatchworks, call: Call) -> None:
    faults = [Fault.status_code(500), Fault.status_code(503)]
    statuses: list[list[int]] = []
    for _ in range(2):
        fake.set_fault_rate(0.5, faults, seed=7)
        statuses.append([(await call("POST", AUTHENTICATE))[0] for _ in range(20)])
    assert statuses[0] == statuses[1]
    assert {200, 500, 503} == set(statuses[0])
    fake.add_faults(Fault.status_code(418))
    fake.set_fault_rate(1.0, [Fault.status_code(500)])
    assert (await call("POST", AUTHENTICATE))[0] == 418  # scripted first
    assert (await call("POST", AUTHENTICATE))[0] == 500
    fake.set_fault_rate(1.0, [Fault.status_code(500)], paths="/reauthorise")
    assert (await call("POST", AUTHENTICATE))[0] == 200
    fake.set_fault_rate(0.0, faults)
    assert (await call("POST", AUTHENTICATE))[0] == 200


# -- counters, connections, latency -----------------------------------------------------


async def test_record_off_keeps_counters(session: aiohttp.ClientSession) -> None:
    async with FakePatchworks(record=False) as fake:
        call = Call(fake, session)
        for _ in range(3):
            await call("POST", AUTHENTICATE)
        await call("GET", "/nope")
        fake.add_faults(Fault.status_code(500))
        await call("POST", AUTHENTICATE)
        assert fake.requests == []
        assert fake.request_count == 5
        assert [r.path for r in fake.malformed] == ["/nope"]
        ((request, fault),) = fake.faults_injected
        assert (request.path, request.status, fault.status) == (AUTHENTICATE, 500, 500)
        assert fake.connections_opened == 1


async def test_connections_are_counted(fake: FakePatchworks, call: Call) -> None:
    for _ in range(5):
        await call("POST", AUTHENTICATE)
    assert fake.connections_opened == 1
    async with aiohttp.ClientSession() as other:
        await Call(fake, other)("POST", AUTHENTICATE)
    assert fake.connections_opened == 2
    assert [r.connection for r in fake.requests] == [1, 1, 1, 1, 1, 2]


async def test_latency(session: aiohttp.ClientSession) -> None:
    async with FakePatchworks(latency=0.05) as fake:
        started = time.monotonic()
        assert (await Call(fake, session)("POST", AUTHENTICATE))[0] == 200
        assert time.monotonic() - started >= 0.05


@pytest.mark.spec_exempt(reason="an oversized body on purpose")
async def test_body_over_8_mb_is_413(fake: FakePatchworks, call: Call) -> None:
    big = b'{"a": "' + b"x" * (8 * 1024 * 1024) + b'"}'
    status, body, _ = await call("POST", AUTHORISE, data=io.BytesIO(big), headers=_json_type())
    assert status == 413
    assert "message" in body
    assert fake.requests[0].status == 413


def test_recorded_request_is_frozen() -> None:
    request = RecordedRequest(
        method="GET", path="/", query="", headers={}, json=None, body=b"", arrived=0.0
    )
    with pytest.raises(AttributeError):
        request.path = "/x"  # type: ignore[misc]


# -- the command line -------------------------------------------------------------------


async def test_command_line_serves_until_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "patchworks_async.testing",
        "--port",
        "0",
        "--api-key",
        "cli-key",
        "--quota",
        "5",
        "--quota-window",
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        lines = [
            (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
            for _ in range(4)
        ]
        fields = dict(line.split(": ", 1) for line in lines)
        assert set(fields) == {"url", "api_key", "username", "password"}
        assert fields["api_key"] == "cli-key"
        assert fields["url"].startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as s:
            headers = {"Authorization": "cli-key"}
            async with s.post(fields["url"] + AUTHENTICATE, headers=headers) as response:
                assert response.status == 200
                assert response.headers["X-RateLimit-Limit"] == "5"
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
        assert process.returncode == 0, stderr.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _settle(condition: Any, *, polls: int = 500) -> bool:
    """Poll ``condition()`` between short waits for I/O; True once it holds (bounded)."""
    for _ in range(polls):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return bool(condition())


async def test_abandoned_slow_requests_free_their_handlers_at_once(fake: FakePatchworks) -> None:
    # 64 requests meet an hour-long slow fault; their client cancels them all and goes.
    # The fake's handler tasks must end with the connections, not sleep the hour out.
    baseline = len(asyncio.all_tasks())
    key = fake.add_instance()
    fake.set_fault_rate(1.0, [Fault.slow(3600.0)], paths="/reauthorise")
    headers = {"Authorization": fake.api_key}
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            async with session.patch(fake.url + reauthorise(key), json={}, headers=headers):
                pass

        calls = [asyncio.create_task(one()) for _ in range(64)]
        assert await _settle(lambda: fake.request_count == 64)
        # Each call is a client task and a server handler task, all still waiting.
        assert len(asyncio.all_tasks()) >= baseline + 2 * 64
        for task in calls:
            task.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
    assert await _settle(lambda: len(asyncio.all_tasks()) <= baseline)
    assert fake.fault_counts["delay"] == 64

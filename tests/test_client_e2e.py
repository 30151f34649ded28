"""Ring 3 (end to end): the client against FakePatchworks on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import aiohttp
import attrs
import pytest

from patchworks_async import (
    APIError,
    AuthenticationError,
    AuthoriseRequest,
    InvalidRequestError,
    Login,
    NotFoundError,
    PatchworksClient,
    PatchworksError,
    PermissionDeniedError,
    RateLimitError,
    ReauthoriseRequest,
    RequestTimeoutError,
    ResponseDecodeError,
    RetryPolicy,
    ServerError,
    Timeout,
    TransportError,
    UnprocessableEntityError,
    Variable,
    __version__,
)
from patchworks_async.testing import FakePatchworks, Fault

AUTHORISE = AuthoriseRequest(
    authentication_implementation_id="impl-1",
    timezone="Europe/London",
    date_format="Y-m-d",
    rate_limit_unit="minute",
    rate_limit_duration=60,
)
NO_RETRY = RetryPolicy.disabled()


def _client(fake: FakePatchworks, **kwargs: Any) -> PatchworksClient:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", RetryPolicy(backoff_base=0.01, backoff_max=0.05))
    if not {"api_key", "token", "login"} & kwargs.keys():
        kwargs["api_key"] = fake.api_key
    return PatchworksClient(base_url=fake.url, **kwargs)


async def test_quickstart_flow(fake: FakePatchworks) -> None:
    async with PatchworksClient(base_url=fake.url, api_key=fake.api_key) as client:
        created = await client.oauth.authorise(AUTHORISE)
        updated = await client.oauth.reauthorise(created["id"], ReauthoriseRequest(timezone="UTC"))
        authenticated = await client.oauth.authenticate()
        woo = await client.oauth.woo_app_auth()
    assert str(created["id"]) in fake.instances
    assert updated["timezone"] == "UTC"
    assert isinstance(authenticated, dict)
    assert woo == {}
    assert [r.method for r in fake.requests] == ["POST", "PATCH", "POST", "POST"]


async def test_request_headers_and_body(fake: FakePatchworks, client: PatchworksClient) -> None:
    key = fake.add_instance()
    await client.oauth.reauthorise(
        key, ReauthoriseRequest(variables=[Variable(key="shop", value="acme")])
    )
    await client.oauth.authenticate()
    patch, post = fake.requests
    assert patch.headers["Authorization"] == fake.api_key  # raw, no "Bearer "
    assert patch.headers["Accept"] == "application/json"
    assert patch.headers["Content-Type"] == "application/json"
    assert patch.headers["User-Agent"] == f"patchworks-async/{__version__}"
    assert patch.json == {"variables": [{"key": "shop", "value": "acme"}]}
    assert post.headers["Accept"] == "application/json"
    assert post.headers["Content-Type"] == "application/json"  # DOMAIN.md: on every request
    assert post.body == b""


async def test_optional_fields_are_omitted_not_null(
    fake: FakePatchworks, client: PatchworksClient
) -> None:
    await client.oauth.authorise(AUTHORISE)
    assert fake.requests[0].json == {
        "authentication_implementation_id": "impl-1",
        "timezone": "Europe/London",
        "date_format": "Y-m-d",
        "rate_limit_unit": "minute",
        "rate_limit_duration": 60,
    }


@pytest.mark.parametrize(
    ("connector", "raw"),
    [
        ("a/b", "a%2Fb"),
        ("..", "%2E%2E"),
        ("x?y#z", "x%3Fy%23z"),
        ("50% off", "50%25%20off"),
        ("ü", "%C3%BC"),
        (12, "12"),
    ],
)
async def test_connector_is_one_segment_on_the_wire(
    fake: FakePatchworks, client: PatchworksClient, connector: str | int, raw: str
) -> None:
    fake.add_instance(connector)
    result = await client.oauth.reauthorise(connector, ReauthoriseRequest(timezone="UTC"))
    assert result["timezone"] == "UTC"
    assert fake.requests[-1].path == f"/api/v1/oauth/{raw}/reauthorise"
    assert fake.malformed == []


@pytest.mark.parametrize(
    "make",
    [
        lambda: attrs.evolve(AUTHORISE, rate_limit_duration=0),
        lambda: attrs.evolve(AUTHORISE, rate_limit_duration=True),
        lambda: attrs.evolve(AUTHORISE, rate_limit_unit="week"),  # type: ignore[arg-type]
        lambda: ReauthoriseRequest(connection_pool_id="7"),  # type: ignore[arg-type]
    ],
)
async def test_bad_models_fail_before_io(fake: FakePatchworks, make: Any) -> None:
    with pytest.raises(InvalidRequestError):
        make()
    assert fake.requests == []


@pytest.mark.parametrize("connector", ["", None, True, 1.5])
async def test_bad_connector_fails_before_io(
    fake: FakePatchworks, client: PatchworksClient, connector: Any
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await client.oauth.reauthorise(connector, ReauthoriseRequest())
    assert info.value.field == "connector"
    assert fake.requests == []


async def test_missing_required_field_fails_before_io(
    fake: FakePatchworks, client: PatchworksClient
) -> None:
    with pytest.raises(InvalidRequestError):
        await client.oauth.authorise({"timezone": "UTC"})  # type: ignore[arg-type]
    assert fake.requests == []


async def test_sequential_calls_reuse_one_connection(fake: FakePatchworks) -> None:
    async with _client(fake) as client:
        for _ in range(10):
            await client.oauth.authenticate()
        assert client.connections_opened == 1
    assert fake.connections_opened == 1


@pytest.mark.spec_exempt(
    reason="a raw request without a credential, to see the session still works"
)
async def test_borrowed_session_is_not_closed(fake: FakePatchworks) -> None:
    async with aiohttp.ClientSession() as session:
        async with _client(fake, session=session) as client:
            await client.oauth.authenticate()
        assert not session.closed
        async with session.post(fake.url + "/api/v1/oauth/authenticate") as response:
            assert response.status == 401


async def test_close_is_idempotent(fake: FakePatchworks) -> None:
    client = _client(fake)
    await client.oauth.authenticate()
    await client.aclose()
    await client.aclose()


async def test_environment_fallbacks(fake: FakePatchworks, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHWORKS_API_KEY", fake.api_key)
    monkeypatch.setenv("PATCHWORKS_BASE_URL", fake.url)
    async with PatchworksClient(rate_limit=None) as client:
        await client.oauth.authenticate()
    assert fake.requests[0].headers["Authorization"] == fake.api_key


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATCHWORKS_BASE_URL", raising=False)
    assert PatchworksClient(api_key="k").base_url == "https://core.wearepatchworks.com"


def test_exactly_one_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATCHWORKS_API_KEY", raising=False)
    with pytest.raises(InvalidRequestError):
        PatchworksClient(api_key="k", token="t")
    with pytest.raises(InvalidRequestError):
        PatchworksClient()
    with pytest.raises(InvalidRequestError):
        PatchworksClient(api_key="k\r\nX-Evil: 1")


async def test_bearer_token(fake: FakePatchworks) -> None:
    token = fake.issue_token()
    async with _client(fake, token=token) as client:
        await client.oauth.authenticate()
    assert fake.requests[0].headers["Authorization"] == f"Bearer {token}"


async def test_login_once_for_many_concurrent_calls(fake: FakePatchworks) -> None:
    login = Login(fake.username, fake.password, url=fake.login_url)
    async with _client(fake, login=login) as client:
        await asyncio.gather(*(client.oauth.authenticate() for _ in range(50)))
        await client.oauth.woo_app_auth()
    assert fake.login_count == 1
    api_calls = [r for r in fake.requests if r.path.startswith("/api/")]
    assert len(api_calls) == 51
    assert all(r.headers["Authorization"].startswith("Bearer ") for r in api_calls)


async def test_expired_token_triggers_one_fresh_login_and_one_retry(fake: FakePatchworks) -> None:
    login = Login(fake.username, fake.password, url=fake.login_url)
    async with _client(fake, login=login, retry=NO_RETRY) as client:
        await client.oauth.authenticate()
        fake.expire_tokens()
        await client.oauth.authenticate()
    assert fake.login_count == 2
    statuses = [r.path for r in fake.requests]
    assert statuses.count("/api/v1/oauth/authenticate") == 3  # ok, 401, ok


async def test_token_renewed_before_expiry(
    fake: FakePatchworks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake's tokens live 100 s; the client renews 10 s early (a tenth, for short lives).
    long_lived = FakePatchworks(token_ttl=100)
    now = [1000.0]
    monkeypatch.setattr("patchworks_async._auth._monotonic", lambda: now[0])
    async with long_lived:
        login = Login(long_lived.username, long_lived.password, url=long_lived.login_url)
        async with _client(long_lived, login=login) as client:
            await client.oauth.authenticate()
            now[0] += 89.0
            await client.oauth.authenticate()
            assert long_lived.login_count == 1  # still fresh: reused
            now[0] += 2.0
            await client.oauth.authenticate()
        assert long_lived.login_count == 2  # renewed before the server would refuse it
        assert not [r for r in long_lived.requests if r.status == 401]


async def test_wrong_login_is_an_authentication_error(fake: FakePatchworks) -> None:
    login = Login(fake.username, "wrong-password-123", url=fake.login_url)
    async with _client(fake, login=login) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.oauth.authenticate()
    assert "wrong-password-123" not in str(info.value)
    assert "wrong-password-123" not in repr(info.value)


async def test_wrong_key_is_401_and_never_shown(fake: FakePatchworks) -> None:
    async with _client(fake, api_key="pw_wrong_secret_key") as client:
        with pytest.raises(AuthenticationError) as info:
            await client.oauth.authenticate()
        assert "pw_wrong_secret_key" not in repr(client)
    error = info.value
    assert error.status == 401
    assert error.request_id
    for text in (str(error), repr(error), repr(error.headers), repr(error.body)):
        assert "pw_wrong_secret_key" not in text


async def test_404_for_unknown_instance(client: PatchworksClient) -> None:
    with pytest.raises(NotFoundError) as info:
        await client.oauth.reauthorise("nope", ReauthoriseRequest())
    assert info.value.status == 404
    assert info.value.method == "PATCH"


async def test_422_is_structured(fake: FakePatchworks, client: PatchworksClient) -> None:
    key = fake.add_instance()
    with pytest.raises(UnprocessableEntityError) as info:
        # The spec leaves `name` out; the server types it as a string.
        await client.oauth.reauthorise(key, ReauthoriseRequest(extra={"name": 5}))
    assert "name" in info.value.errors
    assert info.value.message


@pytest.mark.parametrize(
    ("status", "cls"),
    [(403, PermissionDeniedError), (500, ServerError), (502, ServerError), (400, APIError)],
)
async def test_status_faults_map_to_errors(
    fake: FakePatchworks, status: int, cls: type[APIError]
) -> None:
    fake.add_faults(Fault.status_code(status))
    async with _client(fake, retry=NO_RETRY) as client:
        with pytest.raises(cls) as info:
            await client.oauth.authenticate()
    assert info.value.status == status


@pytest.mark.parametrize("fault", [Fault.malformed(), Fault.non_object(), Fault.html(status=200)])
async def test_bad_bodies_are_decode_errors(fake: FakePatchworks, fault: Fault) -> None:
    fake.add_faults(fault)
    async with _client(fake, retry=NO_RETRY) as client:
        with pytest.raises(ResponseDecodeError):
            await client.oauth.authenticate()


@pytest.mark.parametrize("fault", [Fault.dropped(), Fault.truncated()])
async def test_broken_connections_are_transport_errors(fake: FakePatchworks, fault: Fault) -> None:
    fake.add_faults(fault)
    async with _client(fake, retry=NO_RETRY) as client:
        with pytest.raises(TransportError) as info:
            await client.oauth.authenticate()
    assert info.value.sent is True
    assert not isinstance(info.value.__cause__, PatchworksError)
    assert isinstance(info.value.__cause__, aiohttp.ClientError)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_refused_connection_is_a_transport_error() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    async with PatchworksClient(base_url=url, api_key="k", rate_limit=None, retry=NO_RETRY) as c:
        with pytest.raises(TransportError) as info:
            await c.oauth.authenticate()
    assert info.value.sent is False
    assert not isinstance(info.value, RequestTimeoutError)


async def test_timeout(fake: FakePatchworks) -> None:
    fake.add_faults(Fault.slow(1.0))
    async with _client(fake, retry=NO_RETRY, timeout=Timeout(total=0.2)) as client:
        with pytest.raises(RequestTimeoutError) as info:
            await client.oauth.authenticate()
    assert info.value.sent is True


async def test_rate_limit_error_without_retries(fake: FakePatchworks) -> None:
    fake.add_faults(Fault.too_many(retry_after=3))
    async with _client(fake, retry=NO_RETRY) as client:
        with pytest.raises(RateLimitError) as info:
            await client.oauth.authenticate()
    assert info.value.retry_after == 3.0


async def test_no_secret_in_debug_logs(
    fake: FakePatchworks, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    login = Login(fake.username, fake.password, url=fake.login_url)
    async with _client(fake, login=login) as client:
        created = await client.oauth.authorise(AUTHORISE)
        await client.oauth.reauthorise(created["id"], ReauthoriseRequest())
        fake.expire_tokens()
        await client.oauth.authenticate()
        with pytest.raises(NotFoundError):
            await client.oauth.reauthorise("missing", ReauthoriseRequest())
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "authorise attempt 1" in text  # the DEBUG lines are there
    for secret in (fake.password, fake.api_key):
        assert secret not in text
    for request in fake.requests:
        token = request.headers.get("Authorization", "")
        if token.startswith("Bearer "):
            assert token[7:] not in text


def test_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as info:
        PatchworksClient(api_key="k", base_url="http://example.com")
    assert info.value.field == "base_url"
    PatchworksClient(api_key="k", base_url="http://example.com", allow_insecure_http=True)
    PatchworksClient(api_key="k", base_url="http://127.0.0.1:8080")
    PatchworksClient(api_key="k", base_url="http://localhost:8080")

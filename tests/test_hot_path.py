"""The per-call short paths of issue 12: each does less, and sends exactly the same request."""

from __future__ import annotations

import pytest
from yarl import URL

from patchworks_async import PatchworksClient, RateLimit, ReauthoriseRequest, RetryPolicy
from patchworks_async._sansio import REQUEST_HEADERS
from patchworks_async._transport import Timeout, Transport
from patchworks_async.testing import FakePatchworks


def _transport(base_url: str) -> Transport:
    return Transport(
        base_url=base_url,
        session=None,
        max_connections=1,
        timeout=Timeout(),
        max_response_bytes=1024,
    )


@pytest.mark.parametrize(
    ("base_url", "path"),
    [
        ("http://127.0.0.1:8080", "/api/v1/oauth/42/reauthorise"),
        ("http://127.0.0.1:8080", "/api/v1/oauth/a%2Fb%3Fc/reauthorise"),
        ("http://127.0.0.1:8080", "/api/v1/oauth/%2E%2E/reauthorise"),
        ("https://core.example/prefix/", "/api/v1/oauth/%E2%82%AC/reauthorise"),
        ("https://core.example", "/x?y=1"),
    ],
)
def test_cached_urls_are_what_a_full_parse_gives(base_url: str, path: str) -> None:
    transport = _transport(base_url)
    url = transport.base_url + path
    target = transport._target(url)
    assert target == URL(url, encoded=True)
    assert str(target) == url
    assert transport._target(url) is target  # parsed once


def test_a_url_elsewhere_is_parsed_whole() -> None:
    transport = _transport("https://core.example")
    login = "https://login.example/fabric/api/login"
    assert transport._target(login) == URL(login, encoded=True)


def test_headers_are_built_once_per_credential() -> None:
    client = PatchworksClient(base_url="https://core.example", api_key="pw_key")
    first = client._headers_for("pw_key", REQUEST_HEADERS)
    assert client._headers_for("pw_key", REQUEST_HEADERS) is first
    assert first == {**REQUEST_HEADERS, "Authorization": "pw_key"}
    renewed = client._headers_for("Bearer new", REQUEST_HEADERS)
    assert renewed is not first
    assert renewed["Authorization"] == "Bearer new"
    assert "Authorization" not in REQUEST_HEADERS  # the shared base is never changed


async def test_short_and_paced_paths_send_the_same_request(fake: FakePatchworks) -> None:
    connector = fake.add_instance("7")
    rated = ReauthoriseRequest(timezone="UTC", rate_limit_unit="second", rate_limit_duration=1000)
    async with PatchworksClient(
        base_url=fake.url, api_key=fake.api_key, rate_limit=None, retry=RetryPolicy.disabled()
    ) as client:
        await client.oauth.reauthorise(connector, rated)  # short path: not paced yet
        assert client.instance_rate_limit(connector) == RateLimit("second", 1000)
        await client.oauth.reauthorise(connector, rated)  # paced: the instance's limiter
        assert client.connections_opened == 1
    first, second = fake.requests
    assert (first.method, first.path, first.json) == (second.method, second.path, second.json)
    assert first.headers == second.headers
    assert first.headers["Authorization"] == fake.api_key

"""The per-call short paths of issue 12: each does less, and sends exactly the same request."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from typing import NoReturn

import pytest
from cattrs.fns import identity
from yarl import URL

from patchworks_async import (
    PatchworksClient,
    RateLimit,
    RateLimitUnit,
    ReauthoriseRequest,
    RetryPolicy,
    _convert,
)
from patchworks_async._limits import Limits
from patchworks_async._sansio import REQUEST_HEADERS
from patchworks_async._transport import RawResponse, Timeout, Transport
from patchworks_async.testing import FakePatchworks
from tests.virtual_time import run_virtual, sliding_window_max


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
    first = client._pipeline.headers_for("pw_key", REQUEST_HEADERS)
    assert client._pipeline.headers_for("pw_key", REQUEST_HEADERS) is first
    assert first == {**REQUEST_HEADERS, "Authorization": "pw_key"}
    renewed = client._pipeline.headers_for("Bearer new", REQUEST_HEADERS)
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


async def test_a_paced_call_with_room_takes_no_slot(
    fake: FakePatchworks, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = fake.add_instance("7")
    rated = ReauthoriseRequest(rate_limit_unit="second", rate_limit_duration=1000)
    async with PatchworksClient(
        base_url=fake.url, api_key=fake.api_key, rate_limit=None, retry=RetryPolicy.disabled()
    ) as client:
        await client.oauth.reauthorise(connector, rated)  # learns the instance's limit

        def no_slot(*_args: object, **_kwargs: object) -> NoReturn:
            raise AssertionError("the paced call with room went through a Slot")

        monkeypatch.setattr(Limits, "slot", no_slot)
        await client.oauth.reauthorise(connector, rated)
        await client.oauth.reauthorise(connector, rated)
    assert len(fake.requests) == 3


def test_unobserved_calls_on_a_paced_instance_are_still_spaced() -> None:
    # The short paced way takes the instance's grant only when its bucket has room:
    # calls beyond the rate wait in a Slot, as before (virtual time, transport stubbed).
    rate = RateLimit("second", 5)
    request = ReauthoriseRequest(rate_limit_unit=rate.unit, rate_limit_duration=rate.duration)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        sent: list[float] = []

        async def send(
            _method: str, url: str, _headers: Mapping[str, str], _body: bytes | None
        ) -> RawResponse:
            sent.append(loop.time())
            return RawResponse(200, {}, b'{"id": "7"}', url)

        async with PatchworksClient(
            base_url="https://core.example", api_key="k", rate_limit=None
        ) as client:
            client._pipeline.transport.send = send  # type: ignore[method-assign, assignment]  # the stub
            client.set_instance_rate_limit("7", rate)
            await asyncio.gather(*(client.oauth.reauthorise("7", request) for _ in range(6)))
            for _ in range(6):
                await client.oauth.reauthorise("7", request)
        return sent

    sent = run_virtual(main)
    assert len(sent) == 12
    assert sliding_window_max(sent, rate.period) <= rate.duration
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert min(gaps) > rate.interval / 2  # never two at once (the slack is a small credit)


def test_request_scalars_are_copied_inline_when_unstructured() -> None:
    # Identity hooks: cattrs' generated function copies checked scalars with no call per
    # field; the body is the same (orjson writes the unit enum as its value).
    for scalar in (str | None, int | None, RateLimitUnit, RateLimitUnit | None):
        assert _convert._CONVERTER.get_unstructure_hook(scalar) is identity
    request = ReauthoriseRequest(timezone="UTC", rate_limit_unit="hour", rate_limit_duration=5)
    body = _convert.encode_json(_convert.unstructure(request))
    assert body == b'{"timezone":"UTC","rate_limit_unit":"hour","rate_limit_duration":5}'

"""End to end: typed results, and a client used from a second event loop (issue 11)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest

from patchworks_async import (
    AuthoriseRequest,
    Event,
    EventKind,
    EventLoopError,
    Instance,
    PatchworksClient,
    PatchworksError,
    RateLimit,
    ReauthoriseRequest,
)
from patchworks_async.testing import FakePatchworks


async def test_reauthorise_returns_a_typed_instance(
    fake: FakePatchworks, client: PatchworksClient
) -> None:
    key = fake.add_instance(7, timezone="UTC")
    result = await client.oauth.reauthorise(key, ReauthoriseRequest(date_format="Y"))
    assert type(result) is Instance
    assert result.id == 7
    # Still the dict it was: every key the server sent, and JSON-encodable as it is.
    assert isinstance(result, dict)
    assert result["timezone"] == "UTC"
    assert result["date_format"] == "Y"
    assert orjson.loads(orjson.dumps(result)) == dict(result)


async def test_authorise_returns_an_instance_whose_id_gets_the_rate(
    fake: FakePatchworks, client: PatchworksClient
) -> None:
    created = await client.oauth.authorise(
        AuthoriseRequest(
            authentication_implementation_id="impl",
            timezone="UTC",
            date_format="Y-m-d",
            rate_limit_unit="hour",
            rate_limit_duration=30,
        )
    )
    assert type(created) is Instance
    assert created.id is not None
    assert created.id == created["id"]
    assert client.instance_rate_limit(created.id) == RateLimit("hour", 30)


def test_instance_id_is_none_when_absent_or_not_an_id() -> None:
    assert Instance().id is None
    assert Instance(id=True).id is None
    assert Instance(id=[1]).id is None
    assert Instance(id="a").id == "a"


def test_a_second_event_loop_is_refused_before_any_io() -> None:
    events: list[Event] = []

    async def first() -> tuple[str, PatchworksClient]:
        async with FakePatchworks() as fake:
            client = PatchworksClient(
                base_url=fake.url, api_key=fake.api_key, rate_limit=None, on_event=events.append
            )
            key = fake.add_instance()
            await client.oauth.reauthorise(key)
            await client.aclose()
            return key, client

    key, client = asyncio.run(first())
    sent = len(events)
    assert sent > 0

    async def second() -> None:
        await client.oauth.reauthorise(key)

    with pytest.raises(EventLoopError) as info:
        asyncio.run(second())
    assert isinstance(info.value, PatchworksError)
    assert isinstance(info.value, RuntimeError)
    assert "one client serves one loop" in str(info.value)
    assert len(events) == sent  # not even queued: nothing was tried
    assert all(event.kind is not EventKind.GAVE_UP for event in events)


def test_a_bulk_job_in_a_second_loop_is_refused_once_before_reading_any_item() -> None:
    async def first() -> tuple[str, PatchworksClient]:
        async with FakePatchworks() as fake:
            client = PatchworksClient(base_url=fake.url, api_key=fake.api_key, rate_limit=None)
            key = fake.add_instance()
            await client.oauth.reauthorise(key)
            await client.aclose()
            return key, client

    key, client = asyncio.run(first())
    read: list[int] = []

    def items() -> Iterator[tuple[str, ReauthoriseRequest]]:
        for index in range(50):
            read.append(index)
            yield key, ReauthoriseRequest()

    outcomes: list[object] = []

    async def second() -> None:
        async for outcome in client.oauth.reauthorise_many(items()):
            outcomes.append(outcome)

    with pytest.raises(EventLoopError):
        asyncio.run(second())
    # One error for the job, not fifty failed outcomes; the input was not even read.
    assert outcomes == []
    assert read == []


def test_a_client_not_yet_used_may_start_in_any_loop() -> None:
    client = PatchworksClient(api_key="key", base_url="http://127.0.0.1:9")

    async def use() -> None:
        client.set_instance_rate_limit("7", RateLimit("minute", 5))
        limits = client._pipeline.limits_in(asyncio.get_running_loop())
        assert limits is client._pipeline.limits_in(asyncio.get_running_loop())
        await client.aclose()

    asyncio.run(use())
    assert client.instance_rate_limit("7") == RateLimit("minute", 5)

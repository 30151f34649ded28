"""Bulk reauthorisation: one outcome per item, lazy input, no head-of-line blocking, cancel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from patchworks_async import (
    Event,
    EventKind,
    InvalidRequestError,
    NotFoundError,
    PatchworksClient,
    RateLimit,
    ReauthoriseOutcome,
    ReauthoriseRequest,
    RetryPolicy,
    ServerError,
)
from patchworks_async.testing import FakePatchworks, Fault

# As in test_ratelimit_e2e: the fake shares the client's loop, so arrivals jitter a little.
ARRIVAL_JITTER = 0.02


def _client(fake: FakePatchworks, **kwargs: Any) -> PatchworksClient:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", RetryPolicy(backoff_base=0.01, backoff_max=0.02))
    return PatchworksClient(base_url=fake.url, api_key=fake.api_key, **kwargs)


async def _collect(iterator: AsyncIterator[ReauthoriseOutcome]) -> list[ReauthoriseOutcome]:
    return [outcome async for outcome in iterator]


async def test_one_outcome_per_item_with_failures(fake: FakePatchworks) -> None:
    ids = [fake.add_instance() for _ in range(200)]
    items: list[Any] = [(key, ReauthoriseRequest(timezone="UTC")) for key in ids]
    items += [
        ("missing-1", ReauthoriseRequest()),
        ("", ReauthoriseRequest()),
        ("x", "not a request"),
    ]
    items.append("not even a pair")
    # 20 persistent 500s (more than the retries) and some transient 503s.
    fake.add_faults(*[Fault.status_code(503)] * 10, paths="/reauthorise")
    fake.set_fault_rate(0.05, [Fault.status_code(500)], seed=3, paths="/reauthorise")
    async with _client(fake, retry=RetryPolicy(max_attempts=2, backoff_base=0.01)) as client:
        outcomes = await _collect(client.oauth.reauthorise_many(items, concurrency=8))
    assert len(outcomes) == len(items)
    assert sorted(o.index for o in outcomes) == list(range(len(items)))
    by_index = {o.index: o for o in outcomes}
    assert isinstance(by_index[200].error, NotFoundError)
    assert isinstance(by_index[201].error, InvalidRequestError)
    assert isinstance(by_index[202].error, InvalidRequestError)
    assert isinstance(by_index[203].error, InvalidRequestError)
    assert by_index[203].attempts == 0
    for outcome in outcomes[:0]:
        assert outcome
    failed = [o for o in outcomes if o.index < 200 and not o.ok]
    assert all(isinstance(o.error, ServerError) for o in failed)
    succeeded = [o for o in outcomes if o.ok]
    assert all(o.result is not None for o in succeeded)
    # Every instance that succeeded was reauthorised; none twice after success.
    for o in succeeded:
        assert fake.instances[str(o.connector)]["reauthorise_count"] >= 1


async def test_input_is_read_lazily(fake: FakePatchworks) -> None:
    key = fake.add_instance()
    pulled = 0

    def items() -> Iterator[tuple[str, ReauthoriseRequest]]:
        nonlocal pulled
        for _ in range(1_000_000):
            pulled += 1
            yield key, ReauthoriseRequest()

    async with _client(fake) as client:
        taken = 0
        async for _ in client.oauth.reauthorise_many(items(), concurrency=4, read_ahead=16):
            taken += 1
            if taken == 50:
                break
    assert pulled <= 50 + 16 + 1


async def test_async_iterable_input(fake: FakePatchworks) -> None:
    ids = [fake.add_instance() for _ in range(30)]

    async def items() -> AsyncIterator[tuple[str, ReauthoriseRequest]]:
        for key in ids:
            yield key, ReauthoriseRequest()

    async with _client(fake) as client:
        outcomes = await _collect(client.oauth.reauthorise_many(items(), concurrency=5))
    assert sorted(o.connector for o in outcomes) == sorted(ids)
    assert all(o.ok and o.attempts == 1 for o in outcomes)


async def test_no_head_of_line_blocking(fake: FakePatchworks) -> None:
    slow = fake.add_instance()
    fast = [fake.add_instance() for _ in range(40)]
    items = [(slow, ReauthoriseRequest())] * 3 + [(key, ReauthoriseRequest()) for key in fast]
    order: list[str] = []
    slow_departures: list[float] = []

    def on_event(event: Event) -> None:
        if event.kind is EventKind.SENT and event.connector == slow:
            slow_departures.append(time.monotonic())

    async with _client(fake, on_event=on_event) as client:
        client.set_instance_rate_limit(slow, RateLimit("second", 1))
        # The same instance three times on purpose: deduplication off.
        job = client.oauth.reauthorise_many(items, concurrency=2, deduplicate=False)
        async for outcome in job:
            assert outcome.ok
            order.append(str(outcome.connector))
    # The slow instance's 2nd and 3rd calls wait 1 s and 2 s for its limiter; every
    # fast item finishes before them although only two slots exist.
    second_slow = [i for i, key in enumerate(order) if key == slow][1]
    assert set(order[:second_slow]) >= set(fast)
    # Paced exactly where the client sends; at the server within the same-loop arrival
    # jitter (a first request that opens a connection arrives later than one that reuses it).
    assert slow_departures[1] - slow_departures[0] >= 1.0
    slow_arrivals = [r.arrived for r in fake.requests if f"/{slow}/" in r.path]
    assert slow_arrivals[1] - slow_arrivals[0] >= 1.0 - ARRIVAL_JITTER


async def test_cancelling_the_consumer_leaves_nothing_running(fake: FakePatchworks) -> None:
    ids = [fake.add_instance() for _ in range(50)]
    fake.set_fault_rate(1.0, [Fault.slow(5.0)], paths="/reauthorise")
    seen: list[ReauthoriseOutcome] = []
    sent = 0
    eight_sent = asyncio.Event()

    def on_event(event: Event) -> None:
        nonlocal sent
        if event.kind is EventKind.SENT:
            sent += 1
            if sent == 8:
                eight_sent.set()

    async with _client(fake, on_event=on_event) as client:

        async def consume() -> None:
            async for outcome in client.oauth.reauthorise_many(
                [(key, ReauthoriseRequest()) for key in ids], concurrency=8
            ):
                seen.append(outcome)

        task = asyncio.create_task(consume())
        await eight_sent.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The fake's own handler tasks share this loop; none of the job's may be left.
        leftovers = [
            t
            for t in asyncio.all_tasks()
            if "_run_one" in t.get_coro().__qualname__  # type: ignore[union-attr]
        ]
        assert leftovers == []
    assert seen == []


def test_bad_concurrency_is_refused() -> None:
    client = PatchworksClient(api_key="k", base_url="http://127.0.0.1:1")
    with pytest.raises(InvalidRequestError):
        client.oauth.reauthorise_many([], concurrency=0)


async def test_first_outcome_taken_in_another_task_loses_nothing(fake: FakePatchworks) -> None:
    ids = [fake.add_instance() for _ in range(100)]
    async with _client(fake) as client:
        job = client.oauth.reauthorise_many([(key, ReauthoriseRequest()) for key in ids])
        # On Python 3.11, wait_for runs anext in a task of its own, which then ends.
        first = await asyncio.wait_for(anext(job), 5)
        rest = [outcome async for outcome in job]
    assert len([first, *rest]) == 100
    assert all(o.ok for o in [first, *rest])

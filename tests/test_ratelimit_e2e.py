"""Ring 3: rate-limit awareness against FakePatchworks (its arrival times are the proof)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import attrs
import pytest

from patchworks_async import (
    AuthenticationError,
    AuthoriseRequest,
    Event,
    EventKind,
    Login,
    PatchworksClient,
    RateLimit,
    RateLimitError,
    ReauthoriseRequest,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
    Timeout,
    TransportError,
)
from patchworks_async.models import RateLimitUnitName
from patchworks_async.testing import FakePatchworks, Fault
from tests.virtual_time import sliding_window_max

FAST_RETRY = RetryPolicy(backoff_base=0.01, backoff_max=0.05)


def _client(fake: FakePatchworks, **kwargs: Any) -> PatchworksClient:
    kwargs.setdefault("rate_limit", None)
    kwargs.setdefault("retry", FAST_RETRY)
    if "login" not in kwargs:
        kwargs["api_key"] = fake.api_key
    return PatchworksClient(base_url=fake.url, **kwargs)


def _authorise(unit: RateLimitUnitName = "second", duration: int = 5) -> AuthoriseRequest:
    return AuthoriseRequest(
        authentication_implementation_id="impl",
        timezone="UTC",
        date_format="Y-m-d",
        rate_limit_unit=unit,
        rate_limit_duration=duration,
    )


def _arrivals(fake: FakePatchworks, fragment: str = "/api/") -> list[float]:
    return [r.arrived for r in fake.requests if fragment in r.path]


# The fake runs in the client's own event loop: on a loaded machine its handlers see a
# request some milliseconds after it left. The limit is proved twice: exactly on the
# client's departures (what the guarantee is about), and on the server's arrivals
# within this measurement jitter (no `duration + 1` arrivals inside `unit - JITTER`).
ARRIVAL_JITTER = 0.02


class Departures:
    """An ``on_event`` hook that notes when each request left the client."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, event: Event) -> None:
        if event.kind is EventKind.SENT:
            self.times.append(time.monotonic())


def _assert_paced(departures: list[float], arrivals: list[float], rate: RateLimit) -> None:
    assert sliding_window_max(departures, rate.period) <= rate.duration
    assert sliding_window_max(arrivals, rate.period - ARRIVAL_JITTER) <= rate.duration


async def test_instance_limit_learnt_from_authorise_paces_reauthorise(fake: FakePatchworks) -> None:
    async with _client(fake) as client:
        created = await client.oauth.authorise(_authorise("second", 5))
        assert client.instance_rate_limit(created["id"]) == RateLimit("second", 5)
        departures = Departures()
        client.on_event = departures
        await asyncio.gather(
            *(client.oauth.reauthorise(created["id"], ReauthoriseRequest()) for _ in range(11))
        )
    times = _arrivals(fake, "/reauthorise")
    assert len(times) == 11
    _assert_paced(departures.times, times, RateLimit("second", 5))
    assert times[-1] - times[0] >= 10 * 0.2  # evenly spaced, 0.2 s apart at least


async def test_reauthorise_with_both_rate_fields_changes_the_limiter(fake: FakePatchworks) -> None:
    key = fake.add_instance()
    async with _client(fake) as client:
        assert client.instance_rate_limit(key) is None
        await client.oauth.reauthorise(
            key, ReauthoriseRequest(rate_limit_unit="second", rate_limit_duration=4)
        )
        assert client.instance_rate_limit(key) == RateLimit("second", 4)
        await client.oauth.reauthorise(key, ReauthoriseRequest(rate_limit_unit="minute"))
        assert client.instance_rate_limit(key) == RateLimit("second", 4)  # one field: unchanged


async def test_unknown_instance_is_not_paced(fake: FakePatchworks) -> None:
    key = fake.add_instance()
    async with _client(fake) as client:
        await asyncio.gather(
            *(client.oauth.reauthorise(key, ReauthoriseRequest()) for _ in range(20))
        )
    times = _arrivals(fake)
    assert max(times) - min(times) < 1.0


async def test_client_wide_limit_paces_every_call(fake: FakePatchworks) -> None:
    departures = Departures()
    async with _client(fake, rate_limit=RateLimit("second", 10), on_event=departures) as client:
        key = fake.add_instance()
        calls = [client.oauth.authenticate() for _ in range(10)]
        calls += [client.oauth.reauthorise(key, ReauthoriseRequest()) for _ in range(10)]
        calls += [client.oauth.woo_app_auth() for _ in range(5)]
        await asyncio.gather(*calls)
    times = _arrivals(fake)
    assert len(times) == 25
    _assert_paced(departures.times, times, RateLimit("second", 10))
    # ... and it is not slower than it must be: 25 calls at 10/s take about 2.4 s.
    assert times[-1] - times[0] < 2.4 * 1.05


def test_default_client_limit_is_the_documented_quota() -> None:
    assert PatchworksClient(api_key="k").rate_limit == RateLimit("minute", 240)
    assert PatchworksClient(api_key="k", rate_limit=None).rate_limit is None


async def test_a_429_stops_every_call_until_retry_after(fake: FakePatchworks) -> None:
    fake.add_faults(Fault.too_many(retry_after=1))
    async with _client(fake, max_connections=1) as client:
        results = await asyncio.gather(*(client.oauth.authenticate() for _ in range(6)))
    assert len(results) == 6
    records = [r for r in fake.requests if r.path.startswith("/api/")]
    assert records[0].status == 429
    after = [r.arrived for r in records[1:]]
    assert len(after) == 6  # five others and the retry
    assert min(after) - records[0].arrived >= 1.0
    assert client.rate_limit_state is not None


async def test_a_429_under_concurrency_pauses_calls_that_had_not_left(fake: FakePatchworks) -> None:
    fake.add_faults(Fault.too_many(retry_after=1))
    got_429 = asyncio.Event()

    def on_event(event: Event) -> None:
        if event.kind is EventKind.RESPONSE and event.status == 429:
            got_429.set()

    async with _client(fake, on_event=on_event) as client:
        first = asyncio.create_task(client.oauth.authenticate())
        await got_429.wait()
        seen = time.monotonic()
        await asyncio.gather(first, *(client.oauth.authenticate() for _ in range(10)))
    later = [r.arrived for r in fake.requests if r.arrived > seen]
    assert len(later) == 11
    assert min(later) - fake.requests[0].arrived >= 1.0


async def test_remaining_zero_waits_for_the_window(fake: FakePatchworks) -> None:
    quota = FakePatchworks(quota=3, quota_window=1.0)
    async with quota, _client(quota) as client:
        for _ in range(7):
            await client.oauth.authenticate()
        state = client.rate_limit_state
    assert [r.status for r in quota.requests] == [200] * 7  # never a 429
    assert state is not None
    assert state.limit == 3
    times = [r.arrived for r in quota.requests]
    assert sliding_window_max(times, 1.0) <= 3


async def test_quota_429_then_retry_succeeds(fake: FakePatchworks) -> None:
    quota = FakePatchworks(quota=2, quota_window=1.0)
    async with quota, _client(quota) as client:
        await asyncio.gather(*(client.oauth.authenticate() for _ in range(5)))
    statuses = [r.status for r in quota.requests]
    assert statuses.count(200) == 5


async def test_retry_after_over_the_cap_raises_at_once(fake: FakePatchworks) -> None:
    fake.add_faults(Fault.too_many(retry_after=500))
    async with _client(fake, retry=RetryPolicy(max_retry_after=120)) as client:
        started = time.monotonic()
        with pytest.raises(RateLimitError) as info:
            await client.oauth.authenticate()
    assert time.monotonic() - started < 1.0
    assert info.value.retry_after == 500.0
    assert len(fake.requests) == 1


async def test_retry_after_is_honoured_exactly(fake: FakePatchworks) -> None:
    fake.add_faults(Fault.too_many(retry_after=1))
    async with _client(fake, retry=RetryPolicy(max_time=0.5)) as client:
        # The total cap (0.5 s) is shorter than Retry-After: give up, never go early.
        with pytest.raises(RateLimitError):
            await client.oauth.authenticate()
    assert len(fake.requests) == 1


async def test_retry_table_end_to_end(fake: FakePatchworks) -> None:
    key = fake.add_instance()
    fake.add_faults(
        Fault.status_code(500),
        Fault.status_code(502),
        Fault.status_code(503),
        paths="/reauthorise",
    )
    async with _client(fake) as client:
        await client.oauth.reauthorise(key, ReauthoriseRequest())
    assert [r.status for r in fake.requests] == [500, 502, 503, 200]


async def test_other_4xx_are_not_retried(fake: FakePatchworks) -> None:
    fake.add_faults(Fault.status_code(400), Fault.status_code(409))
    async with _client(fake) as client:
        with pytest.raises(Exception):  # noqa: B017, PT011  # the class is tested elsewhere
            await client.oauth.authenticate()
    assert len(fake.requests) == 1


async def test_attempts_are_capped(fake: FakePatchworks) -> None:
    fake.set_fault_rate(1.0, [Fault.status_code(503)])
    async with _client(fake, retry=RetryPolicy(max_attempts=3, backoff_base=0.01)) as client:
        with pytest.raises(ServerError):
            await client.oauth.authenticate()
    assert len(fake.requests) == 3


async def test_authorise_is_not_duplicated_after_a_read_timeout(fake: FakePatchworks) -> None:
    fake.add_faults(Fault.slow(1.0), paths="/authorise")
    async with _client(fake, timeout=Timeout(total=0.3)) as client:
        with pytest.raises(RequestTimeoutError):
            await client.oauth.authorise(_authorise())
    assert fake.authorise_count == 1
    assert len([r for r in fake.requests if r.path.endswith("/authorise")]) == 1


async def test_authorise_is_not_duplicated_after_a_dropped_response(fake: FakePatchworks) -> None:
    fake.add_faults(Fault.dropped(), paths="/authorise")
    async with _client(fake) as client:
        with pytest.raises(TransportError):
            await client.oauth.authorise(_authorise())
    assert fake.authorise_count == 1


@pytest.mark.parametrize("fault", [Fault.status_code(503), Fault.too_many(retry_after=0)])
async def test_authorise_is_retried_when_refused(fake: FakePatchworks, fault: Fault) -> None:
    fake.add_faults(fault, paths="/authorise")
    async with _client(fake) as client:
        created = await client.oauth.authorise(_authorise())
    assert fake.authorise_count == 1
    assert list(fake.instances) == [str(created["id"])]


async def test_authorise_is_not_retried_after_a_500(fake: FakePatchworks) -> None:
    fake.add_faults(Fault.status_code(500), paths="/authorise")
    async with _client(fake) as client:
        with pytest.raises(ServerError):
            await client.oauth.authorise(_authorise())
    assert len(fake.requests) == 1


async def test_reauthorise_is_retried_after_a_dropped_response(fake: FakePatchworks) -> None:
    key = fake.add_instance()
    fake.add_faults(Fault.dropped(), Fault.slow(1.0), paths="/reauthorise")
    async with _client(fake, timeout=Timeout(total=0.3)) as client:
        await client.oauth.reauthorise(key, ReauthoriseRequest())
    assert len(fake.requests) == 3


async def test_events_report_each_stage(fake: FakePatchworks) -> None:
    events: list[Event] = []
    fake.add_faults(Fault.status_code(503), Fault.status_code(503))
    retry = attrs.evolve(FAST_RETRY, max_attempts=2)
    async with _client(fake, on_event=events.append, retry=retry) as client:
        with pytest.raises(ServerError):
            await client.oauth.authenticate()
    kinds = [e.kind for e in events]
    assert kinds == [
        EventKind.QUEUED,
        EventKind.WAITED,
        EventKind.SENT,
        EventKind.RESPONSE,
        EventKind.RETRY,
        EventKind.QUEUED,
        EventKind.WAITED,
        EventKind.SENT,
        EventKind.RESPONSE,
        EventKind.GAVE_UP,
    ]
    scheduled = events[4]
    assert scheduled.delay is not None
    assert scheduled.delay <= FAST_RETRY.backoff_base  # full jitter of the first wait
    assert events[1].waited_ms is not None
    assert events[3].status == 503


async def test_set_instance_rate_limit_before_first_call(fake: FakePatchworks) -> None:
    key = fake.add_instance()
    departures = Departures()
    async with _client(fake, on_event=departures) as client:
        client.set_instance_rate_limit(key, RateLimit("second", 4))
        await asyncio.gather(*(client.oauth.reauthorise(key) for _ in range(6)))
        client.set_instance_rate_limit(key, None)
        assert client.instance_rate_limit(key) is None
    _assert_paced(departures.times, _arrivals(fake), RateLimit("second", 4))


async def test_limiter_waits_do_not_count_against_the_timeout(fake: FakePatchworks) -> None:
    rate = RateLimit("second", 4)
    async with _client(fake, rate_limit=rate, timeout=Timeout(total=0.5)) as client:
        # The last of 8 calls waits about 1.75 s in the limiter: far over the timeout.
        await asyncio.gather(*(client.oauth.authenticate() for _ in range(8)))
    times = _arrivals(fake)
    assert times[-1] - times[0] > 1.5


async def test_instance_registry_is_bounded(fake: FakePatchworks) -> None:
    async with _client(fake, max_instance_limiters=5) as client:
        created = [await client.oauth.authorise(_authorise()) for _ in range(12)]
        known = [c["id"] for c in created if client.instance_rate_limit(c["id"]) is not None]
    assert len(known) == 5
    assert known == [c["id"] for c in created[-5:]]  # the least recently used went first


async def test_a_slow_login_does_not_bunch_paced_calls(fake: FakePatchworks) -> None:
    fake.add_faults(Fault.slow(1.0), paths="/fabric/api/login")
    login = Login(fake.username, fake.password, url=fake.login_url)
    departures = Departures()
    rate = RateLimit("second", 10)
    async with _client(fake, login=login, rate_limit=rate, on_event=departures) as client:
        await asyncio.gather(*(client.oauth.authenticate() for _ in range(25)))
    assert fake.login_count == 1
    _assert_paced(departures.times, _arrivals(fake), rate)


async def test_wrong_password_is_tried_once_for_many_calls(fake: FakePatchworks) -> None:
    login = Login(fake.username, "not-the-password", url=fake.login_url)
    async with _client(fake, login=login) as client:
        results = await asyncio.gather(
            *(client.oauth.authenticate() for _ in range(50)), return_exceptions=True
        )
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert len([r for r in fake.requests if r.path == "/fabric/api/login"]) == 1
    assert not [r for r in fake.requests if r.path.startswith("/api/")]


async def test_a_pause_over_max_retry_after_raises_instead_of_freezing(
    fake: FakePatchworks,
) -> None:
    fake.add_faults(Fault.too_many(retry_after=86400))
    async with _client(fake, retry=RetryPolicy(max_retry_after=60)) as client:
        with pytest.raises(RateLimitError):
            await client.oauth.authenticate()
        started = time.monotonic()
        with pytest.raises(RateLimitError) as info:
            await client.oauth.woo_app_auth()  # held by the day-long pause: raises at once
    assert time.monotonic() - started < 1.0
    assert info.value.retry_after is not None
    assert info.value.retry_after > 86000
    assert len(fake.requests) == 1

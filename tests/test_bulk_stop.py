"""A bulk job that cannot succeed stops (issue 11); duplicates, malformed items, iterator errors.

Also the client's ``unreachable_after`` (HostUnreachableError) and its pure state.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from patchworks_async import (
    AuthenticationError,
    BulkStoppedError,
    DuplicateConnectorError,
    Event,
    EventKind,
    HostUnreachableError,
    InvalidRequestError,
    Login,
    PatchworksClient,
    PermissionDeniedError,
    ReauthoriseFailure,
    ReauthoriseOutcome,
    ReauthoriseRequest,
    ReauthoriseSuccess,
    RetryPolicy,
    TransportError,
)
from patchworks_async._breaker import UnreachableHost
from patchworks_async._outcomes import FORBIDDEN_IN_A_ROW, stop_reason
from patchworks_async.testing import FakePatchworks, Fault

FAST_RETRY = RetryPolicy(backoff_base=0.01, backoff_max=0.02)


def _counted(items: list[Any]) -> tuple[Iterator[Any], list[int]]:
    """The items as a generator, and a one-element list counting the items pulled."""
    pulled = [0]

    def generate() -> Iterator[Any]:
        for item in items:
            pulled[0] += 1
            yield item

    return generate(), pulled


async def _run_until_stop(
    client: PatchworksClient, items: Any, **kwargs: Any
) -> tuple[list[ReauthoriseOutcome], BulkStoppedError]:
    outcomes: list[ReauthoriseOutcome] = []

    async def consume() -> None:
        async for outcome in client.oauth.reauthorise_many(items, **kwargs):
            outcomes.append(outcome)

    with pytest.raises(BulkStoppedError) as info:
        await consume()
    return outcomes, info.value


def _job_tasks() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if "_send_one" in t.get_coro().__qualname__  # type: ignore[union-attr]
    ]


# -- wrong credentials -------------------------------------------------------------------------


async def test_a_wrong_api_key_stops_the_job(fake: FakePatchworks) -> None:
    ids = [fake.add_instance() for _ in range(400)]
    items, pulled = _counted([(key, ReauthoriseRequest()) for key in ids])
    async with PatchworksClient(
        base_url=fake.url, api_key="pw_wrong", rate_limit=None, retry=FAST_RETRY
    ) as client:
        outcomes, stopped = await _run_until_stop(client, items, concurrency=16)
        assert _job_tasks() == []
    # Only the calls already in flight at the first 401 were sent: 16 at most, not 400.
    assert 1 <= fake.request_count <= 16
    assert len(outcomes) == fake.request_count  # every call sent has its outcome
    assert all(isinstance(o.error, AuthenticationError) and o.attempts == 1 for o in outcomes)
    assert stopped.reason == "authentication"
    assert isinstance(stopped.__cause__, AuthenticationError)
    assert stopped.first_error is stopped.__cause__
    assert stopped.finished == len(outcomes)
    assert stopped.finished + stopped.not_sent == pulled[0] < 400
    assert "pw_wrong" not in str(stopped)


async def test_a_wrong_password_stops_the_job_without_a_call(fake: FakePatchworks) -> None:
    ids = [fake.add_instance() for _ in range(100)]
    login = Login(fake.username, "wrong password", url=fake.login_url)
    items, pulled = _counted([(key, ReauthoriseRequest()) for key in ids])
    async with PatchworksClient(
        base_url=fake.url, login=login, rate_limit=None, retry=FAST_RETRY
    ) as client:
        outcomes, stopped = await _run_until_stop(client, items, concurrency=8)
    assert stopped.reason == "authentication"
    assert isinstance(stopped.first_error, AuthenticationError)
    assert stopped.first_error.url == fake.login_url
    assert fake.login_count == 0
    # The calls waited for the login and were never sent: no outcome, all "not sent".
    assert not [r for r in fake.requests if "/reauthorise" in r.path]
    assert outcomes == []
    assert stopped.finished == 0
    assert stopped.not_sent == pulled[0]
    assert "wrong password" not in str(stopped)


async def test_an_expired_token_cured_by_a_login_does_not_stop(fake: FakePatchworks) -> None:
    ids = [fake.add_instance() for _ in range(30)]
    login = Login(fake.username, fake.password, url=fake.login_url)
    async with PatchworksClient(
        base_url=fake.url, login=login, rate_limit=None, retry=FAST_RETRY
    ) as client:
        await client.oauth.authenticate()
        fake.expire_tokens()
        outcomes = [
            o async for o in client.oauth.reauthorise_many([(k, ReauthoriseRequest()) for k in ids])
        ]
    assert len(outcomes) == 30
    assert all(o.ok for o in outcomes)
    assert fake.login_count == 2


async def test_one_403_goes_on_three_in_a_row_stop(fake: FakePatchworks) -> None:
    ids = [fake.add_instance() for _ in range(20)]
    items = [(key, ReauthoriseRequest()) for key in ids]
    async with PatchworksClient(
        base_url=fake.url, api_key=fake.api_key, rate_limit=None, retry=FAST_RETRY
    ) as client:
        fake.add_faults(Fault.status_code(403), paths="/reauthorise")
        one = [o async for o in client.oauth.reauthorise_many(items, concurrency=1)]
        assert len(one) == 20
        assert [type(o.error) for o in one if not o.ok] == [PermissionDeniedError]
        fake.add_faults(*[Fault.status_code(403)] * FORBIDDEN_IN_A_ROW, paths="/reauthorise")
        before = fake.request_count
        outcomes, stopped = await _run_until_stop(client, items, concurrency=1)
    assert stopped.reason == "permission"
    assert fake.request_count - before == FORBIDDEN_IN_A_ROW
    assert len(outcomes) == FORBIDDEN_IN_A_ROW
    assert isinstance(stopped.__cause__, PermissionDeniedError)


def test_stop_rules() -> None:
    def api(cls: type[Any], status: int) -> Any:
        return cls(status=status, method="PATCH", url="u", headers={}, body=None)

    assert stop_reason(api(AuthenticationError, 401), 0) == "authentication"
    assert stop_reason(api(PermissionDeniedError, 403), FORBIDDEN_IN_A_ROW - 1) is None
    assert stop_reason(api(PermissionDeniedError, 403), FORBIDDEN_IN_A_ROW) == "permission"
    unreachable = HostUnreachableError("down", method="PATCH", url="u", sent=False)
    assert stop_reason(unreachable, 0) == "unreachable"
    refused = TransportError("refused", method="PATCH", url="u", sent=False)
    assert stop_reason(refused, 0) is None
    assert stop_reason(InvalidRequestError("bad"), 0) is None


# -- unreachable host --------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_refusing_host_stops_the_job() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    items, pulled = _counted([(str(i), ReauthoriseRequest()) for i in range(400)])
    async with PatchworksClient(base_url=url, api_key="k", rate_limit=None, retry=FAST_RETRY) as c:
        outcomes, stopped = await _run_until_stop(c, items, concurrency=16)
        assert _job_tasks() == []
    assert stopped.reason == "unreachable"
    assert isinstance(stopped.__cause__, HostUnreachableError)
    assert isinstance(stopped.__cause__.__cause__, TransportError)
    assert stopped.finished == len(outcomes)
    assert stopped.finished + stopped.not_sent == pulled[0] < 400
    # Items that failed fast were never sent: they get no outcome (so --resume sends them).
    assert all(o.attempts >= 1 for o in outcomes)


async def test_unreachable_after_none_keeps_every_outcome() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    async with PatchworksClient(
        base_url=url, api_key="k", rate_limit=None, retry=RetryPolicy.disabled(),
        unreachable_after=None,
    ) as client:  # fmt: skip
        items = [(str(i), ReauthoriseRequest()) for i in range(40)]
        outcomes = [o async for o in client.oauth.reauthorise_many(items, concurrency=4)]
    assert len(outcomes) == 40
    assert all(type(o.error) is TransportError for o in outcomes)


async def test_client_fails_fast_after_unreachable_after_calls() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    sent: list[Event] = []

    def on_event(event: Event) -> None:
        if event.kind is EventKind.SENT:
            sent.append(event)

    async with PatchworksClient(
        base_url=url, api_key="k", rate_limit=None, retry=RetryPolicy.disabled(),
        unreachable_after=3, on_event=on_event,
    ) as client:  # fmt: skip
        for _ in range(2):
            with pytest.raises(TransportError) as plain:
                await client.oauth.authenticate()
            assert type(plain.value) is TransportError
        with pytest.raises(HostUnreachableError) as tripped:
            await client.oauth.authenticate()
        assert isinstance(tripped.value.__cause__, TransportError)
        with pytest.raises(HostUnreachableError) as fast:
            await client.oauth.authenticate()
        assert fast.value.sent is False
        assert "unreachable_after" in str(fast.value)
    assert len(sent) == 3  # the 4th call was not sent


async def test_one_calls_retries_do_not_trip_it() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    policy = RetryPolicy(max_attempts=6, backoff_base=0.001, backoff_max=0.002)
    async with PatchworksClient(
        base_url=url, api_key="k", rate_limit=None, retry=policy, unreachable_after=2
    ) as client:
        with pytest.raises(TransportError) as info:
            await client.oauth.authenticate()
    assert type(info.value) is TransportError  # 6 attempts of ONE call: not tripped


def test_a_host_never_deemed_unreachable_costs_no_clock_read() -> None:
    state = UnreachableHost(threshold=1, cooldown=10.0)

    def no_clock() -> float:
        raise AssertionError("the clock was read")

    assert not state.is_open_now(no_clock)  # every call asks: no clock read
    assert state.failed(1, now=5.0)
    assert state.is_open_now(lambda: 14.9)
    assert not state.is_open_now(lambda: 15.0)


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "8"])
def test_bad_unreachable_after_is_refused(value: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        PatchworksClient(api_key="k", unreachable_after=value)
    assert info.value.field == "unreachable_after"


def test_unreachable_host_state() -> None:
    state = UnreachableHost(threshold=3, cooldown=10.0)
    assert not state.failed(1, now=0.0)
    assert not state.failed(1, now=0.1)  # the same call's retry counts once
    assert not state.failed(2, now=0.2)
    state.answered()  # an HTTP answer ends the run
    assert not state.failed(3, now=0.3)
    assert not state.failed(4, now=0.4)
    assert state.failed(5, now=0.5)
    assert state.is_open(now=10.4)
    assert not state.is_open(now=10.5)
    assert state.failed(6, now=11.0)  # on probation: one failure reopens
    assert state.is_open(now=20.9)
    state.answered()
    assert not state.failed(7, now=30.0)  # closed again: a full run is needed


# -- input -----------------------------------------------------------------------------------


async def test_duplicates_are_sent_once(fake: FakePatchworks) -> None:
    a, b = fake.add_instance(), fake.add_instance()
    items: list[Any] = [
        (a, ReauthoriseRequest()),
        (int(b), ReauthoriseRequest()),
        (a, ReauthoriseRequest(timezone="UTC")),
        (str(b), ReauthoriseRequest()),  # 7 and "7" are the same instance
        ("", ReauthoriseRequest()),  # bad input is not "seen"
        ("", ReauthoriseRequest()),
    ]
    async with PatchworksClient(
        base_url=fake.url, api_key=fake.api_key, rate_limit=None, retry=FAST_RETRY
    ) as client:
        outcomes = [o async for o in client.oauth.reauthorise_many(items, concurrency=2)]
    by_index = {o.index: o for o in outcomes}
    assert by_index[0].ok
    assert by_index[1].ok
    for index in (2, 3):
        error = by_index[index].error
        assert isinstance(error, DuplicateConnectorError)
        assert error.field == "connector"
        assert by_index[index].attempts == 0
    assert by_index[3].connector == str(b)
    assert [type(by_index[i].error) for i in (4, 5)] == [InvalidRequestError] * 2
    assert fake.instances[a]["reauthorise_count"] == 1
    assert fake.instances[b]["reauthorise_count"] == 1


async def test_malformed_items_carry_their_connector(fake: FakePatchworks) -> None:
    items: list[Any] = [("x",), ("y", ReauthoriseRequest(), "extra"), "bare", object(), ()]
    async with PatchworksClient(base_url=fake.url, api_key=fake.api_key, rate_limit=None) as c:
        outcomes = [o async for o in c.oauth.reauthorise_many(items)]
    by_index = {o.index: o for o in outcomes}
    assert [by_index[i].connector for i in range(5)] == ["x", "y", "bare", None, None]
    assert all(isinstance(o.error, InvalidRequestError) for o in outcomes)
    assert fake.request_count == 0


async def test_an_iterator_error_comes_after_the_items_read(fake: FakePatchworks) -> None:
    ids = [fake.add_instance() for _ in range(10)]
    fake.set_fault_rate(1.0, [Fault.slow(0.05)], paths="/reauthorise")
    boom = ValueError("the caller's own bug")

    async def items() -> AsyncIterator[tuple[str, ReauthoriseRequest]]:
        for key in ids:
            yield key, ReauthoriseRequest()
        raise boom

    outcomes: list[ReauthoriseOutcome] = []
    async with PatchworksClient(base_url=fake.url, api_key=fake.api_key, rate_limit=None) as c:

        async def consume() -> None:
            async for outcome in c.oauth.reauthorise_many(items(), concurrency=4):
                outcomes.append(outcome)

        with pytest.raises(ValueError, match="own bug") as info:
            await consume()
        assert _job_tasks() == []
    assert info.value is boom
    assert sorted(o.index for o in outcomes) == list(range(10))
    assert all(o.ok for o in outcomes)


async def test_outcomes_are_a_union(fake: FakePatchworks) -> None:
    key = fake.add_instance()
    async with PatchworksClient(base_url=fake.url, api_key=fake.api_key, rate_limit=None) as c:
        items = [(key, ReauthoriseRequest()), ("missing", ReauthoriseRequest())]
        outcomes = [o async for o in c.oauth.reauthorise_many(items, concurrency=1)]
    kinds = {o.index: o for o in outcomes}
    assert isinstance(kinds[0], ReauthoriseSuccess)
    assert kinds[0].error is None
    assert isinstance(kinds[1], ReauthoriseFailure)
    assert kinds[1].result is None
    assert isinstance(kinds[0], ReauthoriseOutcome)  # the alias works with isinstance
    match kinds[1]:
        case ReauthoriseFailure(error=error):
            assert error.status == 404  # type: ignore[attr-defined]
        case _:
            pytest.fail("not a failure")

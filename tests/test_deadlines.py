"""``Timeout.total`` enforced by one sweep timer per client, not one timer per request.

Three rings: the pure bookkeeping (``_deadlines``, no loop); the transport's glue on
the fake clock, with a stand-in session that never answers; and
end to end against the fake server (a timed-out connection is closed, and over
many requests the loop is asked for at most a few timers).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from multidict import CIMultiDict
from yarl import URL

from patchworks_async import (
    PatchworksClient,
    RequestTimeoutError,
    RetryPolicy,
    Timeout,
    TransportError,
)
from patchworks_async._deadlines import Deadlines, granularity
from patchworks_async._transport import Transport
from patchworks_async.testing import FakePatchworks, Fault
from tests.virtual_time import run_virtual

TOTAL = 2.0

# -- the pure part -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "expected"),
    [(0.01, 0.005), (0.2, 0.01), (1.0, 0.05), (10.0, 0.5), (60.0, 0.5), (3600.0, 0.5)],
)
def test_granularity_scales_with_total_within_bounds(total: float, expected: float) -> None:
    assert granularity(total) == pytest.approx(expected)


def test_only_an_unarmed_registry_arms() -> None:
    book: Deadlines[str] = Deadlines(TOTAL)
    assert book.armed_at is None
    assert book.arm_for(12.0) == 12.0
    assert book.arm_for(13.0) is None  # the armed sweep (12) comes before 13
    assert book.armed_at == 12.0


def test_sweep_removes_the_overdue_and_re_arms_for_the_rest() -> None:
    book: Deadlines[str] = Deadlines(TOTAL)
    book.entries.update(a=10.0, b=10.5, c=15.0)
    book.arm_for(10.0)
    overdue, next_at = book.sweep(10.5)
    assert overdue == ["a", "b"]
    assert book.entries == {"c": 15.0}
    assert next_at == book.armed_at == 15.0  # the earliest deadline left
    book.entries["d"] = 15.01
    overdue, next_at = book.sweep(15.0)
    assert overdue == ["c"]
    assert next_at == 15.0 + book.granularity  # never sooner than the granularity
    overdue, next_at = book.sweep(15.2)
    assert overdue == ["d"]
    assert next_at is None
    assert book.armed_at is None  # nothing left: nothing armed


def test_an_infinite_deadline_arms_nothing() -> None:
    book: Deadlines[str] = Deadlines(float("inf"))
    assert book.arm_for(float("inf")) is None
    assert book.armed_at is None


def test_an_early_sweep_removes_nothing() -> None:
    book: Deadlines[str] = Deadlines(TOTAL)
    book.entries["a"] = 10.0
    assert book.sweep(9.99) == ([], 9.99 + book.granularity)
    assert book.entries == {"a": 10.0}


# -- the transport's glue, on the fake clock ----------------------------------------------


def _transport(total: float = TOTAL) -> Transport:
    return Transport(
        base_url="http://127.0.0.1:1",
        session=None,
        max_connections=1,
        timeout=Timeout(total=total),
        max_response_bytes=1024,
    )


class _Session:
    """Stands in for the aiohttp session (and its response): never answers, answers, or fails."""

    def __init__(self, answer: bool = False, error: BaseException | None = None) -> None:
        self.answer = answer
        self.error = error
        self.calls = 0
        self.status = 200
        self.headers: dict[str, str] = {}
        self.content_length = 2

    def request(self, *args: Any, **kwargs: Any) -> _Session:
        return self

    async def __aenter__(self) -> _Session:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if not self.answer:
            await asyncio.get_running_loop().create_future()  # never done
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def read(self) -> bytes:
        return b"{}"


def _attempt(transport: Transport, session: _Session) -> Any:
    return transport._send_once(
        session,  # type: ignore[arg-type]  # it has what the attempt uses
        "POST",
        URL("http://127.0.0.1:1/x"),
        "http://127.0.0.1:1/x",
        CIMultiDict(),
        None,
    )


def _entries(transport: Transport) -> dict[Any, float]:
    return transport._deadlines.entries


def test_a_never_answering_attempt_times_out_within_the_granularity() -> None:
    transport = _transport()
    session = _Session()

    async def main() -> tuple[RequestTimeoutError, float, int]:
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(RequestTimeoutError) as info:
            await _attempt(transport, session)
        task = asyncio.current_task()
        assert task is not None
        return info.value, loop.time() - began, task.cancelling()

    error, took, cancelling = run_virtual(main)
    assert error.sent is True
    assert isinstance(error.__cause__, TimeoutError)
    assert TOTAL <= took <= TOTAL + granularity(TOTAL)
    assert cancelling == 0  # the sweep's cancel was taken back (uncancel)
    assert _entries(transport) == {}


def test_an_outside_cancel_is_not_a_timeout() -> None:
    transport = _transport()
    session = _Session()

    async def main() -> bool:
        task = asyncio.create_task(_attempt(transport, session))
        await asyncio.sleep(TOTAL / 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert run_virtual(main) is True
    assert _entries(transport) == {}


def test_an_outside_cancel_along_with_the_timeout_is_not_swallowed() -> None:
    transport = _transport()
    session = _Session()

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(_attempt(transport, session))
        await asyncio.sleep(TOTAL / 2)
        _entries(transport)[task] = loop.time()  # due now...
        transport._sweep(loop)  # ...so the sweep cancels it,
        task.cancel()  # and an outside cancel comes in the same turn of the loop
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert run_virtual(main) is True
    assert _entries(transport) == {}


def test_a_timeout_inside_a_task_cancelled_before_is_still_a_timeout() -> None:
    """``cancelling()`` at entry is the baseline: an earlier, handled cancel does not count."""
    transport = _transport()
    session = _Session()

    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)  # handled without uncancel(): cancelling() stays 1
        with pytest.raises(RequestTimeoutError):
            await _attempt(transport, session)
        return task.cancelling()

    assert run_virtual(main) == 1


class _Swallowing(_Session):
    """A session that swallows a cancel and answers anyway (as a careless library might)."""

    async def __aenter__(self) -> _Session:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.get_running_loop().create_future()
        return self


def test_a_swallowed_sweep_cancel_is_taken_back() -> None:
    transport = _transport()

    async def main() -> int:
        await _attempt(transport, _Swallowing())  # answers after the sweep's cancel
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert run_virtual(main) == 0
    assert _entries(transport) == {}


@pytest.mark.parametrize(
    "session",
    [_Session(answer=True), _Session(error=OSError("reset"))],
    ids=["success", "failure"],
)
def test_the_registry_is_empty_after_each_attempt(session: _Session) -> None:
    transport = _transport()

    async def main() -> None:
        for _ in range(3):
            with contextlib.suppress(TransportError):
                await _attempt(transport, session)
            assert _entries(transport) == {}

    run_virtual(main)
    assert session.calls == 3


def test_the_sweep_is_armed_only_while_needed_and_cancelled_on_aclose() -> None:
    transport = _transport()
    session = _Session(answer=True)

    async def main() -> None:
        assert transport._sweep_timer is None  # idle: no timer
        await _attempt(transport, session)
        armed = transport._sweep_timer
        assert armed is not None  # armed by the first attempt, left to lapse
        await _attempt(transport, session)
        assert transport._sweep_timer is armed  # not one per attempt
        await asyncio.sleep(TOTAL + 1)
        assert transport._sweep_timer is None  # it lapsed with nothing to sweep
        await _attempt(transport, session)
        armed = transport._sweep_timer
        assert armed is not None
        await transport.aclose()
        assert armed.cancelled()
        assert transport._sweep_timer is None

    run_virtual(main)


def test_an_infinite_total_registers_nothing() -> None:
    transport = _transport(total=float("inf"))
    session = _Session(answer=True)
    run_virtual(lambda: _attempt(transport, session))
    assert transport._sweep_timer is None
    assert transport._deadlines.armed_at is None
    assert _entries(transport) == {}


# -- end to end ---------------------------------------------------------------------------


def _client(fake: FakePatchworks, **kwargs: Any) -> PatchworksClient:
    return PatchworksClient(
        base_url=fake.url,
        api_key=fake.api_key,
        rate_limit=None,
        retry=RetryPolicy.disabled(),
        **kwargs,
    )


async def test_a_timed_out_connection_is_closed_and_the_registry_emptied(
    fake: FakePatchworks,
) -> None:
    async with _client(fake, timeout=Timeout(total=0.2)) as client:
        await client.oauth.authenticate()
        fake.add_faults(Fault.slow(5.0))
        with pytest.raises(RequestTimeoutError) as info:
            await client.oauth.authenticate()
        assert info.value.sent is True
        assert _entries(client._pipeline.transport) == {}
        await client.oauth.authenticate()  # on a new connection: the old one was closed
        assert client.connections_opened == 2
    assert fake.connections_opened == 2


async def test_no_timer_per_request(fake: FakePatchworks, monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    timers: list[Any] = []
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        timers.append(callback)
        return call_at(when, callback, *args, **kwargs)

    async with _client(fake, max_connections=4) as client:
        await client.oauth.authenticate()  # the pool's connection is opened
        monkeypatch.setattr(loop, "call_at", counting_call_at)
        for _ in range(20):
            await client.oauth.authenticate()
        await asyncio.gather(*(client.oauth.authenticate() for _ in range(40)))
        monkeypatch.undo()
    # aiohttp's own per-request total timer would be 60; a new pooled connection's
    # connect timeout and keep-alive clean-up may ask for a few.
    assert len(timers) <= 6, timers

"""Adaptive quota (issue 15), in the three rings.

Ring 1 (pure, no event loop): the quota header table, and ``QuotaTracker`` driven
by plain numbers as its clock. Ring 2 (fake clock): ``AdaptiveLimiter`` on the
virtual-time loop. Ring 3: the client against ``FakePatchworks`` with a background
consumer on the same key, over loopback, on the virtual-time loop (the fake's
quota windows read the loop's clock), so minutes of traffic run in a second.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patchworks_async import (
    AdaptiveQuota,
    Event,
    EventKind,
    InvalidRequestError,
    LimiterBackend,
    PatchworksClient,
    RateLimit,
    ReauthoriseRequest,
    RetryPolicy,
)
from patchworks_async._adaptive import RESERVE_SHARE, SAFETY_MARGIN, QuotaTracker
from patchworks_async._limits import AdaptiveLimiter, Limiter, StrictLimiter
from patchworks_async._ratelimit import (
    LIMIT_JUMPED,
    MISSING,
    NEGATIVE,
    NOT_A_NUMBER,
    REMAINING_ABOVE_LIMIT,
    REMAINING_JUMPED,
    ZERO_LIMIT,
    QuotaReading,
    read_quota,
)
from patchworks_async.testing import AccountQuota, BackgroundConsumer, FakePatchworks, Fault
from tests.virtual_time import run_virtual, sliding_window_max

PER_MINUTE = RateLimit("minute", 240)
REASONS = {MISSING, NOT_A_NUMBER, NEGATIVE, ZERO_LIMIT, REMAINING_ABOVE_LIMIT}


def _tracker(ceiling: RateLimit | None = None, max_pause: float = 120.0) -> QuotaTracker:
    return QuotaTracker(PER_MINUTE, ceiling, max_pause=max_pause)


# -- ring 1: the header table ------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "remaining", "expected"),
    [
        ("240", "239", QuotaReading(240, 239)),
        (" 600 ", "0", QuotaReading(600, 0)),
        ("240", "240", QuotaReading(240, 240)),
        (None, "3", MISSING),
        ("240", None, MISSING),
        (None, None, MISSING),
        ("lots", "2", NOT_A_NUMBER),
        ("240", "", NOT_A_NUMBER),
        ("240.0", "1", NOT_A_NUMBER),
        ("1e3", "1", NOT_A_NUMBER),
        ("+5", "1", NOT_A_NUMBER),
        ("1_000", "1", NOT_A_NUMBER),
        ("\uff12\uff14\uff10", "1", NOT_A_NUMBER),  # full-width digits: int() would take them
        ("9" * 13, "1", NOT_A_NUMBER),
        ("nan", "1", NOT_A_NUMBER),
        ("240", "-1", NEGATIVE),
        ("-240", "0", NEGATIVE),
        ("0", "0", ZERO_LIMIT),
        ("10", "11", REMAINING_ABOVE_LIMIT),
    ],
)
def test_quota_header_table(
    limit: str | None, remaining: str | None, expected: QuotaReading | str
) -> None:
    assert read_quota(limit, remaining) == expected


@given(st.one_of(st.none(), st.text(max_size=20)), st.one_of(st.none(), st.text(max_size=20)))
def test_read_quota_never_raises_and_keeps_its_promises(
    limit: str | None, remaining: str | None
) -> None:
    result = read_quota(limit, remaining)
    if isinstance(result, QuotaReading):
        assert 0 <= result.remaining <= result.limit
        assert result.limit >= 1
    else:
        assert result in REASONS


# -- ring 1: the tracker on a clock of plain numbers -----------------------------------------


def test_nonsense_leaves_the_configured_limit_and_is_counted() -> None:
    tracker = _tracker()
    for limit, remaining in [(None, "1"), ("x", "1"), ("0", "0"), ("-1", "0"), ("5", "9")]:
        assert not tracker.observe(read_quota(limit, remaining), 1.0)
    tracker.answered_bare()  # responses without the headers at all, as the client counts them
    tracker.answered_bare()
    figures = tracker.figures(1.0)
    assert figures.limit == 240
    assert figures.limit_source == "configured"
    assert figures.readings == 0
    assert figures.ignored == {
        MISSING: 3,
        NOT_A_NUMBER: 1,
        ZERO_LIMIT: 1,
        NEGATIVE: 1,
        REMAINING_ABOVE_LIMIT: 1,
    }
    assert tracker.next_send(10.0, 10.0) == pytest.approx(10.0 + 0.25 * (1 + SAFETY_MARGIN))


def test_the_server_limit_replaces_the_guess() -> None:
    tracker = _tracker()
    assert tracker.observe(QuotaReading(600, 599), 0.0)
    assert (tracker.limit, tracker.limit_source) == (600, "server")
    # 599 left for a whole minute: the limit's own spacing is the binding one.
    assert tracker.next_send(0.0, 0.0) == pytest.approx(0.1 * (1 + SAFETY_MARGIN))


def test_a_ceiling_is_never_passed() -> None:
    tracker = _tracker(ceiling=RateLimit("minute", 300))
    tracker.observe(QuotaReading(600, 599), 0.0)
    assert tracker.next_send(0.0, 0.0) == pytest.approx(0.2 * (1 + SAFETY_MARGIN))


def test_what_remains_is_spread_until_the_reset() -> None:
    tracker = _tracker()
    tracker.observe(QuotaReading(240, 10), 0.0)  # the window may end a minute from now
    budget = 10 - RESERVE_SHARE * 240 - 1
    assert tracker.next_send(0.0, 0.0) == pytest.approx(60 / budget)


def test_nothing_left_waits_for_the_reset_but_never_past_max_pause() -> None:
    tracker = _tracker()
    tracker.observe(QuotaReading(240, 2), 0.0)
    assert tracker.next_send(0.0, 0.0) == pytest.approx(60.0)
    short = _tracker(max_pause=30.0)
    short.observe(QuotaReading(240, 2), 0.0)
    assert short.next_send(0.0, 0.0) == pytest.approx(30.0)


def test_the_other_consumers_share_is_reserved() -> None:
    tracker = _tracker()
    tracker.observe(QuotaReading(240, 200), 0.0)
    # 15 spent since, one of them ours: the others spend 1.4 a second.
    tracker.observe(QuotaReading(240, 185), 10.0)
    assert tracker.others_per_second(10.0) == pytest.approx(1.4)
    budget = 185 - 1.4 * 50 - RESERVE_SHARE * 240 - 1
    assert tracker.next_send(10.0, 10.0) == pytest.approx(10.0 + 50 / budget)


def test_a_rise_starts_a_window_and_the_last_window_is_expected_again() -> None:
    tracker = _tracker()
    tracker.observe(QuotaReading(240, 230), 0.0)
    for second in range(1, 58):
        tracker.observe(QuotaReading(240, 230 - 2 * second), float(second))  # one ours, one theirs
    tracker.observe(QuotaReading(240, 239), 59.5)  # a rise: a new window began
    figures = tracker.figures(59.5)
    assert figures.window_start_known
    assert figures.resets_in == pytest.approx(60.0)
    # 57 of theirs last window: expected again (their rate says the same), none spent yet.
    budget = 239 - 57 - RESERVE_SHARE * 240 - 1
    assert tracker.next_send(59.5, 59.5) == pytest.approx(59.5 + 60 / budget)


def test_a_burst_already_spent_is_not_reserved_again() -> None:
    tracker = _tracker()
    remaining = 239
    tracker.observe(QuotaReading(240, remaining), 0.0)
    for second in range(1, 58):
        remaining -= 49 if second == 10 else 1  # the other's burst of 48 at 10 s, and ours
        tracker.observe(QuotaReading(240, remaining), float(second))
    remaining = 239
    tracker.observe(QuotaReading(240, remaining), 61.0)  # a new window: history [48]
    for second in range(62, 67):  # (the window began by 61 s at the latest)
        remaining -= 49 if second == 66 else 1  # the burst again, at 66 s
        tracker.observe(QuotaReading(240, remaining), float(second))
    # The window's 48 are spent: nothing more is reserved for the other consumer.
    budget = remaining - RESERVE_SHARE * 240 - 1
    assert tracker.next_send(66.0, 66.0) == pytest.approx(66.0 + 55.0 / budget)


def test_a_remaining_that_rises_too_soon_is_ignored() -> None:
    tracker = _tracker()
    tracker.observe(QuotaReading(240, 100), 0.0)
    tracker.observe(QuotaReading(240, 239), 59.0)  # a rise: a new window began
    tracker.observe(QuotaReading(240, 200), 70.0)
    assert not tracker.observe(QuotaReading(240, 240), 75.0)  # no reset 16 s into a window
    assert tracker.ignored[REMAINING_JUMPED] == 1
    assert tracker.figures(75.0).remaining == 200


def test_an_answer_read_after_the_window_ended_may_still_be_the_old_windows() -> None:
    tracker = _tracker()
    tracker.observe(QuotaReading(240, 100), 0.0)
    tracker.observe(QuotaReading(240, 5), 60.001)  # counted just before the end, read after
    assert not tracker.figures(60.001).window_start_known
    assert tracker.observe(QuotaReading(240, 239), 60.01)  # so this rise is the new window
    figures = tracker.figures(60.01)
    assert (figures.remaining, figures.window_start_known) == (239, True)


def test_a_new_limit_needs_confirming() -> None:
    tracker = _tracker()
    tracker.observe(QuotaReading(240, 239), 0.0)
    assert not tracker.observe(QuotaReading(100_000, 99_999), 1.0)
    assert not tracker.observe(QuotaReading(100_000, 99_998), 2.0)
    assert tracker.limit == 240
    assert tracker.ignored[LIMIT_JUMPED] == 2
    assert tracker.observe(QuotaReading(100_000, 99_997), 3.0)  # the third in a row
    assert tracker.limit == 100_000


def test_a_429_tells_when_the_window_resets() -> None:
    tracker = _tracker()
    tracker.observe(QuotaReading(240, 0), 10.0)
    tracker.observe_reset(7.0, 10.0)
    assert tracker.next_send(10.0, 10.0) == pytest.approx(17.0)
    assert tracker.figures(10.0).window_start_known


readings = st.one_of(
    st.builds(QuotaReading, st.integers(1, 10**12), st.integers(0, 10**12)).filter(
        lambda r: r.remaining <= r.limit
    ),
    st.sampled_from(sorted(REASONS)),
)


@given(st.lists(st.tuples(readings, st.floats(0, 90), st.booleans()), max_size=40))
def test_nothing_the_server_sends_passes_the_ceiling_or_stalls_past_max_pause(
    script: list[tuple[QuotaReading | str, float, bool]],
) -> None:
    ceiling = RateLimit("minute", 300)
    tracker = _tracker(ceiling=ceiling, max_pause=45.0)
    now = last = 0.0
    for reading, step, is_429 in script:
        now += step
        tracker.observe(reading, now, counted=not is_429)
        if is_429:
            tracker.observe_reset(step, now)
        due = tracker.next_send(last, now)
        assert due >= last + ceiling.interval * (1 + SAFETY_MARGIN) - 1e-9
        assert due <= max(now + 45.0, last + ceiling.interval * (1 + SAFETY_MARGIN)) + 1e-9
        last = max(due, now)


def test_adaptive_quota_option_is_checked() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        PatchworksClient(api_key="k", adaptive_quota="yes")  # type: ignore[arg-type]
    assert caught.value.field == "adaptive_quota"
    with pytest.raises(ValueError, match="ceiling"):
        AdaptiveQuota(ceiling=240)  # type: ignore[arg-type]
    assert PatchworksClient(api_key="k").adaptive_quota == AdaptiveQuota()
    assert PatchworksClient(api_key="k", adaptive_quota=False).adaptive_quota is None


# -- ring 1: the fake's quota model --------------------------------------------------------


def test_account_quota_is_a_fixed_window_from_the_first_hit() -> None:
    now = [100.0]
    quota = AccountQuota(2, 60.0, lambda: now[0])
    assert quota.hit("k").remaining == 1
    now[0] = 130.0
    assert quota.hit("k").remaining == 0
    refused = quota.hit("k")
    assert (refused.allowed, refused.retry_after) == (False, 30)
    assert quota.hit("other").allowed  # a window per key
    now[0] = 160.0
    assert quota.hit("k").remaining == 1


@pytest.mark.parametrize(("burst", "bursts"), [(1, 96), (24, 4)])
def test_background_consumer_spends_its_share(burst: int, bursts: int) -> None:
    now = [0.0]
    consumer = BackgroundConsumer(share=0.4, burst=burst)
    quota = AccountQuota(240, 60.0, lambda: now[0], consumer, "k")
    quota.begin()
    now[0] = 59.999
    quota.catch_up(now[0])
    assert quota.background_sent == 96
    assert consumer.spacing(240, 60.0) == pytest.approx(60.0 / bursts)
    assert quota.hit("k").remaining == 240 - 96 - 1


def test_background_consumer_is_refused_over_the_quota() -> None:
    now = [0.0]
    quota = AccountQuota(10, 60.0, lambda: now[0], BackgroundConsumer(share=1.0, burst=10), "k")
    quota.begin()
    assert quota.hit("k").allowed is False  # its burst of 10 at t=0 came first
    assert (quota.background_sent, quota.background_denied) == (10, 0)
    now[0] = 30.0
    quota.catch_up(now[0])  # nothing due yet: one burst a minute
    now[0] = 60.0
    assert quota.hit("k").allowed is False  # its next burst took the new window
    assert quota.background_sent == 20


def test_background_consumer_validation() -> None:
    with pytest.raises(ValueError, match="share"):
        BackgroundConsumer(share=1.5)
    with pytest.raises(ValueError, match="burst"):
        BackgroundConsumer(share=0.5, burst=0)
    with pytest.raises(ValueError, match="quota"):
        FakePatchworks(background=BackgroundConsumer(share=0.5))


# -- ring 2: the limiter on the fake clock ---------------------------------------------------


def test_before_any_reading_the_limiter_is_the_configured_one() -> None:
    rate = RateLimit("second", 10, burst=5)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        limiter = AdaptiveLimiter(QuotaTracker(rate, None, max_pause=120.0))
        times: list[float] = []

        async def one() -> None:
            await limiter.acquire()
            times.append(loop.time())

        await asyncio.gather(*(one() for _ in range(30)))
        return times

    times = run_virtual(main)
    assert times[4] - times[0] < 0.001  # the opt-in burst of five, as StrictLimiter gives
    assert sliding_window_max(times, 1.0) <= rate.duration + rate.burst - 1


def test_concurrent_callers_follow_one_tracker() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        tracker = QuotaTracker(PER_MINUTE, None, max_pause=120.0)
        tracker.observe(QuotaReading(240, 20), loop.time())
        limiter = AdaptiveLimiter(tracker)
        times: list[float] = []

        async def one() -> None:
            await limiter.acquire()
            times.append(loop.time())

        await asyncio.gather(*(one() for _ in range(40)))
        return times

    times = run_virtual(main)
    first_window = [moment for moment in times if moment < 60.0]
    budget = 20 - RESERVE_SHARE * 240 - 1
    assert len(first_window) <= math.ceil(budget)  # 40 callers, one budget
    assert len(first_window) >= math.floor(budget) - 1
    later = [moment for moment in times if moment >= 60.0]
    assert len(later) == 40 - len(first_window)
    # After the reset nothing is known of the new window: the limit's even spacing (after
    # the idle spell the credit for late timers, 0.5% of the window, lets the first ones
    # leave sooner, as StrictLimiter's slack does above 200 a window), and never more than
    # the limit in a window.
    assert later[2] - later[0] >= 0.2
    assert all(b - a >= 0.25 for a, b in itertools.pairwise(later[2:]))
    assert sliding_window_max(times, 60.0) <= 240


# -- ring 3: end to end, on the virtual clock ---------------------------------------------


async def _shared_key_run(
    *, adaptive: bool, limit: int, background: BackgroundConsumer | None, minutes: int
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    fake = FakePatchworks(quota=limit, background=background, clock=loop.time, record=False)
    answers: list[tuple[float, int]] = []

    def record(event: Event) -> None:
        if event.kind is EventKind.RESPONSE and event.status is not None:
            answers.append((loop.time(), event.status))

    async with fake:
        connector = fake.add_instance("1")
        deadline = loop.time() + 60.0 * minutes
        async with PatchworksClient(
            base_url=fake.url,
            api_key=fake.api_key,
            rate_limit=PER_MINUTE,
            adaptive_quota=adaptive,
            retry=RetryPolicy(max_attempts=10, max_time=3600.0),
            on_event=record,
        ) as client:

            async def worker() -> None:
                while loop.time() < deadline:
                    await client.oauth.reauthorise(connector, ReauthoriseRequest(timezone="UTC"))

            async def after_first_window() -> int:
                await asyncio.sleep(60.0)
                fake.quota_model.catch_up(loop.time())
                return fake.background_sent

            before = asyncio.ensure_future(after_first_window())
            await asyncio.gather(*(worker() for _ in range(4)))
            state = client.rate_limit_state
        fake.quota_model.catch_up(deadline)
        late = [status for moment, status in answers if 60.0 <= moment < deadline]
        left = limit * (minutes - 1) - (fake.background_sent - await before)
        return {
            "429": late.count(429),
            "used": late.count(200) / left,
            "denied": fake.background_denied,
            "state": state,
        }


def test_end_to_end_a_shared_key_with_a_background_consumer() -> None:
    consumer = BackgroundConsumer(share=0.4)

    async def adaptive() -> dict[str, Any]:
        return await _shared_key_run(adaptive=True, limit=240, background=consumer, minutes=4)

    async def counting() -> dict[str, Any]:
        return await _shared_key_run(adaptive=False, limit=240, background=consumer, minutes=4)

    learnt = run_virtual(adaptive)
    assert learnt["429"] == 0  # target: at most one a minute after the first window
    assert learnt["used"] >= 0.95  # of what the other consumer left
    assert learnt["denied"] == 0  # and it never took the other consumer's share
    quota = learnt["state"].quota
    assert (quota.limit, quota.limit_source) == (240, "server")
    assert quota.readings > 0
    assert quota.others_per_second == pytest.approx(1.6, rel=0.1)  # 40% of 4 a second

    counted = run_virtual(counting)  # the same run, counting only its own calls
    assert counted["429"] >= 3
    assert counted["denied"] > 0


def test_end_to_end_a_server_limit_above_the_configured_guess_is_used() -> None:
    async def main() -> dict[str, Any]:
        return await _shared_key_run(adaptive=True, limit=600, background=None, minutes=3)

    result = run_virtual(main)
    assert result["429"] == 0
    assert result["used"] >= 0.95  # 600 a minute, not the configured 240
    assert result["state"].quota.limit == 600


async def test_nonsense_headers_end_to_end_leave_the_configured_limit(
    fake: FakePatchworks,
) -> None:
    bad = iter([("lots", "1"), ("0", "0"), ("10", "-1"), ("10", "11"), ("240", "239")])

    def throttle(_credential: str, headers: dict[str, str]) -> bool:
        headers["X-RateLimit-Limit"], headers["X-RateLimit-Remaining"] = next(bad)
        return True

    fake._throttle = throttle  # type: ignore[method-assign,assignment]  # a server that talks nonsense
    fake.quota = 240
    connector = fake.add_instance("1")
    async with PatchworksClient(base_url=fake.url, api_key=fake.api_key) as client:
        for _ in range(4):
            await client.oauth.reauthorise(connector, ReauthoriseRequest(timezone="UTC"))
        state = client.rate_limit_state
        assert state is not None
        assert state.quota is not None
        assert state.quota.limit_source == "configured"
        assert state.quota.ignored == {
            NOT_A_NUMBER: 1,
            ZERO_LIMIT: 1,
            NEGATIVE: 1,
            REMAINING_ABOVE_LIMIT: 1,
        }
        await client.oauth.reauthorise(connector, ReauthoriseRequest(timezone="UTC"))
        state = client.rate_limit_state
        assert state is not None
        assert state.quota is not None
        assert (state.quota.limit_source, state.quota.readings) == ("server", 1)


class _CountingBackend(LimiterBackend):
    """A shared backend stand-in: counts the grants of its client-wide limiter."""

    def __init__(self) -> None:
        self.grants = 0

    def client_limiter(self, rate: RateLimit) -> Limiter:
        backend = self

        class Counting(StrictLimiter):
            async def acquire(self) -> None:
                backend.grants += 1
                await super().acquire()

        return Counting(rate)

    def instance_limiter(self, connector: str, rate: RateLimit) -> Limiter:
        return StrictLimiter(rate)


async def test_with_a_shared_backend_its_limiter_paces_until_the_server_speaks() -> None:
    async with FakePatchworks(quota=1000) as fake:
        connector = fake.add_instance("1")
        backend = _CountingBackend()
        async with PatchworksClient(
            base_url=fake.url,
            api_key=fake.api_key,
            rate_limit=RateLimit("second", 1000),
            limiter=backend,
        ) as client:
            for _ in range(5):
                await client.oauth.reauthorise(connector, ReauthoriseRequest(timezone="UTC"))
            state = client.rate_limit_state
    assert backend.grants == 1  # the first call, before any reading; then the headers
    assert state is not None
    assert state.quota is not None
    assert state.quota.readings == 5


async def test_a_fault_429_without_quota_headers_says_nothing_of_the_window(
    fake: FakePatchworks,
) -> None:
    fake.quota = 240  # a running fake's quota may be changed
    connector = fake.add_instance("1")
    async with PatchworksClient(
        base_url=fake.url, api_key=fake.api_key, retry=RetryPolicy(backoff_base=0.01)
    ) as client:
        await client.oauth.reauthorise(connector, ReauthoriseRequest(timezone="UTC"))
        fake.add_faults(Fault.too_many(retry_after=0.05))  # no X-RateLimit-* on it
        await client.oauth.reauthorise(connector, ReauthoriseRequest(timezone="UTC"))
        state = client.rate_limit_state
    assert state is not None
    assert state.quota is not None
    assert not state.quota.window_start_known
    assert state.quota.ignored == {MISSING: 1}

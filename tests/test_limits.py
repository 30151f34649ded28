"""Ring 2 (fake clock): strict limiters, the in-flight bound, the pause gate, the registry."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict

import pytest
from aiolimiter import AsyncLimiter

from patchworks_async import RateLimit
from patchworks_async import _limits as limits_module
from patchworks_async._limits import (
    SAFETY_MARGIN,
    InFlight,
    InstanceRegistry,
    Limits,
    StrictLimiter,
)
from tests.virtual_time import run_virtual, sliding_window_max


async def _grants(limiter: StrictLimiter | AsyncLimiter, count: int) -> list[float]:
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(loop.time())

    await asyncio.gather(*(one() for _ in range(count)))
    return times


def test_plain_aiolimiter_bursts_which_is_what_we_avoid() -> None:
    async def main() -> list[float]:
        return await _grants(AsyncLimiter(240, 60), 600)

    times = run_virtual(main)
    assert sliding_window_max(times, 60.0) > 400  # its documented first-window burst


@pytest.mark.parametrize(
    "rate", [RateLimit("minute", 240), RateLimit("second", 7), RateLimit("hour", 1000)]
)
def test_strict_limiter_never_exceeds_a_window_and_reaches_98_percent(rate: RateLimit) -> None:
    windows = 6
    count = rate.duration * windows

    async def main() -> list[float]:
        return await _grants(StrictLimiter(rate), count)

    times = run_virtual(main)
    assert sliding_window_max(times, rate.period) <= rate.duration
    span = max(times) - min(times)
    achieved = (count - 1) / span * rate.period
    assert achieved >= 0.98 * rate.duration
    assert achieved <= rate.duration


def test_opt_in_burst() -> None:
    rate = RateLimit("second", 10, burst=5)

    async def main() -> list[float]:
        return await _grants(StrictLimiter(rate), 30)

    times = run_virtual(main)
    assert times[4] - times[0] < 0.001  # five at once
    assert sliding_window_max(times, 1.0) <= rate.duration + rate.burst - 1


def _limits(client: RateLimit | None, max_in_flight: int = 8) -> Limits:
    return Limits(
        client_limiter=StrictLimiter(client) if client else None,
        instances=InstanceRegistry(100),
        max_in_flight=max_in_flight,
    )


async def _send_through(
    limits: Limits, connectors: list[str | None], hold: float = 0.0
) -> dict[str | None, list[float]]:
    loop = asyncio.get_running_loop()
    sent: dict[str | None, list[float]] = defaultdict(list)

    async def one(connector: str | None) -> None:
        async with limits.slot(connector):
            sent[connector].append(loop.time())
            await asyncio.sleep(hold)

    await asyncio.gather(*(one(c) for c in connectors))
    return sent


def test_instances_and_client_are_both_strict_where_they_meet() -> None:
    client_rate = RateLimit("second", 20)
    rates = {"a": RateLimit("second", 5), "b": RateLimit("second", 3), "c": RateLimit("minute", 30)}

    async def main() -> dict[str | None, list[float]]:
        limits = _limits(client_rate)
        for key, rate in rates.items():
            limits.instances.set(key, rate)
        work: list[str | None] = ["a"] * 40 + ["b"] * 25 + ["c"] * 40 + [None] * 120
        return await _send_through(limits, work, hold=0.01)

    sent = run_virtual(main)
    everything = [t for times in sent.values() for t in times]
    assert sliding_window_max(everything, 1.0) <= client_rate.duration
    for key, rate in rates.items():
        assert sliding_window_max(sent[key], rate.period) <= rate.duration, key


def test_instance_is_counted_when_it_leaves_not_when_granted() -> None:
    # The instance allows 1 a second; the client only 1 every 10 s. Without the
    # recharge, the instance's second call would be granted while its first still
    # waited for the client, and both would leave 10 s apart but then two more
    # could leave closer than 1 s. Here every instance call is >= 1 s apart *as sent*.
    async def main() -> dict[str | None, list[float]]:
        limits = _limits(RateLimit("minute", 6))
        limits.instances.set("a", RateLimit("second", 1))
        return await _send_through(limits, ["a", None, "a", None, "a", "a"])

    sent = run_virtual(main)
    times = sent["a"]
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(times))


def test_in_flight_never_exceeds_the_bound() -> None:
    async def main() -> int:
        limits = _limits(None, max_in_flight=3)
        busy = 0
        peak = 0

        async def one() -> None:
            nonlocal busy, peak
            async with limits.slot(None):
                busy += 1
                peak = max(peak, busy)
                await asyncio.sleep(0.5)
                busy -= 1

        await asyncio.gather(*(one() for _ in range(20)))
        return peak

    assert run_virtual(main) == 3


def test_slow_instance_does_not_hold_in_flight_slots() -> None:
    # One in-flight slot; instance "slow" may send once a minute. Its queued calls
    # wait outside the bound, so unpaced calls are not stuck behind them.
    async def main() -> dict[str | None, list[float]]:
        limits = _limits(None, max_in_flight=1)
        limits.instances.set("slow", RateLimit("minute", 1))
        return await _send_through(limits, ["slow", "slow", "slow", None, None, None], hold=0.1)

    sent = run_virtual(main)
    assert max(sent[None]) < 1.0
    assert sent["slow"][1] >= 60.0


def test_pause_gate_holds_every_call() -> None:
    async def main() -> list[float]:
        limits = _limits(RateLimit("second", 100))
        limits.gate.pause(5.0)
        sent = await _send_through(limits, [None] * 10)
        return sent[None]

    times = run_virtual(main)
    assert min(times) >= 5.0
    assert sliding_window_max(times, 1.0) <= 100


def test_pause_during_limiter_wait_is_respected() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        limits = _limits(RateLimit("second", 2))
        sent: list[float] = []

        async def one(i: int) -> None:
            async with limits.slot(None):
                sent.append(loop.time())
                if i == 0:
                    limits.gate.pause(30.0)  # the first answer was a 429

        await asyncio.gather(*(one(i) for i in range(6)))
        return sent

    times = run_virtual(main)
    assert times[0] < 0.001
    assert all(t >= 30.0 for t in times[1:])
    assert sliding_window_max(times[1:], 1.0) <= 2


def test_registry_is_bounded_and_keeps_entries_in_use() -> None:
    registry = InstanceRegistry(3)
    for key in "abcde":
        registry.set(key, RateLimit("second", 1))
    assert len(registry) == 3
    assert "a" not in registry
    assert "e" in registry
    busy = registry.checkout("c")
    assert busy is not None
    for key in "fgh":
        registry.set(key, RateLimit("second", 1))
    assert "c" in registry  # in use: never dropped
    registry.release(busy)
    registry.set("i", RateLimit("second", 1))
    assert len(registry) == 3
    registry.set("i", None)
    assert "i" not in registry


def test_registry_changes_rate() -> None:
    registry = InstanceRegistry(10)
    registry.set("a", RateLimit("second", 1))
    registry.set("a", RateLimit("minute", 5))
    assert registry.rate_for("a") == RateLimit("minute", 5)


def test_safety_margin_is_small() -> None:
    assert 0 < SAFETY_MARGIN <= 0.01


def test_rate_change_keeps_one_lock_per_instance() -> None:
    registry = InstanceRegistry(10)
    registry.set("a", RateLimit("second", 1))
    entry = registry.checkout("a")
    assert entry is not None
    registry.set("a", RateLimit("minute", 5))
    again = registry.checkout("a")
    assert again is entry  # the same lock and use count, the new limiter
    assert entry.limiter.rate == RateLimit("minute", 5)
    registry.release(entry)
    registry.release(again)


# -- the per-call short paths (issue 12) ----------------------------------------------------


class _CountingFactory(StrictLimiter):
    made = 0

    def __init__(self, rate: RateLimit) -> None:
        type(self).made += 1
        super().__init__(rate)


def test_learning_a_limit_makes_no_limiter_until_a_call_needs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A client may learn thousands of limits (one per reauthorise with rate fields):
    # each is a small record until the instance is called again. The limiters are
    # counted by swapping the class the module makes them from (no factory= seam).
    monkeypatch.setattr(limits_module, "StrictLimiter", _CountingFactory)

    async def main() -> tuple[int, int, int]:
        _CountingFactory.made = 0
        registry = InstanceRegistry(100)
        for key in range(50):
            registry.set(str(key), RateLimit("second", 5))
        learnt = _CountingFactory.made
        entry = registry.checkout("7")
        assert entry is not None
        assert entry.limiter.rate == RateLimit("second", 5)
        assert entry.limiter is entry.limiter  # made once
        registry.release(entry)
        return learnt, _CountingFactory.made, len(registry)

    assert run_virtual(main) == (0, 1, 50)


def test_registry_bound_holds_over_many_instances() -> None:
    registry = InstanceRegistry(1_000)
    for key in range(20_000):
        registry.set(str(key), RateLimit("second", 5))
    assert len(registry) == 1_000
    assert "19999" in registry
    assert "18999" not in registry


def test_in_flight_bound_is_fifo_and_passes_on_a_cancelled_grant() -> None:
    async def main() -> list[str]:
        in_flight = InFlight(1)
        order: list[str] = []
        assert in_flight.try_take()
        assert not in_flight.try_take()

        async def one(name: str) -> None:
            await in_flight.take()
            order.append(name)

        waiting = [asyncio.create_task(one(name)) for name in "abc"]
        await asyncio.sleep(0)
        in_flight.release()  # handed to "a"...
        waiting[0].cancel()  # ...which is cancelled before it runs: "b" gets it
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        in_flight.release()  # "b" is done with it: "c" next
        await asyncio.gather(*waiting, return_exceptions=True)
        in_flight.release()
        assert in_flight.try_take()  # back to one free slot, and it is taken again
        return order

    assert run_virtual(main) == ["b", "c"]


@pytest.mark.parametrize("blocker", ["client limiter", "pause", "extra bound", "no slot"])
def test_try_now_only_when_nothing_paces_the_call(blocker: str) -> None:
    async def main() -> tuple[bool, bool]:
        limits = _limits(RateLimit("second", 5) if blocker == "client limiter" else None, 1)
        extra = asyncio.Semaphore(1) if blocker == "extra bound" else None
        if blocker == "pause":
            limits.gate.pause(1.0)
        if blocker == "no slot":
            assert limits.try_now(None)
        blocked = limits.try_now(extra)
        free = _limits(None, 1)
        taken = free.try_now(None)
        assert not free.try_now(None)  # the one slot is held until release_now
        free.release_now()
        return blocked, taken and free.try_now(None)

    assert run_virtual(main) == (False, True)


def test_unbound_instance_waits_for_a_slot_without_its_lock() -> None:
    # Instance "a" is paced far above what it reaches; one in-flight slot. Calls on it
    # wait for the slot holding no instance lock (a held lock would queue every other
    # call on "a" behind one waiter), and the bound still holds.
    async def main() -> tuple[int, bool, int]:
        limits = _limits(None, max_in_flight=1)
        limits.instances.set("a", RateLimit("second", 100_000))
        busy = peak = 0
        lock_seen_held = False

        async def one() -> None:
            nonlocal busy, peak, lock_seen_held
            async with limits.slot("a", timed=False):
                busy += 1
                peak = max(peak, busy)
                await asyncio.sleep(0.01)  # the others queue meanwhile
                entry = limits.instances.checkout("a")
                assert entry is not None
                assert entry.lock is not None
                lock_seen_held |= entry.lock.locked()
                limits.instances.release(entry)
                busy -= 1

        await asyncio.gather(*(one() for _ in range(20)))
        return peak, lock_seen_held, limits.instances._entries["a"].users

    assert run_virtual(main) == (1, False, 0)


def test_take_now_counts_as_acquire_does() -> None:
    # take_now is aiolimiter's acquire() without the coroutine: the bucket of one limiter
    # taken from with take_now and of a twin awaited on must agree on every grant.
    rate = RateLimit("second", 3)

    async def main() -> list[tuple[bool, bool]]:
        taken, awaited = StrictLimiter(rate), StrictLimiter(rate)
        seen: list[tuple[bool, bool]] = []
        for _ in range(8):
            room = awaited.ready()
            if room:
                await awaited.acquire()
            seen.append((taken.take_now(), room))
            assert taken.ready() == awaited.ready()
            await asyncio.sleep(0.1)
        return seen

    seen = run_virtual(main)
    assert [got for got, _ in seen] == [room for _, room in seen]
    assert True in [got for got, _ in seen]
    assert False in [got for got, _ in seen]


@pytest.mark.parametrize(
    "blocker",
    ["client limiter", "pause", "extra bound", "no slot", "lock held", "bucket full", "unpaced"],
)
def test_try_paced_now_only_when_neither_limiter_nor_slot_would_wait(blocker: str) -> None:
    async def main() -> None:
        limits = _limits(RateLimit("second", 5) if blocker == "client limiter" else None, 1)
        if blocker != "unpaced":
            limits.instances.set("a", RateLimit("second", 1))
        extra = asyncio.Semaphore(1) if blocker == "extra bound" else None
        if blocker == "pause":
            limits.gate.pause(1.0)
        if blocker == "no slot":
            assert limits.try_now(None)
        if blocker == "lock held":
            entry = limits.instances.checkout("a")
            assert entry is not None
            assert entry.lock is not None
            await entry.lock.acquire()
        if blocker == "bucket full":
            entry = limits.instances.peek("a")
            assert entry is not None
            await entry.limiter.acquire()
        users = 1 if blocker == "lock held" else 0
        assert limits.try_paced_now("a", extra) is None
        # Nothing held: the in-flight slot is free (unless the test took it) and the
        # entry is not marked in use.
        assert limits._in_flight.try_take() is (blocker != "no slot")
        entry = limits.instances.peek("a")
        assert entry is None or entry.users == users

    run_virtual(main)


def test_try_paced_now_takes_the_grant_and_the_slot_until_release_now() -> None:
    async def main() -> None:
        limits = _limits(None, 1)
        limits.instances.set("a", RateLimit("second", 1))
        entry = limits.try_paced_now("a", None)
        assert entry is not None
        assert entry.users == 1
        assert not limits.try_now(None)  # the one in-flight slot is held
        limits.release_now(entry)
        assert entry.users == 0
        # Counted: the bucket (one a second) has no room until the second is over.
        assert limits.try_paced_now("a", None) is None
        await asyncio.sleep(1.1)
        again = limits.try_paced_now("a", None)
        assert again is entry
        limits.release_now(again)

    run_virtual(main)

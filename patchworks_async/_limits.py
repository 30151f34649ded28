"""Client-side pacing: strict aiolimiter limiters, the per-instance registry, the pause gate.

Order of the waits before a request leaves (``Limits.slot``)::

    1. the instance's own lock and limiter   (outside the in-flight bound, so a
                                              slow instance holds no slot)
    2. an in-flight slot                     (never more than the pool size, so
                                              nothing times out while queued)
    3. the pause gate, then the client-wide  (429 / X-RateLimit-Remaining: 0
       limiter, then the gate once more       hold every call)
    4. the instance limiter is recharged     (so its count is taken when the
       to "now"                               request leaves, not when it was
                                              granted: see ``StrictLimiter``)

aiolimiter's ``AsyncLimiter(N, T)`` lets about ``2 N`` through in its first
window (its docs' "bursting"). ``StrictLimiter`` builds it as a bucket of
``burst + slack`` requests that drains one request every ``T / N`` seconds: with
the default ``burst=1`` requests are spaced evenly, ``T / N`` apart, and no
sliding window of ``T`` holds more than ``N``. A safety margin of
``SAFETY_MARGIN`` stretches the spacing; half of it is spent on ``slack``, the
other half is left for network jitter.

``slack`` is ``CATCH_UP`` of the period, in requests (``0.005 * N``): a request
let go late (the event loop wakes timers up to a millisecond late, or the
request waited for the client-wide limiter) leaves that much credit for the
next, instead of every late wake-up being lost for good (measured: a bare
``AsyncLimiter(1, T / N)`` reached 58% of 1,000 a second and 97% of 20 a
second; ``python -m benchmarks``). The bucket's level still bounds every
window: ``n`` requests in a window of ``T`` need ``n < burst + slack + N / (1 +
SAFETY_MARGIN)``, which allows at most ``N + burst - 1`` while ``slack <=
SAFETY_MARGIN * N / (1 + SAFETY_MARGIN)``. Below 200 requests a period the
slack is under one request, so no two requests leave together; above it, up to
``slack`` may after an idle spell. A long run reaches ``1 / (1 +
SAFETY_MARGIN)`` (99%) of the rate.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict, deque
from types import TracebackType
from typing import TYPE_CHECKING, Final, Protocol

from aiolimiter import AsyncLimiter

from .models import RateLimit

if TYPE_CHECKING:
    from ._adaptive import QuotaTracker

SAFETY_MARGIN: Final = 0.01
#: Lateness one limiter makes up for, as a share of its period (half the margin).
CATCH_UP: Final = SAFETY_MARGIN / 2


class Limiter(Protocol):
    """What the client needs of a limiter (the in-process one, or a shared one).

    A :class:`LimiterBackend`'s ``client_limiter`` and ``instance_limiter`` return one.

    Attributes:
        rate: the :class:`RateLimit` it paces calls at.
    """

    rate: RateLimit

    async def acquire(self) -> None:
        """Wait until one request may leave, and count it."""

    async def recharge(self, seconds_since_grant: float) -> None:
        """Move the count of the last grant to now (the request is leaving only now).

        Args:
            seconds_since_grant: seconds since ``acquire`` granted the request.
        """


class StrictLimiter:
    """An aiolimiter ``AsyncLimiter`` configured from a :class:`RateLimit` so it cannot burst.

    Create it inside the running event loop: an aiolimiter limiter belongs to one loop.
    """

    __slots__ = ("_limiter", "_per_second", "rate")

    def __init__(self, rate: RateLimit) -> None:
        self.rate = rate
        interval = rate.interval * (1 + SAFETY_MARGIN)
        slack = CATCH_UP * rate.period / interval
        capacity = rate.burst + slack
        self._limiter = AsyncLimiter(capacity, capacity * interval)
        self._per_second = 1 / interval

    async def acquire(self) -> None:
        await self._limiter.acquire()

    def ready(self) -> bool:
        """Whether ``acquire`` would return at once (aiolimiter's ``has_capacity``)."""
        return self._limiter.has_capacity()

    def take_now(self) -> bool:
        """Count one request now if the bucket has room; never waits (False: nothing counted).

        Only while nobody waits in ``acquire`` (callers check that the instance's lock,
        which every waiting ``acquire`` holds, is free). aiolimiter has no synchronous
        acquire; this is what its ``acquire()`` does when the bucket has room (its
        level goes up by one; its waking of the next waiter finds none), without the
        coroutine (awaiting it, or running it in one step, cost 1 to 2 us a call more).
        ``tests/test_limits.py`` holds the two counts equal.
        """
        limiter = self._limiter
        if not limiter.has_capacity():
            return False
        limiter._level += 1  # acquire()'s own step; see the docstring
        return True

    async def recharge(self, seconds_since_grant: float) -> None:
        """Count the last grant as if made now.

        The bucket has leaked since the grant; topping it up by what leaked
        (at most one request's worth) restores the level it would have if the
        grant had happened now. Only the holder of the instance lock calls
        this, so the capacity is there and the call does not wait.
        """
        amount = min(seconds_since_grant * self._per_second, 1.0)
        if amount > 0:
            await self._limiter.acquire(amount)


#: An adaptive wait looks at the figures again at least this often (responses to
#: earlier calls keep changing them while it waits).
RECHECK: Final = 1.0


class AdaptiveLimiter:
    """The client-wide limiter of ``adaptive_quota``: calls leave when a ``QuotaTracker`` says.

    Until the server has sent one usable reading it is the configured limiter
    exactly (``cold``: the ``StrictLimiter`` of the configured rate, bursts
    included, or a shared backend's client-wide limiter), so a server that sends
    no quota headers sees no change. Then one call at a time waits for its turn (a lock),
    so the calls of every task in the process follow the one tracker, in order. A
    call let go late by the event loop (timers wake up to a millisecond late) does
    not delay the next: lateness up to ``CATCH_UP`` of the window is made up, as
    ``StrictLimiter``'s slack does, so a window still holds no more than the limit.
    """

    __slots__ = ("_configured", "_last", "_lock", "_tracker", "rate")

    def __init__(self, tracker: QuotaTracker, cold: Limiter | None = None) -> None:
        self.rate = tracker.configured
        self._tracker = tracker
        self._configured = cold or StrictLimiter(tracker.configured)
        self._lock = asyncio.Lock()
        self._last = -math.inf

    async def acquire(self) -> None:
        """Wait until the tracker lets the next call leave, and count it as leaving now."""
        loop = asyncio.get_running_loop()
        tracker = self._tracker
        if not tracker.readings:
            await self._configured.acquire()
            self._last = loop.time()
            tracker.sent()
            return
        async with self._lock:
            while True:
                now = loop.time()
                due = tracker.next_send(self._last, now)
                if due <= now:
                    break
                await asyncio.sleep(min(due - now, RECHECK))
            # Late by up to CATCH_UP of the window: the schedule keeps its beat.
            self._last = max(due, now - CATCH_UP * tracker.window)
            tracker.sent()

    async def recharge(self, seconds_since_grant: float) -> None:
        """Nothing to do: only instance limiters are recharged."""


class PauseGate:
    """Holds every call until a time the server named (429 Retry-After, or the quota's reset)."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until = 0.0

    def pause(self, seconds: float) -> None:
        """Hold calls for ``seconds`` from now (a longer pause already set is kept)."""
        until = asyncio.get_running_loop().time() + seconds
        self._until = max(self._until, until)

    def closed(self) -> bool:
        """Whether calls must wait (no clock read while no pause was ever set)."""
        return bool(self._until) and self.remaining() > 0

    def remaining(self) -> float:
        """Seconds until calls may leave again (0 when open)."""
        if not self._until:
            return 0.0
        return max(self._until - asyncio.get_running_loop().time(), 0.0)

    async def wait(self) -> None:
        """Return once the gate is open."""
        # A pause can be extended while we sleep, so look again after each sleep.
        while (delay := self.remaining()) > 0:  # noqa: ASYNC110  # a deadline, not an event
            await asyncio.sleep(delay)


class PacedInstance:
    """One paced instance: its limit, and its limiter and lock once a call needs them.

    The limiter and the lock are made at the first checkout, not when the limit is
    learnt: a client that learns thousands of limits (one per reauthorise with
    rate fields) keeps one small record for each instance it never calls again.
    """

    __slots__ = ("_limiter", "lock", "rate", "users")

    def __init__(self, rate: RateLimit, limiter: Limiter | None) -> None:
        self.rate = rate
        self._limiter = limiter
        self.lock: asyncio.Lock | None = None
        self.users = 0

    @property
    def limiter(self) -> Limiter:
        """The instance's limiter (made on first use, inside the running loop)."""
        limiter = self._limiter
        if limiter is None:
            limiter = self._limiter = StrictLimiter(self.rate)
        return limiter

    def change(self, rate: RateLimit, limiter: Limiter | None) -> None:
        """Take a new limit; the new limiter starts empty (made on next use)."""
        self.rate = rate
        self._limiter = limiter


class InstanceRegistry:
    """Per-instance limiters by connector id, bounded: idle ones are dropped past ``max_size``.

    The least recently used idle entries go first; an entry in use is never dropped.
    """

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("max_instance_limiters must be at least 1")
        self.max_size = max_size
        self._entries: OrderedDict[str, PacedInstance] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, connector: object) -> bool:
        return connector in self._entries

    def rate_for(self, connector: str) -> RateLimit | None:
        """The known limit of an instance, or ``None``."""
        entry = self._entries.get(connector)
        return entry.rate if entry is not None else None

    def set(self, connector: str, rate: RateLimit | None, limiter: Limiter | None = None) -> None:
        """Learn (or, with ``None``, forget) an instance's limit."""
        if rate is None:
            self._entries.pop(connector, None)
            return
        entries = self._entries
        entry = entries.get(connector)
        if entry is not None:
            if entry.rate is not rate and entry.rate != rate:
                # Changed in place: calls in flight and queued keep the one lock, so the
                # instance never has two pipelines. The new limiter starts empty: the
                # next call may leave at once, then the new rate applies.
                entry.change(rate, limiter)
            entries.move_to_end(connector)
            return
        entries[connector] = PacedInstance(rate, limiter)
        if len(entries) > self.max_size:
            self._evict()

    def _evict(self) -> None:
        excess = len(self._entries) - self.max_size
        if excess <= 0:
            return
        # Oldest first, and stop as soon as enough are gone: no scan of the whole registry.
        idle: list[str] = []
        for key, entry in self._entries.items():
            if entry.users == 0:
                idle.append(key)
                if len(idle) == excess:
                    break
        for key in idle:
            del self._entries[key]

    def refresh(self, connector: str, rate: RateLimit) -> bool:
        """Mark a known instance that keeps ``rate`` as recently used; False if not so."""
        entry = self._entries.get(connector)
        if entry is None or (entry.rate is not rate and entry.rate != rate):
            return False
        self._entries.move_to_end(connector)
        return True

    def peek(self, connector: str) -> PacedInstance | None:
        """The instance's entry, or ``None`` if not paced; nothing is marked."""
        return self._entries.get(connector)

    def hold(self, connector: str, entry: PacedInstance) -> None:
        """Mark ``entry`` (``peek``'s) in use until ``release``, as ``checkout`` does."""
        self._entries.move_to_end(connector)
        entry.users += 1

    def checkout(self, connector: str) -> PacedInstance | None:
        """The instance's entry, marked in use until ``release``; ``None`` if not paced."""
        entry = self._entries.get(connector)
        if entry is None:
            return None
        self._entries.move_to_end(connector)
        entry.users += 1
        if entry.lock is None:
            entry.lock = asyncio.Lock()
        return entry

    def release(self, entry: PacedInstance) -> None:
        entry.users -= 1
        if entry.users == 0 and len(self._entries) > self.max_size:
            self._evict()


class InFlight:
    """The in-flight bound: a FIFO semaphore whose free case is one synchronous step.

    ``asyncio.Semaphore`` costs a coroutine and a scan of its waiters on every
    acquire; this one takes a free slot with ``try_take`` (no await) and hands a
    released slot straight to the longest waiter. A waiter cancelled after it was
    handed a slot passes the slot on.
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody is waiting for one; never waits."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a slot, in arrival order."""
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot, then cancelled: pass it on
            else:
                waiter.cancel()  # skipped by release()
            raise

    def release(self) -> None:
        """Give a slot back: to the longest waiter still waiting, else to the pool."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class Limits:
    """Everything that paces calls, created inside the running loop on first use."""

    def __init__(
        self,
        *,
        client_limiter: Limiter | None,
        instances: InstanceRegistry,
        max_in_flight: int,
    ) -> None:
        self.client_limiter = client_limiter
        self.instances = instances
        self.gate = PauseGate()
        self._in_flight = InFlight(max_in_flight)

    def try_now(self, extra: asyncio.Semaphore | None) -> bool:
        """Take an in-flight slot when the call may leave at once without waiting.

        True when nothing paces calls (no client-wide limiter, the gate open, no
        ``extra`` bound) and a slot is free: the slot is then taken, with no await
        and no clock read, and ``release_now`` gives it back. Callers check first
        that the instance has no limiter of its own.
        """
        return (
            extra is None
            and self.client_limiter is None
            and not self.gate.closed()
            and self._in_flight.try_take()
        )

    def try_paced_now(
        self, connector: str | None, extra: asyncio.Semaphore | None
    ) -> PacedInstance | None:
        """Take a paced instance's grant and an in-flight slot when neither would wait.

        ``Slot``'s unhindered way in one synchronous step, for a call nobody observes:
        no client-wide limiter, no ``extra`` bound, the gate open, the instance's
        lock free (nobody is queued on its limiter), room in its ``StrictLimiter``
        and a free in-flight slot. The grant is taken with the slot, so the request is
        counted as it leaves. The entry comes back in use; ``release_now(entry)``
        gives both back. ``None``, holding nothing, when anything else applies: the
        call then takes its turn through a ``Slot``.
        """
        if connector is None or extra is not None or self.client_limiter is not None:
            return None
        instances = self.instances
        entry = instances.peek(connector)
        if entry is None:
            return None
        lock = entry.lock
        limiter = entry.limiter
        if (
            (lock is not None and lock.locked())
            or not isinstance(limiter, StrictLimiter)
            or self.gate.closed()
            or not self._in_flight.try_take()
        ):
            return None
        if not limiter.take_now():
            self._in_flight.release()
            return None
        instances.hold(connector, entry)
        return entry

    def release_now(self, entry: PacedInstance | None = None) -> None:
        """Give back the slot ``try_now`` took (and the entry ``try_paced_now`` held)."""
        self._in_flight.release()
        if entry is not None:
            self.instances.release(entry)

    def paced(self, connector: str | None) -> bool:
        """Whether ``connector`` has a limiter of its own."""
        return connector is not None and connector in self.instances

    def slot(
        self, connector: str | None, extra: asyncio.Semaphore | None = None, *, timed: bool = True
    ) -> Slot:
        """Wait for the request's turn: ``async with limits.slot(...) as waited:`` sends it.

        ``waited`` is the seconds spent waiting (always 0.0 when not ``timed`` and
        the instance has no limiter of its own: nobody asked, so the clock is not
        read). ``extra`` is a further bound taken with the in-flight slot (a bulk
        job's concurrency), so a call waiting on its instance's limiter holds neither.
        """
        return Slot(self, connector, extra, timed)

    async def _take_slots(self, extra: asyncio.Semaphore | None) -> None:
        if extra is not None:
            await extra.acquire()
        try:
            await self._in_flight.take()
        except BaseException:
            if extra is not None:
                extra.release()
            raise

    def _release_slots(self, extra: asyncio.Semaphore | None) -> None:
        self._in_flight.release()
        if extra is not None:
            extra.release()

    async def _client_turn(self) -> None:
        gate = self.gate
        limiter = self.client_limiter
        while True:
            if gate.remaining() > 0:
                await gate.wait()
            if limiter is None:
                return
            await limiter.acquire()
            # A 429 may have closed the gate while we waited in the limiter: that
            # grant is given up (conservative) and the turn taken again after it.
            if gate.remaining() <= 0:
                return


class Slot:
    """The context manager of ``Limits.slot``: held while the request is in flight.

    A class rather than an ``@asynccontextmanager`` generator, and with a short
    path when no limit applies (no instance limiter, no client-wide limiter, the
    gate open): it runs on every call, and ``python -m benchmarks`` measured the
    generator's machinery as a few microseconds of each call's cost.
    """

    __slots__ = ("_connector", "_entry", "_extra", "_limits", "_timed", "waits")

    #: Set on the timed path only (OpenTelemetry reads it): seconds waited for the
    #: instance's limiter (``None`` when the instance is not paced), for an in-flight
    #: slot, and for the pause gate and client-wide limiter (``None`` when there is
    #: no client-wide limit and the gate was open); and whether the pause gate was
    #: closed when the request reached it.
    waits: tuple[float | None, float, float | None, bool]

    def __init__(
        self,
        limits: Limits,
        connector: str | None,
        extra: asyncio.Semaphore | None,
        timed: bool = True,
    ) -> None:
        self._limits = limits
        self._connector = connector
        self._extra = extra
        self._timed = timed
        self._entry: PacedInstance | None = None

    # Over 40 lines: its three paths (short, unpaced, paced) run on every call; a helper
    # coroutine per path would add an await to each call (measured by benchmarks/).
    async def __aenter__(self) -> float:
        limits = self._limits
        extra = self._extra
        connector = self._connector
        entry = limits.instances.checkout(connector) if connector is not None else None
        if entry is None and not self._timed:
            # The short path: no instance limiter, and nobody asked how long it took.
            await limits._take_slots(extra)
            if limits.client_limiter is not None or limits.gate.remaining() > 0:
                try:
                    await limits._client_turn()
                except BaseException:
                    limits._release_slots(extra)
                    raise
            return 0.0
        loop = asyncio.get_running_loop()
        started = loop.time()
        if entry is None:
            await limits._take_slots(extra)
            slotted = loop.time()
            paused = limits.gate.remaining() > 0
            try:
                await limits._client_turn()
            except BaseException:
                limits._release_slots(extra)
                raise
            ended = loop.time()
            client = ended - slotted if paused or limits.client_limiter is not None else None
            self.waits = (None, slotted - started, client, paused)
            return ended - started
        self._entry = entry
        lock = entry.lock
        if lock is None:  # made by checkout
            raise RuntimeError("an instance was checked out without its lock")
        try:
            if await self._unhindered(entry, lock):
                ended = loop.time()
                # It waited only for its in-flight slot (its limiter had room).
                self.waits = (0.0, ended - started, None, False)
                return ended - started
            async with lock:
                await entry.limiter.acquire()
                if limits.try_now(extra):
                    # Granted and leaving in the same step: the count is already "now".
                    granted = loop.time()
                    self.waits = (granted - started, 0.0, None, False)
                    return granted - started
                granted = loop.time()
                await limits._take_slots(extra)
                slotted = loop.time()
                paused = limits.gate.remaining() > 0
                try:
                    await limits._client_turn()
                    turned = loop.time()
                    await entry.limiter.recharge(turned - granted)
                except BaseException:
                    limits._release_slots(extra)
                    raise
        except BaseException:
            self._entry = None
            limits.instances.release(entry)
            raise
        ended = loop.time()
        client = turned - slotted if paused or limits.client_limiter is not None else None
        self.waits = (granted - started, slotted - granted, client, paused)
        return ended - started

    async def _unhindered(self, entry: PacedInstance, lock: asyncio.Lock) -> bool:
        """Send through a paced instance whose limiter would not make it wait.

        Then the in-flight slot is taken first, holding no lock, and the limiter's
        grant is taken with it (no await can suspend in between, so the count is
        taken as the request leaves and no other call slips in). Holding the
        instance lock while waiting for a slot would make every other call on the
        instance queue behind it. False, holding nothing, when anything else applies.
        """
        limits = self._limits
        limiter = entry.limiter
        if (
            self._extra is not None
            or limits.client_limiter is not None
            or not isinstance(limiter, StrictLimiter)
            or lock.locked()
            or not limiter.ready()
            or limits.gate.closed()
        ):
            return False
        in_flight = limits._in_flight
        if not in_flight.try_take():
            await in_flight.take()
            # Other calls ran meanwhile: look again.
            if lock.locked() or not limiter.ready() or limits.gate.closed():
                in_flight.release()
                return False
        await limiter.acquire()  # ready: returns at once
        return True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        limits = self._limits
        limits._release_slots(self._extra)
        entry, self._entry = self._entry, None
        if entry is not None:
            limits.instances.release(entry)

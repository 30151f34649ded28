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
window (its docs' "bursting"). ``StrictLimiter`` builds it as
``AsyncLimiter(burst, burst * T / N)``: with the default ``burst=1`` requests are
spaced evenly, ``T / N`` apart, and no sliding window of ``T`` holds more than
``N``. A safety margin of ``SAFETY_MARGIN`` stretches the spacing so that timer
and scheduling jitter cannot push one more request into a window; a long run
still reaches ``1 / (1 + SAFETY_MARGIN)`` (99%) of the rate.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final, Protocol

from aiolimiter import AsyncLimiter

from .models import RateLimit

SAFETY_MARGIN: Final = 0.01


class Limiter(Protocol):
    """What the client needs of a limiter (the in-process one, or a shared one)."""

    rate: RateLimit

    async def acquire(self) -> None:
        """Wait until one request may leave, and count it."""

    async def recharge(self, seconds_since_grant: float) -> None:
        """Move the count of the last grant to now (the request is leaving only now)."""


class StrictLimiter:
    """An aiolimiter ``AsyncLimiter`` configured from a :class:`RateLimit` so it cannot burst.

    Create it inside the running event loop: an aiolimiter limiter belongs to one loop.
    """

    __slots__ = ("_limiter", "_per_second", "rate")

    def __init__(self, rate: RateLimit) -> None:
        self.rate = rate
        interval = rate.interval * (1 + SAFETY_MARGIN)
        self._limiter = AsyncLimiter(rate.burst, rate.burst * interval)
        self._per_second = 1 / interval

    async def acquire(self) -> None:
        await self._limiter.acquire()

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


class PauseGate:
    """Holds every call until a time the server named (429 Retry-After, or the quota's reset)."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until = 0.0

    def pause(self, seconds: float) -> None:
        """Hold calls for ``seconds`` from now (a longer pause already set is kept)."""
        until = asyncio.get_running_loop().time() + seconds
        self._until = max(self._until, until)

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


class _Instance:
    __slots__ = ("limiter", "lock", "users")

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self.lock = asyncio.Lock()
        self.users = 0


class InstanceRegistry:
    """Per-instance limiters by connector id, bounded: idle ones are dropped past ``max_size``.

    The least recently used idle entries go first; an entry in use is never dropped.
    """

    def __init__(self, max_size: int, factory: type[StrictLimiter] | None = None) -> None:
        if max_size < 1:
            raise ValueError("max_instance_limiters must be at least 1")
        self.max_size = max_size
        self._entries: OrderedDict[str, _Instance] = OrderedDict()
        self._factory = factory or StrictLimiter

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, connector: object) -> bool:
        return connector in self._entries

    def rate_for(self, connector: str) -> RateLimit | None:
        """The known limit of an instance, or ``None``."""
        entry = self._entries.get(connector)
        return entry.limiter.rate if entry is not None else None

    def set(self, connector: str, rate: RateLimit | None, limiter: Limiter | None = None) -> None:
        """Learn (or, with ``None``, forget) an instance's limit."""
        if rate is None:
            self._entries.pop(connector, None)
            return
        entry = self._entries.get(connector)
        if entry is not None and entry.limiter.rate == rate:
            self._entries.move_to_end(connector)
            return
        self._entries[connector] = _Instance(limiter or self._factory(rate))
        self._entries.move_to_end(connector)
        self._evict()

    def _evict(self) -> None:
        excess = len(self._entries) - self.max_size
        if excess <= 0:
            return
        idle = [key for key, entry in self._entries.items() if entry.users == 0]
        for key in idle[:excess]:
            del self._entries[key]

    def checkout(self, connector: str) -> _Instance | None:
        """The instance's entry, marked in use until ``release``; ``None`` if not paced."""
        entry = self._entries.get(connector)
        if entry is None:
            return None
        self._entries.move_to_end(connector)
        entry.users += 1
        return entry

    def release(self, entry: _Instance) -> None:
        entry.users -= 1
        if entry.users == 0 and len(self._entries) > self.max_size:
            self._evict()


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
        self._in_flight = asyncio.Semaphore(max_in_flight)

    @asynccontextmanager
    async def slot(
        self, connector: str | None, extra: asyncio.Semaphore | None = None
    ) -> AsyncIterator[float]:
        """Wait for the request's turn; yields the seconds spent waiting. The body sends it.

        ``extra`` is a further bound taken with the in-flight slot (a bulk job's
        concurrency), so a call waiting on its instance's limiter holds neither.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        entry = self.instances.checkout(connector) if connector is not None else None
        try:
            if entry is None:
                await self._take_slots(extra)
                try:
                    await self._client_turn()
                    yield loop.time() - started
                finally:
                    self._release_slots(extra)
                return
            async with entry.lock:
                await entry.limiter.acquire()
                granted = loop.time()
                await self._take_slots(extra)
                try:
                    await self._client_turn()
                    await entry.limiter.recharge(loop.time() - granted)
                except BaseException:
                    self._release_slots(extra)
                    raise
            try:
                yield loop.time() - started
            finally:
                self._release_slots(extra)
        finally:
            if entry is not None:
                self.instances.release(entry)

    async def _take_slots(self, extra: asyncio.Semaphore | None) -> None:
        if extra is not None:
            await extra.acquire()
        try:
            await self._in_flight.acquire()
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

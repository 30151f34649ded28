"""``SharedLimiter``: one budget in Redis (the client's, or one instance's) as a ``Limiter``."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from .._backend import PauseTarget
from .._limits import StrictLimiter
from ..models import RateLimit
from ._connection import RedisConnection, Unavailable
from ._scripts import SLACK_MS, US


class SharedPause:
    """The pause every sharer holds: read from Redis, and mirrored on the client's gate."""

    def __init__(self, connection: RedisConnection, key: Callable[[], str]) -> None:
        self.key = key
        #: The client's pause gate (``LimiterBackend.attach``), closed by a pause learnt here.
        self.gate: PauseTarget | None = None
        self._connection = connection

    async def hold(self, seconds: float) -> None:
        """Sit out a pause learnt from Redis, with the client's gate closed meanwhile."""
        if self.gate is not None:
            self.gate.pause(seconds)
        await asyncio.sleep(seconds)

    async def left(self) -> float:
        """Seconds left of the shared pause (0 when none, or when Redis is away in "local")."""
        try:
            left = await self._connection.run("pause_left", [self.key()], [])
        except Unavailable:
            return 0.0
        return int(left) / US


class SharedLimiter:
    """One GCRA budget in Redis (the client's, or one instance's), as a ``Limiter``."""

    def __init__(
        self,
        connection: RedisConnection,
        pause: SharedPause,
        key: Callable[[], str],
        rate: RateLimit,
        safety_margin: float,
    ) -> None:
        self.rate = rate
        self._connection = connection
        self._pause = pause
        self._key = key
        self._interval = round(rate.interval * (1 + safety_margin) * US)
        self._tolerance = (rate.burst - 1) * self._interval
        # One reservation per process at a time (see ``patchworks_async.redis``).
        self._lock = asyncio.Lock()
        # The in-process limiter while Redis is away (on_unavailable="local").
        self._local: StrictLimiter | None = None
        self._last_grant = -math.inf

    def _keys(self) -> list[str]:
        return [self._key(), self._pause.key()]

    async def acquire(self) -> None:
        """Wait for this worker's turn in the shared budget, and count it."""
        async with self._lock:
            try:
                while not await self._reserve():
                    pass
            except Unavailable:
                await self._fallback().acquire()
            await self._space_from_last_grant()

    def _fallback(self) -> StrictLimiter:
        if self._local is None:
            self._local = StrictLimiter(self.rate)
        return self._local

    async def _space_from_last_grant(self) -> None:
        # Across an outage neither Redis (it may have restarted empty) nor the
        # in-process limiter standing in for it knows of the other's grants: in this
        # process at least, grants stay an interval apart. Otherwise a no-op, give or
        # take the jitter of two sleeps.
        loop = asyncio.get_running_loop()
        gap = self._last_grant + (self._interval - self._tolerance) / US - loop.time()
        if gap > 0:
            await asyncio.sleep(gap)
        self._last_grant = loop.time()

    async def _reserve(self) -> bool:
        """Reserve the next slot and wait for it; False when a pause took it away."""
        connection = self._connection
        args = [self._interval, self._tolerance, SLACK_MS]
        granted, wait = await connection.run("acquire", self._keys(), args)
        if not granted:
            await self._pause.hold(int(wait) / US)
            return False
        if wait <= 0:
            return True  # the script checked the pause in the same step
        outages = connection.outages
        await asyncio.sleep(int(wait) / US)
        left = await self._pause.left()
        if left > 0:
            await self._pause.hold(left)
            return False
        # A slot reserved before an outage may belong to a Redis that has since lost
        # its data (the new one would give it away again): reserve anew.
        return connection.outages == outages

    async def recharge(self, seconds_since_grant: float) -> None:
        """Count the request as leaving now: space it from this budget's last departure."""
        loop = asyncio.get_running_loop()
        granted = loop.time() - max(seconds_since_grant, 0.0)
        key = [self._key()]
        while True:
            elapsed = round((loop.time() - granted) * US)
            args = [self._interval, self._tolerance, elapsed, SLACK_MS]
            try:
                wait = await self._connection.run("depart", key, args)
            except Unavailable:
                await self._fallback().recharge(loop.time() - granted)
                return
            if wait <= 0:
                return
            await asyncio.sleep(int(wait) / US)

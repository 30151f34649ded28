"""``SharedLimiter``: one budget in Redis (the client's, or one instance's) as a ``Limiter``."""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

from .._limits import StrictLimiter
from ..models import RateLimit
from ._scripts import SLACK_MS, US

if TYPE_CHECKING:
    from ._backend import RedisLimiter


class Unavailable(Exception):
    """Redis did not answer and ``on_unavailable="local"``: pace this call in-process."""


class SharedLimiter:
    """One GCRA budget in Redis (the client's, or one instance's), as a ``Limiter``.

    It calls the backend's underscored methods: they are private to this package.
    """

    def __init__(self, backend: RedisLimiter, name: str, rate: RateLimit) -> None:
        self.rate = rate
        self._backend = backend
        self._name = name
        self._interval = round(rate.interval * (1 + backend.safety_margin) * US)
        self._tolerance = (rate.burst - 1) * self._interval
        # One reservation per process at a time (see ``patchworks_async.redis``).
        self._lock = asyncio.Lock()
        # The in-process limiter while Redis is away (on_unavailable="local").
        self._local: StrictLimiter | None = None
        self._last_grant = -math.inf

    def _keys(self) -> list[str]:
        prefix = self._backend.key_prefix
        return [prefix + self._name, prefix + "pause"]

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
        backend = self._backend
        args = [self._interval, self._tolerance, SLACK_MS]
        granted, wait = await backend._run("acquire", self._keys(), args)
        if not granted:
            await backend._hold(int(wait) / US)
            return False
        if wait <= 0:
            return True  # the script checked the pause in the same step
        outages = backend._outages
        await asyncio.sleep(int(wait) / US)
        left = await backend._pause_left()
        if left > 0:
            await backend._hold(left)
            return False
        # A slot reserved before an outage may belong to a Redis that has since lost
        # its data (the new one would give it away again): reserve anew.
        return backend._outages == outages

    async def recharge(self, seconds_since_grant: float) -> None:
        """Count the request as leaving now: space it from this budget's last departure."""
        loop = asyncio.get_running_loop()
        granted = loop.time() - max(seconds_since_grant, 0.0)
        key = self._keys()[:1]
        while True:
            elapsed = round((loop.time() - granted) * US)
            args = [self._interval, self._tolerance, elapsed, SLACK_MS]
            try:
                wait = await self._backend._run("depart", key, args)
            except Unavailable:
                await self._fallback().recharge(loop.time() - granted)
                return
            if wait <= 0:
                return
            await asyncio.sleep(int(wait) / US)

"""``RedisConnection``: the one place that talks to Redis.

It connects lazily (inside the running loop), loads the Lua scripts, notices an
outage (and logs it once), tries Redis again after one, and waits out or reports
an outage as ``on_unavailable`` says.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any, Final, Literal

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._backoff import expo_waits, full_jitter
from ._scripts import PRELUDE, SCRIPTS

logger = logging.getLogger("patchworks_async.redis")

OnUnavailable = Literal["wait", "local"]

_BACKOFF_FIRST: Final = 0.05  # "wait": first pause between tries while Redis is away
_BACKOFF_MAX: Final = 1.0
_PROBE_INTERVAL: Final = 1.0  # "local": how often Redis is tried again during an outage
_UNAVAILABLE: Final = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)


class Unavailable(Exception):
    """Redis did not answer and ``on_unavailable="local"``: pace this call in-process."""


def connect_from_url(url: str, options: dict[str, Any]) -> Callable[[], Redis]:
    """Make a function that connects to the Redis at ``url``.

    The defaults differ from redis-py's so that an outage is noticed in about a
    second: socket and connect timeouts of 2 s and one immediate reconnection
    attempt (redis-py would retry ten times with backoff before we heard of it).

    Args:
        url: a ``redis://``, ``rediss://`` or ``unix://`` URL.
        options: options for ``redis.asyncio.Redis.from_url``; they win over ours.

    Returns:
        A function that makes the client (call it inside the running loop).
    """
    merged: dict[str, Any] = {
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
        "retry": Retry(NoBackoff(), 1),
        **options,
    }
    return lambda: Redis.from_url(url, **merged)


def outage_waits() -> Iterator[float]:
    """The waits between tries while Redis is away: exponential, capped, full jitter.

    Returns:
        An endless iterator of seconds.
    """
    return (full_jitter(wait) for wait in expo_waits(_BACKOFF_FIRST, _BACKOFF_MAX))


class RedisConnection:
    """The connection, the loaded scripts and the outage state of one ``RedisLimiter``."""

    def __init__(self, redis: Redis | Callable[[], Redis], on_unavailable: OnUnavailable) -> None:
        self.on_unavailable = on_unavailable
        # A client passed in is the caller's (never closed here); one we make is ours.
        self._redis: Redis | None = redis if isinstance(redis, Redis) else None
        self._connect: Callable[[], Redis] | None = None if isinstance(redis, Redis) else redis
        self._scripts: dict[str, AsyncScript] = {}
        self._down = False
        self._local_until = 0.0
        #: How many outages began so far (a slot reserved before one may be lost).
        self.outages = 0

    async def run(self, script: str, keys: list[str], args: list[int]) -> Any:
        """Run one of the scripts; while Redis is away, wait for it or raise ``Unavailable``."""
        waits = outage_waits()
        while True:
            try:
                return await self.run_once(script, keys, args)
            except Unavailable:
                if self.on_unavailable == "local":
                    raise
            await asyncio.sleep(next(waits))

    async def run_once(self, script: str, keys: list[str], args: list[int]) -> Any:
        """Run one of the scripts once; raise ``Unavailable`` when Redis does not answer."""
        loop = asyncio.get_running_loop()
        if self._down and self.on_unavailable == "local" and loop.time() < self._local_until:
            raise Unavailable  # not yet time to try Redis again
        try:
            reply = await self._script(script)(keys=keys, args=args)
        except _UNAVAILABLE as error:
            self._local_until = loop.time() + _PROBE_INTERVAL
            self._went_down(error)
            raise Unavailable from error
        if self._down:
            self._down = False
            logger.warning("Redis answers again: the shared rate limits are back in force")
        return reply

    def _script(self, name: str) -> AsyncScript:
        script = self._scripts.get(name)
        if script is None:
            if self._redis is None:
                if self._connect is None:
                    raise RuntimeError("RedisConnection has neither a client nor a way to make one")
                self._redis = self._connect()
            script = self._scripts[name] = self._redis.register_script(PRELUDE + SCRIPTS[name])
        return script

    def _went_down(self, error: BaseException) -> None:
        if self._down:
            return
        self._down = True
        self.outages += 1
        if self.on_unavailable == "local":
            consequence = (
                "each process now paces itself with the in-process limiter, so workers "
                "together may exceed the shared limit until Redis answers"
            )
        else:
            consequence = "calls wait for it (nothing is sent unpaced)"
        logger.warning(
            "Redis is unreachable (%s: %s): %s", type(error).__name__, error, consequence
        )

    async def aclose(self) -> None:
        """Forget the loaded scripts and close the client, if we made it."""
        self._scripts.clear()
        if self._connect is None:
            return  # the caller's client: the caller closes it
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()

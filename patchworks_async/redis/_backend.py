"""``RedisLimiter``: the backend that ``PatchworksClient(limiter=...)`` takes.

It scopes the keys, makes the shared limiters and spreads pauses; the connection
(connect, outages, reconnect, scripts) is ``RedisConnection``'s.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from .._backend import LimiterBackend, PauseTarget
from .._limits import SAFETY_MARGIN, Limiter
from ..models import RateLimit
from ._connection import (
    OnUnavailable,
    RedisConnection,
    Unavailable,
    connect_from_url,
    outage_waits,
)
from ._scripts import SLACK_MS, US
from ._shared import SharedLimiter, SharedPause

logger = logging.getLogger("patchworks_async.redis")


def _check_namespace(namespace: str) -> str:
    if (
        not isinstance(namespace, str)
        or not namespace
        or len(namespace) > 100
        or not namespace.isprintable()
        or any(char in namespace for char in "{} ")
    ):
        raise ValueError("namespace must be 1 to 100 printable characters without braces or spaces")
    return namespace


class RedisLimiter(LimiterBackend):
    """Shares a client's limits (client-wide and per instance) with every worker on one Redis.

    Pass it as ``PatchworksClient(limiter=...)``, one per client. Connections are made
    lazily, inside the running event loop, on first use.

    Args:
        redis: a ``redis.asyncio.Redis`` client, or a function that makes one (called
            once, inside the running loop). A client passed in is never closed; one
            made by the function is closed by :meth:`aclose`.
        namespace: the keys' scope; default: a hash of the client's credential
            (see :meth:`bind`). Workers share budgets exactly when they share it.
        on_unavailable: when Redis does not answer, ``"wait"`` (retry with backoff;
            nothing is sent unpaced) or ``"local"`` (pace each process with the
            in-process limiter until Redis answers again: workers together may then
            exceed the shared limit). A warning is logged once per outage.
        safety_margin: how much the even spacing is stretched, so that timing jitter
            between grant and arrival cannot put one request too many in a window.

    Raises:
        ValueError: a bad ``namespace``, ``on_unavailable`` or ``safety_margin``.
    """

    def __init__(
        self,
        redis: Redis | Callable[[], Redis],
        *,
        namespace: str | None = None,
        on_unavailable: OnUnavailable = "wait",
        safety_margin: float = SAFETY_MARGIN,
    ) -> None:
        if on_unavailable not in ("wait", "local"):
            raise ValueError('on_unavailable must be "wait" or "local"')
        if isinstance(safety_margin, bool) or not 0 <= safety_margin < 1:
            raise ValueError("safety_margin must be at least 0 and below 1")
        self.on_unavailable: OnUnavailable = on_unavailable
        self.safety_margin = float(safety_margin)
        self._namespace = _check_namespace(namespace) if namespace is not None else None
        self._credential_id: str | None = None
        self._connection = RedisConnection(redis, on_unavailable)
        self._pause = SharedPause(self._connection, lambda: self.key_prefix + "pause")
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str | None = None,
        on_unavailable: OnUnavailable = "wait",
        safety_margin: float = SAFETY_MARGIN,
        **redis_options: Any,
    ) -> RedisLimiter:
        """Make a limiter on the Redis at ``url``.

        ``redis_options`` go to ``redis.asyncio.Redis.from_url``. The defaults differ
        from redis-py's so that an outage is noticed in about a second: socket and
        connect timeouts of 2 s and one immediate reconnection attempt (redis-py
        would retry ten times with backoff before the limiter heard of it).

        Args:
            url: a ``redis://``, ``rediss://`` or ``unix://`` URL.
            namespace: as for :class:`RedisLimiter`.
            on_unavailable: as for :class:`RedisLimiter`.
            safety_margin: as for :class:`RedisLimiter`.
            **redis_options: options for ``redis.asyncio.Redis.from_url``.

        Returns:
            A limiter that connects on first use, inside the running loop.

        Raises:
            ValueError: a bad ``namespace``, ``on_unavailable`` or ``safety_margin``.
        """
        return cls(
            connect_from_url(url, redis_options),
            namespace=namespace,
            on_unavailable=on_unavailable,
            safety_margin=safety_margin,
        )

    def bind(self, credential_fingerprint: str) -> None:
        """Scope the keys to one credential (``PatchworksClient`` calls this).

        The value is hashed again (SHA-256, first 16 hex digits), so no key holds it
        even if a caller passes the credential itself. Ignored when ``namespace``
        was given.

        Args:
            credential_fingerprint: a hash of the client's credential.

        Raises:
            ValueError: an empty value, or a different credential than already bound.
        """
        if not isinstance(credential_fingerprint, str) or not credential_fingerprint:
            raise ValueError("credential_fingerprint must be a non-empty string")
        digest = hashlib.sha256(credential_fingerprint.encode()).hexdigest()[:16]
        if self._credential_id not in (None, digest):
            raise ValueError("this RedisLimiter is bound to another credential: use one per client")
        self._credential_id = digest

    @property
    def key_prefix(self) -> str:
        """``patchworks:{ID}:``, the start of every key this limiter uses.

        Raises:
            RuntimeError: neither ``namespace`` nor :meth:`bind` has scoped it yet.
        """
        scope = self._namespace or self._credential_id
        if scope is None:
            raise RuntimeError(
                "RedisLimiter has no scope: pass namespace= or let PatchworksClient bind it"
            )
        return f"patchworks:{{{scope}}}:"

    # -- LimiterBackend -----------------------------------------------------------------

    def client_limiter(self, rate: RateLimit) -> Limiter:
        """Make the client-wide limiter for ``rate``, shared through Redis.

        Args:
            rate: the client's ``rate_limit``.

        Returns:
            A limiter on the key ``patchworks:{ID}:client``.
        """
        return self._limiter("client", rate)

    def instance_limiter(self, connector: str, rate: RateLimit) -> Limiter:
        """Make the limiter of one instance, shared through Redis.

        Args:
            connector: the instance id, as a string.
            rate: the instance's limit.

        Returns:
            A limiter on the key ``patchworks:{ID}:instance:CONNECTOR``.
        """
        return self._limiter(f"instance:{connector}", rate)

    def _limiter(self, name: str, rate: RateLimit) -> SharedLimiter:
        return SharedLimiter(
            self._connection, self._pause, lambda: self.key_prefix + name, rate, self.safety_margin
        )

    def attach(self, gate: PauseTarget) -> None:
        """Remember the client's pause gate: a pause learnt from Redis closes it too.

        Args:
            gate: the client's pause gate.
        """
        self._pause.gate = gate

    def pause(self, seconds: float) -> None:
        """Pause every worker for ``seconds`` (this one's gate is closed by the client).

        Args:
            seconds: how long; nothing happens unless it is positive.

        Raises:
            RuntimeError: neither ``namespace`` nor :meth:`bind` has scoped the keys.
        """
        if seconds <= 0:
            return
        key = self.key_prefix + "pause"
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._publish_pause(key, loop.time() + seconds))
        self._tasks.add(task)
        task.add_done_callback(self._published)

    def _published(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # Not an outage (that is retried or given up quietly): Redis refused the script.
            logger.warning(
                "could not share a pause through Redis (%s: %s)", type(error).__name__, error
            )

    async def aclose(self) -> None:
        """Stop publishing pauses and close the connections this limiter opened."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._connection.aclose()

    async def _publish_pause(self, key: str, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        waits = outage_waits()
        # Retried until it is stored or over: a pause that outlived the outage still
        # holds every worker for what is left of it.
        while (left := deadline - loop.time()) > 0:
            try:
                await self._connection.run_once("pause", [key], [round(left * US), SLACK_MS])
            except Unavailable:
                if self._connection.on_unavailable == "local":
                    return
                await asyncio.sleep(next(waits))
                continue
            return

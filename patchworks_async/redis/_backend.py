"""``RedisLimiter``: the backend that ``PatchworksClient(limiter=...)`` takes.

It owns the connection (made lazily, inside the running loop), runs the scripts,
handles an outage as ``on_unavailable`` says, and spreads pauses.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any, Final, Literal

import backoff
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._backend import LimiterBackend, PauseTarget
from .._limits import SAFETY_MARGIN, Limiter
from ..models import RateLimit
from ._scripts import PRELUDE, SCRIPTS, SLACK_MS, US
from ._shared import SharedLimiter, Unavailable

logger = logging.getLogger("patchworks_async.redis")

OnUnavailable = Literal["wait", "local"]

_BACKOFF_FIRST: Final = 0.05  # "wait": first pause between tries while Redis is away
_BACKOFF_MAX: Final = 1.0
_PROBE_INTERVAL: Final = 1.0  # "local": how often Redis is tried again during an outage
_UNAVAILABLE: Final = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)


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
        if isinstance(redis, Redis):
            self._redis: Redis | None = redis
            self._factory: Callable[[], Redis] | None = None
        else:
            self._redis = None
            self._factory = redis
        self._scripts: dict[str, AsyncScript] = {}
        self._gate: PauseTarget | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._down = False
        self._outages = 0
        self._local_until = 0.0

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
        """A limiter on the Redis at ``url`` (``redis://``, ``rediss://`` or ``unix://``).

        ``redis_options`` go to ``redis.asyncio.Redis.from_url``. The defaults differ
        from redis-py's so that an outage is noticed in about a second: socket and
        connect timeouts of 2 s and one immediate reconnection attempt (redis-py
        would retry ten times with backoff before the limiter heard of it).
        """
        options: dict[str, Any] = {
            "socket_timeout": 2.0,
            "socket_connect_timeout": 2.0,
            "retry": Retry(NoBackoff(), 1),
            **redis_options,
        }
        return cls(
            lambda: Redis.from_url(url, **options),
            namespace=namespace,
            on_unavailable=on_unavailable,
            safety_margin=safety_margin,
        )

    def bind(self, credential_fingerprint: str) -> None:
        """Scope the keys to one credential (``PatchworksClient`` calls this).

        The value is hashed again (SHA-256, first 16 hex digits), so no key holds it
        even if a caller passes the credential itself. Ignored when ``namespace``
        was given.

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
        """The client-wide limiter for ``rate``, shared through Redis."""
        return SharedLimiter(self, "client", rate)

    def instance_limiter(self, connector: str, rate: RateLimit) -> Limiter:
        """The limiter of one instance, shared through Redis."""
        return SharedLimiter(self, f"instance:{connector}", rate)

    def attach(self, gate: PauseTarget) -> None:
        """Remember the client's pause gate: a pause learnt from Redis closes it too."""
        self._gate = gate

    def pause(self, seconds: float) -> None:
        """Pause every worker for ``seconds`` (this one's gate is closed by the client).

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
        self._scripts.clear()
        if self._factory is None:
            return  # the caller's client: the caller closes it
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()

    # -- talking to Redis ---------------------------------------------------------------

    async def _run(self, script: str, keys: list[str], args: list[int]) -> Any:
        """Run one of the scripts; while Redis is away, wait for it or raise ``Unavailable``."""
        waits = backoff.expo(base=2, factor=_BACKOFF_FIRST, max_value=_BACKOFF_MAX)
        next(waits)  # python-backoff's generators yield 0 first, for priming
        while True:
            try:
                return await self._run_once(script, keys, args)
            except Unavailable:
                if self.on_unavailable == "local":
                    raise
            await asyncio.sleep(backoff.full_jitter(next(waits)))

    async def _run_once(self, script: str, keys: list[str], args: list[int]) -> Any:
        loop = asyncio.get_running_loop()
        if self._down and self.on_unavailable == "local" and loop.time() < self._local_until:
            raise Unavailable
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
                assert self._factory is not None  # one of the two is always set
                self._redis = self._factory()
            script = self._scripts[name] = self._redis.register_script(PRELUDE + SCRIPTS[name])
        return script

    def _went_down(self, error: BaseException) -> None:
        if self._down:
            return
        self._down = True
        self._outages += 1
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

    async def _hold(self, seconds: float) -> None:
        """Sit out a pause learnt from Redis, with the client's gate closed meanwhile."""
        if self._gate is not None:
            self._gate.pause(seconds)
        await asyncio.sleep(seconds)

    async def _pause_left(self) -> float:
        """Seconds left of the shared pause (0 when none, or when Redis is away in "local")."""
        try:
            left = await self._run("pause_left", [self.key_prefix + "pause"], [])
        except Unavailable:
            return 0.0
        return int(left) / US

    async def _publish_pause(self, key: str, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        waits = backoff.expo(base=2, factor=_BACKOFF_FIRST, max_value=_BACKOFF_MAX)
        next(waits)
        # Retried until it is stored or over: a pause that outlived the outage still
        # holds every worker for what is left of it.
        while (left := deadline - loop.time()) > 0:
            try:
                await self._run_once("pause", [key], [round(left * US), SLACK_MS])
            except Unavailable:
                if self.on_unavailable == "local":
                    return
                await asyncio.sleep(backoff.full_jitter(next(waits)))
                continue
            return

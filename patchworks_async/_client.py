"""``PatchworksClient``: the public object; wires the configuration, the pipeline and ``oauth``."""

from __future__ import annotations

import asyncio
import ssl
from types import TracebackType
from typing import Final, Self

from . import _constants, _sansio
from ._adaptive import AdaptiveQuota
from ._backend import LimiterBackend
from ._config import ClientConfig
from ._errors import EventLoopError
from ._events import EventHook
from ._oauth import OAuth
from ._otel import make_telemetry
from ._pipeline import Pipeline
from ._ratelimit import RateLimitState
from ._retry import RetryPolicy
from ._transport import ClientSession, Timeout
from .models import Login, RateLimit

_DEFAULT_RATE_LIMIT: Final = RateLimit("minute", _constants.DEFAULT_QUOTA_PER_MINUTE)
_DEFAULT_RETRY: Final = RetryPolicy()


class PatchworksClient:
    """An asyncio client for the Patchworks Core API over one pooled aiohttp session.

    Use it as ``async with PatchworksClient(...) as client:`` or close it with
    ``await client.aclose()``.

    Args:
        api_key: an API key, sent raw as ``Authorization: <key>``.
        token: a bearer token, sent as ``Authorization: Bearer <token>``.
        login: username and password to log in with; the token is renewed as needed.
            Pass exactly one of the three; with none, ``PATCHWORKS_API_KEY`` is used.
        base_url: the API's origin; else ``PATCHWORKS_BASE_URL``, else
            ``https://core.wearepatchworks.com``.
        session: an ``aiohttp.ClientSession`` to use as it is; the client never closes it.
        timeout: seconds for one attempt, or a :class:`Timeout` (``total``, ``connect``).
        max_connections: the pool's size; requests in flight never exceed it.
        rate_limit: the client-wide limit on every call (default: the Core API's
            240 a minute); ``None`` turns it off.
        retry: the :class:`RetryPolicy`; ``RetryPolicy.disabled()`` turns retries off.
        max_instance_limiters: idle per-instance limiters kept (least recently used dropped).
        on_event: called with an :class:`Event` at each stage of each attempt.
        allow_insecure_http: allow an ``http://`` base URL to a host that is not loopback.
        max_response_bytes: larger response bodies are refused, not read.
        ssl_context: a custom ``ssl.SSLContext`` (certificates are verified by default).
        limiter: a shared limiter backend (``patchworks_async.redis.RedisLimiter``)
            used instead of the in-process limiters.
        adaptive_quota: follow the server's ``X-RateLimit-Limit`` and
            ``X-RateLimit-Remaining`` instead of only counting this client's calls
            (``rate_limit`` is then the first guess and gives the window's length);
            an :class:`AdaptiveQuota` sets a ``ceiling``. On by default; off
            without ``rate_limit`` (README "Adaptive quota").
        unreachable_after: after this many calls in a row got no HTTP answer at all
            (connection refused, timeouts), the host is deemed down: for the next
            10 s calls raise :class:`HostUnreachableError` at once instead of each
            retrying for up to a minute. ``None`` turns it off. Default 8.
        opentelemetry: emit OpenTelemetry traces and metrics through the global
            tracer and meter providers (needs the ``otel`` extra).
        tracer_provider: an OpenTelemetry ``TracerProvider`` to use instead of the
            global one (passing one switches OpenTelemetry on).
        meter_provider: an OpenTelemetry ``MeterProvider`` to use instead of the
            global one (passing one switches OpenTelemetry on).

    Raises:
        InvalidRequestError: bad configuration, naming the argument.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        token: str | None = None,
        login: Login | None = None,
        base_url: str | None = None,
        session: ClientSession | None = None,
        timeout: float | Timeout = Timeout(),  # noqa: B008  # Timeout is frozen, so sharing it is safe
        max_connections: int = _constants.DEFAULT_MAX_CONNECTIONS,
        rate_limit: RateLimit | None = _DEFAULT_RATE_LIMIT,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        max_instance_limiters: int = _constants.DEFAULT_MAX_INSTANCE_LIMITERS,
        on_event: EventHook | None = None,
        allow_insecure_http: bool = False,
        max_response_bytes: int = _constants.DEFAULT_MAX_RESPONSE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        limiter: LimiterBackend | None = None,
        adaptive_quota: bool | AdaptiveQuota = True,
        unreachable_after: int | None = _constants.DEFAULT_UNREACHABLE_AFTER,
        opentelemetry: bool = False,
        tracer_provider: object | None = None,
        meter_provider: object | None = None,
    ) -> None:
        # Over 40 lines only by its signature (the public constructor's): the body wires.
        self._config = ClientConfig.check(
            api_key=api_key,
            token=token,
            login=login,
            base_url=base_url,
            session=session,
            timeout=timeout,
            max_connections=max_connections,
            rate_limit=rate_limit,
            retry=retry,
            max_instance_limiters=max_instance_limiters,
            on_event=on_event,
            allow_insecure_http=allow_insecure_http,
            max_response_bytes=max_response_bytes,
            ssl_context=ssl_context,
            limiter=limiter,
            adaptive_quota=adaptive_quota,
            unreachable_after=unreachable_after,
            opentelemetry=opentelemetry,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
        self._pipeline = Pipeline(self._config)
        self.oauth = OAuth(self._pipeline)
        # -- OpenTelemetry hook (_otel.py): None unless asked for, so the off path pays nothing.
        telemetry = make_telemetry(self._pipeline, self._config.telemetry)
        if telemetry is not None:
            self._pipeline.observe_with(telemetry)

    # -- configuration (read from the frozen ClientConfig) -----------------------------------

    @property
    def base_url(self) -> str:
        """The API's origin, without a trailing slash."""
        return self._config.base_url

    @property
    def timeout(self) -> Timeout:
        """The timeouts of one attempt."""
        return self._config.timeout

    @property
    def max_connections(self) -> int:
        """The connection pool's size."""
        return self._config.max_connections

    @property
    def rate_limit(self) -> RateLimit | None:
        """The client-wide limit, or ``None``."""
        return self._config.rate_limit

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy."""
        return self._config.retry

    @property
    def unreachable_after(self) -> int | None:
        """Calls in a row without an answer after which the host is deemed down."""
        return self._config.unreachable_after

    @property
    def adaptive_quota(self) -> AdaptiveQuota | None:
        """The adaptive quota's settings, or ``None`` when it is off."""
        return self._config.adaptive_quota

    @property
    def on_event(self) -> EventHook | None:
        """The hook called with each :class:`Event` (may be set at any time)."""
        return self._pipeline.on_event

    @on_event.setter
    def on_event(self, hook: EventHook | None) -> None:
        self._pipeline.on_event = hook

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's own session (a session passed in stays open). Idempotent.

        The ``limiter`` backend, if one was passed, is closed too (its ``aclose``).

        Raises:
            EventLoopError: the client was used in another event loop and is not closed:
                its connections belong to that loop, so close it there (nothing is closed).
        """
        pipeline = self._pipeline
        rates = pipeline.rates
        loop = rates.loop
        if not rates.closed and loop is not None and asyncio.get_running_loop() is not loop:
            raise EventLoopError(
                "this PatchworksClient was used in another event loop: close it in the loop "
                "that used it (one client serves one loop), e.g. with 'async with' inside "
                "the same asyncio.run()"
            )
        rates.closed = True
        await pipeline.transport.aclose()
        if pipeline.backend is not None:
            await pipeline.backend.aclose()

    def __repr__(self) -> str:
        return (
            f"<PatchworksClient base_url={self.base_url!r} auth={self._config.auth.kind} "
            f"rate_limit={self.rate_limit!r}>"
        )

    # -- state ---------------------------------------------------------------------------------

    @property
    def rate_limit_state(self) -> RateLimitState | None:
        """The latest rate-limit figures the server sent, or ``None`` before any.

        With ``adaptive_quota``, ``.quota`` holds what the client learnt from them.
        """
        return self._pipeline.rates.current_rate_limit_state()

    @property
    def connections_opened(self) -> int:
        """TCP connections the client's own pool has opened so far."""
        return self._pipeline.transport.connections_opened

    def set_instance_rate_limit(self, connector: str | int, rate_limit: RateLimit | None) -> None:
        """Pace calls on one instance at ``rate_limit``; ``None`` stops pacing it.

        Args:
            connector: the instance id (``1`` and ``"1"`` are the same instance).
            rate_limit: the instance's limit, or ``None`` to stop pacing it.

        Raises:
            InvalidRequestError: a bad connector or a value that is not a RateLimit.
        """
        self._pipeline.rates.set_instance_rate_limit(connector, rate_limit)

    def instance_rate_limit(self, connector: str | int) -> RateLimit | None:
        """The limit the client paces an instance at, or ``None`` when it does not pace it.

        Args:
            connector: the instance id (``1`` and ``"1"`` are the same instance).

        Returns:
            The instance's :class:`RateLimit`, or ``None`` when it is not paced.

        Raises:
            InvalidRequestError: a bad connector.
        """
        return self._pipeline.rates.instance_rate_limit(_sansio.connector_key(connector))

"""``PatchworksClient``: configuration, the call pipeline (limits, auth, retries), OAuth calls."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
import attrs
import backoff

from . import _constants, _sansio
from ._adaptive import AdaptiveQuota, QuotaTracker, check_adaptive_quota
from ._backend import CallTracker, LimiterBackend
from ._breaker import UnreachableHost
from ._config import (
    bind_limiter,
    check_max_connections,
    check_max_instance_limiters,
    check_rate_limit,
    check_timeout,
    check_unreachable_after,
    check_url,
    pick_auth,
)
from ._errors import (
    AuthenticationError,
    EventLoopError,
    HostUnreachableError,
    PatchworksError,
    RateLimitError,
    TransportError,
)
from ._events import Event, EventHook, EventKind, log_event, logger
from ._limits import AdaptiveLimiter, InstanceRegistry, Limiter, Limits, StrictLimiter
from ._oauth import OAuth
from ._otel import make_telemetry
from ._ratelimit import RateLimitState, parse_rate_limit_headers, parse_retry_after, read_quota
from ._retry import RetryPolicy, decide
from ._sansio import Request
from ._transport import RawResponse, Timeout, Transport, check_session
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
        session: aiohttp.ClientSession | None = None,
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
        self._auth = pick_auth(api_key, token, login)
        if login is not None:
            check_url("login.url", login.url, allow_insecure_http=allow_insecure_http)
        resolved = (
            base_url or os.environ.get(_constants.ENV_BASE_URL) or _constants.DEFAULT_BASE_URL
        )
        self.base_url = check_url(
            "base_url", resolved, allow_insecure_http=allow_insecure_http
        ).rstrip("/")
        # Checked in this order: with several bad arguments, the first one here is named.
        self.timeout = check_timeout(timeout)
        self.max_connections = check_max_connections(max_connections)
        self.rate_limit = check_rate_limit(rate_limit)
        borrowed = check_session(session)
        self._max_instance_limiters = check_max_instance_limiters(max_instance_limiters)
        self.retry = retry if retry is not None else RetryPolicy.disabled()
        self.on_event = on_event
        self.unreachable_after = check_unreachable_after(unreachable_after)
        self._unreachable = (
            UnreachableHost(self.unreachable_after, _constants.UNREACHABLE_COOLDOWN)
            if self.unreachable_after is not None
            else None
        )
        self._failed_calls = 0
        self._backend = bind_limiter(limiter, api_key, token, login, self._auth)
        self.adaptive_quota = check_adaptive_quota(adaptive_quota)
        # Pure, so made now; the limiter that follows it is made inside the loop.
        self._quota = (
            QuotaTracker(
                self.rate_limit, self.adaptive_quota.ceiling, max_pause=self.retry.max_retry_after
            )
            if self.adaptive_quota is not None and self.rate_limit is not None
            else None
        )
        self._transport = Transport(
            base_url=self.base_url,
            session=borrowed,
            max_connections=self.max_connections,
            timeout=self.timeout,
            max_response_bytes=max_response_bytes,
            ssl_context=ssl_context,
        )
        # Built lazily inside the running loop (aiolimiter and asyncio objects belong to one).
        self._limits: Limits | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one loop the limits serve
        self._pending_rates: dict[str, RateLimit | None] = {}
        self._rate_limit_state: RateLimitState | None = None
        # Adaptive mode: the headers of the latest response the tracker used, and when
        # it was read; parsed into ``rate_limit_state`` only when someone asks.
        self._latest_headers: tuple[Mapping[str, str], float] | None = None
        self._closed = False
        # An API key or a caller's token never changes: kept after its first use, so
        # a call awaits nothing for it. A login's token is asked for on every attempt.
        self._static_auth: str | None = None
        # The request headers with Authorization, built once per credential value.
        self._headers: tuple[str, Mapping[str, str], Mapping[str, str]] | None = None
        self.oauth = OAuth(self)
        # -- OpenTelemetry hook (_otel.py): None unless asked for, so the off path pays nothing.
        self._telemetry = make_telemetry(
            self,
            enabled=opentelemetry,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
        if self._telemetry is not None:
            # Every call then goes through its call span; without it, no check is made at all.
            self._call = self._telemetry.wrap_call(self._call)  # type: ignore[method-assign]

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
        loop = self._loop
        if not self._closed and loop is not None and asyncio.get_running_loop() is not loop:
            raise EventLoopError(
                "this PatchworksClient was used in another event loop: close it in the loop "
                "that used it (one client serves one loop), e.g. with 'async with' inside "
                "the same asyncio.run()"
            )
        self._closed = True
        await self._transport.aclose()
        if self._backend is not None:
            await self._backend.aclose()

    def __repr__(self) -> str:
        return (
            f"<PatchworksClient base_url={self.base_url!r} auth={self._auth.kind} "
            f"rate_limit={self.rate_limit!r}>"
        )

    # -- state ---------------------------------------------------------------------------------

    @property
    def rate_limit_state(self) -> RateLimitState | None:
        """The latest rate-limit figures the server sent, or ``None`` before any.

        With ``adaptive_quota``, ``.quota`` holds what the client learnt from them.
        """
        latest, self._latest_headers = self._latest_headers, None
        if latest is not None:
            headers, seen = latest
            self._rate_limit_state = parse_rate_limit_headers(headers, now=seen)
        state = self._rate_limit_state
        if state is None or self._quota is None or self._limits is None:
            return state
        # The tracker's clock is the loop's (its time() answers outside it too).
        now = self._loop.time() if self._loop is not None else self._quota.last_seen
        return attrs.evolve(state, quota=self._quota.figures(now))

    @property
    def connections_opened(self) -> int:
        """TCP connections the client's own pool has opened so far."""
        return self._transport.connections_opened

    def set_instance_rate_limit(self, connector: str | int, rate_limit: RateLimit | None) -> None:
        """Pace calls on one instance at ``rate_limit``; ``None`` stops pacing it.

        Args:
            connector: the instance id (``1`` and ``"1"`` are the same instance).
            rate_limit: the instance's limit, or ``None`` to stop pacing it.

        Raises:
            InvalidRequestError: a bad connector or a value that is not a RateLimit.
        """
        limits = self._limits
        if (
            limits is not None
            and type(connector) is str
            and type(rate_limit) is RateLimit
            and limits.instances.refresh(connector, rate_limit)
        ):
            # A known instance keeping its limit (every reauthorise with rate fields
            # says it again): the id was checked when it was learnt, nothing changes.
            return
        key = _sansio.connector_key(connector)
        rate_limit = check_rate_limit(rate_limit)
        if self._limits is None:
            self._pending_rates[key] = rate_limit
            return
        self._set_rate(self._limits, key, rate_limit)

    def instance_rate_limit(self, connector: str | int) -> RateLimit | None:
        """The limit the client paces an instance at, or ``None`` when it does not pace it.

        Args:
            connector: the instance id (``1`` and ``"1"`` are the same instance).

        Returns:
            The instance's :class:`RateLimit`, or ``None`` when it is not paced.

        Raises:
            InvalidRequestError: a bad connector.
        """
        key = _sansio.connector_key(connector)
        if self._limits is None:
            return self._pending_rates.get(key)
        return self._limits.instances.rate_for(key)

    def _set_rate(self, limits: Limits, key: str, rate: RateLimit | None) -> None:
        shared = (
            self._backend.instance_limiter(key, rate)
            if self._backend is not None and rate is not None
            else None
        )
        limits.instances.set(key, rate, shared)

    def _limits_in(self, loop: asyncio.AbstractEventLoop) -> Limits:
        """The limits, built in ``loop`` at the first call; any other loop is refused.

        Raises:
            EventLoopError: the client already serves another event loop.
        """
        if self._loop is not None and loop is not self._loop:
            raise EventLoopError(
                "this PatchworksClient already serves another event loop (one client serves "
                "one loop: its limiters and connection pool belong to it); create the client "
                "inside the loop that uses it, e.g. one per asyncio.run()"
            )
        limits = self._ensure_limits()
        self._loop = loop
        return limits

    def _ensure_limits(self) -> Limits:
        limits = self._limits
        if limits is not None:
            return limits
        if self._closed:
            raise RuntimeError("the client is closed")
        client_limiter: Limiter | None = None
        if self.rate_limit is not None:
            client_limiter = (
                self._backend.client_limiter(self.rate_limit)
                if self._backend is not None
                else StrictLimiter(self.rate_limit)
            )
            if self._quota is not None:
                # Shared or not, the configured limiter paces until the server has spoken.
                client_limiter = AdaptiveLimiter(self._quota, client_limiter)
        limits = Limits(
            client_limiter=client_limiter,
            instances=InstanceRegistry(self._max_instance_limiters),
            max_in_flight=self._transport.pool_limit,
        )
        if self._backend is not None:
            self._backend.attach(limits.gate)
        self._limits = limits
        for key, rate in self._pending_rates.items():
            self._set_rate(limits, key, rate)
        self._pending_rates.clear()
        return limits

    # -- the pipeline --------------------------------------------------------------------------

    def _emit(self, **fields: Any) -> None:
        hook = self.on_event
        telemetry = self._telemetry
        debug = logger.isEnabledFor(logging.DEBUG)
        if hook is None and telemetry is None and not debug:
            return
        event = Event(**fields)
        if debug:
            log_event(event)
        if telemetry is not None:  # OpenTelemetry hook: attempt spans follow the events
            telemetry.on_event(event)
        if hook is not None:
            hook(event)

    async def _call(
        self,
        request: Request,
        extra: asyncio.Semaphore | None = None,
        tracker: CallTracker | None = None,
    ) -> dict[str, Any]:
        """Send ``request`` under the limits, with retries; return the JSON object.

        ``extra`` is a further concurrency bound taken only while sending (a bulk
        job's); ``tracker`` learns how many attempts were made.
        """
        loop = asyncio.get_running_loop()
        limits = self._limits
        if limits is None or loop is not self._loop:  # one identity check per call
            limits = self._limits_in(loop)
        started = loop.time()
        policy = self.retry
        # Made at the first failure: most calls never need one.
        waits: Iterator[float] | None = None
        attempt = 0
        refreshed = False
        observe = self._hooked()
        unreachable = self._unreachable
        call_id = 0  # given at the call's first transport failure
        while True:
            if unreachable is not None and unreachable.is_open(loop.time()):
                raise self._fail_fast(request, tracker)
            attempt += 1
            if tracker is not None:
                tracker.attempts = attempt
            # The credential is had before the request takes its turn in the limiters:
            # a login's wait must not bunch granted requests together (they would all
            # leave when the token arrives), nor let one slip past a pause. A failed
            # login raises here, as it is: it is not a 401 of this call.
            auth = self._static_auth or await self._credential()
            try:
                return await self._attempt(limits, request, attempt, observe, extra, auth, tracker)
            except AuthenticationError:
                # One fresh login and one more try (the token may have expired early).
                stopped = tracker is not None and tracker.stopped
                if refreshed or not self._auth.refreshable or stopped:
                    self._gave_up(request, attempt, "authentication failed", observe)
                    raise
                refreshed = True
                continue
            except PatchworksError as error:
                if unreachable is not None and isinstance(error, TransportError):
                    if not call_id:
                        self._failed_calls += 1
                        call_id = self._failed_calls
                    if unreachable.failed(call_id, loop.time()):
                        self._gave_up(request, attempt, "host unreachable", observe, error)
                        raise self._fail_fast(request, tracker) from error
                if tracker is not None and tracker.stopped:
                    self._gave_up(request, attempt, "the bulk job stopped", observe, error)
                    raise
                if waits is None:
                    waits = backoff.expo(
                        base=2, factor=policy.backoff_base, max_value=policy.backoff_max
                    )
                    next(waits)  # python-backoff's generators yield 0 first, for priming
                decision = decide(
                    policy,
                    error=error,
                    safety=request.safety,
                    attempt=attempt,
                    elapsed=loop.time() - started,
                    backoff_delay=backoff.full_jitter(next(waits)),
                )
                if not decision.retry or decision.delay is None:
                    self._gave_up(request, attempt, decision.reason, observe, error)
                    raise
                if observe:
                    self._emit(
                        kind=EventKind.RETRY,
                        operation=request.operation,
                        attempt=attempt,
                        connector=request.connector,
                        delay=decision.delay,
                        error=type(error).__name__,
                        reason=decision.reason,
                    )
                await asyncio.sleep(decision.delay)

    def _fail_fast(self, request: Request, tracker: CallTracker | None) -> HostUnreachableError:
        """The error of a call made while the host is deemed unreachable."""
        return HostUnreachableError(
            f"{request.method} {self.base_url}: the host is deemed unreachable "
            f"({self.unreachable_after} calls in a row got no answer); calls fail at once "
            f"for {_constants.UNREACHABLE_COOLDOWN:g}s (unreachable_after)",
            method=request.method,
            url=self.base_url + request.path,
            sent=tracker is not None and tracker.sends > 0,
        )

    async def _credential(self) -> str:
        auth = await self._auth.header(self._transport)
        if not self._auth.refreshable:
            self._static_auth = auth
        return auth

    def _headers_for(self, auth: str, base: Mapping[str, str]) -> Mapping[str, str]:
        """``base`` with ``Authorization: auth``: the same mapping for the same two.

        Requests share one ``base`` mapping, so the merged headers are built once per
        credential (and the transport converts them for aiohttp once too).
        """
        cached = self._headers
        if cached is not None and cached[0] == auth and cached[1] is base:
            return cached[2]
        headers = {**base, "Authorization": auth}
        self._headers = (auth, base, headers)
        return headers

    def _hooked(self) -> bool:
        return (
            self.on_event is not None
            or self._telemetry is not None
            or logger.isEnabledFor(logging.DEBUG)
        )

    def _gave_up(
        self,
        request: Request,
        attempt: int,
        reason: str,
        observe: bool,
        error: BaseException | None = None,
    ) -> None:
        if observe:
            self._emit(
                kind=EventKind.GAVE_UP,
                operation=request.operation,
                attempt=attempt,
                connector=request.connector,
                error=type(error).__name__ if error is not None else None,
                reason=reason,
            )

    async def _attempt(
        self,
        limits: Limits,
        request: Request,
        attempt: int,
        observe: bool,
        extra: asyncio.Semaphore | None,
        auth: str,
        tracker: CallTracker | None = None,
    ) -> dict[str, Any]:
        if not observe and not limits.paced(request.connector) and limits.try_now(extra):
            # The short path, most calls' in a throughput run: nothing paces this call,
            # an in-flight slot is free and nobody listens for events, so there is no
            # Slot, no clock read and no event to build.
            if tracker is not None:
                tracker.sends += 1
                tracker.sending = True
            try:
                raw = await self._transport.send(
                    request.method,
                    self.base_url + request.path,
                    self._headers_for(auth, request.headers),
                    request.body,
                )
            finally:
                limits.release_now()
                if tracker is not None:
                    tracker.sending = False
            return self._judge(limits, request, raw, auth)
        if observe:
            self._emit(
                kind=EventKind.QUEUED,
                operation=request.operation,
                attempt=attempt,
                connector=request.connector,
            )
        url = self.base_url + request.path
        if limits.gate.remaining() > self.retry.max_retry_after:
            raise self._paused_too_long(limits, request, url)
        slot = limits.slot(request.connector, extra, timed=observe)
        async with slot as waited:
            headers = self._headers_for(auth, request.headers)
            if observe:
                if self._telemetry is not None:  # OpenTelemetry hook: waits, traceparent
                    # Its own copy: the propagator writes traceparent into it, and the
                    # merged headers are shared by every call with this credential.
                    headers = dict(headers)
                    self._telemetry.sent(slot, headers)
                self._emit(
                    kind=EventKind.WAITED,
                    operation=request.operation,
                    attempt=attempt,
                    connector=request.connector,
                    waited_ms=waited * 1000,
                )
                self._emit(
                    kind=EventKind.SENT,
                    operation=request.operation,
                    attempt=attempt,
                    connector=request.connector,
                )
            if tracker is not None:
                tracker.sends += 1
                tracker.sending = True
            try:
                raw = await self._transport.send(request.method, url, headers, request.body)
            except PatchworksError as error:
                if observe:
                    self._emit(
                        kind=EventKind.RESPONSE,
                        operation=request.operation,
                        attempt=attempt,
                        connector=request.connector,
                        error=type(error).__name__,
                    )
                raise
            finally:
                if tracker is not None:
                    tracker.sending = False
        if observe:
            self._emit(
                kind=EventKind.RESPONSE,
                operation=request.operation,
                attempt=attempt,
                connector=request.connector,
                status=raw.status,
            )
            if self._telemetry is not None:  # OpenTelemetry hook: status, request id
                self._telemetry.received(raw)
        return self._judge(limits, request, raw, auth)

    def _paused_too_long(self, limits: Limits, request: Request, url: str) -> RateLimitError:
        """The error for a call that would wait out a pause longer than ``max_retry_after``.

        An earlier 429 asked every call to wait; waiting that long in silence would
        freeze the caller (a day's Retry-After would stall a bulk job for a day).
        """
        remaining = limits.gate.remaining()
        return RateLimitError(
            status=429,
            method=request.method,
            url=url,
            headers={},
            body=None,
            message=(
                f"the client is paused for {remaining:.0f}s by an earlier 429, "
                f"over max_retry_after {self.retry.max_retry_after:g}s"
            ),
            retry_after=remaining,
        )

    def _judge(
        self, limits: Limits, request: Request, raw: RawResponse, auth: str
    ) -> dict[str, Any]:
        status = raw.status
        headers = raw.headers
        unreachable = self._unreachable
        if unreachable is not None:
            unreachable.answered()  # any HTTP answer: the host is up
        if "X-RateLimit-Remaining" in headers or status == 429 or "Retry-After" in headers:
            self._observe_limits(limits, raw)
        elif self._quota is not None:
            self._quota.answered_bare()  # counted, not parsed: this runs on every response
        if _sansio.is_success(status):
            return _sansio.decode_success(
                status=status, method=request.method, url=raw.url, body=raw.body
            )
        error = _sansio.api_error(
            status=status,
            method=request.method,
            url=raw.url,
            headers=headers,
            body=raw.body,
            now=time.time(),
        )
        if isinstance(error, AuthenticationError):
            self._auth.invalidate(auth)
        if isinstance(error, RateLimitError):
            pause = (
                error.retry_after
                if error.retry_after is not None
                else self.retry.default_retry_after
            )
            self._pause(limits, pause)
        raise error

    def _observe_limits(self, limits: Limits, raw: RawResponse) -> None:
        now = time.time()
        if self._quota is not None and self._learn_quota(raw, now):
            # The adaptive limiter holds calls until the reset itself; the state is
            # parsed from these headers only if ``rate_limit_state`` is read.
            self._latest_headers = (raw.headers, now)
            return
        state = parse_rate_limit_headers(raw.headers, now=now)
        if state is None:
            return
        self._rate_limit_state = state
        self._latest_headers = None
        if state.remaining is not None and state.remaining <= 0 and raw.status != 429:
            # The quota is spent: hold every call until it resets (or a short default
            # when the server did not say when).
            pause = (
                state.pause_for(now=now)
                if state.reset_at is not None
                else (self.retry.default_retry_after)
            )
            self._pause(limits, pause)

    def _learn_quota(self, raw: RawResponse, now: float) -> bool:
        """Feed the adaptive tracker one response; True when its figures were used."""
        quota = self._quota
        if quota is None:  # only called in adaptive mode
            raise RuntimeError("_learn_quota called without adaptive_quota")
        headers = raw.headers
        monotonic = asyncio.get_running_loop().time()
        reading = read_quota(headers.get("X-RateLimit-Limit"), headers.get("X-RateLimit-Remaining"))
        used = quota.observe(reading, monotonic, counted=raw.status != 429)
        if used and raw.status == 429:
            # The quota's own 429 (it carries the quota's figures): Retry-After is the reset.
            wait = parse_retry_after(headers.get("Retry-After"), now=now)
            if wait is not None:
                quota.observe_reset(wait, monotonic)
        return used

    def _pause(self, limits: Limits, seconds: float) -> None:
        if seconds <= 0:
            return
        limits.gate.pause(seconds)
        if self._backend is not None:
            self._backend.pause(seconds)

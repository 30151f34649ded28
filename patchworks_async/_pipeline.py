"""The call pipeline: call -> attempt -> judge, with limits, auth, retries and events.

One call's path (README "Architecture"): :meth:`Pipeline.call` takes the
credential, runs :meth:`Pipeline.attempt` (the limiters' turn, the transport's
send) and :meth:`Pipeline.judge` (the limits learnt from the answer by
``_ratecontrol.RateControl``, the body decoded or the error mapped by
``_sansio``); a failure goes to
:meth:`Pipeline.retry_delay` (``_retry.decide``), which says how long to wait or
raises (a call's short way, unobserved and with nothing to wait for, is
:meth:`Pipeline.attempt_now`).
Every event goes through :meth:`Pipeline.emit`. ``_oauth`` and ``_bulk``
call this module (``call``; ``learn_rate`` after a success, the one rule by which a
call's rate fields pace its instance; ``refused`` for input refused before sending);
it knows nothing of the client that wires it, and the telemetry observes it (and its
``rates``) directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from . import _constants, _sansio
from ._backend import CallTracker
from ._backoff import expo_waits, full_jitter
from ._breaker import UnreachableHost
from ._config import ClientConfig
from ._errors import (
    AuthenticationError,
    HostUnreachableError,
    InvalidRequestError,
    PatchworksError,
    RateLimitError,
    TransportError,
)
from ._events import Event, EventHook, EventKind, log_event, logger
from ._limits import Limits, PacedInstance
from ._ratecontrol import RateControl
from ._retry import RetryPolicy, decide
from ._sansio import Request
from ._transport import RawResponse, Transport

if TYPE_CHECKING:
    from ._telemetry import Telemetry


def retry_waits(policy: RetryPolicy) -> Iterator[float]:
    """The exponential backoff delays of ``policy``, primed (the first one is the base).

    Args:
        policy: the retry policy (``backoff_base``, ``backoff_max``).

    Returns:
        An endless iterator of delays before jitter.
    """
    return expo_waits(policy.backoff_base, policy.backoff_max)


def _transport_of(config: ClientConfig) -> Transport:
    """The transport (the one owner of aiohttp) as the configuration says."""
    return Transport(
        base_url=config.base_url,
        session=config.session,
        max_connections=config.max_connections,
        timeout=config.timeout,
        max_response_bytes=config.max_response_bytes,
        ssl_context=config.ssl_context,
    )


class Pipeline:
    """Sends one client's calls: limits, auth, retries, events, telemetry hooks.

    Args:
        config: the client's checked configuration.
    """

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.base_url = config.base_url
        self.retry = config.retry
        self.auth = config.auth
        self.backend = config.backend
        self.on_event: EventHook | None = config.on_event
        self.unreachable = (
            UnreachableHost(config.unreachable_after, _constants.UNREACHABLE_COOLDOWN)
            if config.unreachable_after is not None
            else None
        )
        self.failed_calls = 0
        self.transport = _transport_of(config)
        # The rate-limit state per event loop (_ratecontrol) is the pipeline's one
        # companion. What the call path reads of it on every call is held here too, so
        # each stays one lookup: the tracker (made once), and the limits and their loop
        # (set once, by ``limits_in``, to the rate control's own).
        self.rates = rates = RateControl(config, self.transport)
        self.quota = rates.quota
        self.limits: Limits | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # Bound once, for the same reason: judge learns from every answer's headers, and
        # every successful authorise or reauthorise (bulk items too) learns its
        # instance's rate through ``learn_rate`` (``RateControl.learn_rate``).
        self.observe_limits = rates.observe_limits
        self.learn_rate = rates.learn_rate
        # An API key or a caller's token never changes: kept after its first use, so
        # a call awaits nothing for it. A login's token is asked for on every attempt.
        self.static_auth: str | None = None
        # The request headers with Authorization, built once per credential value.
        self.headers: tuple[str, Mapping[str, str], Mapping[str, str]] | None = None
        # OpenTelemetry hook (_otel.py): None unless asked for, so the off path pays nothing.
        self.telemetry: Telemetry | None = None

    def limits_in(self, loop: asyncio.AbstractEventLoop) -> Limits:
        """``RateControl.limits_in(loop)``, kept with its loop for the call path's one check.

        Raises:
            EventLoopError: the client already serves another event loop.
        """
        limits = self.limits = self.rates.limits_in(loop)
        self.loop = loop
        return limits

    def observe_with(self, telemetry: Telemetry) -> None:
        """Trace every call: ``call`` runs inside the telemetry's call span.

        Args:
            telemetry: the client's OpenTelemetry hooks.
        """
        self.telemetry = telemetry
        # Every call then goes through its call span; without it, no check is made at all.
        self.call = telemetry.wrap_call(self.call)  # type: ignore[method-assign]

    # -- events --------------------------------------------------------------------------------

    def hooked(self) -> bool:
        """Whether anyone listens for events (a hook, telemetry, the DEBUG log)."""
        return (
            self.on_event is not None
            or self.telemetry is not None
            or logger.isEnabledFor(logging.DEBUG)
        )

    def emit(
        self,
        kind: EventKind,
        request: Request,
        attempt: int,
        *,
        waited_ms: float | None = None,
        status: int | None = None,
        delay: float | None = None,
        error: BaseException | None = None,
        reason: str | None = None,
    ) -> None:
        """Tell the DEBUG log, the telemetry and the ``on_event`` hook about one stage.

        The one event path. The call path emits only when its ``observe`` flag
        (``hooked()``, read once per call) is set, so an unobserved call builds no
        event. The keywords are the stage's own figures (see :class:`Event`).
        """
        hook = self.on_event
        telemetry = self.telemetry
        debug = logger.isEnabledFor(logging.DEBUG)
        if hook is None and telemetry is None and not debug:
            return
        event = Event(
            kind=kind,
            operation=request.operation,
            attempt=attempt,
            connector=request.connector,
            waited_ms=waited_ms,
            status=status,
            delay=delay,
            error=type(error).__name__ if error is not None else None,
            reason=reason,
        )
        if debug:
            log_event(event)
        if telemetry is not None:  # OpenTelemetry hook: attempt spans follow the events
            telemetry.on_event(event)
        if hook is not None:
            hook(event)

    def refused(self, operation: str, error: InvalidRequestError) -> None:
        """Report a call refused before anything was sent (bad input) to the telemetry.

        ``OAuth``'s calls report their refused input here (a bulk job's items are
        reported under the job's span: ``_bulk``). No event is emitted: no attempt was made.

        Args:
            operation: the call's name (``"reauthorise"``).
            error: the error about to be raised; only its class name is recorded.
        """
        if self.telemetry is not None:  # OpenTelemetry hook: a span with no attempt
            self.telemetry.refused(operation, error)

    def gave_up(
        self,
        request: Request,
        attempt: int,
        reason: str,
        observe: bool,
        error: BaseException | None = None,
    ) -> None:
        """Emit ``GAVE_UP`` when observed."""
        if observe:
            self.emit(EventKind.GAVE_UP, request, attempt, error=error, reason=reason)

    # -- the call ------------------------------------------------------------------------------

    # Over 40 lines with its docstring: the loop stays whole, so every exit of a call
    # (success, fail fast, give up, retry) reads in one place.
    async def call(
        self,
        request: Request,
        extra: asyncio.Semaphore | None = None,
        tracker: CallTracker | None = None,
    ) -> dict[str, Any]:
        """Send ``request`` under the limits, with retries; return the JSON object.

        Args:
            request: the built request.
            extra: a further concurrency bound taken only while sending (a bulk job's).
            tracker: learns how many attempts were made, and stops retries.

        Returns:
            The response's JSON object.

        Raises:
            PatchworksError: the call failed for good.
        """
        loop = asyncio.get_running_loop()
        limits = self.limits
        if limits is None or loop is not self.loop:  # one identity check per call
            limits = self.limits_in(loop)
        started = loop.time()
        observe = self.hooked()
        unreachable = self.unreachable
        retry: _Retry | None = None  # made at the first failure: most calls never need one
        attempt = 0
        while True:
            if unreachable is not None and unreachable.is_open_now(loop.time):
                raise self.fail_fast(request, tracker)
            attempt += 1
            if tracker is not None:
                tracker.attempts = attempt
            # The credential is had before the request takes its turn in the limiters:
            # a login's wait must not bunch granted requests together (they would all
            # leave when the token arrives), nor let one slip past a pause. A failed
            # login raises here, as it is: it is not a 401 of this call.
            auth = self.static_auth or await self._credential()
            try:
                # Two ways, chosen here so that a call awaits one coroutine under this one.
                if not observe:
                    if not limits.paced(request.connector):
                        if limits.try_now(extra):
                            return await self.attempt_now(limits, request, auth, tracker)
                    elif (held := limits.try_paced_now(request.connector, extra)) is not None:
                        return await self.attempt_now(limits, request, auth, tracker, held)
                return await self.attempt(limits, request, attempt, observe, extra, auth, tracker)
            except PatchworksError as error:
                if retry is None:
                    retry = _Retry(loop, started)
                retry.attempt = attempt
                delay = self.retry_delay(retry, request, error, observe, tracker)
            if delay is not None:
                await asyncio.sleep(delay)

    # Over 40 lines with its docstring: the retry rule's steps, in the order they apply.
    def retry_delay(
        self,
        retry: _Retry,
        request: Request,
        error: PatchworksError,
        observe: bool,
        tracker: CallTracker | None,
    ) -> float | None:
        """Seconds to wait before the next attempt (``None``: at once); raises to give up.

        Must be called inside the ``except`` that caught ``error`` (a bare ``raise``
        re-raises it with its traceback).
        """
        if isinstance(error, AuthenticationError):
            self._retry_login(retry, request, error, observe, tracker)
            return None
        self._count_unreachable(retry, request, error, observe, tracker)
        if tracker is not None and tracker.stopped:
            self.gave_up(request, retry.attempt, "the bulk job stopped", observe, error)
            raise error
        if retry.waits is None:  # made at the first failure: most calls never need one
            retry.waits = retry_waits(self.retry)
        decision = decide(
            self.retry,
            error=error,
            safety=request.safety,
            attempt=retry.attempt,
            elapsed=retry.loop.time() - retry.started,
            backoff_delay=full_jitter(next(retry.waits)),
        )
        if not decision.retry or decision.delay is None:
            self.gave_up(request, retry.attempt, decision.reason, observe, error)
            raise error
        if observe:
            self.emit(
                EventKind.RETRY,
                request,
                retry.attempt,
                delay=decision.delay,
                error=error,
                reason=decision.reason,
            )
        return decision.delay

    def _retry_login(
        self,
        retry: _Retry,
        request: Request,
        error: AuthenticationError,
        observe: bool,
        tracker: CallTracker | None,
    ) -> None:
        """Allow one fresh login and one more try (the token may have expired early)."""
        stopped = tracker is not None and tracker.stopped
        if retry.refreshed or not self.auth.refreshable or stopped:
            self.gave_up(request, retry.attempt, "authentication failed", observe)
            raise error
        retry.refreshed = True

    def _count_unreachable(
        self,
        retry: _Retry,
        request: Request,
        error: PatchworksError,
        observe: bool,
        tracker: CallTracker | None,
    ) -> None:
        """Count a call that got no answer; raise when the host is deemed unreachable."""
        unreachable = self.unreachable
        if unreachable is None or not isinstance(error, TransportError):
            return
        if not retry.call_id:  # given at the call's first transport failure
            self.failed_calls += 1
            retry.call_id = self.failed_calls
        if unreachable.failed(retry.call_id, retry.loop.time()):
            self.gave_up(request, retry.attempt, "host unreachable", observe, error)
            raise self.fail_fast(request, tracker) from error

    def fail_fast(self, request: Request, tracker: CallTracker | None) -> HostUnreachableError:
        """The error of a call made while the host is deemed unreachable."""
        return HostUnreachableError(
            f"{request.method} {self.base_url}: the host is deemed unreachable "
            f"({self.config.unreachable_after} calls in a row got no answer); calls fail at once "
            f"for {_constants.UNREACHABLE_COOLDOWN:g}s (unreachable_after)",
            method=request.method,
            url=self.base_url + request.path,
            sent=tracker is not None and tracker.sends > 0,
        )

    async def _credential(self) -> str:
        auth = await self.auth.header(self.transport)
        if not self.auth.refreshable:
            self.static_auth = auth
        return auth

    def headers_for(self, auth: str, base: Mapping[str, str]) -> Mapping[str, str]:
        """``base`` with ``Authorization: auth``: the same mapping for the same two.

        Requests share one ``base`` mapping, so the merged headers are built once per
        credential (and the transport converts them for aiohttp once too).
        """
        cached = self.headers
        if cached is not None and cached[0] == auth and cached[1] is base:
            return cached[2]
        headers = {**base, "Authorization": auth}
        self.headers = (auth, base, headers)
        return headers

    # -- one attempt ---------------------------------------------------------------------------

    async def attempt_now(
        self,
        limits: Limits,
        request: Request,
        auth: str,
        tracker: CallTracker | None,
        held: PacedInstance | None = None,
    ) -> dict[str, Any]:
        """The short attempt: the in-flight slot is taken already (``limits.try_now``).

        Most calls' in a throughput run: nothing made this call wait (or its
        instance's limiter had room: ``held``, from ``limits.try_paced_now``), an
        in-flight slot was free and nobody listens for events, so there is no Slot,
        no clock read and no event to build.
        """
        if tracker is not None:
            tracker.sends += 1
            tracker.sending = True
        try:
            raw = await self.transport.send(
                request.method,
                self.base_url + request.path,
                self.headers_for(auth, request.headers),
                request.body,
            )
        finally:
            limits.release_now(held)
            if tracker is not None:
                tracker.sending = False
        return self.judge(limits, request, raw, auth)

    # Over 40 lines: each event sits between the slot's steps, in the order they happen.
    async def attempt(
        self,
        limits: Limits,
        request: Request,
        attempt: int,
        observe: bool,
        extra: asyncio.Semaphore | None,
        auth: str,
        tracker: CallTracker | None,
    ) -> dict[str, Any]:
        """An attempt through a Slot of the limiters, with its events; the JSON object."""
        if observe:
            self.emit(EventKind.QUEUED, request, attempt)
        url = self.base_url + request.path
        if limits.gate.remaining() > self.retry.max_retry_after:
            raise self.rates.paused_too_long(limits, request, url)
        slot = limits.slot(request.connector, extra, timed=observe)
        async with slot as waited:
            headers = self.headers_for(auth, request.headers)
            if observe:
                if self.telemetry is not None:  # OpenTelemetry hook: waits, traceparent
                    # Its own copy: the propagator writes traceparent into it, and the
                    # merged headers are shared by every call with this credential.
                    headers = dict(headers)
                    self.telemetry.sent(slot, headers)
                self.emit(EventKind.WAITED, request, attempt, waited_ms=waited * 1000)
                self.emit(EventKind.SENT, request, attempt)
            if tracker is not None:
                tracker.sends += 1
                tracker.sending = True
            try:
                raw = await self.transport.send(request.method, url, headers, request.body)
            except PatchworksError as error:
                if observe:
                    self.emit(EventKind.RESPONSE, request, attempt, error=error)
                raise
            finally:
                if tracker is not None:
                    tracker.sending = False
        if observe:
            self.emit(EventKind.RESPONSE, request, attempt, status=raw.status)
            if self.telemetry is not None:  # OpenTelemetry hook: status, request id
                self.telemetry.received(raw)
        return self.judge(limits, request, raw, auth)

    # -- judging the answer --------------------------------------------------------------------

    def judge(
        self, limits: Limits, request: Request, raw: RawResponse, auth: str
    ) -> dict[str, Any]:
        """Learn the limits from ``raw``; its JSON object, or raise its error.

        Raises:
            PatchworksError: the answer's error (``_sansio.api_error``).
        """
        status = raw.status
        headers = raw.headers
        unreachable = self.unreachable
        if unreachable is not None:
            unreachable.answered()  # any HTTP answer: the host is up
        if "X-RateLimit-Remaining" in headers or status == 429 or "Retry-After" in headers:
            self.observe_limits(limits, raw)
        elif self.quota is not None:
            self.quota.answered_bare()  # counted, not parsed: this runs on every response
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
            self.auth.invalidate(auth)
        if isinstance(error, RateLimitError):
            pause = (
                error.retry_after
                if error.retry_after is not None
                else self.retry.default_retry_after
            )
            self.rates.pause(limits, pause)
        raise error


class _Retry:
    """One failed call's retry state: attempts, backoff delays, the fresh login used."""

    __slots__ = ("attempt", "call_id", "loop", "refreshed", "started", "waits")

    def __init__(self, loop: asyncio.AbstractEventLoop, started: float) -> None:
        self.loop = loop
        self.started = started
        self.attempt = 0
        self.refreshed = False
        self.waits: Iterator[float] | None = None
        self.call_id = 0  # given at the call's first transport failure

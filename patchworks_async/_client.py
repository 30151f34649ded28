"""``PatchworksClient``: configuration, the call pipeline (limits, auth, retries), OAuth calls."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit

import aiohttp
import backoff

from . import _constants, _sansio
from ._auth import Auth, LoginAuth, StaticAuth
from ._bulk import (
    ItemSource,
    ProgressHook,
    ReauthoriseOutcome,
    check_bulk_arguments,
    reauthorise_many,
)
from ._errors import (
    AuthenticationError,
    InvalidRequestError,
    PatchworksError,
    RateLimitError,
)
from ._events import Event, EventHook, EventKind, log_event, logger
from ._limits import InstanceRegistry, Limiter, Limits, StrictLimiter
from ._ratelimit import RateLimitState, parse_rate_limit_headers
from ._retry import RetryPolicy, decide
from ._sansio import Request
from ._transport import RawResponse, Timeout, Transport
from .models import AuthoriseRequest, Login, RateLimit, ReauthoriseRequest

_DEFAULT_RATE_LIMIT: Final = RateLimit("minute", _constants.DEFAULT_QUOTA_PER_MINUTE)
_DEFAULT_RETRY: Final = RetryPolicy()
_LOOPBACK_NAMES: Final = frozenset({"localhost"})


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(field: str, url: object, *, allow_insecure_http: bool) -> str:
    """Check a base or login URL: http(s), a host, no credentials; http only to loopback.

    Raises:
        InvalidRequestError: naming ``field``.
    """
    if not isinstance(url, str) or not url:
        raise InvalidRequestError(f"{field} must be a non-empty string", field=field)
    if not url.isascii() or any(char <= " " or char == "\x7f" for char in url):
        # urlsplit quietly drops CR, LF and tab, and aiohttp sends the URL as given:
        # a space, control or non-ASCII character would garble the request line.
        raise InvalidRequestError(
            f"{field} must be printable ASCII without spaces (percent-encode the rest, "
            "punycode a host name)",
            field=field,
        )
    message = f"{field} must be an http(s) URL with a host"
    try:
        parts = urlsplit(url)
        port = parts.port  # a ValueError for a port that is no number from 0 to 65535
    except ValueError:  # that, or a broken IPv6 literal
        raise InvalidRequestError(message, field=field) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise InvalidRequestError(message, field=field)
    if parts.username or parts.password:
        raise InvalidRequestError(f"{field} must not carry credentials", field=field)
    if parts.query or parts.fragment:
        raise InvalidRequestError(f"{field} must not have a query or fragment", field=field)
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise InvalidRequestError(
            f"{field} uses plain http to a host that is not loopback: credentials would "
            "cross the network unencrypted (pass allow_insecure_http=True to insist)",
            field=field,
        )
    return url


def _pick_auth(api_key: str | None, token: str | None, login: Login | None) -> Auth:
    given = [
        name
        for name, value in (("api_key", api_key), ("token", token), ("login", login))
        if value is not None
    ]
    if len(given) > 1:
        raise InvalidRequestError(
            f"pass exactly one of api_key, token or login, not {' and '.join(given)}",
            field=given[1],
        )
    if login is not None:
        if not isinstance(login, Login):
            raise InvalidRequestError("login must be a Login", field="login")
        return LoginAuth(login)
    if token is not None:
        _check_secret("token", token)
        return StaticAuth(f"Bearer {token}", "token")
    if api_key is None:
        api_key = os.environ.get(_constants.ENV_API_KEY) or None
        if api_key is None:
            raise InvalidRequestError(
                f"no credentials: pass api_key, token or login, or set {_constants.ENV_API_KEY}",
                field="api_key",
            )
    _check_secret("api_key", api_key)
    return StaticAuth(api_key, "api_key")


def _check_secret(field: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(f"{field} must be a non-empty string", field=field)
    if any(char in value for char in "\r\n\0") or not value.isprintable():
        # A header value with CR/LF could smuggle another header in.
        raise InvalidRequestError(
            f"{field} holds a control character and cannot be sent in a header", field=field
        )


def _credential_fingerprint(
    api_key: str | None, token: str | None, login: Login | None, auth: Auth
) -> str:
    """A SHA-256 of the credential, stable for the client's life (a login's token changes)."""
    if login is not None:
        material = f"login:{login.url}|{login.username}"
    elif token is not None:
        material = f"token:{token}"
    else:
        material = f"{auth.kind}:{api_key or os.environ.get(_constants.ENV_API_KEY, '')}"
    return hashlib.sha256(material.encode()).hexdigest()


class OAuth:
    """The four calls of the spec's ``Oauth`` tag: ``client.oauth``."""

    def __init__(self, client: PatchworksClient) -> None:
        self._client = client

    async def authenticate(self) -> dict[str, Any]:
        """``POST /api/v1/oauth/authenticate``.

        Returns:
            The response's JSON object (its shape is not documented).

        Raises:
            PatchworksError: any error of the package (see the README's table).
        """
        return await self._client._call(_sansio.build_authenticate())

    async def authorise(self, request: AuthoriseRequest) -> dict[str, Any]:
        """``POST /api/v1/oauth/authorise``: create a new authenticated instance.

        The new instance's limiter is learnt from the request's rate fields and
        the response's ``id``. Retried only when the server certainly did not act
        (connection refused, connect timeout, 429, 503).

        Returns:
            The response's JSON object; Patchworks answers the instance with its ``id``.

        Raises:
            InvalidRequestError: ``request`` is not an AuthoriseRequest (nothing sent).
            PatchworksError: any other error of the package.
        """
        built = _sansio.build_authorise(request)
        result = await self._client._call(built)
        instance_id = result.get("id")
        if isinstance(instance_id, str | int) and not isinstance(instance_id, bool):
            self._client.set_instance_rate_limit(instance_id, request.rate_limit)
        return result

    async def woo_app_auth(self) -> dict[str, Any]:
        """``POST /api/v1/oauth/woo-app-auth``.

        Returns:
            The response's JSON object; ``{}`` for the documented empty body.
        """
        return await self._client._call(_sansio.build_woo_app_auth())

    async def reauthorise(
        self, connector: str | int, request: ReauthoriseRequest | None = None
    ) -> dict[str, Any]:
        """``PATCH /api/v1/oauth/{connector}/reauthorise``: reauthorise an existing instance.

        Waits on the instance's limiter when its limit is known. When ``request``
        carries both rate fields, the instance's limiter takes the new rate once
        the call succeeds.

        Args:
            connector: the instance id; always sent as exactly one path segment.
            request: the fields to change (all optional); ``None`` sends ``{}``.

        Returns:
            The response's JSON object.

        Raises:
            InvalidRequestError: a bad connector or request (nothing sent).
            PatchworksError: any other error of the package.
        """
        body = request if request is not None else ReauthoriseRequest()
        built = _sansio.build_reauthorise(connector, body)
        result = await self._client._call(built)
        new_rate = body.rate_limit
        if new_rate is not None and built.connector is not None:
            self._client.set_instance_rate_limit(built.connector, new_rate)
        return result

    def reauthorise_many(
        self,
        items: ItemSource,
        *,
        concurrency: int = 16,
        on_progress: ProgressHook | None = None,
        read_ahead: int | None = None,
    ) -> AsyncIterator[ReauthoriseOutcome]:
        """Reauthorise many instances; an async iterator of one outcome per item.

        Outcomes come in completion order. A failure (bad input included) is an
        outcome, not an exception: the job goes on. Input is read lazily, at most
        ``read_ahead`` (default ``max(8 * concurrency, 64)``) items ahead.
        ``concurrency`` bounds the items being sent at once; items waiting for
        their instance's limiter or a retry hold no slot. Cancel the consuming
        task (or close the iterator) to stop: every task it started is cancelled.

        Args:
            items: an iterable or async iterable of ``(connector, ReauthoriseRequest)``.
            concurrency: items in flight at once (also bounded by ``max_connections``).
            on_progress: called with each outcome as it is yielded.
            read_ahead: how far ahead of the outcomes the input is read.

        Returns:
            An async iterator of :class:`ReauthoriseOutcome`.
        """
        check_bulk_arguments(concurrency, read_ahead)
        return reauthorise_many(
            self._client,
            items,
            concurrency=concurrency,
            on_progress=on_progress,
            read_ahead=read_ahead,
        )


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
    ) -> None:
        self._auth = _pick_auth(api_key, token, login)
        if login is not None:
            check_url("login.url", login.url, allow_insecure_http=allow_insecure_http)
        resolved = (
            base_url or os.environ.get(_constants.ENV_BASE_URL) or _constants.DEFAULT_BASE_URL
        )
        self.base_url = check_url(
            "base_url", resolved, allow_insecure_http=allow_insecure_http
        ).rstrip("/")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float | Timeout):
            raise InvalidRequestError("timeout must be seconds or a Timeout", field="timeout")
        self.timeout = timeout if isinstance(timeout, Timeout) else Timeout(total=float(timeout))
        if self.timeout.total <= 0 or self.timeout.connect <= 0:
            raise InvalidRequestError("timeouts must be positive", field="timeout")
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or (max_connections < 1)
        ):
            raise InvalidRequestError(
                "max_connections must be an integer of at least 1", field="max_connections"
            )
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise InvalidRequestError("rate_limit must be a RateLimit or None", field="rate_limit")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidRequestError("session must be an aiohttp.ClientSession", field="session")
        if max_instance_limiters < 1:
            raise InvalidRequestError(
                "max_instance_limiters must be at least 1", field="max_instance_limiters"
            )
        self.max_connections = max_connections
        self.rate_limit = rate_limit
        self.retry = retry if retry is not None else RetryPolicy.disabled()
        self.on_event = on_event
        if limiter is not None:
            if not isinstance(limiter, LimiterBackend):
                raise InvalidRequestError(
                    "limiter must be a LimiterBackend (e.g. RedisLimiter)", field="limiter"
                )
            try:
                limiter.bind(_credential_fingerprint(api_key, token, login, self._auth))
            except ValueError as exc:
                raise InvalidRequestError(str(exc), field="limiter") from None
        self._backend = limiter
        self._transport = Transport(
            base_url=self.base_url,
            session=session,
            max_connections=max_connections,
            timeout=self.timeout,
            max_response_bytes=max_response_bytes,
            ssl_context=ssl_context,
        )
        # Built lazily inside the running loop (aiolimiter and asyncio objects belong to one).
        self._limits: Limits | None = None
        self._pending_rates: dict[str, RateLimit | None] = {}
        self._max_instance_limiters = max_instance_limiters
        self._rate_limit_state: RateLimitState | None = None
        self._closed = False
        self.oauth = OAuth(self)

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
        """Close the client's own session (a session passed in stays open). Idempotent."""
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
        """The latest rate-limit figures the server sent, or ``None`` before any."""
        return self._rate_limit_state

    @property
    def connections_opened(self) -> int:
        """TCP connections the client's own pool has opened so far."""
        return self._transport.connections_opened

    def set_instance_rate_limit(self, connector: str | int, rate_limit: RateLimit | None) -> None:
        """Pace calls on one instance at ``rate_limit``; ``None`` stops pacing it.

        Raises:
            InvalidRequestError: a bad connector or a value that is not a RateLimit.
        """
        key = _sansio.connector_key(connector)
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise InvalidRequestError("rate_limit must be a RateLimit or None", field="rate_limit")
        if self._limits is None:
            self._pending_rates[key] = rate_limit
            return
        self._set_rate(self._limits, key, rate_limit)

    def instance_rate_limit(self, connector: str | int) -> RateLimit | None:
        """The limit the client paces an instance at, or ``None`` when it does not pace it."""
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
        debug = logger.isEnabledFor(logging.DEBUG)
        if hook is None and not debug:
            return
        event = Event(**fields)
        if debug:
            log_event(event)
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
        limits = self._limits or self._ensure_limits()
        loop = asyncio.get_running_loop()
        started = loop.time()
        policy = self.retry
        # Made at the first failure: most calls never need one.
        waits: Iterator[float] | None = None
        attempt = 0
        refreshed = False
        observe = self._hooked()
        while True:
            attempt += 1
            if tracker is not None:
                tracker.attempts = attempt
            # The credential is had before the request takes its turn in the limiters:
            # a login's wait must not bunch granted requests together (they would all
            # leave when the token arrives), nor let one slip past a pause. A failed
            # login raises here, as it is: it is not a 401 of this call.
            auth = await self._auth.header(self._transport)
            try:
                return await self._attempt(limits, request, attempt, observe, extra, auth)
            except AuthenticationError:
                # One fresh login and one more try (the token may have expired early).
                if refreshed or not self._auth.refreshable:
                    self._gave_up(request, attempt, "authentication failed", observe)
                    raise
                refreshed = True
                continue
            except PatchworksError as error:
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

    def _hooked(self) -> bool:
        return self.on_event is not None or logger.isEnabledFor(logging.DEBUG)

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
    ) -> dict[str, Any]:
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
        async with limits.slot(request.connector, extra, timed=observe) as waited:
            headers = {**request.headers, "Authorization": auth}
            if observe:
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
        if observe:
            self._emit(
                kind=EventKind.RESPONSE,
                operation=request.operation,
                attempt=attempt,
                connector=request.connector,
                status=raw.status,
            )
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
        if "X-RateLimit-Remaining" in headers or status == 429 or "Retry-After" in headers:
            self._observe_limits(limits, raw)
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
        state = parse_rate_limit_headers(raw.headers, now=now)
        if state is None:
            return
        self._rate_limit_state = state
        if state.remaining is not None and state.remaining <= 0 and raw.status != 429:
            # The quota is spent: hold every call until it resets (or a short default
            # when the server did not say when).
            pause = (
                state.pause_for(now=now)
                if state.reset_at is not None
                else (self.retry.default_retry_after)
            )
            self._pause(limits, pause)

    def _pause(self, limits: Limits, seconds: float) -> None:
        if seconds <= 0:
            return
        limits.gate.pause(seconds)
        if self._backend is not None:
            self._backend.pause(seconds)


class CallTracker:
    """Learns what happened inside one call (for bulk outcomes)."""

    __slots__ = ("attempts",)

    def __init__(self) -> None:
        self.attempts = 0


class LimiterBackend:
    """Base class of shared limiter backends (see ``patchworks_async.redis``).

    A backend makes the limiters the client uses, and spreads a pause (a 429) to
    every process that shares it.
    """

    def client_limiter(self, rate: RateLimit) -> Limiter:
        """The client-wide limiter for ``rate``."""
        raise NotImplementedError

    def instance_limiter(self, connector: str, rate: RateLimit) -> Limiter:
        """The limiter of one instance."""
        raise NotImplementedError

    def bind(self, credential_fingerprint: str) -> None:
        """Called once by the client with a hash of its credential (never the credential).

        A shared backend scopes its keys by it, so that clients of one credential
        share one budget and clients of different credentials do not.
        """

    def attach(self, gate: Any) -> None:
        """Called once with the client's pause gate, inside the running loop."""

    def pause(self, seconds: float) -> None:
        """A 429 was seen: pause every sharer for ``seconds``."""

    async def aclose(self) -> None:
        """Release the backend's connections."""

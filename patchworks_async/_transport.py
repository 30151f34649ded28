"""The one module that imports aiohttp: a pooled session, and aiohttp's errors mapped to ours.

It sends bytes and returns ``(status, headers, body)``; judging the response is the
pure core's job (``_sansio``). aiohttp exceptions never leave this module: each is
mapped to a :class:`TransportError` with ``raise ... from exc``, recording whether
the request certainly never reached the server (SHARP_EDGES.md: connection
refused and connect timeouts prove it; read timeouts and dropped responses do not).
"""

from __future__ import annotations

import asyncio
import functools
import io
import socket
import ssl
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import attrs
from aiohttp import BytesIOPayload, BytesPayload
from multidict import CIMultiDict
from yarl import URL

from . import _constants
from ._deadlines import Deadlines
from ._errors import (
    APIError,
    InvalidRequestError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TransportError,
)

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
#: URLs kept parsed (yarl's parse and its Host header value cost about 7 us a new URL).
_URL_CACHE_SIZE: Final = 1024
#: aiohttp's ``BytesPayload`` warns (``ResourceWarning``) about a body over 1 MiB (its
#: ``aiohttp.payload.TOO_LARGE_BYTES_BODY``, not public API: our own constant, pinned by
#: tests/test_aiohttp_contract.py); a larger body goes through ``io.BytesIO`` instead.
_LARGEST_BYTES_BODY: Final = 1024 * 1024


@attrs.frozen
class Timeout:
    """Per-request timeouts in seconds, both finite by default.

    ``total`` bounds one attempt from sending to the last body byte; ``connect``
    bounds opening a connection. Waiting in the client's limiters is never
    counted (requests are only handed to aiohttp when a connection is free).

    ``total`` is enforced by one sweep timer per client rather than one timer per
    request (cheaper at thousands of calls a second): an attempt that runs out is
    cancelled between ``total`` and ``total + g`` seconds after it began, where
    ``g`` is ``total / 20`` kept between 5 ms and 0.5 s.

    Attributes:
        total: seconds for one attempt, from sending to the last body byte (see above
            for how late past it an attempt may be stopped).
        connect: seconds for opening a connection.
    """

    total: float = _constants.DEFAULT_TOTAL_TIMEOUT
    connect: float = _constants.DEFAULT_CONNECT_TIMEOUT


class RawResponse:
    """What came back: status, headers and the whole body.

    A plain slotted class, not an attrs one: one is made per response, and a
    frozen attrs class costs about four times as much to build.
    """

    __slots__ = ("body", "headers", "status", "url")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes, url: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url

    def __repr__(self) -> str:
        return f"<RawResponse status={self.status} url={self.url!r} body={len(self.body)} bytes>"


class _SocketCounter:
    """``TCPConnector(socket_factory=...)``: makes each new connection's socket, and counts it.

    aiohttp's public hook for new connections (3.12+). An ``aiohttp.TraceConfig``
    could count them too, but any trace config costs every request (aiohttp then
    builds trace objects and sends about six signals per request: about 12 us a
    call, measured with ``python -m benchmarks``); this runs once per connection.
    A connection attempt that fails is counted as well (its socket was opened).
    """

    __slots__ = ("opened",)

    def __init__(self) -> None:
        self.opened = 0

    def __call__(self, addr_info: Any) -> socket.socket:
        family, type_, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=type_, proto=proto)
        self.opened += 1
        return sock


def _payload(body: bytes) -> BytesPayload | BytesIOPayload:
    """The request body as an aiohttp payload, built directly (not via its registry).

    aiohttp warns (``ResourceWarning``) about a ``bytes`` body over 1 MB; it sends
    the same bytes through ``io.BytesIO`` in chunks without complaint.
    """
    if len(body) > _LARGEST_BYTES_BODY:
        return BytesIOPayload(io.BytesIO(body), content_type="application/json")
    return BytesPayload(body, content_type="application/json")


#: The session type a caller may lend the client (named here: only this module imports aiohttp).
ClientSession = aiohttp.ClientSession


def check_session(session: object) -> aiohttp.ClientSession | None:
    """A session passed in to borrow, unchanged; ``None`` for the client's own.

    Here and not in ``_config``: this is the one module that imports aiohttp.

    Raises:
        InvalidRequestError: not an ``aiohttp.ClientSession``.
    """
    if session is not None and not isinstance(session, aiohttp.ClientSession):
        raise InvalidRequestError("session must be an aiohttp.ClientSession", field="session")
    return session


def _transport_error(exc: BaseException, method: str, url: URL) -> TransportError:
    """The package's error for what aiohttp (or the socket) raised while sending.

    Args:
        exc: the exception aiohttp raised.
        method: the request's method.
        url: the request's URL.

    Returns:
        A :class:`RequestTimeoutError` or :class:`TransportError`, with ``sent`` saying
        whether the request may have reached the server.
    """
    where = f"{method} {url}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return RequestTimeoutError(
            f"{where}: connect timeout", method=method, url=str(url), sent=False
        )
    if isinstance(exc, aiohttp.SocketTimeoutError | TimeoutError):
        return RequestTimeoutError(
            f"{where}: timed out waiting for the response", method=method, url=str(url), sent=True
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError(
            f"{where}: cannot connect ({type(exc).__name__}: {exc.os_error})",
            method=method,
            url=str(url),
            sent=False,
            # A certificate or TLS failure is the same on every try: not retried.
            retriable=not isinstance(exc, aiohttp.ClientSSLError),
        )
    return TransportError(
        f"{where}: the connection failed before a complete response ({type(exc).__name__})",
        method=method,
        url=str(url),
        sent=True,
    )


class Transport:
    """Owns (or borrows) one ``aiohttp.ClientSession`` and sends requests through it."""

    def __init__(
        self,
        *,
        base_url: str,
        session: aiohttp.ClientSession | None,
        max_connections: int,
        timeout: Timeout,
        max_response_bytes: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._base = URL(self.base_url)
        self._base_path = self._base.raw_path.rstrip("/")
        self._target = functools.lru_cache(maxsize=_URL_CACHE_SIZE)(self._parse)
        self._borrowed = session
        self._session: aiohttp.ClientSession | None = session
        self._max_connections = max_connections
        # No per-request total timer in aiohttp (a TimerHandle per request): the
        # attempts' deadlines are swept by one timer (_deadlines). ``connect`` stays
        # aiohttp's: it costs nothing when the pool hands over a free connection.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout.connect)
        self._deadlines: Deadlines[asyncio.Task[Any]] = Deadlines(timeout.total)
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._max_response_bytes = max_response_bytes
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._sockets = _SocketCounter()
        self._closed = False
        # The request headers as aiohttp's own CIMultiDict, converted once per
        # credential: the client hands in the same mapping for every call.
        self._headers_given: Mapping[str, str] | None = None
        self._headers_sent: CIMultiDict[str] = CIMultiDict()

    @property
    def pool_limit(self) -> int:
        """How many connections the pool allows (a borrowed session's own limit counts)."""
        if self._borrowed is not None:
            limit = self._borrowed.connector.limit if self._borrowed.connector else 0
            if limit:
                return min(limit, self._max_connections)
        return self._max_connections

    @property
    def connections_opened(self) -> int:
        """TCP connections this client's own pool has opened (0 for a borrowed session)."""
        return self._sockets.opened

    def _parse(self, url: str) -> URL:
        """``url`` as a yarl URL, its path kept as it is (already percent-encoded).

        A URL under ``base_url`` is built from the base's parsed parts, which is
        cheaper than parsing the whole string; ``_target`` caches the result, so an
        instance called again reuses its URL and what aiohttp computed from it.
        """
        base = self.base_url
        rest = url[len(base) :] if url.startswith(base) else ""
        if rest.startswith("/") and "?" not in rest and "#" not in rest:
            return self._base.with_path(self._base_path + rest, encoded=True)
        return URL(url, encoded=True)

    def _ensure_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is not None:
            return session
        if self._closed:
            raise RuntimeError("the client is closed")

        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            keepalive_timeout=_constants.DEFAULT_KEEPALIVE_TIMEOUT,
            ssl=self._ssl,
            socket_factory=self._sockets,
        )
        self._session = session = aiohttp.ClientSession(
            connector=connector,
            # One jar per client would leak state between calls; the API uses none.
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=self._timeout,
            auto_decompress=True,
        )
        return session

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> RawResponse:
        """Send one request and read the whole response.

        Same-origin redirects are followed (at most ``MAX_REDIRECTS``); a redirect
        to another origin is answered with an :class:`APIError` and not followed,
        so credentials never leave for another host.

        Args:
            method: the HTTP method.
            url: the absolute URL, its path already percent-encoded.
            headers: the request's headers (hand in the same mapping for every
                call with the same credential: it is converted once).
            body: the body's bytes, or ``None``.

        Returns:
            The status, headers and whole body.

        Raises:
            TransportError: no complete response (``RequestTimeoutError`` for timeouts).
            ResponseTooLargeError: the body is larger than ``max_response_bytes``.
            APIError: a redirect that may not be followed.
        """
        session = self._session or self._ensure_session()
        if headers is not self._headers_given:
            self._headers_sent = CIMultiDict(headers)
            self._headers_given = headers
        sent = self._headers_sent
        target = self._target(url)
        response = await self._send_once(session, method, target, url, sent, body)
        if response.status not in _REDIRECTS:
            return response
        return await self._follow(session, method, target, sent, body, response)

    async def _follow(
        self,
        session: aiohttp.ClientSession,
        method: str,
        target: URL,
        headers: CIMultiDict[str],
        body: bytes | None,
        response: RawResponse,
    ) -> RawResponse:
        """Follow same-origin redirects from ``response`` (the origin is only computed here)."""
        origin = target.origin()
        for _ in range(_constants.MAX_REDIRECTS):
            location = response.headers.get("Location")
            next_url = target.join(URL(location)) if location else None
            if next_url is None or next_url.origin() != origin:
                raise APIError(
                    status=response.status,
                    method=method,
                    url=str(target),
                    headers=response.headers,
                    body=None,
                    message="refused to follow a redirect to another origin",
                )
            target = next_url
            response = await self._send_once(session, method, target, str(target), headers, body)
            if response.status not in _REDIRECTS:
                return response
        raise APIError(
            status=response.status,
            method=method,
            url=str(target),
            headers=response.headers,
            body=None,
            message=f"more than {_constants.MAX_REDIRECTS} redirects",
        )

    # Over 40 lines: one attempt's deadline, send and read stay in one coroutine (a second
    # frame costs about 0.5 us a call); errors are mapped by _transport_error, sweeps by _sweep.
    async def _send_once(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        url_text: str,
        headers: CIMultiDict[str],
        body: bytes | None,
    ) -> RawResponse:
        """One attempt, bounded by ``Timeout.total`` through the client's sweep (``_sweep``).

        It tells its own timeout from an outside cancellation as ``asyncio.timeout``
        does: the sweep removed its entry, and no other cancel request came since it
        began (``Task.cancelling``); an outside cancel, alone or with the timeout,
        propagates as ``CancelledError``.
        """
        # current_task(loop) costs half of current_task() on Python 3.11 (0.14 against
        # 0.28 us): the loop is the one of the first attempt (a client serves one loop).
        loop = self._loop or self._first_loop()
        task = asyncio.current_task(loop)
        if task is None:  # as asyncio.timeout: only a task (of this loop) can be cancelled
            raise RuntimeError("a request must be sent from a task of the client's event loop")
        deadlines = self._deadlines
        entries = deadlines.entries
        deadline = loop.time() + deadlines.total
        cancelling = task.cancelling()
        entries[task] = deadline
        if deadlines.armed_at is None:
            self._arm(loop, deadline)
        data = _payload(body) if body is not None else None
        try:
            try:
                async with session.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    allow_redirects=False,
                    timeout=self._timeout,
                ) as response:
                    length = response.content_length
                    # Content-Length counts the bytes on the wire: a compressed body (aiohttp
                    # decompresses it) can grow far past it, so only an uncompressed one of a
                    # known, allowed length is read whole.
                    if (
                        length is not None
                        and length <= self._max_response_bytes
                        and "Content-Encoding" not in response.headers
                    ):
                        raw = await response.read()
                    else:
                        raw = await self._read(response, method)
                    result = RawResponse(response.status, response.headers, raw, url_text)
            except (ResponseTooLargeError, TransportError):
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                error = _transport_error(exc, method, url)
                if not isinstance(exc, aiohttp.ClientResponseError):
                    raise error from exc
            else:
                if entries.pop(task, None) is None:
                    task.uncancel()  # swept, but the cancel was swallowed on the way
                return result
            # Only a ClientResponseError gets here. Its request_info holds the request's
            # headers, Authorization among them: it is neither the cause nor the context
            # of what we raise, so the credential cannot reach a repr or a traceback.
            raise error
        except asyncio.CancelledError:
            if entries.pop(task, None) is not None or task.uncancel() > cancelling:
                raise  # an outside cancel (maybe along with ours): it wins
            timed_out = TimeoutError(f"no complete response within {deadlines.total} s")
            raise _transport_error(timed_out, method, url) from timed_out
        except BaseException:
            if entries.pop(task, None) is None:
                task.uncancel()  # swept, but the cancel ended as another error
            raise

    def _first_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, kept for the attempts to come (its tasks are the ones swept)."""
        self._loop = loop = asyncio.get_running_loop()
        return loop

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """Arm the sweep timer for the first attempt registered while none is armed."""
        if self._deadlines.arm_for(deadline) is not None:
            self._sweep_timer = loop.call_at(deadline, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel the tasks of the attempts past their deadline; re-arm while any is left."""
        overdue, next_at = self._deadlines.sweep(loop.time())
        for task in overdue:
            task.cancel()
        self._sweep_timer = None if next_at is None else loop.call_at(next_at, self._sweep, loop)

    async def _read(self, response: aiohttp.ClientResponse, method: str) -> bytes:
        """Read a body of unknown, too large or compressed length, in chunks up to the limit."""
        limit = self._max_response_bytes
        length = response.content_length
        if length is not None and length > limit:
            raise self._too_large(method, response, limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise self._too_large(method, response, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _too_large(
        method: str, response: aiohttp.ClientResponse, limit: int
    ) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"{method} {response.url}: the response body is larger than {limit} bytes",
            method=method,
            url=str(response.url),
            limit=limit,
        )

    async def aclose(self) -> None:
        """Close the session if this transport created it (idempotent)."""
        self._closed = True
        deadlines, timer = self._deadlines, self._sweep_timer
        # An attempt still in flight (on a borrowed session) keeps its bound: the
        # sweep then stops by itself once the last one has left.
        if timer is not None and not deadlines.entries:
            timer.cancel()
            self._sweep_timer = None
            deadlines.disarm()
        session, self._session = self._session, None
        if session is not None and session is not self._borrowed:
            await session.close()

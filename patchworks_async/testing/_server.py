"""FakePatchworks: the fake Patchworks Core API on 127.0.0.1, put on the wire with aiohttp.

The adapter only: the API's behaviour is the pure model (``_model``, with ``_quota``
and ``_rules``), the faults are ``_faults``. This module runs the servers (the low-level
``aiohttp.web.Server``, no router: every request goes through one handler that routes
on the *raw* path, so a percent-encoded ``%2F`` in a connector stays one segment),
numbers connections, records requests and applies faults to the connection.

It is self-contained on purpose (aiohttp, attrs and orjson only): it must not share code
with the client it is used to test.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from aiohttp import web

from ._faults import Fault, FaultRules, refusal, reshaped
from ._model import JSON, LOGIN_PATH, Answer, PatchworksModel, json_answer, loads
from ._quota import BackgroundConsumer
from ._records import RecordedRequest, finish

if TYPE_CHECKING:
    # aiohttp's connection protocol; only named in annotations (see _CountingServer).
    from aiohttp.web_protocol import RequestHandler

__all__ = ["FakePatchworks"]

_Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

_MAX_BODY: Final = 8 * 1024 * 1024  # the platform answers 413 above 8 MB
_SHUTDOWN_TIMEOUT: Final = 0.1  # in-flight handlers (slow faults) are cancelled after this


class _CountingServer(web.Server):
    """The low-level aiohttp server, numbering the TCP connections it accepts.

    The one place the fake leans on aiohttp beyond its documented API, with
    ``_make_request`` below: the low-level server's ``connection_made`` and
    ``connection_lost`` hooks and ``web.BaseRequest``'s positional arguments.
    ``tests/test_aiohttp_contract.py`` fails loudly when aiohttp changes them.
    """

    def __init__(self, owner: FakePatchworks, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._owner = owner

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._owner.connections_opened += 1
        self._owner._connection_ids[handler] = self._owner.connections_opened

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self._owner._connection_ids.pop(handler, None)


def _make_request(
    message: Any, payload: Any, protocol: Any, writer: Any, task: Any
) -> web.BaseRequest:
    return web.BaseRequest(
        message, payload, protocol, writer, task, asyncio.get_running_loop(),
        client_max_size=_MAX_BODY,
    )  # fmt: skip


def _response(answer: Answer) -> web.Response:
    return web.Response(
        status=answer.status,
        body=answer.body,
        headers=answer.headers,
        content_type=answer.content_type,
    )


class FakePatchworks(PatchworksModel, FaultRules):
    """A fake Patchworks Core API on 127.0.0.1, for tests and benchmarks.

    Use it as an async context manager (or ``await start()`` / ``await close()``)::

        async with FakePatchworks() as fake:
            client = PatchworksClient(base_url=fake.url, api_key=fake.api_key)

    Behaviour, in the order a request meets it:

    1. Recorded (``requests`` when ``record``; ``request_count`` always).
    2. A fault is picked: the scripted ones (``add_faults``) first, then the random rate
       (``set_fault_rate``). ``latency`` is slept.
    3. ``"status"`` and ``"redirect"`` faults answer now, without acting.
    4. Routing on the raw path: unknown path or method -> 404/405 (and ``malformed``).
    5. Authentication (not for login): ``Authorization: <api_key>`` or ``Bearer <token>``
       with a token from login or ``issue_token`` that has not expired -> else 401.
    6. Quota (when ``quota`` is set), a fixed window per ``Authorization`` value that
       starts at its first counted request: over ``quota`` -> 429 with ``Retry-After`` and
       ``X-RateLimit-Reset``. Every answer from here carries ``X-RateLimit-Limit`` and
       ``X-RateLimit-Remaining``.
    7. Unknown instance -> 404; body validation -> 422 (Laravel's shape); then the action.
    8. Faults that act first (``delay``, ``drop``, ``truncate``, ``malformed_json``,
       ``html``, ``not_object``) reshape the answer.

    Steps 4 to 7 are the pure model it extends (``PatchworksModel``: its API key, login,
    tokens, instances, counters and quota, documented there); this class puts them on the
    wire. Every answer carries ``X-Request-Id`` (uuid4 hex). Injected faults are listed in
    ``faults_injected`` as ``(request, fault)`` pairs and counted by kind in
    ``fault_counts``; both are kept even when ``record`` is False, as is ``malformed``.
    ``clock`` (default ``time.monotonic``) times token expiry, quota windows and the
    ``background`` consumer: pass the event loop's ``loop.time`` for a virtual clock.

    Attributes:
        url: the API's origin, ``http://127.0.0.1:<port>`` (set by ``start``): pass it
            as ``PatchworksClient(base_url=...)``.
        login_url: ``url`` + ``/fabric/api/login``: pass it as ``Login(url=...)``.
        redirect_url: the origin ``Fault.redirected()`` sends requests to.
        requests: every request, as :class:`RecordedRequest` (when ``record``).
        request_count, connections_opened: counters.
        api_key, username, password, instances, authorise_count, login_count,
            quota_model, background_sent, background_denied: the model's.

    Args:
        api_key, username, password, token_ttl, quota, quota_window, background, clock:
            the model's: the credentials it accepts (by default a random API key and
            password), the lifetime of a login token, the quota per credential
            (``None``: none) and its window, another consumer of the API key's quota
            (:class:`BackgroundConsumer`) and the clock.
        host: the address to listen on.
        port: the port; 0 picks a free one (``port`` holds it once started).
        record: keep every request in ``requests`` (turn off for long runs).
        latency: seconds to wait before every answer.

    Raises:
        ValueError: ``quota`` is negative, ``quota_window`` is not positive, or
            ``background`` is given without a ``quota``.
    """

    # Over 40 lines only by its signature (one keyword argument a line); the body stores them.
    def __init__(
        self,
        *,
        api_key: str | None = None,
        username: str = "fake-user@example.com",
        password: str | None = None,
        token_ttl: float = 86400.0,
        quota: int | None = None,
        quota_window: float = 60.0,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        latency: float = 0.0,
        background: BackgroundConsumer | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        PatchworksModel.__init__(
            self,
            api_key=api_key,
            username=username,
            password=password,
            token_ttl=token_ttl,
            quota=quota,
            quota_window=quota_window,
            background=background,
            clock=clock,
        )
        FaultRules.__init__(self)
        self.host = host
        self.port = port
        self.record = record
        self.latency = latency
        self.url: str = ""
        self.login_url: str = ""
        self.redirect_url: str = ""
        self.requests: list[RecordedRequest] = []
        self.malformed: list[RecordedRequest] = []
        self.redirect_target_requests: list[RecordedRequest] = []
        self.faults_injected: list[tuple[RecordedRequest, Fault]] = []
        self.fault_counts: Counter[str] = Counter()
        self.request_count = 0
        self.connections_opened = 0
        self._connection_ids: dict[RequestHandler, int] = {}
        self._runner: web.ServerRunner | None = None
        self._redirect_runner: web.ServerRunner | None = None
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start both servers (the API and the redirect target). A second call does nothing.

        Raises:
            RuntimeError: the server was closed (it cannot be started again).
            OSError: the address cannot be listened on (e.g. the port is taken).
        """
        if self._runner is not None:
            return
        if self._closed:
            raise RuntimeError("a closed FakePatchworks cannot be started again")
        # A client that cancels or disconnects frees its handler at once: a slow
        # fault (or ``latency``) stops sleeping instead of running its delay out.
        options: dict[str, Any] = {
            "request_factory": _make_request,
            "access_log": None,
            "handler_cancellation": True,
        }
        try:
            self._runner = await self._serve(
                _CountingServer(self, self._handle, **options), self.port
            )
            self.url = _origin(self._runner)
            self.port = self._runner.addresses[0][1]
            self.login_url = self.url + LOGIN_PATH
            self.quota_model.begin()
            target = web.Server(self._handle_redirect_target, **options)
            self._redirect_runner = await self._serve(target, 0)
            self.redirect_url = _origin(self._redirect_runner)
        except BaseException:
            await self.close()
            raise

    async def _serve(self, server: web.Server, port: int) -> web.ServerRunner:
        runner = web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        return runner

    async def close(self) -> None:
        """Stop both servers and close every connection. Safe to call more than once.

        A closed server cannot be started again.
        """
        self._closed = True
        runners = (self._runner, self._redirect_runner)
        self._runner = self._redirect_runner = None
        for runner in runners:
            if runner is not None:
                await runner.cleanup()

    # -- one request on the wire ------------------------------------------------------

    def _make_record(
        self, request: web.BaseRequest, path: str, query: str, body: bytes, arrived: float
    ) -> RecordedRequest:
        return RecordedRequest(
            method=request.method,
            path=path,
            query=query,
            headers=dict(request.headers),
            json=loads(body)[0] if body else None,
            body=body,
            arrived=arrived,
            connection=self._connection_ids.get(request.protocol, 0),
        )

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        arrived = time.monotonic()
        self.request_count += 1
        path, _, query = request.raw_path.partition("?")
        try:
            body = await request.read() if request.body_exists else b""
        except web.HTTPRequestEntityTooLarge:
            too_large = self._make_record(request, path, query, b"", arrived)
            if self.record:
                self.requests.append(too_large)
            finish(too_large, 413)
            return _response(json_answer(413, {"message": "Request body too large."}))

        record = self._make_record(request, path, query, body, arrived) if self.record else None
        if record is not None:
            self.requests.append(record)
        fault = self._pick_fault(path)
        if fault is not None:
            if record is None:
                record = self._make_record(request, path, query, body, arrived)
            object.__setattr__(record, "fault", fault)  # see finish
            self.faults_injected.append((record, fault))
            self.fault_counts[fault.kind] += 1
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if fault is not None and not fault.after_processing:
            answer = refusal(fault, self.redirect_url + path + (f"?{query}" if query else ""))
            finish(record, answer.status)
            return _response(answer)

        answer = self.handle(request.method, path, request.headers, body)
        if answer.malformed:
            if record is None:
                record = self._make_record(request, path, query, body, arrived)
            self.malformed.append(record)
        if fault is None:
            finish(record, answer.status)
            return _response(answer)
        return await self._misbehave(request, fault, answer, record)

    async def _misbehave(
        self,
        request: web.BaseRequest,
        fault: Fault,
        answer: Answer,
        record: RecordedRequest | None,
    ) -> web.StreamResponse:
        kind = fault.kind
        if kind == "delay":
            finish(record, answer.status)
            await asyncio.sleep(fault.delay)
            return _response(answer)
        if kind == "drop":
            finish(record, None)
            if request.transport is not None:
                request.transport.close()
            # aiohttp cannot write to the closing transport and drops this answer quietly.
            return _response(answer)
        if kind == "truncate":
            finish(record, answer.status)
            return await _truncate(request, answer)
        answer = reshaped(fault, answer)
        finish(record, answer.status)
        return _response(answer)

    async def _handle_redirect_target(self, request: web.BaseRequest) -> web.StreamResponse:
        arrived = time.monotonic()
        path, _, query = request.raw_path.partition("?")
        body = await request.read() if request.body_exists else b""
        record = self._make_record(request, path, query, body, arrived)  # not numbered: 0
        finish(record, 200)
        self.redirect_target_requests.append(record)
        return _response(json_answer(200, {}))


async def _truncate(request: web.BaseRequest, answer: Answer) -> web.StreamResponse:
    body = answer.body or b"{}"
    response = web.StreamResponse(status=answer.status, headers=answer.headers)
    response.content_type = answer.content_type or JSON
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.close()  # flushes what was written, then closes
    return response


def _origin(runner: web.ServerRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

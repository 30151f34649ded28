"""FakePatchworks: the fake Patchworks Core API on 127.0.0.1, put on the wire with aiohttp.

The adapter only: what to answer is decided by the pure ``FakeCore`` (``_core``: the
model of ``_model``, ``_quota`` and ``_rules``, the faults of ``_faults``, the records
of ``_records``). This module runs the servers (the low-level ``aiohttp.web.Server``,
no router: every request goes through one handler, and the core routes on the *raw*
path, so a percent-encoded ``%2F`` in a connector stays one segment), numbers
connections, hands each request to the core and carries out its reply on the wire.

It is self-contained on purpose (aiohttp, attrs and orjson only): it must not share code
with the client it is used to test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from aiohttp import web

from ._core import FakeCore
from ._model import Answer
from ._quota import BackgroundConsumer
from ._records import Exchange
from ._rules import JSON, LOGIN_PATH

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


class FakePatchworks(FakeCore):
    """A fake Patchworks Core API on 127.0.0.1, for tests and benchmarks.

    Use it as an async context manager (or ``await start()`` / ``await close()``)::

        async with FakePatchworks() as fake:
            client = PatchworksClient(base_url=fake.url, api_key=fake.api_key)

    Each request is recorded and may get a fault (scripted with ``add_faults``, or at
    random with ``set_fault_rate``); ``latency`` is slept; a fault that refuses
    (``"status"``, ``"redirect"``) answers without acting, else the request is routed,
    authenticated, throttled (``quota``), validated (Laravel's 422) and acted on, and a
    fault that acts first then reshapes the answer or acts on the connection. The
    order, step by step, is the pure core's it extends (``FakeCore``, with the model
    ``PatchworksModel``: its API key, login, tokens, instances, counters and quota,
    documented there); this class puts it on the wire. Every answer carries
    ``X-Request-Id`` (uuid4 hex). Injected faults are listed in ``faults_injected`` as
    ``(request, fault)`` pairs and counted by kind in ``fault_counts``; both are kept
    even when ``record`` is False, as is ``malformed``. ``clock`` (default
    ``time.monotonic``) times token expiry, quota windows and the ``background``
    consumer: pass the event loop's ``loop.time`` for a virtual clock.

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
        super().__init__(
            record=record,
            api_key=api_key,
            username=username,
            password=password,
            token_ttl=token_ttl,
            quota=quota,
            quota_window=quota_window,
            background=background,
            clock=clock,
        )
        self.host = host
        self.port = port
        self.latency = latency
        self.url: str = ""
        self.login_url: str = ""
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

    # -- one request on the wire: the core decides, this carries it out ---------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        connection = self._connection_ids.get(request.protocol, 0)
        exchange = self._arrive(request.method, request.raw_path, request.headers, connection)
        try:
            exchange.body = await _body(request)
        except web.HTTPRequestEntityTooLarge:
            return _response(self._too_large(exchange))
        self._received(exchange)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        reply = self._respond(exchange)
        if reply.action == "delay":
            await asyncio.sleep(reply.delay)
        elif reply.action == "drop":
            if request.transport is not None:
                request.transport.close()
            # aiohttp cannot write to the closing transport and drops this answer quietly.
        elif reply.action == "truncate":
            return await _truncate(request, reply.answer)
        return _response(reply.answer)

    async def _handle_redirect_target(self, request: web.BaseRequest) -> web.StreamResponse:
        exchange = Exchange.arriving(request.method, request.raw_path, request.headers, 0)
        exchange.body = await _body(request)
        return _response(self._at_redirect_target(exchange))


async def _body(request: web.BaseRequest) -> bytes:
    return await request.read() if request.body_exists else b""


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

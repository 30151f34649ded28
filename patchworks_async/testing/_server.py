"""FakePatchworks: an in-process fake of the Patchworks Core API on 127.0.0.1.

A real aiohttp HTTP server (the low-level ``aiohttp.web.Server``, no router): every request
goes through one handler that routes on the *raw* request path, so a percent-encoded
``%2F`` inside a connector stays one path segment, exactly as a real server would see it.

It is self-contained on purpose (aiohttp, attrs and orjson only): it must not share code
with the client it is used to test.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self
from urllib.parse import unquote

import attrs
import orjson
from aiohttp import web

if TYPE_CHECKING:
    # aiohttp's connection protocol; only named in annotations (see _CountingServer).
    from aiohttp.web_protocol import RequestHandler

__all__ = [
    "AccountQuota",
    "BackgroundConsumer",
    "FakePatchworks",
    "Fault",
    "FaultKind",
    "RecordedRequest",
]

FaultKind = Literal[
    "status", "delay", "drop", "truncate", "malformed_json", "html", "not_object", "redirect"
]
_FAULT_KINDS: Final = frozenset(
    ("status", "delay", "drop", "truncate", "malformed_json", "html", "not_object", "redirect")
)
#: Kinds that answer without acting on the request at all.
_BEFORE_PROCESSING: Final = frozenset(("status", "redirect"))

LOGIN_PATH: Final = "/fabric/api/login"
_AUTHENTICATE: Final = "/api/v1/oauth/authenticate"
_AUTHORISE: Final = "/api/v1/oauth/authorise"
_WOO_APP_AUTH: Final = "/api/v1/oauth/woo-app-auth"
_REAUTHORISE: Final = re.compile(r"/api/v1/oauth/([^/]+)/reauthorise")
_METHODS: Final[Mapping[str, str]] = {
    _AUTHENTICATE: "POST",
    _AUTHORISE: "POST",
    _WOO_APP_AUTH: "POST",
    LOGIN_PATH: "POST",
}

_Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

_JSON: Final = "application/json"
_MAX_BODY: Final = 8 * 1024 * 1024  # the platform answers 413 above 8 MB
_SHUTDOWN_TIMEOUT: Final = 0.1  # in-flight handlers (slow faults) are cancelled after this
_HTML_BODY: Final = b"<html><body>Bad gateway</body></html>"
_UNITS: Final = ("second", "minute", "hour", "day")

# Field rules shared by authorise and reauthorise: name -> kind.
_STRING: Final = "string"
_INTEGER: Final = "integer"
_DURATION: Final = "duration"
_UNIT: Final = "unit"
_VARIABLES: Final = "variables"
_AUTHORISE_REQUIRED: Final = (
    ("authentication_implementation_id", _STRING),
    ("timezone", _STRING),
    ("date_format", _STRING),
    ("rate_limit_unit", _UNIT),
    ("rate_limit_duration", _DURATION),
)
_AUTHORISE_OPTIONAL: Final = (
    ("connection_pool_id", _INTEGER),
    ("variables", _VARIABLES),
    ("session_id", _STRING),
    ("platform_app_key", _STRING),
    ("certificate_id", _STRING),
    ("name", _STRING),
)
_REAUTHORISE_OPTIONAL: Final = (
    ("authentication_implementation_id", _STRING),
    ("type", _STRING),
    ("timezone", _STRING),
    ("date_format", _STRING),
    ("rate_limit_unit", _UNIT),
    ("rate_limit_duration", _DURATION),
    ("connection_pool_id", _INTEGER),
    ("variables", _VARIABLES),
    ("name", _STRING),
)


def _check_status(_: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise ValueError(f"{attribute.name} must be an HTTP status code, got {value!r}")


def _check_delay(_: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class Fault:
    """One scripted misbehaviour of the fake server.

    Kinds that refuse **before acting** (nothing is created or changed):

    - ``"status"``: answer ``status`` with ``{"message": ...}``; ``retry_after`` adds a
      ``Retry-After`` header (a number is sent as seconds: an integer when it is whole,
      else as written, e.g. ``0.5``; a string, e.g. an HTTP date, is sent as is).
    - ``"redirect"``: answer 307 with ``Location`` on a second server on another port
      (another origin); that server records what reaches it and answers 200 ``{}``.

    Kinds that **process the request first** (authorise creates the instance, reauthorise
    updates it, quota is counted) and then misbehave; they prove that a client must not
    blindly repeat a call whose answer it did not see:

    - ``"delay"``: wait ``delay`` seconds, then send the normal answer.
    - ``"drop"``: close the connection without sending a byte.
    - ``"truncate"``: send the normal status and headers with a ``Content-Length`` larger
      than the body bytes written (half of the body), then close the connection.
    - ``"malformed_json"``: 200, ``Content-Type: application/json``, body ``{"id": ``.
    - ``"html"``: ``status`` with ``<html><body>Bad gateway</body></html>``, ``text/html``.
    - ``"not_object"``: 200 with the JSON array ``[1, 2, 3]``.

    Attributes:
        kind: the misbehaviour, one of the kinds above.
        status: the status to answer (``"status"``, ``"html"``); default 503.
        retry_after: a ``Retry-After`` header to add (``"status"``).
        delay: seconds to wait before answering (``"delay"``).
    """

    kind: FaultKind = attrs.field(validator=attrs.validators.in_(_FAULT_KINDS))
    status: int = attrs.field(default=503, validator=_check_status)
    retry_after: float | str | None = None
    delay: float = attrs.field(default=0.0, validator=_check_delay)

    @property
    def after_processing(self) -> bool:
        """True when the server acts on the request before misbehaving."""
        return self.kind not in _BEFORE_PROCESSING

    @classmethod
    def status_code(cls, status: int = 503, *, retry_after: float | str | None = None) -> Fault:
        """Refuse with ``status`` before acting.

        Args:
            status: the HTTP status to answer, 100 to 599 (default 503).
            retry_after: the ``Retry-After`` header: seconds (a number) or an HTTP
                date (a string); ``None`` sends none.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.

        Raises:
            ValueError: ``status`` is not an HTTP status code.
        """
        return cls(kind="status", status=status, retry_after=retry_after)

    @classmethod
    def too_many(cls, retry_after: float | str | None = None) -> Fault:
        """Refuse with 429 (and ``Retry-After`` when given) before acting.

        Args:
            retry_after: the ``Retry-After`` header: seconds (a number) or an HTTP
                date (a string); ``None`` sends none.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.
        """
        return cls(kind="status", status=429, retry_after=retry_after)

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Act, then wait ``delay`` seconds before answering normally.

        Args:
            delay: seconds to wait, at least 0.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.

        Raises:
            ValueError: ``delay`` is negative or NaN.
        """
        return cls(kind="delay", delay=delay)

    @classmethod
    def dropped(cls) -> Fault:
        """Act, then close the connection without an answer.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.
        """
        return cls(kind="drop")

    @classmethod
    def truncated(cls) -> Fault:
        """Act, then send a body shorter than its ``Content-Length`` and close.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.
        """
        return cls(kind="truncate")

    @classmethod
    def malformed(cls) -> Fault:
        """Act, then answer 200 with invalid JSON.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.
        """
        return cls(kind="malformed_json")

    @classmethod
    def html(cls, status: int = 502) -> Fault:
        """Act, then answer ``status`` with an HTML page.

        Args:
            status: the HTTP status to answer, 100 to 599 (default 502).

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.

        Raises:
            ValueError: ``status`` is not an HTTP status code.
        """
        return cls(kind="html", status=status)

    @classmethod
    def non_object(cls) -> Fault:
        """Act, then answer 200 with a JSON array instead of an object.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.
        """
        return cls(kind="not_object")

    @classmethod
    def redirected(cls) -> Fault:
        """Answer 307 to the same path on another origin, without acting.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.
        """
        return cls(kind="redirect")


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """One request as the fake received it.

    ``path`` is the raw path (percent-encoding kept) without the query; ``query`` is the
    raw query string without ``?``. ``json`` is the parsed body, or None when there was no
    body or it was not JSON. ``arrived`` is ``time.monotonic()`` on arrival. ``connection``
    numbers the TCP connections the server accepted, from 1 (0 on the redirect target).

    ``status`` and ``fault`` are filled in by the server once the answer is decided (before
    it is sent): ``status`` stays None while in flight and for a dropped connection.
    They take no part in equality or hashing. ``headers`` and ``body`` are left out of
    the ``repr``: they hold the credential (and a login's password), and a repr ends up
    in assertion messages and logs.

    Attributes:
        method: the HTTP method.
        path: the raw path, without the query.
        query: the raw query string, without ``?``.
        headers: the request's headers (not in ``repr``).
        json: the parsed body, or ``None``.
        body: the raw body (not in ``repr``).
        arrived: ``time.monotonic()`` on arrival.
        connection: the number of the TCP connection it came on.
        status: the status answered, once decided.
        fault: the fault injected into the answer, if any.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str] = attrs.field(repr=False)
    json: Any = attrs.field(repr=False)
    body: bytes = attrs.field(repr=False)
    arrived: float
    connection: int = 0
    status: int | None = attrs.field(default=None, eq=False)
    fault: Fault | None = attrs.field(default=None, eq=False)


def _finish(record: RecordedRequest | None, status: int | None) -> None:
    if record is not None:
        # Frozen for users; the server alone fills the answer in (an eq=False field).
        object.__setattr__(record, "status", status)


def _label(field: str) -> str:
    return field.replace("_", " ")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_field(field: str, kind: str, value: Any, errors: dict[str, list[str]]) -> None:
    label = _label(field)
    if kind == _STRING:
        if not isinstance(value, str):
            errors[field] = [f"The {label} field must be a string."]
    elif kind == _INTEGER:
        if not _is_int(value):
            errors[field] = [f"The {label} field must be an integer."]
    elif kind == _DURATION:
        if not _is_int(value):
            errors[field] = [f"The {label} field must be an integer."]
        elif value < 1:
            errors[field] = [f"The {label} field must be at least 1."]
    elif kind == _UNIT:
        if value not in _UNITS:
            errors[field] = [f"The selected {label} is invalid."]
    elif kind == _VARIABLES:
        if isinstance(value, str):
            return
        if not isinstance(value, list):
            errors[field] = [f"The {label} field must be a string or an array."]
            return
        for index, item in enumerate(value):
            where = f"{field}.{index}"
            if not isinstance(item, dict):
                errors[where] = [f"The {where} field must be an array."]
                continue
            key = item.get("key")
            if key is None or (isinstance(key, str) and not key.strip()):
                errors[f"{where}.key"] = [f"The {where}.key field is required."]
            elif not isinstance(key, str):
                errors[f"{where}.key"] = [f"The {where}.key field must be a string."]


def _validate(
    body: Mapping[str, Any],
    required: Sequence[tuple[str, str]],
    optional: Sequence[tuple[str, str]],
) -> dict[str, list[str]]:
    """Laravel-style rules; the errors keep the order of the rules."""
    errors: dict[str, list[str]] = {}
    for field, kind in required:
        value = body.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            errors[field] = [f"The {_label(field)} field is required."]
        else:
            _check_field(field, kind, value, errors)
    for field, kind in optional:
        if field in body:
            _check_field(field, kind, body[field], errors)
    return errors


def _validation_payload(errors: dict[str, list[str]]) -> dict[str, Any]:
    messages = [message for field_messages in errors.values() for message in field_messages]
    message = messages[0]
    more = len(messages) - 1
    if more == 1:
        message += " (and 1 more error)"
    elif more > 1:
        message += f" (and {more} more errors)"
    return {"message": message, "errors": errors}


def _retry_after_header(value: float | str) -> str:
    if isinstance(value, str):
        return value
    if float(value).is_integer():
        return str(int(value))
    return str(value)


def _reason(status: int) -> str:
    if status == 429:
        return "Too Many Attempts."
    try:
        return HTTPStatus(status).phrase + "."
    except ValueError:
        return "Error."


class _Answer:
    """What the processing decided, before any fault reshapes it."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self, status: int, body: bytes, headers: dict[str, str], content_type: str | None = _JSON
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.content_type = content_type

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            body=self.body,
            headers=self.headers,
            content_type=self.content_type,
        )


def _answer(status: int, payload: Any, headers: dict[str, str]) -> _Answer:
    return _Answer(status, orjson.dumps(payload), headers)


# -- the account quota: a pure model with an injected clock (no aiohttp, no asyncio) ------


def _check_share(_: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be a number from 0 to 1, got {value!r}")


def _check_burst(_: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer of at least 1, got {value!r}")


@attrs.frozen(kw_only=True)
class BackgroundConsumer:
    """Another consumer of the same API key (a dashboard, another job), for ``FakePatchworks``.

    It spends ``share`` of the quota: ``share * quota`` requests per window,
    steadily (``burst=1``: evenly spaced) or in bursts of ``burst`` requests sent
    at once, the bursts evenly spaced. It starts ``offset`` seconds after the server.
    Its requests are counted against the key like any other: over the quota they
    are refused (``FakePatchworks.background_denied``).

    Attributes:
        share: the share of the quota it spends, per window.
        burst: requests it sends at once (1: evenly spaced).
        offset: seconds after the server's start before it begins.
    """

    share: float = attrs.field(validator=_check_share)
    burst: int = attrs.field(default=1, validator=_check_burst)
    offset: float = attrs.field(default=0.0, validator=_check_delay)

    def spacing(self, quota: int, window: float) -> float:
        """Seconds between two bursts (``inf`` when it sends nothing).

        Args:
            quota: the key's requests per window.
            window: the window's length in seconds.

        Returns:
            The spacing of its bursts, in seconds.
        """
        per_window = self.share * quota
        return window * self.burst / per_window if per_window > 0 else math.inf


@attrs.frozen
class QuotaDecision:
    """One counted request's fate, and the figures for its headers."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: int | None = None


class AccountQuota:
    """Laravel's throttle, per key: a fixed window that starts at the key's first hit.

    A window starts at the first request of a key after the last window expired
    and lasts ``window`` seconds; up to ``limit`` requests are allowed in it, and
    refused ones are not counted. The background consumer's requests are applied
    lazily, each at its own time and in order, before any request of its key is
    counted: exact, with no task.

    Args:
        limit: requests per window.
        window: the window's length, in seconds.
        clock: the time, in seconds (monotonic).
        background: another consumer of ``background_key``, or ``None``.
        background_key: the key it spends (the fake's API key).
    """

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Callable[[], float],
        background: BackgroundConsumer | None = None,
        background_key: str = "",
    ) -> None:
        self.limit = limit
        self.window = window
        self.background = background
        self.background_sent = 0
        self.background_denied = 0
        self._clock = clock
        self._background_key = background_key
        self._windows: dict[str, list[float]] = {}  # key -> [window start, count]
        self._next_burst = math.inf

    def begin(self) -> None:
        """Start the background consumer (the server started now)."""
        if self.background is not None:
            self._next_burst = self._clock() + self.background.offset

    def reset(self) -> None:
        """Forget every window: every key starts afresh."""
        self._windows.clear()

    def hit(self, key: str) -> QuotaDecision:
        """Count one request of ``key`` now.

        Args:
            key: the credential (the ``Authorization`` value).

        Returns:
            Whether it is allowed, and the figures for its headers.
        """
        now = self._clock()
        if key == self._background_key:
            self.catch_up(now)
        return self._count(key, now)

    def catch_up(self, now: float) -> None:
        """Apply the background consumer's requests due by ``now``, each at its own time.

        Args:
            now: the time, on the model's clock.
        """
        background = self.background
        if background is None:
            return
        spacing = background.spacing(self.limit, self.window)
        while self._next_burst <= now:
            for _ in range(background.burst):
                if self._count(self._background_key, self._next_burst).allowed:
                    self.background_sent += 1
                else:
                    self.background_denied += 1
            self._next_burst += spacing

    def _count(self, key: str, now: float) -> QuotaDecision:
        window = self._windows.get(key)
        if window is None or now >= window[0] + self.window:
            window = self._windows[key] = [now, 0.0]
        if window[1] >= self.limit:
            retry_after = max(1, math.ceil(window[0] + self.window - now))
            return QuotaDecision(False, self.limit, 0, retry_after)
        window[1] += 1
        return QuotaDecision(True, self.limit, self.limit - int(window[1]))


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


class FakePatchworks:
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

    Every answer carries ``X-Request-Id`` (uuid4 hex). Injected faults are listed in
    ``faults_injected`` as ``(request, fault)`` pairs and counted by kind in
    ``fault_counts``; both are kept even when ``record`` is False, as is ``malformed``.
    ``login_count`` counts successful logins (tokens issued by the login endpoint).

    The quota is an :class:`AccountQuota` (``quota_model``; Laravel's throttle).
    ``background`` adds a :class:`BackgroundConsumer` that spends part of the API
    key's quota, so that a client can be tried on a shared key; ``background_sent``
    and ``background_denied`` count its requests. ``clock`` (default
    ``time.monotonic``) times token expiry, quota windows and the background
    consumer: pass the event loop's ``loop.time`` to run on a virtual clock.

    Attributes:
        url: the API's origin, ``http://127.0.0.1:<port>`` (set by ``start``): pass it
            as ``PatchworksClient(base_url=...)``.
        login_url: ``url`` + ``/fabric/api/login``: pass it as ``Login(url=...)``.
        api_key: the API key it accepts (``Authorization: <api_key>``).
        username, password: the login it accepts; a login answers a bearer token
            valid for ``token_ttl`` seconds.
        redirect_url: the origin ``Fault.redirected()`` sends requests to.
        instances: the instances by id (``add_instance``, ``authorise``), each a dict
            of its fields plus ``reauthorise_count``.
        requests: every request, as :class:`RecordedRequest` (when ``record``).
        request_count, authorise_count, login_count, connections_opened: counters.
        quota_model: the :class:`AccountQuota` behind ``quota``.
        background_sent, background_denied: the background consumer's requests.

    Args:
        api_key: the API key to accept; default: a random ``pw_test_...`` key.
        username: the login's username.
        password: the login's password; default: random.
        token_ttl: lifetime of a login token, in seconds.
        quota: requests per ``quota_window`` per credential; ``None``: no quota.
        quota_window: the quota's window, in seconds.
        host: the address to listen on.
        port: the port; 0 picks a free one (``port`` holds it once started).
        record: keep every request in ``requests`` (turn off for long runs).
        latency: seconds to wait before every answer.
        background: another consumer spending part of the API key's quota, or ``None``.
        clock: the time for token expiry, quota windows and ``background``
            (default ``time.monotonic``).

    Raises:
        ValueError: ``quota`` is negative, ``quota_window`` is not positive, or
            ``background`` is given without a ``quota``.
    """

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
        if quota is not None and quota < 0:
            raise ValueError("quota must be >= 0 or None")
        if quota_window <= 0:
            raise ValueError("quota_window must be > 0")
        if background is not None and quota is None:
            raise ValueError("background needs a quota to spend")
        self.api_key: str = api_key if api_key is not None else f"pw_test_{secrets.token_hex(16)}"
        self.username: str = username
        self.password: str = password if password is not None else secrets.token_urlsafe(18)
        self.token_ttl = token_ttl
        self.quota = quota
        self.quota_window = quota_window
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
        self.instances: dict[str, dict[str, Any]] = {}
        self.authorise_count = 0
        self.login_count = 0
        self.request_count = 0
        self.connections_opened = 0

        # Token expiry and quota windows read this clock (tests may replace it).
        self._clock: Callable[[], float] = clock or time.monotonic
        self._connection_ids: dict[RequestHandler, int] = {}
        self._tokens: dict[str, float] = {}
        # Read through self._clock at each call: tests may replace the clock.
        self.quota_model = AccountQuota(
            quota or 0, quota_window, lambda: self._clock(), background, self.api_key
        )
        self._next_id = 1
        self._scripted: list[tuple[Fault, str | None]] = []
        self._rate: tuple[float, tuple[Fault, ...], random.Random, str | None] | None = None
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
        try:
            server = _CountingServer(
                self,
                self._handle,
                request_factory=_make_request,
                access_log=None,
                # A client that cancels or disconnects frees its handler at once: a slow
                # fault (or ``latency``) stops sleeping instead of running its delay out.
                handler_cancellation=True,
            )
            self._runner = await self._serve(server, self.host, self.port)
            host, port = self._runner.addresses[0][:2]
            self.port = port
            self.url = f"http://{_url_host(host)}:{port}"
            self.login_url = self.url + LOGIN_PATH
            self.quota_model.begin()

            target = web.Server(
                self._handle_redirect_target,
                request_factory=_make_request,
                access_log=None,
                handler_cancellation=True,
            )
            self._redirect_runner = await self._serve(target, self.host, 0)
            host, port = self._redirect_runner.addresses[0][:2]
            self.redirect_url = f"http://{_url_host(host)}:{port}"
        except BaseException:
            await self.close()
            raise

    @staticmethod
    async def _serve(server: web.Server, host: str, port: int) -> web.ServerRunner:
        runner = web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
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

    # -- state helpers ----------------------------------------------------------------

    def add_instance(self, instance_id: str | int | None = None, **fields: Any) -> str:
        """Preseed an instance (not counted in ``authorise_count``); returns its id as str.

        ``reauthorise`` of that id then answers 200 instead of 404. Works before or
        after ``start``. An existing instance with the same id is replaced.

        Args:
            instance_id: the instance's id; without it, the next sequential integer.
            **fields: the instance's other fields (e.g. ``timezone="UTC"``), stored
                and answered as given.

        Returns:
            The id as a string: the key in ``instances`` and the connector to call.

        Raises:
            Nothing: any id and fields are accepted as they are.
        """
        if instance_id is None:
            instance_id = self._new_id()
        key = str(instance_id)
        self.instances[key] = {"id": instance_id, **fields, "reauthorise_count": 0}
        return key

    def issue_token(self, ttl: float | None = None) -> str:
        """Mint a bearer token valid for ``ttl`` seconds (default ``token_ttl``).

        Args:
            ttl: seconds the token is valid for, on the server's clock.

        Returns:
            The token, to pass as ``PatchworksClient(token=...)``.

        Raises:
            Nothing: a zero or negative ``ttl`` gives a token that is already expired.
        """
        token = secrets.token_urlsafe(32)
        self._tokens[token] = self._clock() + (self.token_ttl if ttl is None else ttl)
        return token

    def expire_tokens(self) -> None:
        """Expire every token issued so far (later tokens are not affected).

        The next call with such a token is answered 401, as an expired token is.

        Returns:
            None.
        """
        for token in self._tokens:
            self._tokens[token] = -math.inf

    def add_faults(self, *faults: Fault, paths: str | None = None) -> None:
        """Script faults: the next ``len(faults)`` matching requests get them, in order.

        Scripted faults are used up one per matching request and go before any
        ``set_fault_rate``. Faults added by later calls queue behind earlier ones.

        Args:
            *faults: the faults, one per matching request.
            paths: a substring of the raw path to match (e.g. ``"/reauthorise"``);
                ``None`` matches every request except the login endpoint.

        Returns:
            None.

        Raises:
            Nothing: a ``Fault`` is checked when it is built (see :class:`Fault`).
        """
        self._scripted.extend((fault, paths) for fault in faults)

    def set_fault_rate(
        self,
        rate: float,
        faults: Sequence[Fault],
        *,
        seed: int = 0,
        paths: str | None = None,
    ) -> None:
        """Give each matching request a random fault from ``faults`` with probability ``rate``.

        Scripted faults go first. Replaces any earlier rate.

        Args:
            rate: the probability, from 0 to 1; 0 (or no ``faults``) turns it off.
            faults: the faults to pick from, uniformly.
            seed: the seed of the fault schedule, so that a run can be replayed.
            paths: a substring of the raw path to match; ``None`` matches every
                request except the login endpoint.

        Returns:
            None.

        Raises:
            ValueError: ``rate`` is not between 0 and 1.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if rate == 0.0 or not faults:
            self._rate = None
            return
        # A seeded, reproducible fault schedule, not a security feature.
        self._rate = (rate, tuple(faults), random.Random(seed), paths)  # noqa: S311

    def reset_quota(self) -> None:
        """Forget every quota window: every credential starts afresh.

        Returns:
            None.
        """
        self.quota_model.reset()

    # -- internals --------------------------------------------------------------------

    def _new_id(self) -> int:
        while str(self._next_id) in self.instances:
            self._next_id += 1
        new = self._next_id
        self._next_id += 1
        return new

    def _pick_fault(self, path: str) -> Fault | None:
        is_login = path == LOGIN_PATH
        for index, (fault, paths) in enumerate(self._scripted):
            if (not is_login) if paths is None else (paths in path):
                del self._scripted[index]
                return fault
        if self._rate is not None:
            rate, faults, rng, paths = self._rate
            if ((not is_login) if paths is None else (paths in path)) and rng.random() < rate:
                return rng.choice(faults)
        return None

    def _make_record(
        self, request: web.BaseRequest, path: str, query: str, body: bytes, arrived: float
    ) -> RecordedRequest:
        return RecordedRequest(
            method=request.method,
            path=path,
            query=query,
            headers=dict(request.headers),
            json=_loads(body)[0] if body else None,
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
            _finish(too_large, 413)
            return _answer(413, {"message": "Request body too large."}, _base_headers()).response()

        record = self._make_record(request, path, query, body, arrived) if self.record else None
        if record is not None:
            self.requests.append(record)

        fault = self._pick_fault(path) if self._scripted or self._rate is not None else None
        if fault is not None:
            if record is None:
                record = self._make_record(request, path, query, body, arrived)
            object.__setattr__(record, "fault", fault)  # see _finish
            self.faults_injected.append((record, fault))
            self.fault_counts[fault.kind] += 1

        if self.latency > 0:
            await asyncio.sleep(self.latency)

        if fault is not None and not fault.after_processing:
            answer = self._refuse(fault, path, query)
            _finish(record, answer.status)
            return answer.response()

        answer, malformed = self._process(request, path, body)
        if malformed:
            if record is None:
                record = self._make_record(request, path, query, body, arrived)
            self.malformed.append(record)
        if fault is None:
            _finish(record, answer.status)
            return answer.response()
        return await self._misbehave(request, fault, answer, record)

    def _refuse(self, fault: Fault, path: str, query: str) -> _Answer:
        headers = _base_headers()
        if fault.kind == "redirect":
            location = self.redirect_url + path + (f"?{query}" if query else "")
            headers["Location"] = location
            return _answer(307, {"message": "Temporary Redirect."}, headers)
        if fault.retry_after is not None:
            headers["Retry-After"] = _retry_after_header(fault.retry_after)
        return _answer(fault.status, {"message": _reason(fault.status)}, headers)

    async def _misbehave(
        self,
        request: web.BaseRequest,
        fault: Fault,
        answer: _Answer,
        record: RecordedRequest | None,
    ) -> web.StreamResponse:
        kind = fault.kind
        if kind == "delay":
            _finish(record, answer.status)
            await asyncio.sleep(fault.delay)
            return answer.response()
        if kind == "drop":
            _finish(record, None)
            transport = request.transport
            if transport is not None:
                transport.close()
            # aiohttp cannot write to the closing transport and drops this answer quietly.
            return answer.response()
        if kind == "truncate":
            _finish(record, answer.status)
            return await self._truncate(request, answer)
        if kind == "malformed_json":
            answer = _Answer(200, b'{"id": ', answer.headers)
        elif kind == "html":
            answer = _Answer(fault.status, _HTML_BODY, answer.headers, "text/html")
        else:  # "not_object"
            answer = _Answer(200, b"[1, 2, 3]", answer.headers)
        _finish(record, answer.status)
        return answer.response()

    @staticmethod
    async def _truncate(request: web.BaseRequest, answer: _Answer) -> web.StreamResponse:
        body = answer.body or b"{}"
        response = web.StreamResponse(status=answer.status, headers=answer.headers)
        response.content_type = answer.content_type or _JSON
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        transport = request.transport
        if transport is not None:
            transport.close()  # flushes what was written, then closes
        return response

    def _process(self, request: web.BaseRequest, path: str, body: bytes) -> tuple[_Answer, bool]:
        """Route, authenticate, throttle, validate and act. Returns (answer, malformed)."""
        method = request.method
        connector: str | None = None
        expected = _METHODS.get(path)
        if expected is None:
            match = _REAUTHORISE.fullmatch(path)
            if match is not None and match.group(1) not in (".", ".."):
                expected = "PATCH"
                connector = unquote(match.group(1))
            else:
                return _answer(404, {"message": "Not Found."}, _base_headers()), True
        if method != expected:
            headers = _base_headers()
            headers["Allow"] = expected
            message = f"The {method} method is not supported for this route."
            return _answer(405, {"message": message}, headers), True

        if path == LOGIN_PATH:
            return self._login(request, body)

        credential = request.headers.get("Authorization", "")
        if not self._authenticated(credential):
            return _answer(401, {"message": "Unauthenticated."}, _base_headers()), False
        headers = _base_headers()
        if self.quota is not None and not self._throttle(credential, headers):
            return _answer(429, {"message": "Too Many Attempts."}, headers), False

        if path == _AUTHENTICATE:
            bearer = credential.startswith("Bearer ")
            user = {"email": self.username, "role": "administrator" if bearer else "manager"}
            return _answer(200, {"authenticated": True, "user": user}, headers), False
        if path == _WOO_APP_AUTH:
            return _Answer(200, b"", headers, None), False

        instance: dict[str, Any] | None = None
        if connector is not None:
            instance = self.instances.get(connector)
            if instance is None:
                message = f"No query results for instance [{connector}]."
                return _answer(404, {"message": message}, headers), False

        data, malformed = self._json_object(request, body)
        if data is None:
            return _not_an_object(headers), malformed
        if instance is None:
            return self._authorise(data, headers), False
        return self._reauthorise(instance, data, headers), False

    @staticmethod
    def _json_object(request: web.BaseRequest, body: bytes) -> tuple[dict[str, Any] | None, bool]:
        """The body as a JSON object; (None, malformed) when it is not one."""
        content_type = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if content_type != _JSON and not content_type.endswith("+json"):
            return None, True
        value, ok = _loads(body)
        if not ok:
            return None, True
        if not isinstance(value, dict):
            return None, False
        return value, False

    def _authenticated(self, credential: str) -> bool:
        if not credential:
            return False
        if credential.startswith("Bearer "):
            expires = self._tokens.get(credential[7:])
            return expires is not None and self._clock() < expires
        return secrets.compare_digest(credential.encode(), self.api_key.encode())

    @property
    def background_sent(self) -> int:
        """Requests of the background consumer that the quota allowed."""
        return self.quota_model.background_sent

    @property
    def background_denied(self) -> int:
        """Requests of the background consumer refused for the quota."""
        return self.quota_model.background_denied

    def _throttle(self, credential: str, headers: dict[str, str]) -> bool:
        """Count one request; fill the rate-limit headers; False when over the quota."""
        if self.quota is None:
            return True
        model = self.quota_model
        # ``quota`` and ``quota_window`` may be changed on a running fake, as before.
        model.limit, model.window = self.quota, self.quota_window
        decision = model.hit(credential)
        headers["X-RateLimit-Limit"] = str(decision.limit)
        headers["X-RateLimit-Remaining"] = str(decision.remaining)
        if decision.retry_after is not None:
            headers["Retry-After"] = str(decision.retry_after)
            headers["X-RateLimit-Reset"] = str(int(time.time()) + decision.retry_after)
        return decision.allowed

    def _login(self, request: web.BaseRequest, body: bytes) -> tuple[_Answer, bool]:
        headers = _base_headers()
        data, malformed = self._json_object(request, body)
        if data is None:
            return _not_an_object(headers), malformed
        errors = _validate(data, (("username", _STRING), ("password", _STRING)), ())
        if errors:
            return _answer(422, _validation_payload(errors), headers), False
        if not (
            secrets.compare_digest(data["username"].encode(), self.username.encode())
            and secrets.compare_digest(data["password"].encode(), self.password.encode())
        ):
            return _answer(401, {"message": "Invalid credentials."}, headers), False
        self.login_count += 1
        payload = {
            "message": "Login successful.",
            "token": self.issue_token(),
            "expires_in": int(self.token_ttl),
        }
        return _answer(200, payload, headers), False

    def _authorise(self, data: dict[str, Any], headers: dict[str, str]) -> _Answer:
        errors = _validate(data, _AUTHORISE_REQUIRED, _AUTHORISE_OPTIONAL)
        if errors:
            return _answer(422, _validation_payload(errors), headers)
        new_id = self._new_id()
        fields = {
            field: data[field]
            for field, _ in (*_AUTHORISE_REQUIRED, *_AUTHORISE_OPTIONAL)
            if field in data
        }
        instance = {"id": new_id, **fields, "reauthorise_count": 0}
        self.instances[str(new_id)] = instance
        self.authorise_count += 1
        return _answer(200, _public(instance), headers)

    @staticmethod
    def _reauthorise(
        instance: dict[str, Any], data: dict[str, Any], headers: dict[str, str]
    ) -> _Answer:
        errors = _validate(data, (), _REAUTHORISE_OPTIONAL)
        if errors:
            return _answer(422, _validation_payload(errors), headers)
        for field, _ in _REAUTHORISE_OPTIONAL:
            if field in data:
                instance[field] = data[field]
        instance["reauthorise_count"] = instance.get("reauthorise_count", 0) + 1
        return _answer(200, _public(instance), headers)

    async def _handle_redirect_target(self, request: web.BaseRequest) -> web.StreamResponse:
        arrived = time.monotonic()
        path, _, query = request.raw_path.partition("?")
        body = await request.read() if request.body_exists else b""
        record = RecordedRequest(
            method=request.method,
            path=path,
            query=query,
            headers=dict(request.headers),
            json=_loads(body)[0] if body else None,
            body=body,
            arrived=arrived,
            status=200,
        )
        self.redirect_target_requests.append(record)
        return _answer(200, {}, _base_headers()).response()


def _loads(body: bytes) -> tuple[Any, bool]:
    try:
        return orjson.loads(body), True
    except orjson.JSONDecodeError:
        return None, False


def _base_headers() -> dict[str, str]:
    return {"X-Request-Id": uuid.uuid4().hex}


def _not_an_object(headers: dict[str, str]) -> _Answer:
    message = "The request body must be a JSON object."
    return _answer(422, {"message": message, "errors": {"body": [message]}}, headers)


def _public(instance: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in instance.items() if key != "reauthorise_count"}


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

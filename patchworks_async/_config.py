"""The client's configuration: :class:`ClientConfig` and every check on it (no I/O)."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import ssl
from typing import Final
from urllib.parse import urlsplit

import attrs

from . import _constants
from ._adaptive import AdaptiveQuota, check_adaptive_quota
from ._auth import Auth, LoginAuth, StaticAuth
from ._backend import LimiterBackend
from ._errors import InvalidRequestError
from ._events import EventHook
from ._otel import TelemetrySettings, check_telemetry
from ._retry import RetryPolicy
from ._transport import ClientSession, Timeout, check_session
from .models import Login, RateLimit

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


def pick_auth(api_key: str | None, token: str | None, login: Login | None) -> Auth:
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


def check_timeout(timeout: object) -> Timeout:
    """The client's ``timeout``: seconds for one attempt, or a :class:`Timeout`.

    Raises:
        InvalidRequestError: not a number or a Timeout, or a timeout that is not positive.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float | Timeout):
        raise InvalidRequestError("timeout must be seconds or a Timeout", field="timeout")
    checked = timeout if isinstance(timeout, Timeout) else Timeout(total=float(timeout))
    if checked.total <= 0 or checked.connect <= 0:
        raise InvalidRequestError("timeouts must be positive", field="timeout")
    return checked


def check_max_connections(max_connections: object) -> int:
    """The pool's size, unchanged.

    Raises:
        InvalidRequestError: not an integer of at least 1.
    """
    if (
        isinstance(max_connections, bool)
        or not isinstance(max_connections, int)
        or (max_connections < 1)
    ):
        raise InvalidRequestError(
            "max_connections must be an integer of at least 1", field="max_connections"
        )
    return max_connections


def check_rate_limit(rate_limit: object) -> RateLimit | None:
    """A client-wide or instance limit, unchanged; ``None`` for no limit.

    Raises:
        InvalidRequestError: neither a RateLimit nor None.
    """
    if rate_limit is not None and not isinstance(rate_limit, RateLimit):
        raise InvalidRequestError("rate_limit must be a RateLimit or None", field="rate_limit")
    return rate_limit


def check_max_instance_limiters(max_instance_limiters: int) -> int:
    """How many idle per-instance limiters are kept, unchanged.

    Raises:
        InvalidRequestError: below 1.
    """
    if max_instance_limiters < 1:
        raise InvalidRequestError(
            "max_instance_limiters must be at least 1", field="max_instance_limiters"
        )
    return max_instance_limiters


def check_unreachable_after(unreachable_after: object) -> int | None:
    """``unreachable_after``, unchanged: an integer of at least 1, or ``None`` (off).

    Raises:
        InvalidRequestError: anything else.
    """
    if unreachable_after is None:
        return None
    if (
        isinstance(unreachable_after, bool)
        or not isinstance(unreachable_after, int)
        or unreachable_after < 1
    ):
        raise InvalidRequestError(
            "unreachable_after must be an integer of at least 1, or None to turn it off",
            field="unreachable_after",
        )
    return unreachable_after


def bind_limiter(
    limiter: object, api_key: str | None, token: str | None, login: Login | None, auth: Auth
) -> LimiterBackend | None:
    """Check a shared limiter backend and bind it to the credential's fingerprint.

    Raises:
        InvalidRequestError: not a LimiterBackend, or the backend refused the binding.
    """
    if limiter is None:
        return None
    if not isinstance(limiter, LimiterBackend):
        raise InvalidRequestError(
            "limiter must be a LimiterBackend (e.g. RedisLimiter)", field="limiter"
        )
    try:
        limiter.bind(credential_fingerprint(api_key, token, login, auth))
    except ValueError as exc:
        raise InvalidRequestError(str(exc), field="limiter") from None
    return limiter


def credential_fingerprint(
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


@attrs.frozen(kw_only=True)
class ClientConfig:
    """Every setting of one ``PatchworksClient``, checked once (see the client's arguments).

    Made by :meth:`check` from the constructor's arguments; frozen, so the pipeline
    and the client read one value. ``on_event`` is the hook the client starts with
    (``client.on_event`` may be set later: the pipeline holds the current one).
    ``telemetry`` holds the three OpenTelemetry arguments, checked (the providers are
    kept, not used, until the client builds its telemetry from them).
    Secrets stay out of the repr (``auth`` and the backend hide them; the repr is off).
    """

    auth: Auth
    base_url: str
    timeout: Timeout
    max_connections: int
    rate_limit: RateLimit | None
    session: ClientSession | None
    max_instance_limiters: int
    retry: RetryPolicy
    on_event: EventHook | None
    unreachable_after: int | None
    backend: LimiterBackend | None
    adaptive_quota: AdaptiveQuota | None
    max_response_bytes: int
    ssl_context: ssl.SSLContext | None
    telemetry: TelemetrySettings

    def __repr__(self) -> str:
        return f"<ClientConfig base_url={self.base_url!r} auth={self.auth.kind}>"

    # Over 40 lines only by its signature: the client's keyword arguments, one a line.
    @classmethod
    def check(
        cls,
        *,
        api_key: str | None,
        token: str | None,
        login: Login | None,
        base_url: str | None,
        session: object,
        timeout: object,
        max_connections: object,
        rate_limit: object,
        retry: RetryPolicy | None,
        max_instance_limiters: int,
        on_event: EventHook | None,
        allow_insecure_http: bool,
        max_response_bytes: int,
        ssl_context: ssl.SSLContext | None,
        limiter: object,
        adaptive_quota: bool | AdaptiveQuota,
        unreachable_after: object,
        opentelemetry: object,
        tracer_provider: object,
        meter_provider: object,
    ) -> ClientConfig:
        """Check the client's arguments, in the constructor's order; the configuration.

        With several bad arguments, the first one checked here is named.

        Returns:
            The checked configuration.

        Raises:
            InvalidRequestError: a bad argument, naming it.
        """
        auth = pick_auth(api_key, token, login)
        if login is not None:
            check_url("login.url", login.url, allow_insecure_http=allow_insecure_http)
        resolved = (
            base_url or os.environ.get(_constants.ENV_BASE_URL) or _constants.DEFAULT_BASE_URL
        )
        checked_url = check_url("base_url", resolved, allow_insecure_http=allow_insecure_http)
        return cls(
            auth=auth,
            base_url=checked_url.rstrip("/"),
            timeout=check_timeout(timeout),
            max_connections=check_max_connections(max_connections),
            rate_limit=check_rate_limit(rate_limit),
            session=check_session(session),
            max_instance_limiters=check_max_instance_limiters(max_instance_limiters),
            retry=retry if retry is not None else RetryPolicy.disabled(),
            on_event=on_event,
            unreachable_after=check_unreachable_after(unreachable_after),
            backend=bind_limiter(limiter, api_key, token, login, auth),
            adaptive_quota=check_adaptive_quota(adaptive_quota),
            max_response_bytes=max_response_bytes,
            ssl_context=ssl_context,
            telemetry=check_telemetry(opentelemetry, tracer_provider, meter_provider),
        )

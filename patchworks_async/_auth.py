"""The three ways to authenticate (DOMAIN.md "Authentication"), behind one small interface.

- API key: ``Authorization: <key>``, raw, no ``Bearer`` prefix. Keys never expire.
- Bearer token given by the caller: ``Authorization: Bearer <token>``.
- Login: ``POST <login url>`` with username and password answers a token and its
  ``expires_in``; the token is reused until shortly before it expires, one login
  serves every call that starts meanwhile, and a 401 forces one fresh login.

No object here shows a secret in its ``repr``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from . import _constants
from ._convert import encode_json
from ._errors import ResponseDecodeError
from ._sansio import api_error, decode_success, is_success
from ._transport import RawResponse, Transport
from .models import Login

# The clock token lifetimes are measured on (a module name, so tests can move it).
_monotonic = time.monotonic


class Auth(Protocol):
    """Gives the ``Authorization`` header value for the next request."""

    @property
    def kind(self) -> str:
        """``"api_key"``, ``"token"`` or ``"login"`` (for repr and logs)."""

    @property
    def refreshable(self) -> bool:
        """Whether a 401 can be cured by ``invalidate`` and another try."""

    async def header(self, transport: Transport) -> str:
        """The header value, logging in first when needed."""

    def invalidate(self, used: str) -> None:
        """Forget the credential behind ``used`` (a 401 came back for it)."""


class StaticAuth:
    """An API key (sent raw) or a caller's bearer token."""

    __slots__ = ("_header", "kind")

    def __init__(self, header: str, kind: str) -> None:
        self._header = header
        self.kind = kind

    @property
    def refreshable(self) -> bool:
        return False

    async def header(self, transport: Transport) -> str:
        return self._header

    def invalidate(self, used: str) -> None:
        """A static credential cannot be renewed: nothing to do."""

    def __repr__(self) -> str:
        return f"<StaticAuth {self.kind}>"


class LoginAuth:
    """Logs in with username and password and keeps the bearer token fresh."""

    kind = "login"

    def __init__(self, login: Login) -> None:
        self._login = login
        self._header: str | None = None
        self._expires_at = 0.0
        self._pending: asyncio.Future[str] | None = None

    @property
    def refreshable(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<LoginAuth username={self._login.username!r} url={self._login.url!r}>"

    def _valid(self) -> str | None:
        if self._header is not None and _monotonic() < self._expires_at:
            return self._header
        return None

    async def header(self, transport: Transport) -> str:
        current = self._valid()
        if current is not None:
            return current
        # One login at a time, shared by every caller that needs it: its token, or
        # its failure (a wrong password is tried once, not once per waiting call).
        pending = self._pending
        if pending is None:
            pending = self._pending = asyncio.ensure_future(self._log_in(transport))
            pending.add_done_callback(self._login_done)
        return await asyncio.shield(pending)

    def _login_done(self, pending: asyncio.Future[str]) -> None:
        if self._pending is pending:
            self._pending = None
        if not pending.cancelled():
            pending.exception()  # retrieved here, so an unawaited failure is not reported

    def invalidate(self, used: str) -> None:
        if self._header == used:
            self._header = None

    async def _log_in(self, transport: Transport) -> str:
        login = self._login
        body = encode_json({"username": login.username, "password": login.password})
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": _constants.USER_AGENT,
        }
        started = _monotonic()
        raw = await transport.send("POST", login.url, headers, body)
        if not is_success(raw.status):
            raise api_error(
                status=raw.status,
                method="POST",
                url=raw.url,
                headers=raw.headers,
                body=raw.body,
                now=time.time(),
            )
        token, expires_in = _read_token(raw)
        # Renew shortly before expiry: a minute early, or a tenth early for short lives.
        margin = min(_constants.TOKEN_REFRESH_MARGIN, float(expires_in) / 10)
        self._expires_at = started + float(expires_in) - margin
        self._header = f"Bearer {token}"
        return self._header


def _read_token(raw: RawResponse) -> tuple[str, float]:
    """The token and its lifetime in seconds from a login's successful answer.

    Args:
        raw: the login's answer (a 2xx).

    Returns:
        The token and ``expires_in`` (86400, the documented lifetime, when absent or
        not a number).

    Raises:
        ResponseDecodeError: the body is not a JSON object with a token; the error
            keeps none of the body (it may hold a token).
    """
    try:
        data = decode_success(status=raw.status, method="POST", url=raw.url, body=raw.body)
    except ResponseDecodeError as error:
        raise ResponseDecodeError(
            str(error), status=raw.status, method="POST", url=raw.url, body=b""
        ) from None
    token = data.get("token")
    expires_in = data.get("expires_in", 86400)
    if not isinstance(token, str) or not token:
        raise ResponseDecodeError(
            "the login response has no token",
            status=raw.status,
            method="POST",
            url=raw.url,
            body=b"",
        )
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        expires_in = 86400
    return token, float(expires_in)

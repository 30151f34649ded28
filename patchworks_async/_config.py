"""Checks of the client's configuration: URLs and credentials (pure, no I/O)."""

from __future__ import annotations

import hashlib
import ipaddress
import os
from typing import Final
from urllib.parse import urlsplit

from . import _constants
from ._auth import Auth, LoginAuth, StaticAuth
from ._errors import InvalidRequestError
from .models import Login

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

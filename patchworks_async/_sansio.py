"""The pure core: requests as values, responses as values, errors by table.

Nothing here imports aiohttp or asyncio, so everything here is tested without an
event loop (the gidgethub ``sansio`` idea): a request is built from the caller's
models, a response is judged from ``(status, headers, body)``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import attrs

from . import _constants
from ._convert import decode_json, encode_json, error_response, unstructure
from ._errors import (
    APIError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    UnprocessableEntityError,
)
from ._ratelimit import parse_retry_after
from .models import AuthoriseRequest, ReauthoriseRequest

OAUTH_PREFIX: Final = "/api/v1/oauth"
MAX_CONNECTOR_LENGTH: Final = 1024
_MAX_INT_CONNECTOR: Final = 10**MAX_CONNECTOR_LENGTH


class Safety(enum.Enum):
    """How safe a call is to send twice; decides which failures are retried."""

    #: Sending it twice has the effect of sending it once (reauthorise, authenticate).
    IDEMPOTENT = "idempotent"
    #: It creates something (authorise): only resend when it certainly was not acted on.
    CREATES = "creates"


@attrs.frozen(kw_only=True)
class Request:
    """One API call, ready for a transport: everything but credentials.

    Attributes:
        operation: the call's name, for logs and events (``"reauthorise"``).
        method, path: the HTTP method and the already percent-encoded path.
        body: the JSON body as bytes, or ``None`` for no body.
        safety: whether the call may be resent after an ambiguous failure.
        connector: the instance the call acts on (its limiter key), if any.
    """

    operation: str
    method: str
    path: str
    body: bytes | None = attrs.field(default=None, repr=False)
    safety: Safety = Safety.IDEMPOTENT
    connector: str | None = None

    @property
    def headers(self) -> Mapping[str, str]:
        """The request's headers, less ``Authorization`` (the client adds it).

        ``Content-Type: application/json`` goes on every request, as the
        Patchworks documentation asks (DOMAIN.md), bodiless POSTs included:
        otherwise aiohttp would label an empty POST ``application/octet-stream``.
        """
        return REQUEST_HEADERS


#: The headers of every API request, less ``Authorization`` (the same for every call).
REQUEST_HEADERS: Final[Mapping[str, str]] = {
    "Accept": "application/json",
    "Content-Type": "application/json",
    "User-Agent": _constants.USER_AGENT,
}


def connector_key(connector: object) -> str:
    """Check a connector id and return it as a string (the limiter registry's key).

    Raises:
        InvalidRequestError: when it is not a non-empty str or an int, or too long.
    """
    if isinstance(connector, bool) or not isinstance(connector, str | int):
        raise InvalidRequestError(
            f"connector must be a string or an integer, got {type(connector).__name__}",
            field="connector",
        )
    if isinstance(connector, int) and abs(connector) >= _MAX_INT_CONNECTOR:
        # Checked before str(): past 4,300 digits str() raises a plain ValueError.
        raise InvalidRequestError(
            f"connector is longer than {MAX_CONNECTOR_LENGTH} digits", field="connector"
        )
    text = str(connector)
    if not text:
        raise InvalidRequestError("connector must not be empty", field="connector")
    # ASCII (the usual id) holds no surrogate and is one byte a character: the
    # character scan and the encoding are skipped on every call's path.
    ascii_only = text.isascii()
    if not ascii_only and any(0xD800 <= ord(char) <= 0xDFFF for char in text):
        raise InvalidRequestError("connector holds a lone surrogate", field="connector")
    # Bytes, not characters: percent-encoded, 1,024 emoji would make a 12 kB path,
    # longer than the request line servers accept (aiohttp's: 8,190 bytes).
    if len(text) > MAX_CONNECTOR_LENGTH or (
        not ascii_only and len(text.encode()) > MAX_CONNECTOR_LENGTH
    ):
        raise InvalidRequestError(
            f"connector is longer than {MAX_CONNECTOR_LENGTH} bytes (UTF-8)", field="connector"
        )
    return text


def encode_segment(text: str) -> str:
    """Percent-encode ``text`` as exactly one path segment.

    Everything but RFC 3986's unreserved characters is encoded (``/``, ``?``,
    ``#``, ``%``, spaces, control and non-ASCII characters), and a segment of
    only dots (``.`` or ``..``) has its dots encoded too, since URL
    normalisation would otherwise remove it or climb a level.
    """
    if text.isascii() and text.isalnum():
        return text  # nothing to encode (the usual id): quote() skipped on every call
    encoded = quote(text, safe="")
    if encoded.strip(".") == "":
        encoded = "%2E" * len(encoded)
    return encoded


def _json_body(model: object) -> bytes:
    return encode_json(unstructure(model))


def build_authenticate() -> Request:
    """``POST /api/v1/oauth/authenticate`` (no body; the spec says "To be confirmed")."""
    return Request(operation="authenticate", method="POST", path=f"{OAUTH_PREFIX}/authenticate")


def build_authorise(request: AuthoriseRequest) -> Request:
    """``POST /api/v1/oauth/authorise``: creates an instance, so it is never resent blindly.

    Raises:
        InvalidRequestError: when ``request`` is not an AuthoriseRequest.
    """
    if not isinstance(request, AuthoriseRequest):
        raise InvalidRequestError(
            f"request must be an AuthoriseRequest, got {type(request).__name__}", field="request"
        )
    return Request(
        operation="authorise",
        method="POST",
        path=f"{OAUTH_PREFIX}/authorise",
        body=_json_body(request),
        safety=Safety.CREATES,
    )


def build_woo_app_auth() -> Request:
    """``POST /api/v1/oauth/woo-app-auth`` (no body; answers 200 with an empty body)."""
    return Request(operation="woo_app_auth", method="POST", path=f"{OAUTH_PREFIX}/woo-app-auth")


def build_reauthorise(connector: str | int, request: ReauthoriseRequest) -> Request:
    """``PATCH /api/v1/oauth/{connector}/reauthorise`` with ``connector`` as one encoded segment.

    Raises:
        InvalidRequestError: for a bad connector or a request of the wrong type.
    """
    key = connector_key(connector)
    if not isinstance(request, ReauthoriseRequest):
        raise InvalidRequestError(
            f"request must be a ReauthoriseRequest, got {type(request).__name__}",
            field="request",
        )
    return Request(
        operation="reauthorise",
        method="PATCH",
        path=f"{OAUTH_PREFIX}/{encode_segment(key)}/reauthorise",
        body=_json_body(request),
        connector=key,
    )


# Status -> error class, by table (STYLE.md 4); >= 500 falls back to ServerError.
_ERROR_BY_STATUS: Final[Mapping[int, type[APIError]]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}

_REQUEST_ID_HEADERS: Final = ("X-Request-Id", "X-Request-ID", "x-request-id", "Request-Id")


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Look a header up in any mapping (case-insensitive ones too)."""
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value


def error_class(status: int) -> type[APIError]:
    """The exception class for an error status."""
    found = _ERROR_BY_STATUS.get(status)
    if found is not None:
        return found
    return ServerError if status >= 500 else APIError


def decode_body(body: bytes) -> Any:
    """Decode an error body as JSON when it is JSON, else as text (never raises)."""
    if not body:
        return None
    try:
        return decode_json(body)
    except ValueError:
        return body[: _constants.ERROR_BODY_PREVIEW].decode("utf-8", "replace")


def api_error(
    *, status: int, method: str, url: str, headers: Mapping[str, str], body: bytes, now: float
) -> APIError:
    """Build the exception for a non-success response (``now`` is epoch seconds)."""
    decoded = decode_body(body)
    message = decoded.get("message") if isinstance(decoded, dict) else None
    request_id = next(
        (value for name in _REQUEST_ID_HEADERS if (value := header(headers, name))), None
    )
    fields: dict[str, Any] = {
        "status": status,
        "method": method,
        "url": url,
        "headers": headers,
        "body": decoded,
        "message": message if isinstance(message, str) else None,
        "request_id": request_id,
    }
    cls = error_class(status)
    if cls is UnprocessableEntityError:
        return UnprocessableEntityError(errors=error_response(decoded).errors, **fields)
    if cls is RateLimitError or cls is ServerError:
        # A 503 may carry Retry-After too; keep it for the retry decision.
        retry_after = parse_retry_after(header(headers, "Retry-After"), now=now)
        return cls(retry_after=retry_after, **fields)
    return cls(**fields)


def decode_success(*, status: int, method: str, url: str, body: bytes) -> dict[str, Any]:
    """The JSON object of a 2xx response (``{}`` for an empty body).

    Raises:
        ResponseDecodeError: when the body is not a JSON object.
    """
    if not body or body.isspace():
        return {}
    try:
        data = decode_json(body)
    except ValueError:
        raise ResponseDecodeError(
            f"{method} {url} answered {status} with a body that is not JSON",
            status=status,
            method=method,
            url=url,
            body=body[: _constants.ERROR_BODY_PREVIEW],
        ) from None
    if not isinstance(data, dict):
        raise ResponseDecodeError(
            f"{method} {url} answered {status} with JSON that is not an object "
            f"({type(data).__name__})",
            status=status,
            method=method,
            url=url,
            body=body[: _constants.ERROR_BODY_PREVIEW],
        )
    return data


def is_success(status: int) -> bool:
    """True for 2xx."""
    return 200 <= status < 300

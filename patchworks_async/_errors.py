"""Exceptions raised by patchworks-async.

This is a leaf module: it imports nothing from the rest of the package, so every
other module (pure core, transport, client) can raise these.

The tree::

    PatchworksError                      root of everything this package raises
    ├── InvalidRequestError (ValueError) bad input, caught before anything is sent
    │   ├── ModelValidationError (TypeError too)  a model cannot be built: every bad field
    │   └── DuplicateConnectorError      a bulk job's connector seen earlier in its input
    ├── EventLoopError (RuntimeError)    the client is used from a second event loop
    ├── TransportError                   the request did not get a complete HTTP answer
    │   ├── RequestTimeoutError          ... because a timeout ran out
    │   └── HostUnreachableError         ... because the host is deemed down (fail fast)
    ├── BulkStoppedError                 a bulk job stopped: it could not succeed
    ├── ResponseDecodeError              a body that must be a JSON object is not one
    ├── ResponseTooLargeError            a body is larger than the client's cap
    └── APIError                         the server answered with an error status
        ├── AuthenticationError          401
        ├── PermissionDeniedError        403
        ├── NotFoundError                404
        ├── UnprocessableEntityError     422 (Laravel validation error)
        ├── RateLimitError               429
        └── ServerError                  >= 500

No message built here ever contains a credential: the request headers are never
stored, and the response headers and body are the server's, not the caller's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Problems a ModelValidationError spells out in its message (``errors`` holds them all).
_MAX_LISTED = 20


def _restore(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    """Rebuild an exception without its ``__init__`` (pickle and copy call this)."""
    return cls.__new__(cls, *args)


def problems_text(errors: Mapping[str, str], valid_fields: Sequence[str] = ()) -> str:
    """Problems as one clause list: ``path problem; path problem; valid fields: ...``.

    At most 20 problems are spelt out (``; and N more``); the valid fields, when
    given, come last in a clause of their own.

    Args:
        errors: path -> what is wrong with it.
        valid_fields: the field names to list, or nothing.

    Returns:
        The text, without a trailing period.
    """
    listed = list(errors.items())[:_MAX_LISTED]
    parts = [f"{path} {problem}" for path, problem in listed]
    more = len(errors) - len(listed)
    if more:
        parts.append(f"and {more} more")
    if valid_fields:
        parts.append(f"valid fields: {', '.join(valid_fields)}")
    return "; ".join(parts)


class PatchworksError(Exception):
    """Root of every exception raised by patchworks-async.

    Every one pickles and copies with its attributes (for process pools and task
    queues), whatever its ``__init__`` takes.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the class, its ``args`` and its attributes (``__init__`` is not called)."""
        return (_restore, (type(self), self.args), self.__dict__)


class InvalidRequestError(PatchworksError, ValueError):
    """Raised before any I/O when the caller's input breaks the spec.

    Attributes:
        field: the name of the offending field (dotted for nested values), or
            ``None`` when the problem is not tied to one field.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ModelValidationError(InvalidRequestError, TypeError):
    """Raised when a model (a request, ``Variable``, ``RateLimit``, ``Login``) cannot be built.

    Raised by the models' constructors and their ``from_dict``, before anything is
    sent. Every bad field is named at once, by its path as the caller wrote it
    (``rate_limit_unit``, ``variables[2].key``); no value is ever echoed (a value may
    be a secret). It is an :class:`InvalidRequestError` (so a ``ValueError``) and also
    a ``TypeError``, which is what attrs raises for a missing or unknown argument:
    code written for either habit keeps catching it.

    Attributes:
        model: the class that could not be built (``"ReauthoriseRequest"``).
        errors: path -> what is wrong with it, in the order found.
        field: the first path of ``errors`` (``None`` when the input was no mapping at all).
        valid_fields: the model's field names, when an unknown field was given.
    """

    def __init__(
        self,
        model: str,
        errors: Mapping[str, str],
        *,
        valid_fields: Sequence[str] = (),
        message: str | None = None,
    ) -> None:
        self.model = model
        self.errors: dict[str, str] = dict(errors)
        self.valid_fields = tuple(valid_fields)
        if message is None:
            message = f"{model}: {problems_text(self.errors, self.valid_fields)}"
        super().__init__(message, field=next(iter(self.errors), None))


class EventLoopError(PatchworksError, RuntimeError):
    """Raised, before any I/O, when a client is used from a second event loop.

    One client serves the one event loop it was first used in (its limiters, its
    connection pool and its locks belong to that loop). Create one client per loop,
    for example one per ``asyncio.run``.
    """


class DuplicateConnectorError(InvalidRequestError):
    """A bulk job's item whose connector came earlier in the same input: not sent again.

    Attributes:
        connector: the connector, as the instance id it is sent as.
    """

    def __init__(self, message: str, *, connector: str) -> None:
        super().__init__(message, field="connector")
        self.connector = connector


class TransportError(PatchworksError):
    """Raised when a request got no complete HTTP response (refused, reset, cut off).

    Attributes:
        method, url: what was being sent.
        sent: ``False`` when the request certainly never reached the server
            (connection refused, DNS failure, connect timeout); ``True`` when
            it may have (the server may have acted on it).
        retriable: ``False`` for failures that another try cannot mend (a
            certificate that does not verify, a TLS handshake refused).
    """

    def __init__(
        self, message: str, *, method: str, url: str, sent: bool, retriable: bool = True
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.sent = sent
        self.retriable = retriable


class RequestTimeoutError(TransportError):
    """Raised when a connect, read or total timeout ran out."""


class HostUnreachableError(TransportError):
    """Raised instead of sending once the host is deemed down (``unreachable_after``).

    After that many consecutive calls failed with a :class:`TransportError` (no
    HTTP answer at all), the client fails calls at once, without sending them,
    for a cool-down; the last transport failure is the ``__cause__``. ``sent`` is
    ``False`` unless the call itself had an attempt that may have reached the host.
    """


class BulkStoppedError(PatchworksError):
    """Raised by ``reauthorise_many`` when the job stops because it cannot succeed.

    Raised after every outcome already finished has been yielded; the first
    error that stopped the job is the ``__cause__`` (and ``first_error``).

    Attributes:
        reason: ``"authentication"`` (401 not cured by a fresh login),
            ``"permission"`` (a run of 403s) or ``"unreachable"`` (the host).
        first_error: the error that stopped the job.
        finished: items read that got an outcome (yielded).
        not_sent: items read that got no outcome: never sent, cancelled while
            waiting for a retry, or (host unreachable) never answered.
            ``finished + not_sent`` is every item read.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        first_error: PatchworksError,
        finished: int,
        not_sent: int,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.first_error = first_error
        self.finished = finished
        self.not_sent = not_sent


class ResponseDecodeError(PatchworksError):
    """Raised when a response body that must be a JSON object is not one.

    Attributes:
        status, method, url: the response's status and the request.
        body: the first bytes of the body, for diagnosis.
    """

    def __init__(self, message: str, *, status: int, method: str, url: str, body: bytes) -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.url = url
        self.body = body


class ResponseTooLargeError(PatchworksError):
    """Raised when a response body is larger than ``max_response_bytes``.

    Attributes:
        method: the request's HTTP method.
        url: the request's URL.
        limit: the ``max_response_bytes`` that was exceeded.
    """

    def __init__(self, message: str, *, method: str, url: str, limit: int) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.limit = limit


class APIError(PatchworksError):
    """Raised when the server answers with a status that is not a success.

    Attributes:
        status: the HTTP status code.
        method, url: the request that got it.
        headers: the response headers.
        body: the decoded JSON body when it was JSON, else the text (may be empty).
        message: the body's ``message`` field when there is one.
        request_id: the server's request id header, when it sent one.
    """

    def __init__(
        self,
        *,
        status: int,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Any,
        message: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.method = method
        self.url = url
        self.headers = dict(headers)
        self.body = body
        self.message = message
        self.request_id = request_id
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"{self.method} {self.url} answered {self.status}"
        if self.message:
            text += f": {self.message}"
        if self.request_id:
            text += f" (request id {self.request_id})"
        return text


class AuthenticationError(APIError):
    """401: the API key or token is missing, wrong, revoked or expired."""


class PermissionDeniedError(APIError):
    """403: the credential is valid but not allowed to do this (some calls need an admin)."""


class NotFoundError(APIError):
    """404: no such resource, for example an unknown connector instance."""


class UnprocessableEntityError(APIError):
    """422: the server's (Laravel) validation refused the body.

    Attributes:
        errors: field name -> list of messages, as the server sent them.
    """

    def __init__(self, *, errors: Mapping[str, list[str]] | None = None, **kwargs: Any) -> None:
        self.errors: dict[str, list[str]] = dict(errors or {})
        super().__init__(**kwargs)


class RateLimitError(APIError):
    """429: too many requests.

    Attributes:
        retry_after: seconds the server asked us to wait, or ``None`` when it did not say.
    """

    def __init__(self, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(**kwargs)


class ServerError(APIError):
    """>= 500: the server failed.

    Attributes:
        retry_after: seconds from the response's ``Retry-After`` (a 503 may send one), or ``None``.
    """

    def __init__(self, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(**kwargs)

"""patchworks-async: an asyncio client for the Patchworks Core API.

The public API is what this module exports, plus the public submodules
``patchworks_async.models`` and ``patchworks_async.testing``; every module whose
name starts with ``_`` is private.
"""

from ._adaptive import AdaptiveQuota, QuotaFigures
from ._backend import LimiterBackend, PauseTarget
from ._client import PatchworksClient
from ._errors import (
    APIError,
    AuthenticationError,
    BulkStoppedError,
    DuplicateConnectorError,
    EventLoopError,
    HostUnreachableError,
    InvalidRequestError,
    ModelValidationError,
    NotFoundError,
    PatchworksError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ResponseDecodeError,
    ResponseTooLargeError,
    ServerError,
    TransportError,
    UnprocessableEntityError,
)
from ._events import Event, EventKind
from ._limits import Limiter
from ._oauth import OAuth
from ._outcomes import ReauthoriseFailure, ReauthoriseOutcome, ReauthoriseSuccess
from ._ratelimit import RateLimitState
from ._retry import RetryPolicy
from ._transport import Timeout
from ._version import __version__
from .models import (
    AuthoriseRequest,
    Connector,
    ErrorResponse,
    Instance,
    Login,
    RateLimit,
    RateLimitUnit,
    RateLimitUnitName,
    ReauthoriseRequest,
    Variable,
)

__all__ = [
    "APIError",
    "AdaptiveQuota",
    "AuthenticationError",
    "AuthoriseRequest",
    "BulkStoppedError",
    "Connector",
    "DuplicateConnectorError",
    "ErrorResponse",
    "Event",
    "EventKind",
    "EventLoopError",
    "HostUnreachableError",
    "Instance",
    "InvalidRequestError",
    "Limiter",
    "LimiterBackend",
    "Login",
    "ModelValidationError",
    "NotFoundError",
    "OAuth",
    "PatchworksClient",
    "PatchworksError",
    "PauseTarget",
    "PermissionDeniedError",
    "QuotaFigures",
    "RateLimit",
    "RateLimitError",
    "RateLimitState",
    "RateLimitUnit",
    "RateLimitUnitName",
    "ReauthoriseFailure",
    "ReauthoriseOutcome",
    "ReauthoriseRequest",
    "ReauthoriseSuccess",
    "RequestTimeoutError",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "ServerError",
    "Timeout",
    "TransportError",
    "UnprocessableEntityError",
    "Variable",
    "__version__",
]

"""Retry policy and retry decisions: pure values and functions, no event loop.

The decision table (README "Retries"):

============================  ======================  ==========================
failure                       idempotent calls        ``authorise`` (creates)
============================  ======================  ==========================
connection refused / DNS      retried                 retried (never reached it)
certificate / TLS failure     never                   never
connect timeout               retried                 retried (never reached it)
read timeout, dropped or      retried                 never (the server may
truncated response                                    have created the instance)
408, 500, 502, 504            retried                 never
429, 503                      retried                 retried (refused, not acted)
body not a JSON object        retried                 never
other 4xx                     never                   never
============================  ======================  ==========================

A wait the server asked for (``Retry-After``) is honoured exactly: it is never
jittered and never clipped by the total time cap. When it is longer than
``max_retry_after``, or would pass the total time cap, the call gives up at once
with the server's error instead of retrying early.
"""

from __future__ import annotations

from typing import Final

import attrs

from . import _constants
from ._errors import (
    APIError,
    PatchworksError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    TransportError,
)
from ._sansio import Safety


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name} must be a positive number")


def _at_least_one(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer of at least 1")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How a call is retried. Capped by attempts *and* by total time.

    Attributes:
        max_attempts: attempts in all, the first one included (1 = no retries).
        max_time: seconds from the first attempt after which no retry starts.
        backoff_base: the first backoff wait, doubled each retry (before jitter).
        backoff_max: the largest backoff wait (before jitter).
        max_retry_after: the longest ``Retry-After`` the client waits out; a
            longer one raises :class:`RateLimitError` at once.
        default_retry_after: the wait after a 429 or 503 that sent no Retry-After.
    """

    max_attempts: int = attrs.field(
        default=_constants.DEFAULT_MAX_ATTEMPTS, validator=_at_least_one
    )
    max_time: float = attrs.field(default=_constants.DEFAULT_MAX_RETRY_TIME, validator=_positive)
    backoff_base: float = attrs.field(default=_constants.DEFAULT_BACKOFF_BASE, validator=_positive)
    backoff_max: float = attrs.field(default=_constants.DEFAULT_BACKOFF_MAX, validator=_positive)
    max_retry_after: float = attrs.field(
        default=_constants.DEFAULT_MAX_RETRY_AFTER, validator=_positive
    )
    default_retry_after: float = attrs.field(
        default=_constants.DEFAULT_RETRY_AFTER, validator=_positive
    )

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that never retries.

        Returns:
            A :class:`RetryPolicy` with ``max_attempts=1`` and the other defaults.
        """
        return cls(max_attempts=1)


RETRIED_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
# Statuses that prove the server refused the request without acting on it.
REFUSED_STATUSES: Final = frozenset({429, 503})


@attrs.frozen(kw_only=True)
class RetryDecision:
    """What to do after a failed attempt.

    Attributes:
        retry: whether to try again.
        delay: seconds to wait first (``None`` when not retrying).
        server_delay: True when ``delay`` is the server's ``Retry-After``
            (honoured exactly: never jittered, never shortened).
        reason: a short explanation, for logs and events.
    """

    retry: bool
    delay: float | None = None
    server_delay: bool = False
    reason: str = ""


def is_retriable(error: PatchworksError, safety: Safety) -> bool:
    """Whether ``error`` may be retried for a call of this ``safety``, by the table above."""
    creates = safety is Safety.CREATES
    if isinstance(error, TransportError):
        return error.retriable and not (creates and error.sent)
    if isinstance(error, APIError):
        statuses = REFUSED_STATUSES if creates else RETRIED_STATUSES
        return error.status in statuses
    if isinstance(error, ResponseDecodeError):
        return not creates
    return False


def server_wait(error: PatchworksError, policy: RetryPolicy) -> float | None:
    """The wait the server asked for with this error, or ``None`` if it asked none.

    A 429 without ``Retry-After`` gets ``default_retry_after``.
    """
    if isinstance(error, RateLimitError | ServerError) and error.retry_after is not None:
        return error.retry_after
    if isinstance(error, RateLimitError):
        return policy.default_retry_after
    return None


def decide(
    policy: RetryPolicy,
    *,
    error: PatchworksError,
    safety: Safety,
    attempt: int,
    elapsed: float,
    backoff_delay: float,
) -> RetryDecision:
    """Decide whether attempt number ``attempt`` (1-based), which failed with ``error``, is retried.

    Args:
        policy: the retry policy.
        error: what the attempt raised.
        safety: the call's safety class.
        attempt: how many attempts have been made so far.
        elapsed: seconds since the first attempt started.
        backoff_delay: the jittered backoff wait to use when the server asked for none.

    Returns:
        The decision; ``delay`` is the exact wait before the next attempt.
    """
    if not is_retriable(error, safety):
        return RetryDecision(retry=False, reason="not retriable")
    if attempt >= policy.max_attempts:
        return RetryDecision(retry=False, reason=f"gave up after {attempt} attempts")
    asked = server_wait(error, policy)
    if asked is not None and asked > policy.max_retry_after:
        return RetryDecision(
            retry=False,
            reason=f"Retry-After {asked:g}s is over max_retry_after {policy.max_retry_after:g}s",
        )
    delay = asked if asked is not None else backoff_delay
    if elapsed + delay > policy.max_time:
        return RetryDecision(retry=False, reason=f"over the total time cap {policy.max_time:g}s")
    return RetryDecision(
        retry=True, delay=delay, server_delay=asked is not None, reason="retriable"
    )

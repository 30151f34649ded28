"""Pure parsing of what the server says about its limits.

``Retry-After`` (seconds or an HTTP date), and Laravel's throttle headers
``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``
(epoch seconds, sent on 429), as DOMAIN.md describes. No I/O, no event loop.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from typing import Final, Literal

import attrs

#: Where the quota's limit came from: the configuration or the server's header.
LimitSource = Literal["configured", "server"]


@attrs.frozen(kw_only=True)
class QuotaFigures:
    """What the client has learnt of the account's quota (``rate_limit_state.quota``).

    Attributes:
        limit: requests per window the client paces by.
        limit_source: ``"server"`` (``X-RateLimit-Limit``) or ``"configured"``.
        window_seconds: the window's length (the configured rate's unit).
        remaining: the lowest ``X-RateLimit-Remaining`` of this window, if known.
        resets_in: seconds until the window resets, at the latest (``None``: unknown).
        window_start_known: True once a rise of ``Remaining`` or a 429 showed when
            a window begins; before that the reset is a conservative guess.
        others_per_second: the other consumers' spending, as estimated.
        pace_per_second: the rate the client allows itself now.
        readings: readings used so far.
        ignored: readings not used, by reason.
    """

    limit: int
    limit_source: LimitSource
    window_seconds: float
    remaining: int | None
    resets_in: float | None
    window_start_known: bool
    others_per_second: float
    pace_per_second: float
    readings: int
    ignored: dict[str, int]


@attrs.frozen(kw_only=True)
class RateLimitState:
    """The latest rate-limit figures the server sent.

    Attributes:
        limit: ``X-RateLimit-Limit``, requests per window, if sent.
        remaining: ``X-RateLimit-Remaining``, if sent.
        reset_at: ``X-RateLimit-Reset`` as epoch seconds, if sent.
        retry_after: the last ``Retry-After`` in seconds, if this response sent one.
        observed_at: epoch seconds when the response was read.
        quota: with ``adaptive_quota``, what the client has learnt of the account's
            quota and where each figure came from (``None`` otherwise).
    """

    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None
    retry_after: float | None = None
    observed_at: float = 0.0
    quota: QuotaFigures | None = None

    def pause_for(self, *, now: float) -> float:
        """Seconds to hold every call before sending, by these figures (0 for none).

        Args:
            now: the current time, as epoch seconds.

        Returns:
            The longer of what is left of ``retry_after`` (counted from
            ``observed_at``) and, when ``remaining`` is 0 or less, the time to
            ``reset_at``; never negative.
        """
        wait = 0.0
        if self.retry_after is not None:
            wait = max(wait, self.observed_at + self.retry_after - now)
        if self.remaining is not None and self.remaining <= 0 and self.reset_at is not None:
            wait = max(wait, self.reset_at - now)
        return max(wait, 0.0)


def _get(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return headers.get(name.lower()) if value is None else value


def _parse_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value; ``now`` is epoch seconds.

    Accepts delta-seconds (``"120"``, and leniently ``"1.5"``) and an HTTP date.
    Returns ``None`` for a missing or unparseable value, and never a negative
    number (a date in the past means "now").
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def parse_rate_limit_headers(headers: Mapping[str, str], *, now: float) -> RateLimitState | None:
    """The figures in a response's headers, or ``None`` when it sent none of them."""
    limit = _parse_int(_get(headers, "X-RateLimit-Limit"))
    remaining = _parse_int(_get(headers, "X-RateLimit-Remaining"))
    reset = _parse_int(_get(headers, "X-RateLimit-Reset"))
    retry_after = parse_retry_after(_get(headers, "Retry-After"), now=now)
    if limit is None and remaining is None and reset is None and retry_after is None:
        return None
    return RateLimitState(
        limit=limit,
        remaining=remaining,
        reset_at=float(reset) if reset is not None else None,
        retry_after=retry_after,
        observed_at=now,
    )


#: Why a response's quota headers were not used (the keys of ``ignored`` counts).
MISSING: Final = "missing"
NOT_A_NUMBER: Final = "not a number"
NEGATIVE: Final = "negative"
ZERO_LIMIT: Final = "limit of 0"
REMAINING_ABOVE_LIMIT: Final = "remaining above limit"
LIMIT_JUMPED: Final = "limit jumped"
REMAINING_JUMPED: Final = "remaining jumped"

# Digits, nothing else (``int()`` would also take "+5", "1_000" and non-ASCII digits).
_DIGITS: Final = frozenset("0123456789")
# An X-RateLimit-* value longer than this is not a quota anybody has.
_MAX_DIGITS: Final = 12


@attrs.frozen
class QuotaReading:
    """One response's ``X-RateLimit-Limit`` and ``X-RateLimit-Remaining``, both sane."""

    limit: int
    remaining: int


def _count(value: str) -> int | str:
    """A header value as a whole number, or the reason it is not one."""
    text = value.strip()
    if text.startswith("-") and text[1:] and set(text[1:]) <= _DIGITS:
        return NEGATIVE
    if not text or len(text) > _MAX_DIGITS or not set(text) <= _DIGITS:
        return NOT_A_NUMBER
    return int(text)


def read_quota(limit: str | None, remaining: str | None) -> QuotaReading | str:
    """Check the two quota headers of one response.

    Args:
        limit: the ``X-RateLimit-Limit`` value as sent, or ``None``.
        remaining: the ``X-RateLimit-Remaining`` value as sent, or ``None``.

    Returns:
        A :class:`QuotaReading`, or the reason the pair is unusable (one of
        ``MISSING``, ``NOT_A_NUMBER``, ``NEGATIVE``, ``ZERO_LIMIT``,
        ``REMAINING_ABOVE_LIMIT``). Jumps need history: ``_adaptive`` judges them.
    """
    if limit is None or remaining is None:
        return MISSING
    parsed_limit = _count(limit)
    if isinstance(parsed_limit, str):
        return parsed_limit
    parsed_remaining = _count(remaining)
    if isinstance(parsed_remaining, str):
        return parsed_remaining
    if parsed_limit == 0:
        return ZERO_LIMIT
    if parsed_remaining > parsed_limit:
        return REMAINING_ABOVE_LIMIT
    return QuotaReading(parsed_limit, parsed_remaining)

"""Adaptive quota: the pace the server's own rate headers allow. Pure: no I/O, no event loop.

The Core API's quota is per account and shared by every consumer of the key; the
server sends ``X-RateLimit-Limit`` and ``X-RateLimit-Remaining`` on every response
(Laravel's throttle: a fixed window per key, which starts at the first counted
request after the last one expired; DOMAIN.md). :class:`QuotaTracker` follows them:

- **The limit.** ``X-RateLimit-Limit`` requests per window replace the configured
  guess, never above the user's ``ceiling``. The window's length is the configured
  rate's unit (the documented quota is per minute): the headers do not say it.
- **The window.** Its start is unknown until ``Remaining`` rises (a new window),
  or a 429 says when it resets; until then the window is assumed to have begun at
  the first reading, so its reset is never assumed earlier than it can be.
- **The others.** What the other consumers of the key spent since the window's
  first reading is what ``Remaining`` fell by, less this client's own responses.
  Their rate (over this window and the last ``HISTORY`` whole ones) is expected
  to go on until the reset; but once a whole window has been watched, never more
  than what they spent on average in a window, less what they already spent in
  this one (so a burst already spent is not reserved again).
  What they are expected to spend before the reset is reserved for them.
- **The pace.** What is left after that reserve is spread evenly over the time to
  the reset. Nothing left: wait for the reset.

Readings that make no sense leave the last good figures (or the configured limit)
in force and are counted by reason (``ignored``): missing or malformed headers
(``_ratelimit.read_quota``), a limit that changes without being confirmed by
``CONFIRMATIONS`` readings in a row, a ``Remaining`` that rises sooner than half a
window after the window began. No wait is ever longer than ``max_pause``.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from typing import Final

import attrs

from ._errors import InvalidRequestError
from ._ratelimit import LIMIT_JUMPED, MISSING, REMAINING_JUMPED, QuotaReading

# Defined beside RateLimitState (which holds one), re-exported here where it is made.
from ._ratelimit import LimitSource as LimitSource
from ._ratelimit import QuotaFigures as QuotaFigures
from .models import RateLimit

#: Readings in a row that a new ``X-RateLimit-Limit`` needs before it is believed.
CONFIRMATIONS: Final = 3
#: The spacing is stretched by this much (as the strict limiters' is, ``_limits``).
SAFETY_MARGIN: Final = 0.01
#: Kept back from what the others leave: a share of the limit, plus one request
#: (requests in flight are not in ``Remaining`` yet; clocks are not exact).
RESERVE_SHARE: Final = 0.005

#: A window watched for this share of its length counts as a whole one.
WHOLE: Final = 0.9
#: Whole windows whose spending by the others is averaged into the expectation.
HISTORY: Final = 3


def _check_ceiling(
    _instance: object, attribute: attrs.Attribute[RateLimit | None], value: object
) -> None:
    if value is not None and not isinstance(value, RateLimit):
        raise ValueError(f"{attribute.name} must be a RateLimit or None")


@attrs.frozen(kw_only=True)
class AdaptiveQuota:
    """How the client follows the server's ``X-RateLimit-*`` headers (``adaptive_quota=``).

    ``adaptive_quota=True`` is ``AdaptiveQuota()``.

    Attributes:
        ceiling: the client never sends faster than this, whatever the server's
            headers say (``None``: the server's limit is trusted, once confirmed).
    """

    ceiling: RateLimit | None = attrs.field(default=None, validator=_check_ceiling)


def check_adaptive_quota(value: object) -> AdaptiveQuota | None:
    """The client's ``adaptive_quota`` as a value: ``True`` is ``AdaptiveQuota()``, ``False`` None.

    Args:
        value: what the caller passed.

    Returns:
        The :class:`AdaptiveQuota` to follow, or ``None`` for the configured limit only.

    Raises:
        InvalidRequestError: neither a bool nor an AdaptiveQuota, naming ``adaptive_quota``.
    """
    if value is True:
        return AdaptiveQuota()
    if value is False:
        return None
    if isinstance(value, AdaptiveQuota):
        return value
    raise InvalidRequestError(
        "adaptive_quota must be True, False or an AdaptiveQuota", field="adaptive_quota"
    )


class QuotaTracker:
    """Learns the account's quota from responses and says when the next call may leave.

    One per client, shared by all its callers. Times are the caller's monotonic
    clock (the event loop's), passed in: the tracker reads no clock itself.

    Args:
        configured: the client's ``rate_limit``: the guess before any reading, and
            the window's length (its unit).
        ceiling: never faster than this (``None``: no ceiling).
        max_pause: no wait it asks for is longer than this, in seconds.
    """

    def __init__(
        self, configured: RateLimit, ceiling: RateLimit | None, *, max_pause: float
    ) -> None:
        self.configured = configured
        self.ceiling = ceiling
        self.window = configured.period
        self.max_pause = max_pause
        self.limit = configured.duration
        self.limit_source: LimitSource = "configured"
        self.readings = 0
        #: The monotonic time of the latest reading (used or not).
        self.last_seen = 0.0
        self.ignored: Counter[str] = Counter()
        #: Responses with no ``X-RateLimit-Remaining`` at all (see ``answered_bare``).
        self.missing = 0
        # Calls let go and not answered yet: ``Remaining`` does not show them.
        self._in_flight = 0
        self._candidate = (0, 0)  # a new limit not yet confirmed, and how often seen
        self._min_gap = self._gap_for(self.limit)
        self._ceiling_gap = (1 + SAFETY_MARGIN) / ceiling.per_second if ceiling else 0.0
        # The window: when it began (at the latest), and what was seen in it.
        self._start: float | None = None
        self._start_known = False
        self._first_at = 0.0  # the window's first reading: its time and Remaining
        # What the window held before the first reading's request was counted: the
        # whole limit when the window was seen to begin, else that reading's figure.
        self._baseline = 0
        self._remaining = 0  # the lowest Remaining of the window
        self._ours = 0  # our counted responses in the window
        # What the others spent in each of the last whole windows watched.
        self._history: deque[int] = deque(maxlen=HISTORY)

    def _gap_for(self, limit: int) -> float:
        per_second = limit / self.window
        if self.ceiling is not None:
            per_second = min(per_second, self.ceiling.per_second)
        return (1 + SAFETY_MARGIN) / per_second

    # -- learning ------------------------------------------------------------------------

    def observe(self, reading: QuotaReading | str, now: float, *, counted: bool = True) -> bool:
        """Learn from one response's quota headers.

        Args:
            reading: ``_ratelimit.read_quota``'s result: the figures, or why not.
            now: the monotonic time the response was read.
            counted: False for a response the server did not count (a 429).

        Returns:
            True when the reading was used, False when it was ignored (and counted).
        """
        self.last_seen = now
        if self._in_flight:
            self._in_flight -= 1
        if isinstance(reading, str):
            self.ignored[reading] += 1
            return False
        if not self._limit_agrees(reading.limit):
            self.ignored[LIMIT_JUMPED] += 1
            return False
        start = self._start
        if start is None or now >= start + self.window:
            # The window is over (its start was never later than ours), but this answer
            # may have been counted just before the end: the next window's start is not
            # known from it, and a rise soon after is that next window.
            self._new_window(reading, now, known=False, counted=counted)
        elif reading.remaining > self._remaining:
            if self._start_known and now < start + self.window / 2:
                # Laravel's window lasts a whole window: no reset this soon.
                self.ignored[REMAINING_JUMPED] += 1
                return False
            self._new_window(reading, now, known=True, counted=counted)
        else:
            self._remaining = reading.remaining
            self._ours += counted
        self.readings += 1
        return True

    def _limit_agrees(self, limit: int) -> bool:
        """True when ``limit`` is the one in force (or, confirmed, replaces it)."""
        if self.limit_source == "server" and limit == self.limit:
            self._candidate = (0, 0)
            return True
        value, seen = self._candidate
        seen = seen + 1 if value == limit else 1
        if self.limit_source == "server" and seen < CONFIRMATIONS:
            self._candidate = (limit, seen)
            return False
        # The first limit the server states is believed at once; a change, once confirmed.
        self._candidate = (0, 0)
        self.limit = limit
        self.limit_source = "server"
        self._min_gap = self._gap_for(limit)
        self._start = None  # figures of another limit say nothing of this one's window
        self._history.clear()
        return True

    def _new_window(self, reading: QuotaReading, now: float, *, known: bool, counted: bool) -> None:
        if self._start is not None and now - self._first_at >= self.window * WHOLE:
            self._history.append(self._others_spent())
        # The window began at or before ``now``: taking ``now`` puts the reset as
        # late as it can be, so the pace is never faster than the truth allows.
        self._start = now
        self._start_known = known
        self._first_at = now
        self._remaining = reading.remaining
        self._ours = int(counted)
        # A call lost without an answer would be in flight for ever: not past a window.
        self._in_flight = 0
        # Seen to begin: all it lost but ours went to the others, even before this
        # reading. Else what was spent before we looked is nobody's rate.
        self._baseline = self.limit if known else reading.remaining + self._ours

    def sent(self) -> None:
        """A call was let go: it counts against the budget until its answer is read."""
        self._in_flight += 1

    def answered_bare(self) -> None:
        """A response came without ``X-RateLimit-Remaining``: counted as ignored."""
        self.missing += 1
        if self._in_flight:
            self._in_flight -= 1

    def observe_reset(self, seconds: float, now: float) -> None:
        """A 429 said the window resets in ``seconds`` (``Retry-After``).

        Args:
            seconds: the time to the reset, as the server said (already non-negative).
            now: the monotonic time the response was read.
        """
        if self._start is None or not 0 < seconds <= self.window:
            return
        self._start = now + seconds - self.window
        self._start_known = True

    # -- pacing ----------------------------------------------------------------------------

    def others_per_second(self, now: float) -> float:
        """The other consumers' estimated spending, over this window and the last whole ones.

        Args:
            now: the current monotonic time.

        Returns:
            Requests per second (0 before two readings).
        """
        spent = self._others_spent() + sum(self._history)
        elapsed = now - self._first_at + len(self._history) * self.window
        if spent <= 0 or elapsed <= 0:
            return 0.0
        return spent / elapsed

    def _others_spent(self) -> int:
        return max(self._baseline - self._remaining - self._ours, 0)

    def next_send(self, last: float, now: float) -> float:
        """When the next call may leave, given when the last one did.

        Args:
            last: the monotonic time the last call left (``-inf`` for none).
            now: the current monotonic time.

        Returns:
            A monotonic time: ``last`` plus the limit's even spacing, later when
            the window's budget asks for it, but never more than ``max_pause``
            after ``now`` for anything the server said; and never sooner than
            ``last`` plus the ceiling's spacing, whatever the server said.
        """
        due = last + self._min_gap
        start = self._start
        if start is not None:
            left = start + self.window - now
            if left > 0:
                budget = self._budget(left, now)
                # Nothing left for us: wait for the reset. Else spread it evenly.
                due = max(due, now + left if budget < 1 else last + left / budget)
        return max(min(due, now + self.max_pause), last + self._ceiling_gap)

    def _budget(self, left: float, now: float) -> float:
        others = self.others_per_second(now) * left
        history = self._history
        if history:
            # A burst already spent in this window is not reserved a second time.
            expected = sum(history) / len(history) - self._others_spent()
            others = min(max(expected, 0.0), others)
        return self._remaining - self._in_flight - others - RESERVE_SHARE * self.limit - 1

    def ignored_counts(self) -> dict[str, int]:
        """Readings not used, by reason (responses without the headers as ``"missing"``).

        Returns:
            A new dict, reason -> count.
        """
        counts = dict(self.ignored)
        if self.missing:
            counts[MISSING] = counts.get(MISSING, 0) + self.missing
        return counts

    def figures(self, now: float) -> QuotaFigures:
        """What has been learnt, for ``rate_limit_state``.

        Args:
            now: the current monotonic time.

        Returns:
            A :class:`QuotaFigures` snapshot.
        """
        start = self._start
        resets_in = max(start + self.window - now, 0.0) if start is not None else None
        gap = max(self.next_send(now, now) - now, self._min_gap)
        return QuotaFigures(
            limit=self.limit,
            limit_source=self.limit_source,
            window_seconds=self.window,
            remaining=self._remaining if start is not None else None,
            resets_in=resets_in,
            window_start_known=self._start_known,
            others_per_second=self.others_per_second(now) if start is not None else 0.0,
            pace_per_second=1 / gap if gap > 0 and math.isfinite(gap) else 0.0,
            readings=self.readings,
            ignored=self.ignored_counts(),
        )

"""The fake's account quota: Laravel's throttle per key, and another consumer of the key.

A pure model with an injected clock (no aiohttp, no asyncio): ``AccountQuota.hit``
counts one request at the clock's time; the background consumer's requests are
applied lazily, each at its own time, so that no task runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["AccountQuota", "BackgroundConsumer"]


def _check_offset(_: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


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
    offset: float = attrs.field(default=0.0, validator=_check_offset)

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

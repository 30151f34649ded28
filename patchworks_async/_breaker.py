"""When to deem the host unreachable: a pure counter of consecutive transport failures.

``PatchworksClient(unreachable_after=N)``: once N distinct calls in a row have had
an attempt fail with a ``TransportError`` (no HTTP answer: connection refused,
connect or read timeout, reset), with no HTTP answer in between, the host is
deemed unreachable for ``cooldown`` seconds: calls then raise
``HostUnreachableError`` at once instead of each retrying for up to a minute.
After the cool-down, calls are sent again; the first that fails with a transport
error reopens it at once, the first HTTP answer (any status) closes it.

Calls, not attempts, are counted: one call's own retries cannot trip it alone.
No event loop and no clock here: ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Callable


class UnreachableHost:
    """The state: consecutive failed calls, and until when calls fail fast."""

    __slots__ = ("_failed_calls", "_open_until", "_probation", "cooldown", "threshold")

    def __init__(self, threshold: int, cooldown: float) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        # Identities of the calls in the current run of failures: at most `threshold`.
        self._failed_calls: set[int] = set()
        self._open_until = 0.0
        self._probation = False

    def is_open(self, now: float) -> bool:
        """Whether calls must fail fast at ``now``.

        Args:
            now: the current time on the caller's monotonic clock.

        Returns:
            True while the host is deemed unreachable.
        """
        return now < self._open_until

    def is_open_now(self, clock: Callable[[], float]) -> bool:
        """``is_open(clock())``, reading the clock only once calls have ever failed fast.

        Every call asks; a host never deemed unreachable costs no clock read.

        Args:
            clock: the caller's monotonic clock (``loop.time``).

        Returns:
            True while the host is deemed unreachable.
        """
        return bool(self._open_until) and clock() < self._open_until

    def answered(self) -> None:
        """The host gave an HTTP answer (any status): the run of failures ends."""
        if self._failed_calls or self._probation:
            self._failed_calls.clear()
            self._probation = False

    def failed(self, call: int, now: float) -> bool:
        """An attempt of call ``call`` got no HTTP answer.

        Args:
            call: an identity of the call (its retries share it).
            now: the current time on the caller's monotonic clock.

        Returns:
            True when this failure deems the host unreachable (from ``now`` on).
        """
        self._failed_calls.add(call)
        if self._probation or len(self._failed_calls) >= self.threshold:
            self._open_until = now + self.cooldown
            self._failed_calls.clear()
            self._probation = True
            return True
        return False

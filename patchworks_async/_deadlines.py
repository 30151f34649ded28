"""Which attempts are past their deadline, and when to look next: the pure part of the sweep.

aiohttp enforces ``ClientTimeout.total`` with one event-loop timer per request
(a ``TimeoutHandle``, a ``TimerHandle`` pushed on the loop's heap, a
``TimerContext`` entered at every read, a cancel, and the loop popping the
cancelled handle later): 8 to 13 us of CPU a request, measured here in paired
runs against a loopback server. The transport instead registers each attempt's
deadline in one :class:`Deadlines` per client and runs one sweep timer: a dict
insert and delete per attempt (with the task and the clock read, about 0.6 us).

This module holds the bookkeeping, with no event loop (house rule: pure logic
imports neither asyncio nor aiohttp): the glue that reads the loop's clock,
arms the timer and cancels the overdue tasks is ``_transport``'s.
"""

from __future__ import annotations

import math
from typing import Final, Generic, TypeVar

K = TypeVar("K")

#: The sweep looks at most this often (a short ``total`` is swept finely)...
FINEST_GRANULARITY: Final = 0.005
#: ...and at least this often (a long ``total`` is late by at most half a second).
COARSEST_GRANULARITY: Final = 0.5


def granularity(total: float) -> float:
    """How late past its deadline an attempt may be cancelled, for a given ``total``.

    A twentieth of ``total``, kept between 5 ms and 0.5 s: a timeout then fires
    between ``total`` and ``total + granularity(total)`` seconds after the attempt began.

    Args:
        total: the seconds one attempt may take.

    Returns:
        The seconds between two sweeps while attempts are waiting.
    """
    return min(max(total / 20, FINEST_GRANULARITY), COARSEST_GRANULARITY)


class Deadlines(Generic[K]):
    """The deadlines of the attempts in flight, and the one sweep timer's schedule.

    ``entries`` maps an attempt's key (the transport uses its task) to its
    deadline; the transport writes it directly on the hot path (a dict insert and
    pop, no method call). An entry that :meth:`sweep` removed is an attempt whose
    deadline passed: its owner finds it gone when it leaves.

    ``armed_at`` is when the sweep timer is due, or ``None`` when none is armed.
    Deadlines are added in the order of the loop's clock with the same ``total``,
    so an armed sweep is never later than the earliest deadline it must see:
    only an empty registry needs arming (:meth:`arm_for`).

    Attributes:
        total: the seconds one attempt may take.
        granularity: the least time between two sweeps (see :func:`granularity`).
        entries: each attempt in flight and its deadline on the loop's clock.
        armed_at: when the sweep timer is due, or ``None``.
    """

    __slots__ = ("armed_at", "entries", "granularity", "total")

    def __init__(self, total: float) -> None:
        self.total = total
        self.granularity = granularity(total)
        self.entries: dict[K, float] = {}
        self.armed_at: float | None = None

    def arm_for(self, deadline: float) -> float | None:
        """When to arm the sweep timer for a new ``deadline``, or ``None`` if one is armed.

        Args:
            deadline: the new attempt's deadline on the loop's clock.

        Returns:
            The time to arm the timer at (recorded as armed), or ``None`` (also for an
            infinite ``total``: nothing to sweep).
        """
        if self.armed_at is not None or deadline == math.inf:
            return None
        self.armed_at = deadline
        return deadline

    def sweep(self, now: float) -> tuple[list[K], float | None]:
        """Remove the entries due by ``now`` and say when to sweep next.

        Args:
            now: the loop's clock as the sweep runs.

        Returns:
            The keys whose deadline has passed (removed from ``entries``), and the
            time of the next sweep (recorded as armed), or ``None`` when no entry
            is left (then nothing stays armed).
        """
        entries = self.entries
        overdue = [key for key, deadline in entries.items() if deadline <= now]
        for key in overdue:
            del entries[key]
        if not entries:
            self.armed_at = None
            return overdue, None
        self.armed_at = max(min(entries.values()), now + self.granularity)
        return overdue, self.armed_at

    def disarm(self) -> None:
        """Forget the armed sweep (the transport cancelled its timer): the next attempt arms one."""
        self.armed_at = None

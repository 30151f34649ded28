"""Sliding-window counts: the one place the "at most N in any window" maths lives (pure).

The demo's summary, the benchmarks and the tests all prove pacing the same way: the
busiest half-open window ``[t, t + window)`` holds at most the limit's count.
"""

from __future__ import annotations

from collections.abc import Iterable


def max_in_window(times: Iterable[float], window: float) -> int:
    """The largest number of ``times`` inside any half-open window ``[t, t + window)``.

    The busiest window always starts at one of the times, so one pass with two
    pointers over the sorted times finds it.

    Args:
        times: moments, in seconds, in any order.
        window: the window's length, in the same unit.

    Returns:
        The count of the busiest window (0 for no times).
    """
    ordered = sorted(times)
    best = 0
    first = 0
    for last, moment in enumerate(ordered):
        while moment - ordered[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best

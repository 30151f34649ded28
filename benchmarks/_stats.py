"""Pure helpers: medians, sliding-window counts, rates per second (no I/O, no event loop).

``max_in_window`` is the package's own (``patchworks_async._windows``), re-exported here.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Iterable, Sequence

from patchworks_async._windows import max_in_window


def median(values: Iterable[float]) -> float:
    """The median; ``nan`` for no values."""
    data = list(values)
    return statistics.median(data) if data else float("nan")


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, ``nan`` when the denominator is 0."""
    return numerator / denominator if denominator else float("nan")


def achieved_rate(times: Sequence[float]) -> float:
    """Requests per second between the first and the last of the sorted ``times``.

    ``n`` requests span ``n - 1`` intervals; a perfectly paced run at rate ``r`` gives ``r``.
    """
    if len(times) < 2 or times[-1] <= times[0]:
        return float("nan")
    return (len(times) - 1) / (times[-1] - times[0])


def per_second(times: Sequence[float], start: float, bucket: float = 1.0) -> list[int]:
    """Counts of sorted ``times`` in consecutive buckets from ``start`` (for the plot)."""
    if not times:
        return []
    buckets = int((times[-1] - start) // bucket) + 1
    edges = [start + bucket * (index + 1) for index in range(buckets)]
    counts: list[int] = []
    previous = bisect.bisect_left(times, start)
    for edge in edges:
        upto = bisect.bisect_left(times, edge)
        counts.append(upto - previous)
        previous = upto
    return counts


__all__ = ["achieved_rate", "max_in_window", "median", "per_second", "ratio"]

"""python-backoff's delays for our own loops: written once, primed once.

The call pipeline's retries and the Redis backend's reconnects both wait
exponentially; both get their delays here, so python-backoff is imported by
this module only.
"""

from __future__ import annotations

from collections.abc import Iterator

import backoff

#: "Full jitter": a uniform draw between 0 and the delay (python-backoff's).
full_jitter = backoff.full_jitter


def expo_waits(first: float, maximum: float) -> Iterator[float]:
    """Delays doubling from ``first`` up to ``maximum``, before jitter; endless.

    Args:
        first: the first delay, in seconds.
        maximum: the largest delay, in seconds.

    Returns:
        An endless iterator of seconds.
    """
    waits = backoff.expo(base=2, factor=first, max_value=maximum)
    next(waits)  # python-backoff's generators yield 0 first, for priming
    return waits

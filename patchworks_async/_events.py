"""Attempt events: what the ``on_event`` hook receives and the DEBUG log lines say.

Metadata only: operation, connector id, attempt number, timings, status, the
error's class. Never a header, a body, a credential or a token.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

import attrs

logger = logging.getLogger("patchworks_async")


class EventKind(enum.StrEnum):
    """The stages of one attempt."""

    QUEUED = "queued"  #: the attempt is waiting for its turn in the limiters
    WAITED = "waited"  #: its turn came; ``waited_ms`` says how long it took
    SENT = "sent"  #: handed to the connection
    RESPONSE = "response"  #: a response came back (``status``) or the transport failed (``error``)
    RETRY = "retry"  #: a retry is scheduled after ``delay`` seconds
    GAVE_UP = "gave_up"  #: the call failed for good (``error``, ``reason``)


@attrs.frozen(kw_only=True)
class Event:
    """One stage of one attempt of one call.

    Attributes:
        kind: the stage (:class:`EventKind`).
        operation: the call, e.g. ``"reauthorise"``.
        attempt: the attempt's number, from 1.
        connector: the instance id, for calls on one instance.
        waited_ms: milliseconds spent in the limiters (``waited``).
        status: the response's HTTP status (``response``).
        delay: seconds until the retry (``retry``).
        error: the error's class name (``response``, ``gave_up``).
        reason: why the call gave up (``gave_up``).
    """

    kind: EventKind
    operation: str
    attempt: int
    connector: str | None = None
    waited_ms: float | None = None
    status: int | None = None
    delay: float | None = None
    error: str | None = None
    reason: str | None = None


EventHook = Callable[[Event], None]


def log_event(event: Event) -> None:
    """Write ``event`` as one DEBUG line (callers check ``logger.isEnabledFor`` first)."""
    parts = [f"{event.operation} attempt {event.attempt} {event.kind.value}"]
    if event.connector is not None:
        parts.append(f"connector={event.connector!r}")
    if event.waited_ms is not None:
        parts.append(f"waited_ms={event.waited_ms:.1f}")
    if event.status is not None:
        parts.append(f"status={event.status}")
    if event.delay is not None:
        parts.append(f"delay={event.delay:.3f}s")
    if event.error is not None:
        parts.append(f"error={event.error}")
    if event.reason:
        parts.append(f"reason={event.reason}")
    logger.debug(" ".join(parts))

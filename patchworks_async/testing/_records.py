"""What the fake received: one :class:`RecordedRequest` per request (pure, no I/O)."""

from __future__ import annotations

from typing import Any

import attrs

from ._faults import Fault

__all__ = ["RecordedRequest"]


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """One request as the fake received it.

    ``path`` is the raw path (percent-encoding kept) without the query; ``query`` is the
    raw query string without ``?``. ``json`` is the parsed body, or None when there was no
    body or it was not JSON. ``arrived`` is ``time.monotonic()`` on arrival. ``connection``
    numbers the TCP connections the server accepted, from 1 (0 on the redirect target).

    ``status`` and ``fault`` are filled in by the server once the answer is decided (before
    it is sent): ``status`` stays None while in flight and for a dropped connection.
    They take no part in equality or hashing. ``headers`` and ``body`` are left out of
    the ``repr``: they hold the credential (and a login's password), and a repr ends up
    in assertion messages and logs.

    Attributes:
        method: the HTTP method.
        path: the raw path, without the query.
        query: the raw query string, without ``?``.
        headers: the request's headers (not in ``repr``).
        json: the parsed body, or ``None``.
        body: the raw body (not in ``repr``).
        arrived: ``time.monotonic()`` on arrival.
        connection: the number of the TCP connection it came on.
        status: the status answered, once decided.
        fault: the fault injected into the answer, if any.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str] = attrs.field(repr=False)
    json: Any = attrs.field(repr=False)
    body: bytes = attrs.field(repr=False)
    arrived: float
    connection: int = 0
    status: int | None = attrs.field(default=None, eq=False)
    fault: Fault | None = attrs.field(default=None, eq=False)


def finish(record: RecordedRequest | None, status: int | None) -> None:
    """Fill in the status a record was answered (None: dropped); no-op without a record.

    Args:
        record: the record, or ``None`` when requests are not recorded.
        status: the status decided, before it is sent.
    """
    if record is not None:
        # Frozen for users; the server alone fills the answer in (an eq=False field).
        object.__setattr__(record, "status", status)

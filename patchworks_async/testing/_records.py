"""What the fake received: one :class:`RecordedRequest` per request (pure, no I/O).

:class:`Exchange` is a request in flight, from its arrival to its answer; it makes
its record when one is wanted (always when ``record`` is on, else only for a fault
or a malformed request, so a long run without records stays lean).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import attrs

from ._faults import Fault
from ._rules import loads

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


@attrs.define
class Exchange:
    """One request in flight: what arrived, the fault it got, and its record once made.

    Attributes:
        method: the HTTP method.
        path: the raw path, without the query.
        query: the raw query string, without ``?``.
        headers: the request's headers (the server's case-insensitive mapping).
        connection: the number of the TCP connection it came on (0: not numbered).
        arrived: ``time.monotonic()`` on arrival.
        body: the body bytes, once read.
        fault: the fault picked for it, if any.
        record: its :class:`RecordedRequest`, once made (see :meth:`recorded`).
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    connection: int
    arrived: float = attrs.field(factory=time.monotonic)
    body: bytes = b""
    fault: Fault | None = None
    record: RecordedRequest | None = None

    @classmethod
    def arriving(
        cls, method: str, raw_path: str, headers: Mapping[str, str], connection: int
    ) -> Exchange:
        """A request that has just arrived (its body not read yet).

        Args:
            method: the HTTP method.
            raw_path: the raw path with its query (percent-encoding kept).
            headers: the request's headers.
            connection: the number of its TCP connection (0: not numbered).

        Returns:
            The exchange, ``arrived`` now.
        """
        path, _, query = raw_path.partition("?")
        return cls(method, path, query, headers, connection)

    @property
    def target(self) -> str:
        """The raw path and its query, as the request named them."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def recorded(self) -> RecordedRequest:
        """The exchange's record, made on the first call (its ``fault`` included).

        Returns:
            The same :class:`RecordedRequest` at every call.
        """
        if self.record is None:
            self.record = RecordedRequest(
                method=self.method,
                path=self.path,
                query=self.query,
                headers=dict(self.headers),
                json=loads(self.body)[0] if self.body else None,
                body=self.body,
                arrived=self.arrived,
                connection=self.connection,
                fault=self.fault,
            )
        return self.record

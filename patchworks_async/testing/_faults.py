"""The fake's fault rules: what a scripted or random misbehaviour is, and which request gets one.

Pure (no aiohttp, no asyncio): :class:`Fault` (with :data:`FaultKind`), the schedule
that picks a request's fault (:class:`FaultRules`, which the fake's core extends:
scripted faults first, then a seeded rate), the answers of the faults that only change
what is said (a refusal, a redirect, a bad body), and what the others do to the
connection (:class:`Reply`: delay, drop, truncate), as a value that ``FakePatchworks``
carries out on the wire.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Final, Literal, TypeAlias

import attrs

from ._model import Answer, base_headers, json_answer
from ._rules import LOGIN_PATH

__all__ = ["Fault", "FaultKind"]

FaultKind = Literal[
    "status", "delay", "drop", "truncate", "malformed_json", "html", "not_object", "redirect"
]
_FAULT_KINDS: Final = frozenset(
    ("status", "delay", "drop", "truncate", "malformed_json", "html", "not_object", "redirect")
)
#: Kinds that answer without acting on the request at all.
_BEFORE_PROCESSING: Final = frozenset(("status", "redirect"))
_HTML_BODY: Final = b"<html><body>Bad gateway</body></html>"

#: What the adapter does with an answer: send it, send it late, drop the connection
#: without it, or send half its body and close.
WireAction: TypeAlias = Literal["send", "delay", "drop", "truncate"]


def _check_status(_: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise ValueError(f"{attribute.name} must be an HTTP status code, got {value!r}")


def _check_delay(_: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class Fault:
    """One scripted misbehaviour of the fake server.

    Kinds that refuse **before acting** (nothing is created or changed):

    - ``"status"``: answer ``status`` with ``{"message": ...}``; ``retry_after`` adds a
      ``Retry-After`` header (a number is sent as seconds: an integer when it is whole,
      else as written, e.g. ``0.5``; a string, e.g. an HTTP date, is sent as is).
    - ``"redirect"``: answer 307 with ``Location`` on a second server on another port
      (another origin); that server records what reaches it and answers 200 ``{}``.

    Kinds that **process the request first** (authorise creates the instance, reauthorise
    updates it, quota is counted) and then misbehave; they prove that a client must not
    blindly repeat a call whose answer it did not see:

    - ``"delay"``: wait ``delay`` seconds, then send the normal answer.
    - ``"drop"``: close the connection without sending a byte.
    - ``"truncate"``: send the normal status and headers with a ``Content-Length`` larger
      than the body bytes written (half of the body), then close the connection.
    - ``"malformed_json"``: 200, ``Content-Type: application/json``, body ``{"id": ``.
    - ``"html"``: ``status`` with ``<html><body>Bad gateway</body></html>``, ``text/html``.
    - ``"not_object"``: 200 with the JSON array ``[1, 2, 3]``.

    Attributes:
        kind: the misbehaviour, one of the kinds above.
        status: the status to answer (``"status"``, ``"html"``); default 503.
        retry_after: a ``Retry-After`` header to add (``"status"``).
        delay: seconds to wait before answering (``"delay"``).
    """

    kind: FaultKind = attrs.field(validator=attrs.validators.in_(_FAULT_KINDS))
    status: int = attrs.field(default=503, validator=_check_status)
    retry_after: float | str | None = None
    delay: float = attrs.field(default=0.0, validator=_check_delay)

    @property
    def after_processing(self) -> bool:
        """True when the server acts on the request before misbehaving."""
        return self.kind not in _BEFORE_PROCESSING

    @classmethod
    def status_code(cls, status: int = 503, *, retry_after: float | str | None = None) -> Fault:
        """Refuse with ``status`` before acting.

        Args:
            status: the HTTP status to answer, 100 to 599 (default 503).
            retry_after: the ``Retry-After`` header: seconds (a number) or an HTTP
                date (a string); ``None`` sends none.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.

        Raises:
            ValueError: ``status`` is not an HTTP status code.
        """
        return cls(kind="status", status=status, retry_after=retry_after)

    @classmethod
    def too_many(cls, retry_after: float | str | None = None) -> Fault:
        """Refuse with 429 (and ``Retry-After`` when given) before acting.

        Args:
            retry_after: the ``Retry-After`` header: seconds (a number) or an HTTP
                date (a string); ``None`` sends none.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.
        """
        return cls(kind="status", status=429, retry_after=retry_after)

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Act, then wait ``delay`` seconds before answering normally.

        Args:
            delay: seconds to wait, at least 0.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.

        Raises:
            ValueError: ``delay`` is negative or NaN.
        """
        return cls(kind="delay", delay=delay)

    @classmethod
    def dropped(cls) -> Fault:
        """Act, then close the connection without an answer.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.
        """
        return cls(kind="drop")

    @classmethod
    def truncated(cls) -> Fault:
        """Act, then send a body shorter than its ``Content-Length`` and close.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.
        """
        return cls(kind="truncate")

    @classmethod
    def malformed(cls) -> Fault:
        """Act, then answer 200 with invalid JSON.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.
        """
        return cls(kind="malformed_json")

    @classmethod
    def html(cls, status: int = 502) -> Fault:
        """Act, then answer ``status`` with an HTML page.

        Args:
            status: the HTTP status to answer, 100 to 599 (default 502).

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.

        Raises:
            ValueError: ``status`` is not an HTTP status code.
        """
        return cls(kind="html", status=status)

    @classmethod
    def non_object(cls) -> Fault:
        """Act, then answer 200 with a JSON array instead of an object.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.
        """
        return cls(kind="not_object")

    @classmethod
    def redirected(cls) -> Fault:
        """Answer 307 to the same path on another origin, without acting.

        Returns:
            The fault, for ``add_faults`` or ``set_fault_rate``.
        """
        return cls(kind="redirect")


def _matches(paths: str | None, path: str) -> bool:
    # None matches every request but the login endpoint.
    return path != LOGIN_PATH if paths is None else paths in path


class FaultRules:
    """Which request gets which fault: scripted faults first, then a seeded random rate.

    ``FakePatchworks`` is one: ``add_faults`` and ``set_fault_rate`` are its API; its
    core (``_core.FakeCore``) asks ``_pick_fault`` for each request's fault.
    """

    def __init__(self) -> None:
        self._scripted: list[tuple[Fault, str | None]] = []
        self._rate: tuple[float, tuple[Fault, ...], random.Random, str | None] | None = None

    def add_faults(self, *faults: Fault, paths: str | None = None) -> None:
        """Script faults: the next ``len(faults)`` matching requests get them, in order.

        Scripted faults are used up one per matching request and go before any
        ``set_fault_rate``. Faults added by later calls queue behind earlier ones.

        Args:
            *faults: the faults, one per matching request.
            paths: a substring of the raw path to match (e.g. ``"/reauthorise"``);
                ``None`` matches every request except the login endpoint.

        Returns:
            None.

        Raises:
            Nothing: a ``Fault`` is checked when it is built (see :class:`Fault`).
        """
        self._scripted.extend((fault, paths) for fault in faults)

    def set_fault_rate(
        self,
        rate: float,
        faults: Sequence[Fault],
        *,
        seed: int = 0,
        paths: str | None = None,
    ) -> None:
        """Give each matching request a random fault from ``faults`` with probability ``rate``.

        Scripted faults go first. Replaces any earlier rate.

        Args:
            rate: the probability, from 0 to 1; 0 (or no ``faults``) turns it off.
            faults: the faults to pick from, uniformly.
            seed: the seed of the fault schedule, so that a run can be replayed.
            paths: a substring of the raw path to match; ``None`` matches every
                request except the login endpoint.

        Returns:
            None.

        Raises:
            ValueError: ``rate`` is not between 0 and 1.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if rate == 0.0 or not faults:
            self._rate = None
            return
        # A seeded, reproducible fault schedule, not a security feature.
        self._rate = (rate, tuple(faults), random.Random(seed), paths)  # noqa: S311

    def _pick_fault(self, path: str) -> Fault | None:
        """The fault for a request to ``path`` (a scripted one is used up), or ``None``."""
        if not self._scripted and self._rate is None:
            return None
        for index, (fault, paths) in enumerate(self._scripted):
            if _matches(paths, path):
                del self._scripted[index]
                return fault
        if self._rate is not None:
            rate, faults, rng, paths = self._rate
            if _matches(paths, path) and rng.random() < rate:
                return rng.choice(faults)
        return None


def _retry_after_header(value: float | str) -> str:
    if isinstance(value, str):
        return value
    if float(value).is_integer():
        return str(int(value))
    return str(value)


def _reason(status: int) -> str:
    if status == 429:
        return "Too Many Attempts."
    try:
        return HTTPStatus(status).phrase + "."
    except ValueError:
        return "Error."


def refusal(fault: Fault, location: str) -> Answer:
    """The answer of a fault that refuses before acting (``status``, ``redirect``).

    Args:
        fault: the fault; ``fault.after_processing`` is False.
        location: where a redirect sends the request (the other origin, same path).

    Returns:
        The answer to send instead of acting.
    """
    headers = base_headers()
    if fault.kind == "redirect":
        headers["Location"] = location
        return json_answer(307, {"message": "Temporary Redirect."}, headers)
    if fault.retry_after is not None:
        headers["Retry-After"] = _retry_after_header(fault.retry_after)
    return json_answer(fault.status, {"message": _reason(fault.status)}, headers)


def reshaped(fault: Fault, answer: Answer) -> Answer:
    """The answer of a fault that acts, then sends a bad body (its headers are kept).

    Args:
        fault: a ``malformed_json``, ``html`` or ``not_object`` fault.
        answer: the answer the model decided.

    Returns:
        The answer to send instead.
    """
    if fault.kind == "malformed_json":
        return Answer(200, b'{"id": ', answer.headers)
    if fault.kind == "html":
        return Answer(fault.status, _HTML_BODY, answer.headers, "text/html")
    return Answer(200, b"[1, 2, 3]", answer.headers)  # "not_object"


@attrs.frozen
class Reply:
    """What goes on the wire for one request: an answer, and what to do with it.

    Attributes:
        answer: the answer; never sent for ``"drop"``, half its body for ``"truncate"``.
        action: ``"send"`` it; ``"delay"``: wait ``delay`` seconds, then send it;
            ``"drop"``: close the connection without a byte; ``"truncate"``: send the
            status, the headers and half the body under the full ``Content-Length``, close.
        delay: seconds to wait first (``"delay"``).
    """

    answer: Answer
    action: WireAction = "send"
    delay: float = 0.0

    @property
    def status(self) -> int | None:
        """The status the client is answered, or None when the connection is dropped."""
        return None if self.action == "drop" else self.answer.status


def applied(fault: Fault, answer: Answer) -> Reply:
    """What a fault that acts first does with the answer the model decided.

    Args:
        fault: a fault with ``after_processing`` True.
        answer: the model's answer.

    Returns:
        The reply: the answer reshaped (a bad body), or an action on the connection.
    """
    if fault.kind in ("delay", "drop", "truncate"):
        return Reply(answer, fault.kind, fault.delay)
    return Reply(reshaped(fault, answer))

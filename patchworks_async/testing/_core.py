"""The fake without its sockets: one request's course from arrival to what goes on the wire.

Pure (no aiohttp, no asyncio). :class:`FakeCore` is the model (``_model``) with the
fault rules (``_faults``) and the journal of what was received (``_records``); it
decides everything about a request and returns a :class:`~._faults.Reply`, which
``FakePatchworks`` (``_server``, the aiohttp adapter) carries out. The adapter calls,
for each request: ``_arrive`` (headers in), then ``_too_large`` (a body over the limit)
or ``_received`` (the body read), waits its ``latency``, then ``_respond``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from ._faults import Fault, FaultRules, Reply, applied, refusal
from ._model import Answer, PatchworksModel, json_answer
from ._records import Exchange, RecordedRequest, finish

__all__: list[str] = []  # FakePatchworks is the public face of this class


class FakeCore(PatchworksModel, FaultRules):
    """The fake's behaviour and bookkeeping, sans-io; ``FakePatchworks`` extends it.

    Behaviour, in the order a request meets it:

    1. Recorded (``requests`` when ``record``; ``request_count`` always).
    2. A fault is picked: the scripted ones (``add_faults``) first, then the random rate
       (``set_fault_rate``). (The adapter sleeps its ``latency`` here.)
    3. ``"status"`` and ``"redirect"`` faults answer now, without acting.
    4. Routing on the raw path: unknown path or method -> 404/405 (and ``malformed``).
    5. Authentication (not for login): ``Authorization: <api_key>`` or ``Bearer <token>``
       with a token from login or ``issue_token`` that has not expired -> else 401.
    6. Quota (when ``quota`` is set), a fixed window per ``Authorization`` value that
       starts at its first counted request: over ``quota`` -> 429 with ``Retry-After`` and
       ``X-RateLimit-Reset``. Every answer from here carries ``X-RateLimit-Limit`` and
       ``X-RateLimit-Remaining``.
    7. Unknown instance -> 404; body validation -> 422 (Laravel's shape); then the action.
    8. Faults that act first (``delay``, ``drop``, ``truncate``, ``malformed_json``,
       ``html``, ``not_object``) reshape the answer or act on the connection.

    Steps 4 to 7 are the model's (:class:`PatchworksModel`). Injected faults are listed
    in ``faults_injected`` as ``(request, fault)`` pairs and counted by kind in
    ``fault_counts``; both are kept even when ``record`` is False, as is ``malformed``.

    Attributes:
        record: keep every request in ``requests``.
        requests: every request, as :class:`RecordedRequest` (when ``record``).
        malformed: the requests a client should not have sent (unknown route, wrong
            method, a body that is not JSON).
        redirect_target_requests: what reached the redirect target.
        faults_injected, fault_counts: the faults given, and how many of each kind.
        request_count: requests received.
        redirect_url: the origin ``Fault.redirected()`` sends requests to.

    Args:
        record: keep every request in ``requests``.
        **model: :class:`PatchworksModel`'s arguments.

    Raises:
        ValueError: the model's arguments are inconsistent (see :class:`PatchworksModel`).
    """

    def __init__(self, *, record: bool = True, **model: Any) -> None:
        PatchworksModel.__init__(self, **model)
        FaultRules.__init__(self)
        self.record = record
        self.redirect_url: str = ""
        self.requests: list[RecordedRequest] = []
        self.malformed: list[RecordedRequest] = []
        self.redirect_target_requests: list[RecordedRequest] = []
        self.faults_injected: list[tuple[RecordedRequest, Fault]] = []
        self.fault_counts: Counter[str] = Counter()
        self.request_count = 0

    def _arrive(
        self, method: str, raw_path: str, headers: Mapping[str, str], connection: int
    ) -> Exchange:
        """Count a request whose headers have arrived; its body is read next."""
        self.request_count += 1
        return Exchange.arriving(method, raw_path, headers, connection)

    def _too_large(self, exchange: Exchange) -> Answer:
        """Record a request whose body is over the limit; its 413 answer (no fault)."""
        record = exchange.recorded()
        if self.record:
            self.requests.append(record)
        finish(record, 413)
        return json_answer(413, {"message": "Request body too large."})

    def _received(self, exchange: Exchange) -> None:
        """Record a request whose body has been read, and pick its fault."""
        fault = exchange.fault = self._pick_fault(exchange.path)
        if self.record:
            self.requests.append(exchange.recorded())
        if fault is not None:
            self.faults_injected.append((exchange.recorded(), fault))
            self.fault_counts[fault.kind] += 1

    def _respond(self, exchange: Exchange) -> Reply:
        """Answer a received request: its refusal, or the model's answer and its fault."""
        fault = exchange.fault
        if fault is not None and not fault.after_processing:
            reply = Reply(refusal(fault, self.redirect_url + exchange.target))
        else:
            answer = self.handle(exchange.method, exchange.path, exchange.headers, exchange.body)
            if answer.malformed:
                self.malformed.append(exchange.recorded())
            reply = Reply(answer) if fault is None else applied(fault, answer)
        finish(exchange.record, reply.status)
        return reply

    def _at_redirect_target(self, exchange: Exchange) -> Answer:
        """Record a request that reached the redirect target (not counted); its 200."""
        record = exchange.recorded()
        finish(record, 200)
        self.redirect_target_requests.append(record)
        return json_answer(200, {})

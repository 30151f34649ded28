"""Ring 1: the fake's core, one request from arrival to reply, without an event loop.

``testing/_core.py`` decides what the aiohttp adapter puts on the wire: the record,
the fault, a refusal or the model's answer, and the action on the connection
(``testing/_faults.Reply``). The same pattern as ``tests/test_fake_model.py``; the
end-to-end suites (``tests/test_fake_server.py``) cover it again through the adapter.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from patchworks_async.testing import Fault, RecordedRequest
from patchworks_async.testing._core import FakeCore
from patchworks_async.testing._faults import Reply, applied
from patchworks_async.testing._model import json_answer
from patchworks_async.testing._records import Exchange
from patchworks_async.testing._rules import LOGIN_PATH

KEY = "pw_test_core"
AUTHORISE = "/api/v1/oauth/authorise"
VALID = {
    "authentication_implementation_id": "impl",
    "timezone": "UTC",
    "date_format": "Y-m-d",
    "rate_limit_unit": "minute",
    "rate_limit_duration": 60,
}
HEADERS = {"Authorization": KEY, "Content-Type": "application/json"}


def _core(*, record: bool = True, fault: Fault | None = None) -> FakeCore:
    core = FakeCore(record=record, api_key=KEY, clock=lambda: 100.0)
    core.redirect_url = "http://127.0.0.1:2"
    if fault is not None:
        core.add_faults(fault)
    return core


def _through(
    core: FakeCore,
    method: str = "POST",
    raw_path: str = AUTHORISE,
    body: Any = VALID,
    connection: int = 3,
) -> tuple[Exchange, Reply]:
    """One request through the core, in the adapter's order (the latency aside)."""
    exchange = core._arrive(method, raw_path, HEADERS, connection)
    exchange.body = body if isinstance(body, bytes) else orjson.dumps(body)
    core._received(exchange)
    return exchange, core._respond(exchange)


CASES = [
    # (name, fault, action, status, acted, delay)
    ("no fault", None, "send", 200, True, 0.0),
    ("a refusal does not act", Fault.status_code(503, retry_after=2), "send", 503, False, 0.0),
    ("a 429 does not act", Fault.too_many(), "send", 429, False, 0.0),
    ("a redirect does not act", Fault.redirected(), "send", 307, False, 0.0),
    ("slow: acts, then waits", Fault.slow(1.5), "delay", 200, True, 1.5),
    ("dropped: acts, no status", Fault.dropped(), "drop", None, True, 0.0),
    ("truncated: acts, cuts", Fault.truncated(), "truncate", 200, True, 0.0),
    ("malformed JSON: acts", Fault.malformed(), "send", 200, True, 0.0),
    ("html: acts", Fault.html(502), "send", 502, True, 0.0),
    ("not an object: acts", Fault.non_object(), "send", 200, True, 0.0),
]


@pytest.mark.parametrize(
    ("fault", "action", "status", "acted", "delay"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_one_request_from_arrival_to_reply(
    fault: Fault | None, action: str, status: int | None, acted: bool, delay: float
) -> None:
    core = _core(fault=fault)
    exchange, reply = _through(core)
    assert (reply.action, reply.status, reply.delay) == (action, status, delay)
    assert core.authorise_count == int(acted)
    assert core.request_count == 1
    # The record: made, listed, answered with the reply's status and its fault.
    assert core.requests == [exchange.record]
    record = core.requests[0]
    assert (record.method, record.path, record.json, record.connection) == (
        "POST",
        AUTHORISE,
        VALID,
        3,
    )
    assert (record.status, record.fault) == (status, fault)
    if fault is None:
        assert (core.faults_injected, core.fault_counts) == ([], {})
    else:
        assert core.faults_injected == [(record, fault)]
        assert core.fault_counts == {fault.kind: 1}


def test_a_redirect_names_the_same_path_and_query_on_the_other_origin() -> None:
    core = _core(fault=Fault.redirected())
    _, reply = _through(core, raw_path=AUTHORISE + "?a=1&b=%2F")
    assert reply.answer.headers["Location"] == "http://127.0.0.1:2" + AUTHORISE + "?a=1&b=%2F"
    assert core.requests[0].query == "a=1&b=%2F"


def test_without_records_nothing_is_kept_but_faults_and_malformed_requests() -> None:
    core = _core(record=False)
    exchange, reply = _through(core)
    assert (reply.status, exchange.record, core.requests) == (200, None, [])
    core.add_faults(Fault.dropped())
    faulted, _ = _through(core)
    unknown, answered = _through(core, raw_path="/api/v1/nothing")
    assert answered.status == 404
    assert core.requests == []
    assert core.faults_injected == [(faulted.record, Fault.dropped())]
    assert core.malformed == [unknown.record]
    assert unknown.record is not None
    assert unknown.record.status == 404
    assert core.request_count == 3


def test_a_body_too_large_is_recorded_empty_and_gets_no_fault() -> None:
    core = _core(fault=Fault.status_code(500))
    exchange = core._arrive("POST", AUTHORISE, HEADERS, 1)
    answer = core._too_large(exchange)
    assert (answer.status, orjson.loads(answer.body)) == (
        413,
        {"message": "Request body too large."},
    )
    assert core.requests == [exchange.record]
    assert (core.requests[0].body, core.requests[0].json, core.requests[0].status) == (
        b"",
        None,
        413,
    )
    assert (core.request_count, core.faults_injected) == (1, [])
    _, reply = _through(core)  # the scripted fault is still there for the next request
    assert reply.status == 500


def test_the_redirect_target_records_without_counting() -> None:
    core = _core()
    exchange = Exchange.arriving("PATCH", "/api/v1/oauth/7/reauthorise?x=1", HEADERS, 0)
    exchange.body = b'{"timezone": "UTC"}'
    answer = core._at_redirect_target(exchange)
    assert (answer.status, orjson.loads(answer.body)) == (200, {})
    [record] = core.redirect_target_requests
    assert (record.path, record.query, record.connection, record.status) == (
        "/api/v1/oauth/7/reauthorise",
        "x=1",
        0,
        200,
    )
    assert (core.request_count, core.requests) == (0, [])


@pytest.mark.parametrize(
    ("raw_path", "path", "query", "target"),
    [
        ("/a/b", "/a/b", "", "/a/b"),
        ("/a%2Fb?x=1", "/a%2Fb", "x=1", "/a%2Fb?x=1"),
        ("/a?", "/a", "", "/a"),
        ("/a?x=1?y", "/a", "x=1?y", "/a?x=1?y"),
    ],
)
def test_an_exchange_splits_the_raw_path(raw_path: str, path: str, query: str, target: str) -> None:
    exchange = Exchange.arriving("GET", raw_path, {}, 1)
    assert (exchange.path, exchange.query, exchange.target) == (path, query, target)


def test_a_record_is_made_once_with_what_arrived() -> None:
    exchange = Exchange.arriving("POST", LOGIN_PATH, {"X-A": "1"}, 2)
    exchange.body = b"not json"
    record = exchange.recorded()
    assert exchange.recorded() is record
    assert record == RecordedRequest(
        method="POST",
        path=LOGIN_PATH,
        query="",
        headers={"X-A": "1"},
        json=None,
        body=b"not json",
        arrived=exchange.arrived,
        connection=2,
    )


@pytest.mark.parametrize(
    ("fault", "action", "status", "body"),
    [
        (Fault.slow(2), "delay", 201, b'{"id":1}'),
        (Fault.dropped(), "drop", None, b'{"id":1}'),
        (Fault.truncated(), "truncate", 201, b'{"id":1}'),
        (Fault.malformed(), "send", 200, b'{"id": '),
        (Fault.html(504), "send", 504, b"<html><body>Bad gateway</body></html>"),
        (Fault.non_object(), "send", 200, b"[1, 2, 3]"),
    ],
)
def test_a_fault_that_acts_first_applied_to_the_answer(
    fault: Fault, action: str, status: int | None, body: bytes
) -> None:
    answer = json_answer(201, {"id": 1}, {"X-Request-Id": "r", "X-RateLimit-Remaining": "3"})
    reply = applied(fault, answer)
    assert (reply.action, reply.status, reply.answer.body) == (action, status, body)
    assert reply.answer.headers == answer.headers
    assert reply.delay == fault.delay

"""Chaos: a bulk job and authorise calls through a server that misbehaves on ~10% of responses.

Every fault kind of issue 6 is in the mix except the redirect to another origin, which
is a security matter (``test_transport_security.py``): 503, 429 with a small
``Retry-After``, a dropped connection, a body cut off mid-stream, an answer slower than
the client's timeout, malformed JSON, an HTML page with 200 and with 502, and JSON that
is not an object. The fake picks each response's fault from a seeded generator, so a
run is reproducible in its faults (not in its interleaving), and it records every
request, so each item's story can be read back from the server's side.

What the test proves, item by item:

- one outcome per item (``reauthorise_many``'s index is a permutation of the input;
  ``authorise`` calls are gathered one result each);
- an item's ``attempts`` is the number of requests the server saw for it;
- ``authorise`` never creates an instance twice: the server processed each body at most
  once; a body is only received again after a refusal that proves nothing was done
  (429, 503); after a fault the server may have acted on, the client did not retry and
  the one instance exists;
- at least 99% of the items that met only retriable faults succeed;
- every failure is the error its last fault calls for, with its cause attached
  (``__cause__`` from aiohttp for transport failures, status and body otherwise).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, defaultdict
from typing import Any, Final
from urllib.parse import unquote

import aiohttp
import pytest

from patchworks_async import (
    AuthoriseRequest,
    PatchworksClient,
    PatchworksError,
    RateLimitError,
    ReauthoriseOutcome,
    ReauthoriseRequest,
    RequestTimeoutError,
    ResponseDecodeError,
    RetryPolicy,
    ServerError,
    Timeout,
    TransportError,
)
from patchworks_async.testing import FakePatchworks, Fault, RecordedRequest

REAUTHORISE_ITEMS: Final = 3_000
AUTHORISE_CALLS: Final = 300
FAULT_RATE: Final = 0.10
SEED: Final = 6
# The slow fault answers after SLOW_DELAY; the client gives up on an attempt after TIMEOUT.
TIMEOUT: Final = 1.0
SLOW_DELAY: Final = 1.5
POLICY: Final = RetryPolicy(max_attempts=8, max_time=60.0, backoff_base=0.01, backoff_max=0.05)

FAULTS: Final = (
    Fault.status_code(503),
    Fault.too_many(retry_after=0),
    Fault.too_many(retry_after=0.25),
    Fault.dropped(),
    Fault.truncated(),
    Fault.slow(SLOW_DELAY),
    Fault.malformed(),
    Fault.html(200),
    Fault.html(502),
    Fault.non_object(),
)
_REAUTHORISE_PATH: Final = re.compile(r"/api/v1/oauth/([^/]+)/reauthorise")


def label(fault: Fault) -> str:
    """A fault's name in the figures: ``503``, ``429``, ``drop``, ``html_502``, ..."""
    if fault.kind == "status":
        return str(fault.status)
    if fault.kind == "html":
        return f"html_{fault.status}"
    return {"delay": "slow"}.get(fault.kind, fault.kind)


def check_error_matches_fault(error: PatchworksError, fault: Fault) -> None:
    """``error`` is what ``fault`` calls for, and carries its cause."""
    name = label(fault)
    if name == "503":
        assert isinstance(error, ServerError)
        assert error.status == 503
        assert error.request_id  # the fake's X-Request-Id, for support tickets
    elif name == "429":
        assert isinstance(error, RateLimitError)
        assert error.retry_after == fault.retry_after
    elif name in ("drop", "truncate"):
        assert type(error) is TransportError
        assert error.sent  # the server may have acted
        assert isinstance(error.__cause__, aiohttp.ClientError)
    elif name == "slow":
        assert isinstance(error, RequestTimeoutError)
        assert error.sent
        assert isinstance(error.__cause__, TimeoutError)
    elif name == "html_502":
        assert isinstance(error, ServerError)
        assert error.status == 502
        assert "Bad gateway" in str(error.body)
    else:  # malformed_json, html_200, not_object: a 200 whose body is no JSON object
        assert isinstance(error, ResponseDecodeError)
        assert error.status == 200
        assert error.body


def by_connector(requests: list[RecordedRequest]) -> dict[str, list[RecordedRequest]]:
    found: dict[str, list[RecordedRequest]] = defaultdict(list)
    for record in requests:
        match = _REAUTHORISE_PATH.fullmatch(record.path)
        if match is not None:
            found[unquote(match.group(1))].append(record)
    return found


def by_name(requests: list[RecordedRequest]) -> dict[str, list[RecordedRequest]]:
    found: dict[str, list[RecordedRequest]] = defaultdict(list)
    for record in requests:
        if record.path == "/api/v1/oauth/authorise":
            assert isinstance(record.json, dict)
            found[record.json["name"]].append(record)
    return found


def processed(record: RecordedRequest) -> bool:
    """Whether the fake acted on the request (no fault, or a fault that acts first)."""
    return record.fault is None or record.fault.after_processing


def authorise_request(index: int) -> AuthoriseRequest:
    return AuthoriseRequest(
        authentication_implementation_id="impl-chaos",
        timezone="Europe/London",
        date_format="Y-m-d H:i:s",
        rate_limit_unit="minute",
        rate_limit_duration=60,
        extra={"name": f"n{index}"},
    )


@pytest.mark.slow
async def test_chaos_bulk_and_authorise() -> None:
    async with FakePatchworks() as fake:
        connectors = [fake.add_instance() for _ in range(REAUTHORISE_ITEMS)]
        preseeded = len(fake.instances)
        fake.set_fault_rate(FAULT_RATE, FAULTS, seed=SEED)
        async with PatchworksClient(
            base_url=fake.url,
            api_key=fake.api_key,
            rate_limit=None,
            retry=POLICY,
            timeout=Timeout(total=TIMEOUT, connect=TIMEOUT),
        ) as client:
            outcomes, results = await asyncio.gather(
                run_bulk(client, connectors), run_authorise(client)
            )

        figures = Figures()
        check_bulk(fake, connectors, outcomes, figures)
        check_authorise(fake, results, preseeded, figures)
        assert fake.malformed == []
        figures.requests = len(fake.requests)
        figures.faults = Counter(label(fault) for _, fault in fake.faults_injected)
        print(figures.report())  # the README's figures; shown with pytest -s

    # Every kind of the mix was injected, on both calls, so none went unexercised.
    assert set(figures.faults) == {label(fault) for fault in FAULTS}
    assert figures.authorise_retried_ok > 0
    assert sum(figures.authorise_failed_by.values()) > 0
    assert figures.retriable_faulty >= 250
    assert figures.retriable_ok / figures.retriable_faulty >= 0.99


async def run_bulk(client: PatchworksClient, connectors: list[str]) -> list[ReauthoriseOutcome]:
    items = [(key, ReauthoriseRequest(timezone="UTC")) for key in connectors]
    return [outcome async for outcome in client.oauth.reauthorise_many(items, concurrency=24)]


async def run_authorise(client: PatchworksClient) -> list[dict[str, Any] | BaseException]:
    slots = asyncio.Semaphore(8)

    async def one(index: int) -> dict[str, Any]:
        async with slots:
            return await client.oauth.authorise(authorise_request(index))

    return await asyncio.gather(*(one(i) for i in range(AUTHORISE_CALLS)), return_exceptions=True)


class Figures:
    """What the run measured (printed for the README)."""

    def __init__(self) -> None:
        self.requests = 0
        self.faults: Counter[str] = Counter()
        self.retriable_faulty = 0
        self.retriable_ok = 0
        self.clean_items = 0
        self.reauthorise_failed = 0
        self.authorise_ok = 0
        self.authorise_retried_ok = 0
        self.authorise_failed_by: Counter[str] = Counter()

    def report(self) -> str:
        share = self.retriable_ok / self.retriable_faulty if self.retriable_faulty else 1.0
        faults = ", ".join(f"{name} {count}" for name, count in sorted(self.faults.items()))
        return (
            f"\nchaos: {REAUTHORISE_ITEMS} reauthorise items + {AUTHORISE_CALLS} authorise "
            f"calls, {self.requests} requests, {sum(self.faults.values())} faults "
            f"({faults}); items that met only retriable faults: {self.retriable_faulty}, "
            f"succeeded {self.retriable_ok} ({share:.2%}); items with no fault: "
            f"{self.clean_items}, all succeeded; reauthorise failures {self.reauthorise_failed}; "
            f"authorise: {self.authorise_ok} created ({self.authorise_retried_ok} after a "
            f"429/503), failed without retry after a fault the server acted on: "
            f"{dict(sorted(self.authorise_failed_by.items()))}"
        )


def check_bulk(
    fake: FakePatchworks,
    connectors: list[str],
    outcomes: list[ReauthoriseOutcome],
    figures: Figures,
) -> None:
    assert sorted(outcome.index for outcome in outcomes) == list(range(len(connectors)))
    seen = by_connector(fake.requests)
    for outcome in outcomes:
        assert outcome.connector == connectors[outcome.index]
        records = seen[outcome.connector]
        assert outcome.attempts == len(records) >= 1
        faults = [record.fault for record in records if record.fault is not None]
        # Reauthorise is idempotent: every fault of the mix is retriable for it.
        if faults:
            figures.retriable_faulty += 1
            figures.retriable_ok += outcome.ok
        else:
            figures.clean_items += 1
            assert outcome.ok
        if outcome.ok:
            assert records[-1].fault is None
            assert outcome.result is not None
            assert outcome.result["timezone"] == "UTC"
            continue
        figures.reauthorise_failed += 1
        assert outcome.error is not None
        last = records[-1].fault
        assert last is not None, "a failure without a fault to cause it"
        check_error_matches_fault(outcome.error, last)
        assert outcome.attempts == POLICY.max_attempts
    assert figures.clean_items > 0


def check_authorise(
    fake: FakePatchworks,
    results: list[dict[str, Any] | BaseException],
    preseeded: int,
    figures: Figures,
) -> None:
    seen = by_name(fake.requests)
    instances_by_name = Counter(
        instance.get("name") for instance in fake.instances.values() if "name" in instance
    )
    assert max(instances_by_name.values()) == 1  # no instance was created twice
    processed_count = sum(processed(r) for records in seen.values() for r in records)
    assert fake.authorise_count == processed_count
    assert len(fake.instances) - preseeded == processed_count

    for index, result in enumerate(results):
        name = f"n{index}"
        records = seen[name]
        # The server acted on a body at most once, and only its last arrival: every
        # earlier one was refused with a status that proves nothing was done.
        assert all(r.fault is not None and not r.fault.after_processing for r in records[:-1])
        last = records[-1]
        if all(r.fault is None or not r.fault.after_processing for r in records) and any(
            r.fault is not None for r in records
        ):
            # Only refusals (429, 503) met: retriable for authorise too.
            figures.retriable_faulty += 1
            figures.retriable_ok += isinstance(result, dict)
        figures.clean_items += all(r.fault is None for r in records)
        if isinstance(result, dict):
            figures.authorise_ok += 1
            figures.authorise_retried_ok += len(records) > 1
            assert last.fault is None
            assert fake.instances[str(result["id"])]["name"] == name
            continue
        assert isinstance(result, PatchworksError), result
        assert last.fault is not None
        check_error_matches_fault(result, last.fault)
        if last.fault.after_processing:
            # The instance exists (the server acted) and the client did not resend.
            figures.authorise_failed_by[label(last.fault)] += 1
            assert instances_by_name[name] == 1
        else:
            # 429/503 on every one of the attempts: nothing was created.
            assert len(records) == POLICY.max_attempts
            assert instances_by_name[name] == 0

"""``demo``: the whole client at work against the embedded fake server, no account needed.

It starts :class:`~patchworks_async.testing.FakePatchworks` in this process with a
quota equal to the client's limit and a small rate of 503s and 429s (with
``Retry-After``), seeds a few thousand instances, and reauthorises them all with
``reauthorise_many`` under the client's limits. A few instances carry their own,
slower limit and get several calls each (they must not hold the others up), and
a few connectors do not exist (failures are outcomes, not crashes). Then it
prints what happened, measured on both sides.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Final

import attrs

from .._bulk import ReauthoriseOutcome
from .._client import PatchworksClient
from .._errors import NotFoundError
from .._events import Event, EventKind
from .._retry import RetryPolicy
from ..models import RateLimit, ReauthoriseRequest
from ..testing import FakePatchworks, Fault
from ._codes import EXIT_FAILED, EXIT_OK
from ._demosummary import DemoReport
from ._progress import DEFAULT_INTERVAL, Tally, make_reporter

# Slower than the client-wide share an instance gets, so the instance's own limit shows.
_PACED_RATE: Final = RateLimit("minute", 30)
#: Called on purpose: their 404s show that a failure is an outcome, not a crash.
UNKNOWN_CONNECTORS: Final = ("no-such-instance-1", "no-such-instance-2", "no-such-instance-3")
#: The Retry-After of the injected 503s and 429s, in seconds.
_RETRY_AFTER: Final = 1


@attrs.frozen(kw_only=True)
class DemoOptions:
    """The knobs of the demo; the command line's defaults are in ``demo --help``."""

    instances: int
    rate: int
    concurrency: int
    progress: str
    progress_interval: float = DEFAULT_INTERVAL
    fault_rate: float = 0.02
    paced_instances: int = 10
    paced_calls: int = 5
    paced_rate: RateLimit = _PACED_RATE

    @classmethod
    def quick(cls, progress: str, progress_interval: float = DEFAULT_INTERVAL) -> DemoOptions:
        """A demo of a few seconds (for tests and a first look)."""
        return cls(
            instances=300,
            rate=200,
            concurrency=16,
            progress=progress,
            progress_interval=progress_interval,
            paced_instances=3,
            paced_calls=3,
            paced_rate=RateLimit("second", 2),
        )


def _connectors(ids: Sequence[str], paced: Sequence[str], calls: int) -> list[str]:
    """Every instance once; each paced one ``calls`` times in a row; a few unknown ones.

    A paced instance's calls sit together in the input, so its own limiter holds
    them apart while the other instances' calls flow past (no head-of-line
    blocking). They sit in the first half, so their pacing ends before the rest.
    """
    chosen = set(paced)
    order = [key for key in ids if key not in chosen]
    _spread(order, [[key] for key in UNKNOWN_CONNECTORS], len(order))
    _spread(order, [[key] * calls for key in paced], len(order) // 2)
    return order


def _spread(order: list[str], blocks: Sequence[list[str]], span: int) -> None:
    """Insert ``blocks`` at even intervals within the first ``span`` positions of ``order``."""
    step = max(span // (len(blocks) + 1), 1)
    # From the last backwards, so earlier insertion points do not move.
    for number in range(len(blocks), 0, -1):
        order[number * step : number * step] = blocks[number - 1]


def _items(connectors: Sequence[str]) -> Iterator[tuple[str, ReauthoriseRequest]]:
    request = ReauthoriseRequest(timezone="Europe/London", date_format="Y-m-d H:i:s")
    for key in connectors:
        yield key, request


def _min_gap(fake: FakePatchworks, paced: Sequence[str]) -> float | None:
    gaps: list[float] = []
    for key in paced:
        times = sorted(r.arrived for r in fake.requests if r.path.endswith(f"/{key}/reauthorise"))
        gaps.extend(later - earlier for earlier, later in itertools.pairwise(times))
    return min(gaps) if gaps else None


class _Recorder:
    """The client's side of the run, from its ``on_event`` hook.

    Departures are taken when a request leaves (the ``sent`` event, right after
    its turn in the limiters): that is what the client's limit bounds. The server's
    arrivals come later by a varying delay (scheduling, the network).
    """

    def __init__(self) -> None:
        self.departures: list[float] = []
        self.retries: Counter[str] = Counter()
        self.pauses: list[tuple[float, float]] = []
        self._answers: dict[tuple[str | None, int], str] = {}

    def __call__(self, event: Event) -> None:
        now = time.monotonic()
        if event.kind is EventKind.SENT:
            self.departures.append(now)
        elif event.kind is EventKind.RESPONSE:
            what = str(event.status) if event.status is not None else str(event.error)
            self._answers[event.connector, event.attempt] = what
            if event.status == 429:  # the status that pauses the client
                self.pauses.append((now, now + _RETRY_AFTER))
        elif event.kind is EventKind.RETRY:
            self.retries[self._answers.pop((event.connector, event.attempt), "?")] += 1


@attrs.frozen
class _ClientRun:
    """The client's side of the bulk job: its counts and the connections it opened."""

    tally: Tally
    deliberate: int
    unexpected: Counter[str]
    connections: int


async def run_demo(options: DemoOptions) -> DemoReport:
    """Run the demo; progress on stderr, a few words on stdout.

    Args:
        options: the knobs.

    Returns:
        What was measured, for ``print_summary`` and ``exit_code``.
    """
    # At most one instance in ten is paced, so a small demo stays mostly unpaced.
    options = attrs.evolve(
        options, paced_instances=min(options.paced_instances, options.instances // 10)
    )
    recorder = _Recorder()
    async with FakePatchworks(quota=options.rate, quota_window=1.0) as fake:
        ids = _seed(fake, options)
        spacing = max(len(ids) // max(options.paced_instances, 1), 1)
        paced = ids[::spacing][: options.paced_instances]
        connectors = _connectors(ids, paced, options.paced_calls)
        _intro(fake, options, len(connectors))
        run = await _run_client(fake.url, fake.api_key, options, paced, connectors, recorder)
        return _report(options, fake, recorder, run, paced, len(connectors))


async def _run_client(
    url: str,
    api_key: str,
    options: DemoOptions,
    paced: Sequence[str],
    connectors: Sequence[str],
    recorder: _Recorder,
) -> _ClientRun:
    """Reauthorise ``connectors`` with a client limited as ``options`` say."""
    async with PatchworksClient(
        base_url=url,
        api_key=api_key,
        rate_limit=RateLimit("second", options.rate),
        retry=RetryPolicy(max_attempts=4, backoff_base=0.2, backoff_max=2.0),
        on_event=recorder,
    ) as client:
        for key in paced:
            client.set_instance_rate_limit(key, options.paced_rate)
        tally, deliberate, unexpected = await _reauthorise_all(client, connectors, options)
        return _ClientRun(tally, deliberate, unexpected, client.connections_opened)


def _report(
    options: DemoOptions,
    fake: FakePatchworks,
    recorder: _Recorder,
    run: _ClientRun,
    paced: Sequence[str],
    items: int,
) -> DemoReport:
    """What both sides measured."""
    return DemoReport(
        instances=options.instances,
        rate=options.rate,
        concurrency=options.concurrency,
        paced_instances=options.paced_instances,
        paced_calls=options.paced_calls,
        paced_rate=options.paced_rate,
        unknown_connectors=len(UNKNOWN_CONNECTORS),
        items=items,
        succeeded=run.tally.succeeded,
        deliberate_failures=run.deliberate,
        unexpected_failures=run.unexpected,
        retries=recorder.retries,
        elapsed=run.tally.elapsed,
        departures=recorder.departures,
        arrivals=[r.arrived for r in fake.requests],
        pauses=recorder.pauses,
        answers=Counter(r.status or 0 for r in fake.requests),
        requests_seen=fake.request_count,
        connections_opened=run.connections,
        paced_min_gap=_min_gap(fake, paced),
    )


def _seed(fake: FakePatchworks, options: DemoOptions) -> list[str]:
    """The instances, and the 503s and 429s (nine to one) injected at ``fault_rate``."""
    faults = [Fault.status_code(503, retry_after=_RETRY_AFTER)] * 9
    faults.append(Fault.too_many(retry_after=_RETRY_AFTER))
    fake.set_fault_rate(options.fault_rate, faults, seed=4, paths="/reauthorise")
    return [fake.add_instance(timezone="UTC") for _ in range(options.instances)]


def is_deliberate(outcome: ReauthoriseOutcome) -> bool:
    """True for the failure the demo asks for: a 404 for one of its unknown connectors.

    Args:
        outcome: one outcome of the bulk job.

    Returns:
        Whether it is a deliberate failure (any other failure is unexpected).
    """
    return outcome.connector in UNKNOWN_CONNECTORS and isinstance(outcome.error, NotFoundError)


def exit_code(report: DemoReport) -> int:
    """0 when every call succeeded but the deliberate ones, else 1 (``demo --help``).

    Args:
        report: what the demo measured.

    Returns:
        The command's exit code.
    """
    return EXIT_FAILED if report.unexpected_failures else EXIT_OK


async def _reauthorise_all(
    client: PatchworksClient, connectors: Sequence[str], options: DemoOptions
) -> tuple[Tally, int, Counter[str]]:
    """The bulk job under a progress display.

    Returns the tally, the deliberate failures, and the others by error class.
    """
    tally = Tally(len(connectors))
    reporter = make_reporter(
        options.progress, tally, description="reauthorising", interval=options.progress_interval
    )
    deliberate = 0
    unexpected: Counter[str] = Counter()
    reporter.start()
    try:
        # Paced instances come several times on purpose (to show their pacing).
        async for outcome in client.oauth.reauthorise_many(
            _items(connectors), concurrency=options.concurrency, deduplicate=False
        ):
            if outcome.ok:
                tally.succeeded += 1
            else:
                tally.failed += 1
                if is_deliberate(outcome):
                    deliberate += 1
                else:
                    unexpected[type(outcome.error).__name__] += 1
            reporter.update()
    finally:
        reporter.stop()
    return tally, deliberate, unexpected


def _intro(fake: FakePatchworks, options: DemoOptions, items: int) -> None:
    paced = (
        f"; {options.paced_instances} instances are paced at their own "
        f"{options.paced_rate.duration}/{options.paced_rate.unit.value} and get "
        f"{options.paced_calls} calls each."
        if options.paced_instances
        else "."
    )
    print(
        f"demo: a fake Patchworks server on {fake.url} with {options.instances} instances "
        f"(quota {options.rate} requests a second; about {options.fault_rate:.0%} of calls "
        f"answered 503 or 429 with Retry-After: {_RETRY_AFTER} s).\n"
        f"demo: reauthorising them all ({items} calls, {len(UNKNOWN_CONNECTORS)} of them to "
        f"connectors that do not exist, on purpose) with a client limited to "
        f"{options.rate}/second, {options.concurrency} calls at once{paced}",
        flush=True,
    )

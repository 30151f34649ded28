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

import contextlib
import itertools
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Final

import attrs

from .._client import PatchworksClient
from .._retry import RetryPolicy
from ..models import RateLimit, ReauthoriseRequest
from ..testing import FakePatchworks, Fault
from ._progress import DEFAULT_INTERVAL, Tally, make_reporter

# Slower than the client-wide share an instance gets, so the instance's own limit shows.
_PACED_RATE: Final = RateLimit("minute", 30)
UNKNOWN_CONNECTORS: Final = ("no-such-instance-1", "no-such-instance-2", "no-such-instance-3")


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


@attrs.frozen(kw_only=True)
class DemoReport:
    """What the demo measured."""

    options: DemoOptions
    items: int
    succeeded: int
    failed: Counter[str]
    retries: int
    elapsed: float
    requests_seen: int
    reauthorise_requests: int
    achieved_rate: float
    max_in_one_second: int
    faults: Counter[int]
    connections_opened: int
    paced_min_gap: float | None


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


def _max_in_window(arrivals: list[float], window: float = 1.0) -> int:
    """The most requests that arrived within any ``window`` seconds (a sliding window)."""
    arrivals = sorted(arrivals)
    best = 0
    first = 0
    for last, arrived in enumerate(arrivals):
        while arrived - arrivals[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


def _achieved_rate(arrivals: list[float]) -> float:
    """Requests a second from the first arrival to the last, as the server saw them."""
    if len(arrivals) < 2:
        return 0.0
    span = max(arrivals) - min(arrivals)
    return (len(arrivals) - 1) / span if span > 0 else 0.0


def _min_gap(fake: FakePatchworks, paced: Sequence[str]) -> float | None:
    gaps: list[float] = []
    for key in paced:
        times = sorted(r.arrived for r in fake.requests if r.path.endswith(f"/{key}/reauthorise"))
        gaps.extend(later - earlier for earlier, later in itertools.pairwise(times))
    return min(gaps) if gaps else None


async def run_demo(options: DemoOptions) -> DemoReport:
    """Run the demo; progress on stderr, a few words on stdout."""
    # At most one instance in ten is paced, so a small demo stays mostly unpaced.
    options = attrs.evolve(
        options, paced_instances=min(options.paced_instances, options.instances // 10)
    )
    faults = [Fault.status_code(503, retry_after=1)] * 9 + [Fault.too_many(retry_after=1)]
    async with FakePatchworks(quota=options.rate, quota_window=1.0) as fake:
        ids = [fake.add_instance(timezone="UTC") for _ in range(options.instances)]
        fake.set_fault_rate(options.fault_rate, faults, seed=4, paths="/reauthorise")
        spacing = max(len(ids) // max(options.paced_instances, 1), 1)
        paced = ids[::spacing][: options.paced_instances]
        connectors = _connectors(ids, paced, options.paced_calls)
        _intro(fake, options, len(connectors))
        async with PatchworksClient(
            base_url=fake.url,
            api_key=fake.api_key,
            rate_limit=RateLimit("second", options.rate),
            retry=RetryPolicy(max_attempts=4, backoff_base=0.2, backoff_max=2.0),
        ) as client:
            for key in paced:
                client.set_instance_rate_limit(key, options.paced_rate)
            tally, failed, retries = await _reauthorise_all(client, connectors, options)
            connections = client.connections_opened
        reauthorise = [r.arrived for r in fake.requests if r.path.endswith("/reauthorise")]
        return DemoReport(
            options=options,
            items=len(connectors),
            succeeded=tally.succeeded,
            failed=failed,
            retries=retries,
            elapsed=tally.elapsed,
            requests_seen=fake.request_count,
            reauthorise_requests=len(reauthorise),
            achieved_rate=_achieved_rate(reauthorise),
            max_in_one_second=_max_in_window(reauthorise),
            faults=Counter(r.status or 0 for r in fake.requests if r.status != 200),
            connections_opened=connections,
            paced_min_gap=_min_gap(fake, paced),
        )


async def _reauthorise_all(
    client: PatchworksClient, connectors: Sequence[str], options: DemoOptions
) -> tuple[Tally, Counter[str], int]:
    """The bulk job under a progress display; returns the tally, failures by type, retries."""
    tally = Tally(len(connectors))
    reporter = make_reporter(
        options.progress, tally, description="reauthorising", interval=options.progress_interval
    )
    failed: Counter[str] = Counter()
    retries = 0
    reporter.start()
    try:
        async for outcome in client.oauth.reauthorise_many(
            _items(connectors), concurrency=options.concurrency
        ):
            retries += max(outcome.attempts - 1, 0)
            if outcome.ok:
                tally.succeeded += 1
            else:
                tally.failed += 1
                failed[type(outcome.error).__name__] += 1
            reporter.update()
    finally:
        reporter.stop()
    return tally, failed, retries


def _intro(fake: FakePatchworks, options: DemoOptions, items: int) -> None:
    print(
        f"demo: a fake Patchworks server on {fake.url} with {options.instances} instances "
        f"(quota {options.rate} requests a second; about {options.fault_rate:.0%} of calls "
        f"answered 503 or 429 with Retry-After).\n"
        f"demo: reauthorising them all ({items} calls) with a client limited to "
        f"{options.rate}/second, {options.concurrency} calls at once"
        + (
            f"; {options.paced_instances} instances are paced at their own "
            f"{_rate_text(options.paced_rate)} and get {options.paced_calls} calls each."
            if options.paced_instances
            else "."
        ),
        flush=True,
    )


def _rate_text(rate: RateLimit) -> str:
    return f"{rate.duration}/{rate.unit.value}"


def summary_rows(report: DemoReport) -> list[tuple[str, str]]:
    """The summary as (label, value) rows."""
    options = report.options
    failed = sum(report.failed.values())
    kinds = ", ".join(f"{name} {count}" for name, count in report.failed.most_common())
    achieved = report.achieved_rate
    answers = ", ".join(f"{count} x {status}" for status, count in sorted(report.faults.items()))
    paced = options.paced_rate
    rows = [
        ("calls", f"{report.items} ({options.instances} instances)"),
        ("succeeded", str(report.succeeded)),
        ("failed", f"{failed} ({kinds})" if failed else "0"),
        ("retries", f"{report.retries} (the server answered {answers or 'nothing but 200'})"),
        ("elapsed", f"{report.elapsed:.1f} s"),
        (
            "achieved rate",
            f"{achieved:.1f} requests/s of the {options.rate}/s limit "
            f"({achieved / options.rate:.0%})",
        ),
        (
            "max requests in any 1 s",
            f"{report.max_in_one_second} (limit {options.rate})",
        ),
    ]
    if report.paced_min_gap is not None:
        rows.append(
            (
                "paced instances",
                f"{options.paced_instances} at {_rate_text(paced)}: closest calls "
                f"{report.paced_min_gap:.2f} s apart (limit {paced.interval:.2f} s)",
            )
        )
    rows += [
        ("connections opened", str(report.connections_opened)),
        ("requests the server saw", str(report.requests_seen)),
    ]
    return rows


def print_summary(report: DemoReport) -> None:
    """A rich table on a terminal, plain aligned text otherwise."""
    rows = summary_rows(report)
    if sys.stdout.isatty():
        with contextlib.suppress(ImportError):
            _print_table(rows)
            return
    width = max(len(label) for label, _ in rows)
    print("summary:")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


def _print_table(rows: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="patchworks-async demo", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("measured")
    for label, value in rows:
        table.add_row(label, value)
    Console().print(table)

"""What the demo measured, and its summary: pure functions over the recorded times.

The summary must explain itself: the deliberate failures are labelled, the numbers
add up (calls + retries = requests sent = requests the server saw; a 404 is a
failure, not a retry), and the rate is shown where the client-wide limiter set the
pace, next to the rate over the whole run and what took the difference (the pauses
a 429 asks for, waits with nothing to send).
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Final

import attrs

from .._windows import max_in_window
from ..models import RateLimit

#: A gap between two departures longer than this many of the limit's intervals is
#: idle time (a pause, a wait for retries), not pacing.
IDLE_INTERVALS: Final = 5


@attrs.frozen(kw_only=True)
class DemoReport:
    """What the demo measured (times are ``time.monotonic()`` seconds)."""

    instances: int
    rate: int
    concurrency: int
    paced_instances: int
    paced_calls: int
    paced_rate: RateLimit
    unknown_connectors: int
    items: int
    succeeded: int
    #: Failures of the unknown connectors with the 404 they are meant to get.
    deliberate_failures: int
    #: Any other failure, by error class.
    unexpected_failures: Counter[str]
    #: Retries by the error that caused them (from the client's ``retry`` events).
    retries: Counter[str]
    elapsed: float
    departures: Sequence[float]
    arrivals: Sequence[float]
    pauses: Sequence[tuple[float, float]]
    answers: Counter[int]
    requests_seen: int
    connections_opened: int
    paced_min_gap: float | None

    @property
    def retry_count(self) -> int:
        """Requests sent again after a retriable failure."""
        return sum(self.retries.values())

    @property
    def failed(self) -> int:
        """Calls that failed, deliberate ones included."""
        return self.deliberate_failures + sum(self.unexpected_failures.values())


@attrs.frozen
class Pacing:
    """The departures split into paced stretches and idle gaps."""

    requests: int  #: gaps between departures no longer than the idle threshold
    seconds: float  #: their total length
    paused: float  #: idle time within a pause the server asked for (429 Retry-After)
    idle: float  #: other idle time (waiting for retries, for paced instances, the end)

    @property
    def rate(self) -> float:
        """Requests a second while pacing."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def pacing(
    departures: Sequence[float], limit_per_second: float, pauses: Sequence[tuple[float, float]]
) -> Pacing:
    """Split a run into the time the limiter set the pace and the time it stood idle.

    Args:
        departures: when each request left the client.
        limit_per_second: the client-wide limit.
        pauses: (start, end) of each pause a 429 asked for.

    Returns:
        Requests and seconds while pacing, seconds paused and otherwise idle.
    """
    threshold = IDLE_INTERVALS / limit_per_second
    requests, seconds, paused, idle = 0, 0.0, 0.0, 0.0
    for earlier, later in itertools.pairwise(sorted(departures)):
        gap = later - earlier
        if gap <= threshold:
            requests += 1
            seconds += gap
        elif any(start < later and earlier < end for start, end in pauses):
            paused += gap
        else:
            idle += gap
    return Pacing(requests, seconds, paused, idle)


def overall_rate(times: Sequence[float]) -> float:
    """Events a second from the first to the last (0 with fewer than two)."""
    if len(times) < 2:
        return 0.0
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else 0.0


def _rate_text(rate: RateLimit) -> str:
    return f"{rate.duration}/{rate.unit.value}"


def _calls_row(report: DemoReport) -> str:
    extra = report.paced_instances * (report.paced_calls - 1)
    parts = [f"{report.instances} instances once"]
    if extra:
        parts.append(f"{extra} more to the {report.paced_instances} paced instances")
    parts.append(f"{report.unknown_connectors} to unknown connectors (deliberate)")
    return f"{report.items} = " + " + ".join(parts)


def _failed_row(report: DemoReport) -> str:
    why = f"NotFoundError (404) for the {report.unknown_connectors} unknown connectors"
    unexpected = sum(report.unexpected_failures.values())
    if not unexpected:
        return f"{report.failed}, all deliberate: {why}" if report.failed else "0"
    kinds = ", ".join(f"{name} {count}" for name, count in report.unexpected_failures.items())
    return (
        f"{report.failed}: {report.deliberate_failures} deliberate ({why}) and "
        f"{unexpected} UNEXPECTED ({kinds})"
    )


def _retries_row(report: DemoReport) -> str:
    if not report.retries:
        return "0"
    causes = ", ".join(f"{count} after a {name}" for name, count in report.retries.most_common())
    return f"{report.retry_count} ({causes}: the injected faults; a 404 is not retried)"


def _answers_row(report: DemoReport) -> str:
    labels = {200: "", 404: " (deliberate)", 429: " (injected)", 503: " (injected)"}
    return ", ".join(
        f"{count} x {status}{labels.get(status, '')}"
        for status, count in sorted(report.answers.items())
    )


def _rate_rows(report: DemoReport) -> list[tuple[str, str]]:
    paced = pacing(report.departures, report.rate, report.pauses)
    whole = overall_rate(report.departures)
    threshold_ms = IDLE_INTERVALS / report.rate * 1000
    return [
        (
            "rate while pacing",
            f"{paced.rate:.1f} requests/s of the {report.rate}/s limit "
            f"({paced.rate / report.rate:.0%}), over {paced.seconds:.1f} s "
            f"(gaps of at most {threshold_ms:.0f} ms between requests)",
        ),
        ("rate over the whole run", _whole_run_text(whole, report, paced)),
        (
            "max requests in any 1 s",
            f"{max_in_window(report.departures, 1.0)} leaving the client (limit {report.rate}); "
            f"{max_in_window(report.arrivals, 1.0)} arriving at the server (arrival jitter)",
        ),
    ]


def _whole_run_text(whole: float, report: DemoReport, paced: Pacing) -> str:
    lost = []
    if report.pauses:
        lost.append(f"{paced.paused:.1f} s of pauses the {len(report.pauses)} 429s asked for")
    lost.append(
        f"{paced.idle:.1f} s with nothing ready to send (waits for retries and paced "
        "instances, the last calls)"
    )
    return f"{whole:.1f} requests/s ({whole / report.rate:.0%}): it includes " + " and ".join(lost)


def summary_rows(report: DemoReport) -> list[tuple[str, str]]:
    """The summary as (label, value) rows.

    Args:
        report: what the demo measured.

    Returns:
        The rows, in the order to print.
    """
    sent = len(report.departures)
    rows = [
        ("calls", _calls_row(report)),
        ("succeeded", str(report.succeeded)),
        ("failed", _failed_row(report)),
        ("retries", _retries_row(report)),
        (
            "requests sent",
            f"{sent} = {report.items} calls + {report.retry_count} retries; "
            f"the server saw {report.requests_seen}",
        ),
        ("server answers", _answers_row(report)),
        ("elapsed", f"{report.elapsed:.1f} s"),
        *_rate_rows(report),
    ]
    if report.paced_min_gap is not None:
        rate = report.paced_rate
        rows.append(
            (
                "paced instances",
                f"{report.paced_instances} at {_rate_text(rate)}: closest calls "
                f"{report.paced_min_gap:.2f} s apart (limit {rate.interval:.2f} s)",
            )
        )
    rows.append(("connections opened", str(report.connections_opened)))
    return rows


def print_summary(report: DemoReport) -> None:
    """A rich table on a terminal, plain aligned text otherwise.

    Args:
        report: what the demo measured.
    """
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

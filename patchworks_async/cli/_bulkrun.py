"""``bulk-reauthorise``: feed the input lazily to ``reauthorise_many``, record every outcome.

Every record of the input ends as exactly one output line (an outcome, or a bad
line with its reason), except records skipped on ``--resume`` because their
connector already has an ``"ok": true`` line. Outcomes are written the moment
they are yielded. Cancellation (Ctrl-C) stops the job through ``reauthorise_many``,
which cancels and awaits every call it started; what was written stays true. So does
a job that stops because it cannot succeed (``BulkStoppedError``): items never sent
get no line, so ``--resume`` sends them.

While no call has been answered, the progress display says what is happening:
``cannot connect to HOST, retrying`` or ``no answer from HOST yet``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Generator
from typing import Final

from .._bulk import ReauthoriseOutcome
from .._client import PatchworksClient
from .._errors import AuthenticationError, HostUnreachableError
from .._events import Event, EventKind
from ..models import ReauthoriseRequest
from ._bulkinput import BadLine, InputReader
from ._bulkoutput import OutputFile, error_fields, outcome_record
from ._progress import Reporter, Tally

# Failed calls echoed on stderr before the rest are left to the output file.
MAX_FAILURE_NOTES: Final = 20
# Seconds without any answer after the first request before the display says so.
SILENCE_NOTE_AFTER: Final = 5.0
# Failures that every later item repeats word for word: noted once.
_NOTED_ONCE: Final = (AuthenticationError, HostUnreachableError)


class BulkJob:
    """One run of ``bulk-reauthorise`` over an opened input and output."""

    def __init__(
        self,
        reader: InputReader,
        output: OutputFile,
        tally: Tally,
        reporter: Reporter,
    ) -> None:
        self._reader = reader
        self._output = output
        self._tally = tally
        self._reporter = reporter
        # The input line of each item handed to reauthorise_many and not yet finished:
        # bounded by its read-ahead window, not by the size of the input.
        self._lines: dict[int, int] = {}
        self._failure_notes = 0
        self._noted_once: set[type[BaseException]] = set()
        self.bad_lines = 0
        self.host = ""
        self._first_sent: float | None = None
        self._answered = False
        self._status_noted: set[str] = set()

    def _feed(self) -> Generator[tuple[str | int, ReauthoriseRequest]]:
        """The items to send; bad lines are written and skipped ones counted as read."""
        done = self._output.done
        index = 0
        for record in self._reader.records():
            if isinstance(record, BadLine):
                self._bad_line(record)
                continue
            if done and str(record.connector) in done:
                self._tally.skipped += 1
                self._reporter.update()
                continue
            self._lines[index] = record.line
            index += 1
            yield record.connector, record.request

    def _bad_line(self, bad: BadLine) -> None:
        self._output.write_bad_line(bad)  # not again on --resume
        self.bad_lines += 1
        self._tally.failed += 1
        self._reporter.note(f"line {bad.line}: bad input: {type(bad.error).__name__}: {bad.error}")
        self._reporter.update()

    def _record(self, outcome: ReauthoriseOutcome) -> None:
        line = self._lines.pop(outcome.index)
        fields: dict[str, object] = {
            "attempts": outcome.attempts,
            "elapsed": round(outcome.elapsed, 3),
        }
        if outcome.ok:
            fields["result"] = outcome.result
            self._tally.succeeded += 1
        else:
            fields["error"] = error_fields(outcome.error) if outcome.error else None
            self._tally.failed += 1
            self._note_failure(line, outcome)
        self._output.write(outcome_record(line, outcome.connector, outcome.ok, **fields))
        self._reporter.update()

    def _note_failure(self, line: int, outcome: ReauthoriseOutcome) -> None:
        kind = type(outcome.error)
        if issubclass(kind, _NOTED_ONCE):
            if kind in self._noted_once:
                return
            self._noted_once.add(kind)
        self._failure_notes += 1
        if self._failure_notes <= MAX_FAILURE_NOTES:
            error = outcome.error
            self._reporter.note(
                f"line {line}: connector {outcome.connector}: {type(error).__name__}: {error}"
            )
        elif self._failure_notes == MAX_FAILURE_NOTES + 1:
            self._reporter.note("more failures: see the output file")

    async def run(self, client: PatchworksClient, concurrency: int) -> None:
        """Send every item and record every outcome; returns when the input is done."""
        self.host = client.base_url.split("://", 1)[-1]
        if client.on_event is None:
            client.on_event = self._on_event
        ticker = asyncio.create_task(self._tick())
        feed = self._feed()
        outcomes = client.oauth.reauthorise_many(feed, concurrency=concurrency)
        try:
            async for outcome in outcomes:
                self._record(outcome)
        finally:
            # An error while recording (a full disk) must still stop every call it started.
            if isinstance(outcomes, AsyncGenerator):
                await outcomes.aclose()
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            feed.close()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            first = self._first_sent
            if first is not None and not self._answered:
                waited = time.monotonic() - first
                if waited >= SILENCE_NOTE_AFTER:
                    self._status(f"no answer from {self.host} yet ({waited:.0f}s)", once="silence")
            self._reporter.tick()

    def _on_event(self, event: Event) -> None:
        """Watch the first calls: say at once when the host refuses or does not answer."""
        if self._answered:
            return
        kind = event.kind
        if kind is EventKind.SENT and self._first_sent is None:
            self._first_sent = time.monotonic()
        elif kind is EventKind.RESPONSE:
            if event.status is not None:
                self._answered = True
            elif event.error == "RequestTimeoutError":
                self._status(f"no answer from {self.host} (timed out), retrying", once="timeout")
            elif event.error == "TransportError":
                self._status(
                    f"cannot connect to {self.host} (connection refused or reset), retrying",
                    once="refused",
                )

    def _status(self, message: str, *, once: str) -> None:
        if once in self._status_noted:
            return
        self._status_noted.add(once)
        self._tally.status = message
        self._reporter.note(f"note: {message}")
        self._reporter.update()


def summary(tally: Tally, job: BulkJob, output: str, *, ending: str) -> str:
    """The closing line on stderr; ``ending`` is "done", "interrupted" or why it stopped."""
    plural = "" if job.bad_lines == 1 else "s"
    bad = f" ({job.bad_lines} bad input line{plural})" if job.bad_lines else ""
    skipped = f", {tally.skipped} skipped (already ok)" if tally.skipped else ""
    text = (
        f"{ending}: {tally.succeeded} succeeded, {tally.failed} failed{bad}{skipped} "
        f"in {tally.elapsed:.1f}s ({tally.rate:.1f}/s); outcomes in {output}"
    )
    if ending.startswith("stopped"):
        text += "; run again with --resume to send the rest"
    elif ending != "done":
        text += "; run again with --resume to finish"
    elif tally.failed:
        text += '; failed lines have "ok": false (run again with --resume to retry them)'
    return text

"""``bulk-reauthorise``: feed the input lazily to ``reauthorise_many``, record every outcome.

Every record of the input ends as exactly one output line (an outcome, or a bad
line with its reason), except records skipped on ``--resume`` because their
connector already has an ``"ok": true`` line. Outcomes are written the moment
they are yielded. Cancellation (Ctrl-C) stops the job through ``reauthorise_many``,
which cancels and awaits every call it started; what was written stays true.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Generator
from typing import Final

from .._bulk import ReauthoriseOutcome
from .._client import PatchworksClient
from ..models import ReauthoriseRequest
from ._bulkio import (
    BadLine,
    InputReader,
    OutputFile,
    error_fields,
    outcome_record,
)
from ._progress import Reporter, Tally

# Failed calls echoed on stderr before the rest are left to the output file.
MAX_FAILURE_NOTES: Final = 20


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
        self.bad_lines = 0

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
            self._reporter.tick()


def summary(tally: Tally, job: BulkJob, output: str, *, ending: str) -> str:
    """The closing line on stderr; ``ending`` is "done", "interrupted" or why it stopped."""
    plural = "" if job.bad_lines == 1 else "s"
    bad = f" ({job.bad_lines} bad input line{plural})" if job.bad_lines else ""
    skipped = f", {tally.skipped} skipped (already ok)" if tally.skipped else ""
    text = (
        f"{ending}: {tally.succeeded} succeeded, {tally.failed} failed{bad}{skipped} "
        f"in {tally.elapsed:.1f}s ({tally.rate:.1f}/s); outcomes in {output}"
    )
    if ending != "done":
        text += "; run again with --resume to finish"
    elif tally.failed:
        text += '; failed lines have "ok": false (run again with --resume to retry them)'
    return text

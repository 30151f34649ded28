"""Progress of a bulk job on stderr: a live rich bar on a terminal, plain lines otherwise.

rich is imported only when a bar is drawn (``pip install patchworks-async[cli]``);
without it, or when stderr is not a terminal, the job prints a plain line every
``interval`` seconds and at each tenth of the total.
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from rich.progress import Progress

DEFAULT_INTERVAL: Final = 5.0


class Tally:
    """Counts of a job, shared by the reporters and the summary."""

    __slots__ = ("failed", "skipped", "started", "status", "succeeded", "total")

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.succeeded = 0
        self.failed = 0
        self.skipped = 0
        # What is happening when it is not progress ("cannot connect to HOST, retrying").
        self.status: str | None = None
        self.started = time.monotonic()

    @property
    def done(self) -> int:
        """Outcomes so far (skipped records are not counted: they leave the total)."""
        return self.succeeded + self.failed

    @property
    def remaining_total(self) -> int | None:
        """The total less the records skipped (``None`` when the total is unknown)."""
        if self.total is None:
            return None
        return max(self.total - self.skipped, self.done)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Outcomes a second so far."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0


class Reporter(Protocol):
    """What a bulk job tells its progress display."""

    def start(self) -> None:
        """Show the display."""

    def update(self) -> None:
        """The tally changed (an outcome, a skipped record)."""

    def tick(self) -> None:
        """Called about once a second, outcomes or not."""

    def note(self, message: str) -> None:
        """Print one line (a bad input line, a failure) without breaking the display."""

    def stop(self) -> None:
        """Remove or finish the display."""


class PlainReporter:
    """Plain lines on ``stream``: every ``interval`` seconds and at each tenth of the total."""

    def __init__(self, tally: Tally, stream: IO[str], interval: float = DEFAULT_INTERVAL) -> None:
        self._tally = tally
        self._stream = stream
        self._interval = interval
        self._last_line = time.monotonic()
        self._last_tenth = 0

    def start(self) -> None:
        self._last_line = time.monotonic()

    def update(self) -> None:
        total = self._tally.remaining_total
        if total:
            tenth = self._tally.done * 10 // total
            if tenth > self._last_tenth:
                self._last_tenth = tenth
                self._line()
                return
        self.tick()

    def tick(self) -> None:
        if time.monotonic() - self._last_line >= self._interval:
            self._line()

    def _line(self) -> None:
        self._last_line = time.monotonic()
        self.note(plain_line(self._tally))

    def note(self, message: str) -> None:
        self._stream.write(message + "\n")
        self._stream.flush()

    def stop(self) -> None:
        """Nothing to remove: the summary follows."""


class SilentReporter(PlainReporter):
    """``--progress off``: notes only."""

    def update(self) -> None:
        """No progress lines."""

    def tick(self) -> None:
        """No progress lines."""


def plain_line(tally: Tally) -> str:
    """``progress: 420/2000 (21%), 3 failed, 98.2/s, eta 16s, elapsed 4.3s``."""
    total = tally.remaining_total
    done = tally.done
    rate = tally.rate
    if total:
        head = f"progress: {done}/{total} ({done * 100 // total}%)"
        eta = f", eta {_seconds((total - done) / rate)}" if rate > 0 and done < total else ""
    else:
        head, eta = f"progress: {done} done", ""
    line = f"{head}, {tally.failed} failed, {rate:.1f}/s{eta}, elapsed {_seconds(tally.elapsed)}"
    return f"{line}; {tally.status}" if tally.status and not tally.succeeded else line


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}m{seconds:02d}s"


class RichReporter:
    """A live rich bar: done/total, percent, rate, failures, elapsed, ETA."""

    def __init__(self, tally: Tally, description: str) -> None:
        self._tally = tally
        self._progress = _make_progress()
        self._task = self._progress.add_task(
            description, total=tally.remaining_total, failed=0, start=True
        )

    def start(self) -> None:
        self._progress.start()

    def update(self) -> None:
        tally = self._tally
        self._progress.update(
            self._task,
            completed=tally.done,
            total=tally.remaining_total,
            failed=tally.failed,
        )

    def tick(self) -> None:
        """rich refreshes itself."""

    def note(self, message: str) -> None:
        # markup off: a message may hold square brackets from the server or the input.
        self._progress.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        self.update()
        self._progress.stop()


def _make_progress() -> Progress:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Outcomes a second, as rich measures it over its recent window."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f}/s" if speed else "-/s", style="progress.data.speed")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        refresh_per_second=8,
    )


def rich_available() -> bool:
    """Whether rich can be imported (the ``cli`` extra)."""
    try:
        import rich  # noqa: F401  # only probing that it is installed
    except ImportError:
        return False
    return True


def make_reporter(
    mode: str, tally: Tally, *, description: str, interval: float = DEFAULT_INTERVAL
) -> Reporter:
    """The reporter for ``--progress``: ``auto`` draws a bar when stderr is a terminal.

    ``bar`` without rich installed falls back to plain lines, with a note saying so.
    """
    stream = sys.stderr
    if mode == "off":
        return SilentReporter(tally, stream, interval)
    wants_bar = mode == "bar" or (mode == "auto" and _is_terminal(stream))
    if wants_bar:
        if rich_available():
            return RichReporter(tally, description)
        reporter = PlainReporter(tally, stream, interval)
        reporter.note("note: install patchworks-async[cli] (rich) for a live progress bar")
        return reporter
    return PlainReporter(tally, stream, interval)


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())

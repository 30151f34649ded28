"""Bulk reauthorisation: many ``(connector, ReauthoriseRequest)`` items, one outcome each.

Promises (issue: bulk reauthorisation jobs; issue 11: a job that stops when it cannot succeed):

- Every input item read gives exactly one outcome (:data:`ReauthoriseOutcome`,
  a :class:`ReauthoriseSuccess` or a :class:`ReauthoriseFailure`); a failure,
  bad input included, is an outcome and the job goes on, with two exceptions:
- The job stops when it cannot succeed (:func:`stop_reason`): a 401 that a fresh
  login did not cure, three 403s in a row, or the host deemed unreachable (the
  client's ``unreachable_after``). Then no further request is sent: calls waiting
  in the limiters, for a login or for a retry are cancelled, calls in the
  transport finish without retrying, their outcomes are yielded, and
  :class:`BulkStoppedError` is raised. Items with no outcome were never sent
  (or were cancelled between retries); ``--resume`` sends them again.
- An exception raised by the caller's item iterator stops the reading: the
  items already read are finished (their outcomes yielded), then the exception
  propagates unchanged.
- A connector seen earlier in the same input is not sent again: its item's
  outcome is a failure with :class:`DuplicateConnectorError` (the set of
  connectors seen costs about 90 bytes an item: ``deduplicate=False`` drops it).
- Input is read lazily, at most ``read_ahead`` items ahead of the outcomes, so
  memory depends on ``concurrency``, apart from the set of connectors seen.
- ``concurrency`` bounds the items being *sent*. An item waiting for its
  instance's limiter, or for a retry, holds no slot, so items of other instances
  flow past a slow one (no head-of-line blocking).
- Cancelling the consumer cancels and awaits every task the job started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any, Final

from . import _sansio
from ._backend import CallTracker
from ._errors import (
    BulkStoppedError,
    DuplicateConnectorError,
    InvalidRequestError,
    PatchworksError,
    PermissionDeniedError,
    TransportError,
)
from ._outcomes import (
    FORBIDDEN_IN_A_ROW,
    stop_reason,
)

# The outcome types are re-exported: the CLI and ``_oauth`` import them from here.
from ._outcomes import (
    ReauthoriseFailure as ReauthoriseFailure,
)
from ._outcomes import (
    ReauthoriseOutcome as ReauthoriseOutcome,
)
from ._outcomes import (
    ReauthoriseSuccess as ReauthoriseSuccess,
)
from ._pipeline import Pipeline
from .models import Instance, ReauthoriseRequest

_END: Final = object()
# Put in the queue when a task ends with no outcome: the consumer wakes and looks again.
_WAKE: Final = object()

Item = tuple[str | int, ReauthoriseRequest]
ItemSource = Iterable[Item] | AsyncIterable[Item]
ProgressHook = Callable[[ReauthoriseOutcome], None]


def _unpack(item: object) -> tuple[Any, Any]:
    """The item's connector and request; a malformed item keeps only its connector."""
    if isinstance(item, tuple | list):
        if len(item) == 2:
            return item[0], item[1]
        return (item[0] if item else None), None
    if isinstance(item, str | int) and not isinstance(item, bool):
        return item, None  # a bare connector: the caller forgot the request
    return None, None


def _build(index: int, item: object) -> tuple[Any, _sansio.Request | PatchworksError, Any]:
    """The item's connector, its built request (or the input error), and its request."""
    connector, request = _unpack(item)
    if request is None:
        return (
            connector,
            InvalidRequestError(
                f"item {index} must be a (connector, ReauthoriseRequest) pair", field="item"
            ),
            None,
        )
    try:
        return connector, _sansio.build_reauthorise(connector, request), request
    except InvalidRequestError as error:
        return connector, error, None


async def _send_one(
    pipeline: Pipeline,
    index: int,
    connector: Any,
    built: _sansio.Request,
    request: ReauthoriseRequest,
    slots: asyncio.Semaphore,
    tracker: CallTracker,
    judge: Callable[[PatchworksError | None], None],
) -> ReauthoriseOutcome:
    started = time.monotonic()
    try:
        result = Instance(await pipeline.call(built, slots, tracker))
        pipeline.learn_rate(built.connector, request.rate_limit)
    except PatchworksError as error:
        # Judged here, in the same step as the call's end: its slot is already free,
        # and a call woken by it must be cancelled before it can run and be sent.
        judge(error)
        return ReauthoriseFailure(
            connector=connector,
            error=error,
            attempts=tracker.sends,
            elapsed=time.monotonic() - started,
            index=index,
        )
    judge(None)
    return ReauthoriseSuccess(
        connector=connector,
        result=result,
        attempts=tracker.sends,
        elapsed=time.monotonic() - started,
        index=index,
    )


def _puller(items: ItemSource) -> Callable[[], Any]:
    """An awaitable-returning function that gives the next item or ``_END``."""
    if isinstance(items, AsyncIterable):
        iterator = aiter(items)

        async def next_async() -> Any:
            return await anext(iterator, _END)

        return next_async
    sync_iterator = iter(items)

    async def next_sync() -> Any:
        # next(..., default): a StopIteration inside a coroutine would become a RuntimeError.
        return next(sync_iterator, _END)

    return next_sync


def check_bulk_arguments(concurrency: int, read_ahead: int | None) -> int:
    """Check the knobs of a bulk job; return the read-ahead window.

    Args:
        concurrency: items being sent at once.
        read_ahead: how far ahead of the outcomes the input is read, or ``None``.

    Returns:
        The read-ahead window.

    Raises:
        InvalidRequestError: naming the bad argument.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidRequestError(
            "concurrency must be an integer of at least 1", field="concurrency"
        )
    window = read_ahead if read_ahead is not None else max(concurrency * 8, 64)
    if isinstance(window, bool) or not isinstance(window, int) or window < concurrency:
        raise InvalidRequestError(
            "read_ahead must be an integer of at least concurrency", field="read_ahead"
        )
    return window


class _Job:
    """The state of one ``reauthorise_many`` run: its tasks, its outcomes, its stop."""

    def __init__(self, pipeline: Pipeline, concurrency: int, *, deduplicate: bool) -> None:
        self.pipeline = pipeline
        self.slots = asyncio.Semaphore(concurrency)
        # Outcomes ready to yield; a task that raised (a bug, a closed client) as itself.
        self.finished: asyncio.Queue[Any] = asyncio.Queue()
        self.running: dict[asyncio.Task[ReauthoriseOutcome], CallTracker] = {}
        self.seen: set[str] | None = set() if deduplicate else None
        self.forbidden_in_a_row = 0
        self.stop: tuple[str, PatchworksError] | None = None
        # OpenTelemetry hook: one parent span for the job; each item's call runs under it.
        telemetry = pipeline.telemetry
        self.otel = telemetry.bulk_job() if telemetry is not None else None

    def _refuse(self, index: int, connector: Any, error: PatchworksError) -> None:
        """Queue the outcome of an item not sent (bad input, a duplicate), and trace it."""
        if self.otel is not None:  # OpenTelemetry hook: refused, nothing sent
            self.otel.refused("reauthorise", error)
        self.finished.put_nowait(ReauthoriseFailure(connector=connector, error=error, index=index))

    def start(self, index: int, item: object) -> None:
        """Start the item's call, or queue its outcome at once (bad input, a duplicate)."""
        connector, built, request = _build(index, item)
        if isinstance(built, PatchworksError):
            self._refuse(index, connector, built)
            return
        key = built.connector
        seen = self.seen
        if seen is not None and key is not None:
            if key in seen:
                duplicate = DuplicateConnectorError(
                    f"item {index}: connector {key!r} came earlier in this input; sent once",
                    connector=key,
                )
                self._refuse(index, connector, duplicate)
                return
            seen.add(key)
        tracker = CallTracker()
        task = asyncio.create_task(
            _send_one(
                self.pipeline, index, connector, built, request, self.slots, tracker, self._judge
            ),
            context=self.otel.task_context() if self.otel is not None else None,
        )
        self.running[task] = tracker
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[ReauthoriseOutcome]) -> None:
        tracker = self.running.pop(task, None)
        if task.cancelled():
            self.finished.put_nowait(_WAKE)  # cancelled by a stop or with the consumer
            return
        if task.exception() is not None:
            self.finished.put_nowait(task)
            return
        outcome = task.result()
        if self._unsent(outcome, tracker):
            self.finished.put_nowait(_WAKE)  # no outcome: counted as not sent
            return
        self.finished.put_nowait(outcome)

    def _unsent(self, outcome: ReauthoriseOutcome, tracker: CallTracker | None) -> bool:
        """Whether a stopped job's failed item gets no outcome (so ``--resume`` sends it).

        Items never handed to the transport (failed fast, or waiting for a login)
        get none, nor, when the host is unreachable, items that never got an
        answer: an outcome would only repeat "unreachable".
        """
        if self.stop is None or outcome.ok:
            return False
        if tracker is not None and not tracker.sends:
            return True
        return self.stop[0] == "unreachable" and isinstance(outcome.error, TransportError)

    def _judge(self, error: PatchworksError | None) -> None:
        """Called by each call as it ends (``None``: success): stop the job if it cannot succeed."""
        if self.stop is not None:
            return
        if error is None:
            self.forbidden_in_a_row = 0
            return
        if isinstance(error, PermissionDeniedError):
            self.forbidden_in_a_row += 1
        elif not isinstance(error, InvalidRequestError):
            self.forbidden_in_a_row = 0
        reason = stop_reason(error, self.forbidden_in_a_row)
        if reason is not None:
            self.stop = (reason, error)
            self.halt()

    def halt(self) -> None:
        """Send nothing more: cancel every call not in the transport, stop the others' retries.

        When the host is unreachable, calls in the transport are cancelled too: an
        answer would come, if ever, only when their timeout runs out.
        """
        current = asyncio.current_task()  # the call that stopped the job: it is ending
        unreachable = self.stop is not None and self.stop[0] == "unreachable"
        for task, tracker in list(self.running.items()):
            if task is current:
                continue
            if tracker.sending and not unreachable:
                tracker.stopped = True
            else:
                task.cancel()

    def stopped_error(self, finished: int, not_sent: int) -> BulkStoppedError:
        """The error that ends a stopped job."""
        if self.stop is None:  # only called once the job stopped
            raise RuntimeError("stopped_error called before the job stopped")
        reason, error = self.stop
        what = {
            "authentication": "the credential was refused (401)",
            "permission": f"{FORBIDDEN_IN_A_ROW} instances in a row were refused (403)",
            "unreachable": "the host is unreachable",
        }[reason]
        return BulkStoppedError(
            f"the bulk job stopped: {what}; {finished} items finished, {not_sent} not sent",
            reason=reason,
            first_error=error,
            finished=finished,
            not_sent=not_sent,
        )

    async def cancel_all(self) -> None:
        """Cancel and await every task still running."""
        leftovers = list(self.running)
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.gather(*leftovers, return_exceptions=True)


def reauthorise_many(
    pipeline: Pipeline,
    items: ItemSource,
    *,
    concurrency: int = 16,
    on_progress: ProgressHook | None = None,
    read_ahead: int | None = None,
    deduplicate: bool = True,
) -> AsyncIterator[ReauthoriseOutcome]:
    """Reauthorise many instances; yield one outcome per item, in completion order.

    Nothing happens before the first iteration (the arguments are checked then too).

    Args:
        pipeline: the pipeline that sends the calls.
        items: an iterable or async iterable of ``(connector, ReauthoriseRequest)``.
        concurrency: items being sent at once.
        on_progress: called with each outcome as it is yielded.
        read_ahead: how far ahead of the outcomes the input is read.
        deduplicate: send a connector once per input (later ones fail as duplicates).

    Returns:
        An async iterator of one outcome per item read; iterating raises
        :class:`BulkStoppedError` when the job stopped because it could not succeed,
        :class:`EventLoopError` when the client serves another event loop (nothing is
        read or sent), and whatever the item iterator raised, unchanged, once the
        items read are done.
    """
    run = _Run(
        pipeline,
        items,
        concurrency=concurrency,
        on_progress=on_progress,
        read_ahead=read_ahead,
        deduplicate=deduplicate,
    )
    return run.outcomes()


class _Run:
    """One iteration of ``reauthorise_many``: reads ahead, yields outcomes, ends the job."""

    def __init__(
        self,
        pipeline: Pipeline,
        items: ItemSource,
        *,
        concurrency: int,
        on_progress: ProgressHook | None,
        read_ahead: int | None,
        deduplicate: bool,
    ) -> None:
        self.pipeline = pipeline
        self.items = items
        self.concurrency = concurrency
        self.on_progress = on_progress
        self.read_ahead = read_ahead
        self.deduplicate = deduplicate
        self.index = self.yielded = 0
        self.exhausted = False
        self.input_error: Exception | None = None
        self.abandoned = False
        self.job: _Job | None = None

    async def outcomes(self) -> AsyncIterator[ReauthoriseOutcome]:
        """The outcomes, in completion order (see :func:`reauthorise_many`)."""
        window = check_bulk_arguments(self.concurrency, self.read_ahead)
        # One client serves one loop: a job in another is refused once, before any item is
        # read, not item by item with one EventLoopError outcome each.
        self.pipeline.limits_in(asyncio.get_running_loop())
        pull = _puller(self.items)
        job = self.job = _Job(self.pipeline, self.concurrency, deduplicate=self.deduplicate)
        # Cancelling a consumer that is busy in its own loop body does not close this
        # generator (only dropping it does, and the caller may still hold it): the job's
        # tasks are tied to the consuming task instead, and end when it is cancelled.
        consumer = asyncio.current_task()
        if consumer is not None:
            consumer.add_done_callback(self._on_consumer_done)
        ended_by: BaseException | None = None
        try:
            while True:
                await self._read(job, pull, window)
                ended = self.exhausted or job.stop is not None
                if ended and not job.running and job.finished.empty():
                    break
                got = await job.finished.get()
                if got is not _WAKE:
                    yield self._report(job, got)
            self._raise_end(job)
        except BaseException as error:
            ended_by = error
            raise
        finally:
            if consumer is not None:
                consumer.remove_done_callback(self._on_consumer_done)
            await job.cancel_all()
            if job.otel is not None:
                job.otel.end(ended_by)

    def _on_consumer_done(self, consumer: asyncio.Task[Any]) -> None:
        if not consumer.cancelled():
            return  # it ended normally (asyncio.wait_for's inner task, say): the job goes on
        self.abandoned = True
        if self.job is not None:
            for task in list(self.job.running):
                task.cancel()

    async def _read(self, job: _Job, pull: Callable[[], Any], window: int) -> None:
        """Start items until the window is full, the input ends or the job stops."""
        if self.abandoned:
            # Never lose an item silently: its task was cancelled with the consumer.
            raise RuntimeError(
                "this reauthorise_many job was cancelled with the task that consumed it"
            )
        while (
            not self.exhausted
            and job.stop is None
            and len(job.running) + job.finished.qsize() < window
        ):
            try:
                item = await pull()
            except Exception as error:  # the caller's iterator: raised again at the end
                self.input_error, self.exhausted = error, True
                return
            if item is _END:
                self.exhausted = True
                return
            job.start(self.index, item)
            self.index += 1

    def _report(self, job: _Job, got: Any) -> ReauthoriseOutcome:
        """The outcome to yield (a task that raised raises here), counted and reported."""
        outcome: ReauthoriseOutcome = got.result() if isinstance(got, asyncio.Task) else got
        if job.otel is not None:
            job.otel.outcome(outcome.ok)
        if self.on_progress is not None:
            self.on_progress(outcome)
        self.yielded += 1
        return outcome

    def _raise_end(self, job: _Job) -> None:
        """Raise what ends the job, if anything: its stop, or the input's own error."""
        if job.stop is not None:
            raise job.stopped_error(self.yielded, self.index - self.yielded) from job.stop[1]
        if self.input_error is not None:
            raise self.input_error

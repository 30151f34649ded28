"""Bulk reauthorisation: many ``(connector, ReauthoriseRequest)`` items, one outcome each.

Promises (issue: bulk reauthorisation jobs):

- Every input item gives exactly one :class:`ReauthoriseOutcome`; a failure, bad
  input included, is an outcome and the job goes on. Only cancellation stops it.
- Input is read lazily, at most ``read_ahead`` items ahead of the outcomes, so
  memory depends on ``concurrency``, not on the number of items.
- ``concurrency`` bounds the items being *sent*. An item waiting for its
  instance's limiter, or for a retry, holds no slot, so items of other instances
  flow past a slow one (no head-of-line blocking).
- Cancelling the consumer cancels and awaits every task the job started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import attrs

from . import _sansio
from ._backend import CallTracker
from ._errors import InvalidRequestError, PatchworksError
from .models import ReauthoriseRequest

if TYPE_CHECKING:
    from ._client import PatchworksClient

_END: Final = object()

Item = tuple[str | int, ReauthoriseRequest]
ItemSource = Iterable[Item] | AsyncIterable[Item]
ProgressHook = Callable[["ReauthoriseOutcome"], None]


@attrs.frozen(kw_only=True)
class ReauthoriseOutcome:
    """What became of one item of a bulk reauthorisation.

    Attributes:
        connector: the connector as given (whatever its type, for bad input too).
        result: the response's JSON object on success, else ``None``.
        error: the :class:`PatchworksError` on failure, else ``None``.
        attempts: how many requests were sent for it (0 when its input was refused).
        elapsed: seconds from its first wait to its outcome.
        index: its position in the input, from 0.
    """

    connector: Any
    result: dict[str, Any] | None = None
    error: PatchworksError | None = None
    attempts: int = 0
    elapsed: float = 0.0
    index: int = 0

    @property
    def ok(self) -> bool:
        """True when the call succeeded."""
        return self.error is None


def _unpack(item: object) -> tuple[Any, ReauthoriseRequest | None]:
    if isinstance(item, tuple | list) and len(item) == 2:
        return item[0], item[1]
    return item, None


async def _run_one(
    client: PatchworksClient, index: int, item: object, slots: asyncio.Semaphore
) -> ReauthoriseOutcome:

    started = time.monotonic()
    connector, request = _unpack(item)
    tracker = CallTracker()
    try:
        if request is None:
            raise InvalidRequestError(
                f"item {index} must be a (connector, ReauthoriseRequest) pair", field="item"
            )
        built = _sansio.build_reauthorise(connector, request)
        result = await client._call(built, slots, tracker)
        new_rate = request.rate_limit
        if new_rate is not None and built.connector is not None:
            client.set_instance_rate_limit(built.connector, new_rate)
    except PatchworksError as error:
        return ReauthoriseOutcome(
            connector=connector,
            error=error,
            attempts=tracker.attempts,
            elapsed=time.monotonic() - started,
            index=index,
        )
    return ReauthoriseOutcome(
        connector=connector,
        result=result,
        attempts=tracker.attempts,
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


async def reauthorise_many(
    client: PatchworksClient,
    items: ItemSource,
    *,
    concurrency: int = 16,
    on_progress: ProgressHook | None = None,
    read_ahead: int | None = None,
) -> AsyncIterator[ReauthoriseOutcome]:
    """Reauthorise many instances; yield one outcome per item, in completion order."""
    window = check_bulk_arguments(concurrency, read_ahead)
    pull = _puller(items)
    slots = asyncio.Semaphore(concurrency)
    finished: asyncio.Queue[asyncio.Task[ReauthoriseOutcome]] = asyncio.Queue()
    running: set[asyncio.Task[ReauthoriseOutcome]] = set()
    index = 0
    exhausted = False
    abandoned = False

    def on_done(task: asyncio.Task[ReauthoriseOutcome]) -> None:
        running.discard(task)
        if not task.cancelled():
            finished.put_nowait(task)

    def on_consumer_done(consumer: asyncio.Task[Any]) -> None:
        nonlocal abandoned
        if not consumer.cancelled():
            return  # it ended normally (asyncio.wait_for's inner task, say): the job goes on
        abandoned = True
        for task in list(running):
            task.cancel()

    # Cancelling a consumer that is busy in its own loop body does not close this
    # generator (only dropping it does, and the caller may still hold it): the job's
    # tasks are tied to the consuming task instead, and end when it is cancelled.
    consumer = asyncio.current_task()
    if consumer is not None:
        consumer.add_done_callback(on_consumer_done)
    try:
        while True:
            if abandoned:
                # Never lose an item silently: its task was cancelled with the consumer.
                raise RuntimeError(
                    "this reauthorise_many job was cancelled with the task that consumed it"
                )
            while not exhausted and len(running) + finished.qsize() < window:
                item = await pull()
                if item is _END:
                    exhausted = True
                    break
                task = asyncio.create_task(_run_one(client, index, item, slots))
                task.add_done_callback(on_done)
                running.add(task)
                index += 1
            if exhausted and not running and finished.empty():
                return
            outcome = (await finished.get()).result()
            if on_progress is not None:
                on_progress(outcome)
            yield outcome
    finally:
        if consumer is not None:
            consumer.remove_done_callback(on_consumer_done)
        leftovers = list(running)
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.gather(*leftovers, return_exceptions=True)

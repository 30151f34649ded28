"""An event loop whose clock only moves when every task is waiting: a fake clock for asyncio.

``loop.time()`` starts at 0 and, whenever the loop would block waiting for a
timer, jumps straight to that timer instead of sleeping. Limiters, pauses and
retry waits then run in virtual seconds, instantly and exactly, with no real
sleeping (aiolimiter's own tests patch ``loop.time`` the same way). It suits
components with no real I/O; end-to-end tests use the real loop.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from patchworks_async._windows import max_in_window

T = TypeVar("T")

TICK = 1e-6


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready and timeout is not None and timeout > 0:
            self._loop.advance(timeout)
        else:
            # Real time never stands still: a microsecond per turn of the loop, so a
            # timer due "now" by float rounding (aiolimiter computes such) comes due.
            self._loop.advance(TICK)
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector loop on virtual time (see the module docstring)."""

    def __init__(self) -> None:
        self._virtual_now = 0.0
        super().__init__(selector=_JumpingSelector(self))
        self._clock_resolution = 1e-9

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += seconds


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a fresh VirtualTimeLoop and close it."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(_wrap(main))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _wrap(main: Callable[[], Awaitable[T]]) -> T:
    return await main()


# The one implementation, in the package (it proves the demo's pacing too).
sliding_window_max = max_in_window


__all__: list[Any] = ["VirtualTimeLoop", "run_virtual", "sliding_window_max"]

"""Bulk: ``reauthorise_many`` makespan under a client-wide limit, and its peak memory.

Makespan: ``items`` reauthorisations under a client-wide limit of ``R`` a second,
timed from the first item pulled to the last outcome, divided by the ideal
``items / R`` (target: at most 1.03). The server records every arrival, for the
plot of requests per second against the limit line. Before the run, a short
unlimited burst checks that this machine can push well above ``R`` at all, so a
miss is the limiter's and not the machine's.

Memory: one subprocess per size (``python -m benchmarks._memory``), items from a
generator, no client-wide limit; peak RSS growth over the job (target: the sizes
within 20 MB of each other: memory must depend on concurrency, not on items).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from patchworks_async import PatchworksClient, RateLimit, ReauthoriseRequest

from ._process import Control, Server, stop_process

#: Items cycle over this many preseeded instances (none has a limit of its own).
INSTANCES = 1000
CONCURRENCY = 16


def items(count: int) -> Iterator[tuple[str, ReauthoriseRequest]]:
    """``count`` items, made one at a time (never a list)."""
    for index in range(count):
        yield str(index % INSTANCES), ReauthoriseRequest(timezone="UTC", connection_pool_id=index)


async def _drain(client: PatchworksClient, count: int) -> tuple[int, int, float]:
    """Run one job; (succeeded, failed, seconds from start to the last outcome)."""
    ok = failed = 0
    started = time.monotonic()
    # The items cycle over INSTANCES ids on purpose: deduplication off, every item is sent.
    job = client.oauth.reauthorise_many(items(count), concurrency=CONCURRENCY, deduplicate=False)
    async for outcome in job:
        if outcome.ok:
            ok += 1
        else:
            failed += 1
    return ok, failed, time.monotonic() - started


async def capacity(server: Server, seconds: float) -> float:
    """Requests a second one unlimited client pushes through ``reauthorise_many``."""
    async with PatchworksClient(
        base_url=server.url, api_key=server.api_key, rate_limit=None
    ) as client:
        await _drain(client, 200)
        count = int(4000 * seconds)
        ok, failed, elapsed = await _drain(client, count)
    if failed:
        raise RuntimeError(f"capacity run: {failed} of {count} calls failed")
    return ok / elapsed


async def makespan(
    server: Server, *, count: int, per_second: int, capacity_seconds: float
) -> dict[str, Any]:
    """``count`` items under a client-wide limit of ``per_second``."""
    control = Control(server)
    push = await capacity(server, capacity_seconds)
    limit = RateLimit("second", per_second)
    async with PatchworksClient(
        base_url=server.url, api_key=server.api_key, rate_limit=limit
    ) as client:
        await control.start_arrivals()
        try:
            started = time.monotonic()
            _, failed, elapsed = await _drain(client, count)
        finally:
            arrivals = await control.stop_arrivals()
    if failed:
        raise RuntimeError(f"bulk run: {failed} of {count} calls failed")
    ideal = count / per_second
    times = sorted(t for t, _ in arrivals)
    return {
        "items": count,
        "limit_per_second": per_second,
        "concurrency": CONCURRENCY,
        "unlimited_capacity_per_second": push,
        "headroom": push / per_second,
        "makespan_seconds": elapsed,
        "ideal_seconds": ideal,
        "makespan_ratio": elapsed / ideal,
        "server_span_seconds": times[-1] - times[0] if times else float("nan"),
        "started": started,
        "arrivals": times,
    }


def memory(server: Server, *, count: int, timeout: float) -> dict[str, Any]:
    """Peak RSS growth of one job of ``count`` items, in a fresh process."""
    command = [
        sys.executable,
        "-m",
        "benchmarks._memory",
        "--url",
        server.url,
        "--api-key",
        server.api_key,
        "--items",
        str(count),
        "--concurrency",
        str(CONCURRENCY),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603  # our own module
    try:
        out, _ = process.communicate(timeout=timeout)
    finally:
        stop_process(process)
    if process.returncode != 0:
        raise RuntimeError(f"memory run of {count} items exited {process.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


async def memory_async(server: Server, *, count: int, limit_seconds: float) -> dict[str, Any]:
    """:func:`memory` without blocking the event loop."""
    return await asyncio.to_thread(memory, server, count=count, timeout=limit_seconds)

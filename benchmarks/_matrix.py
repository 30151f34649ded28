"""The overhead matrix: our client against hand-written aiohttp, cell by cell (issue 12).

A cell is one combination of:

- ``concurrency``: calls in flight at once (1, 16, 64, 256);
- ``pattern``: ``workers`` (``concurrency`` loops, each awaiting one call after the
  other) or ``gather`` (``asyncio.gather`` over every call of the run at once, each
  behind one ``asyncio.Semaphore(concurrency)``, as a new user writes it);
- ``connectors``: ``one`` (every call to the same instance) or ``distinct`` (a new
  instance per call: a long-lived client sees more instances than its registry keeps);
- ``body``: ``plain`` (no rate fields: no instance limiter is learnt) or ``rated``
  (rate fields at a limit far above what the run reaches: the instance limiter is
  on, never binds, and the run measures its bookkeeping);
- ``pool``: ``default`` (the client's default pool, 32) or ``concurrency``; the
  aiohttp side gets the same pool as the client in each cell.

Our side is one ``PatchworksClient(rate_limit=None, retry=RetryPolicy.disabled(),
max_connections=pool)``; the aiohttp side is one ``ClientSession`` with
``TCPConnector(limit=pool)`` sending ``s.patch(url, json=body)`` and reading
``await r.json()``, the URL built per call with an f-string. Within a cell both
sides stay open for every round (a long-lived client, as users run one), and the
rounds alternate the sides (ours, aiohttp, aiohttp, ours, ...) so noise from the
rest of the machine falls on both. The ratio is the median of the per-round ratios
of requests per second.

Two things keep a cell honest:

- a *distinct* cell first warms up with more distinct instances than the client's
  instance registry keeps (``DEFAULT_MAX_INSTANCE_LIMITERS`` + 1, both sides alike),
  so every distinct cell runs with a full registry that evicts as it goes, at any
  concurrency;
- one cell per concurrency (the httpx reference row's) also runs a second,
  identical hand-written aiohttp side (``aiohttp_control``): its ratio to the first
  is this run's noise floor (an A/A comparison). A cell's ratio within that spread
  of 1.0 is not distinguishable from 1.0 on this machine in this run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import attrs

from patchworks_async import PatchworksClient, RateLimit, ReauthoriseRequest, RetryPolicy
from patchworks_async._constants import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_INSTANCE_LIMITERS,
    USER_AGENT,
)

from ._process import Server
from ._stats import median, ratio

OURS = "patchworks_async"
AIOHTTP = "aiohttp"
HTTPX = "httpx"
#: A second hand-written aiohttp side, measured against the first: the noise floor.
CONTROL = "aiohttp_control"
#: Distinct instances a distinct cell warms up with: one more than the registry keeps.
DISTINCT_WARM_UP = DEFAULT_MAX_INSTANCE_LIMITERS + 1
#: Calls in flight during a distinct cell's warm-up (only its speed, not measured).
WARM_UP_CONCURRENCY = 64

CONCURRENCIES = (1, 16, 64, 256)
PATTERNS = ("workers", "gather")
CONNECTORS = ("one", "distinct")
BODIES = ("plain", "rated")
POOLS = ("default", "concurrency")

#: Far above anything one instance reaches here (about 10,000 calls a second at most).
FAR_LIMIT = RateLimit("second", 1_000_000)
PLAIN = ReauthoriseRequest(timezone="UTC", date_format="Y-m-d H:i:s", connection_pool_id=7)
RATED = ReauthoriseRequest(
    timezone="UTC",
    date_format="Y-m-d H:i:s",
    connection_pool_id=7,
    rate_limit_unit=FAR_LIMIT.unit,
    rate_limit_duration=FAR_LIMIT.duration,
)
PAYLOADS = {
    "plain": {"timezone": "UTC", "date_format": "Y-m-d H:i:s", "connection_pool_id": 7},
    "rated": {
        "timezone": "UTC",
        "date_format": "Y-m-d H:i:s",
        "connection_pool_id": 7,
        "rate_limit_unit": "second",
        "rate_limit_duration": FAR_LIMIT.duration,
    },
}
REQUESTS = {"plain": PLAIN, "rated": RATED}

#: One call to one connector id.
Call = Callable[[str], Awaitable[object]]


@attrs.frozen(kw_only=True)
class Cell:
    """One combination of the matrix."""

    concurrency: int
    pattern: str
    connectors: str
    body: str
    pool: str

    @property
    def pool_size(self) -> int:
        return DEFAULT_MAX_CONNECTIONS if self.pool == "default" else self.concurrency

    @property
    def label(self) -> str:
        return f"c={self.concurrency} {self.pattern} {self.connectors} {self.body} pool={self.pool}"


def all_cells(concurrencies: Sequence[int] = CONCURRENCIES) -> list[Cell]:
    """Every cell, concurrency outermost."""
    return [
        Cell(concurrency=c, pattern=p, connectors=n, body=b, pool=s)
        for c, p, n, b, s in itertools.product(concurrencies, PATTERNS, CONNECTORS, BODIES, POOLS)
    ]


class Connectors:
    """Connector ids for one cell: always ``"0"``, or a new id per call (cycling at ``count``)."""

    def __init__(self, mode: str, count: int) -> None:
        self._distinct = mode == "distinct"
        self._count = count
        self._next = 0
        self.seen = 0

    def take(self) -> str:
        self.seen += 1
        if not self._distinct:
            return "0"
        value = self._next
        self._next = (value + 1) % self._count
        return str(value)


def _headers(api_key: str) -> dict[str, str]:
    # What a user writes by hand; Content-Type comes from json=.
    return {"Accept": "application/json", "User-Agent": USER_AGENT, "Authorization": api_key}


@contextlib.asynccontextmanager
async def ours(server: Server, cell: Cell) -> AsyncIterator[Call]:
    """Our client, as a new user configures it for a throughput run."""
    request = REQUESTS[cell.body]
    async with PatchworksClient(
        base_url=server.url,
        api_key=server.api_key,
        rate_limit=None,
        retry=RetryPolicy.disabled(),
        max_connections=cell.pool_size,
    ) as client:
        reauthorise = client.oauth.reauthorise

        def call(connector: str) -> Awaitable[object]:
            return reauthorise(connector, request)

        yield call


@contextlib.asynccontextmanager
async def bare(server: Server, cell: Cell) -> AsyncIterator[Call]:
    """Hand-written aiohttp: one session with the client's pool, ``json=``, ``r.json()``."""
    payload = PAYLOADS[cell.body]
    headers = _headers(server.api_key)
    base = server.url
    connector = aiohttp.TCPConnector(limit=cell.pool_size)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call(instance: str) -> object:
            url = f"{base}/api/v1/oauth/{instance}/reauthorise"
            async with session.patch(url, json=payload, headers=headers) as response:
                data = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"aiohttp side: HTTP {response.status}")
                return data

        yield call


@contextlib.asynccontextmanager
async def peer(server: Server, cell: Cell) -> AsyncIterator[Call]:
    """httpx ``AsyncClient``, the reference row (most SDKs are built on it)."""
    import httpx  # the bench extra's; the rest runs without it

    payload = PAYLOADS[cell.body]
    headers = _headers(server.api_key)
    base = server.url
    limits = httpx.Limits(max_connections=cell.pool_size, max_keepalive_connections=cell.pool_size)
    async with httpx.AsyncClient(limits=limits) as client:

        async def call(instance: str) -> object:
            url = f"{base}/api/v1/oauth/{instance}/reauthorise"
            response = await client.patch(url, json=payload, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"httpx side: HTTP {response.status_code}")
            return response.json()

        yield call


FACTORIES = {OURS: ours, AIOHTTP: bare, HTTPX: peer, CONTROL: bare}


async def _workers(call: Call, ids: Connectors, concurrency: int, duration: float) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration

    async def worker() -> int:
        done = 0
        while loop.time() < deadline:
            await call(ids.take())
            done += 1
        return done

    return sum(await asyncio.gather(*(worker() for _ in range(concurrency))))


async def _gather(call: Call, ids: Connectors, concurrency: int, calls: int) -> int:
    semaphore = asyncio.Semaphore(concurrency)

    async def guarded(connector: str) -> object:
        async with semaphore:
            return await call(connector)

    await asyncio.gather(*(guarded(ids.take()) for _ in range(calls)))
    return calls


async def timed(
    call: Call, ids: Connectors, cell: Cell, duration: float, calls: int
) -> tuple[int, float, float]:
    """One timed run: (calls, wall seconds, CPU seconds of this process)."""
    gc.collect()
    cpu = time.process_time()
    started = time.perf_counter()
    if cell.pattern == "workers":
        done = await _workers(call, ids, cell.concurrency, duration)
    else:
        done = await _gather(call, ids, cell.concurrency, calls)
    return done, time.perf_counter() - started, time.process_time() - cpu


async def _warm_up(call: Call, ids: Connectors, cell: Cell, distinct_warm_up: int) -> None:
    """Open the pool's connections (and learn instance "0"'s rate); fill the registry.

    A distinct cell sends ``distinct_warm_up`` calls (``DISTINCT_WARM_UP`` in a full
    run, none in ``--quick``) to as many new instances first,
    so the client's registry is full and evicting before the first round, as in a
    long bulk job; the aiohttp side gets the same warm-up.
    """
    await _gather(call, ids, cell.concurrency, 2 * cell.concurrency)
    if cell.connectors == "distinct" and distinct_warm_up:
        await _gather(call, ids, max(cell.concurrency, WARM_UP_CONCURRENCY), distinct_warm_up)


async def run_cell(
    server: Server,
    cell: Cell,
    *,
    sides: Sequence[str],
    rounds: int,
    duration: float,
    instances: int,
    distinct_warm_up: int,
) -> dict[str, Any]:
    """Every round of one cell; both sides open throughout, alternating each round."""
    async with contextlib.AsyncExitStack() as stack:
        calls: dict[str, Call] = {}
        ids: dict[str, Connectors] = {}
        for side in sides:
            calls[side] = await stack.enter_async_context(FACTORIES[side](server, cell))
            ids[side] = Connectors(cell.connectors, instances)
            await _warm_up(calls[side], ids[side], cell, distinct_warm_up)
        # A gather run's size: about ``duration`` seconds of the aiohttp side's warm pace.
        warm_calls, warm_seconds, _ = await timed(
            calls[AIOHTTP], ids[AIOHTTP], attrs.evolve(cell, pattern="workers"), duration / 2, 0
        )
        gather_calls = max(4 * cell.concurrency, int(warm_calls / warm_seconds * duration))
        runs: dict[str, list[tuple[int, float, float]]] = {side: [] for side in sides}
        for number in range(rounds):
            order = list(sides) if number % 2 == 0 else list(reversed(sides))
            for side in order:
                runs[side].append(await timed(calls[side], ids[side], cell, duration, gather_calls))
        seen = {side: ids[side].seen for side in sides}
    return _summary(cell, runs, seen, gather_calls)


def _summary(
    cell: Cell,
    runs: dict[str, list[tuple[int, float, float]]],
    seen: dict[str, int],
    gather_calls: int,
) -> dict[str, Any]:
    rates = {side: [n / s for n, s, _ in each] for side, each in runs.items()}
    cpus = {side: [c / n * 1e6 for n, _, c in each] for side, each in runs.items()}
    base = rates[AIOHTTP]
    result: dict[str, Any] = {**attrs.asdict(cell), "pool_size": cell.pool_size}
    if cell.pattern == "gather":
        result["calls_per_gather"] = gather_calls
    for side in runs:
        per_round = [ratio(mine, theirs) for mine, theirs in zip(rates[side], base, strict=True)]
        result[side] = {
            "requests_per_second": median(rates[side]),
            "requests_per_second_each_round": rates[side],
            "cpu_us_per_call": median(cpus[side]),
            "cpu_us_each_round": cpus[side],
            "ratio_to_aiohttp": median(per_round),
            "ratio_to_aiohttp_each_round": per_round,
            "instances_seen": seen[side] if cell.connectors == "distinct" else 1,
        }
    return result


async def run_matrix(
    server: Server,
    cells: Sequence[Cell],
    *,
    rounds: int,
    duration: float,
    instances: int,
    distinct_warm_up: int,
    peer_cells: Sequence[Cell] = (),
    progress: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Every cell (ours and aiohttp); httpx and the A/A control on ``peer_cells``."""
    rows: list[dict[str, Any]] = []
    for cell in cells:
        sides = (OURS, AIOHTTP, HTTPX, CONTROL) if cell in peer_cells else (OURS, AIOHTTP)
        row = await run_cell(
            server,
            cell,
            sides=sides,
            rounds=rounds,
            duration=duration,
            instances=instances,
            distinct_warm_up=distinct_warm_up,
        )
        line = (
            f"{cell.label:<48} ratio {row[OURS]['ratio_to_aiohttp']:5.2f} "
            f"ours {row[OURS]['requests_per_second']:7.0f}/s "
            f"{row[OURS]['cpu_us_per_call']:5.0f} us  aiohttp "
            f"{row[AIOHTTP]['requests_per_second']:7.0f}/s "
            f"{row[AIOHTTP]['cpu_us_per_call']:5.0f} us"
        )
        if HTTPX in row:
            line += f"  httpx {row[HTTPX]['ratio_to_aiohttp']:4.2f}"
        if CONTROL in row:
            spread = row[CONTROL]["ratio_to_aiohttp_each_round"]
            control = row[CONTROL]["ratio_to_aiohttp"]
            line += f"  A/A {control:4.2f} ({min(spread):.2f}-{max(spread):.2f})"
        progress(line)
        rows.append(row)
    return rows


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The matrix in a few numbers: cells at or above 1.0 (not rounded), medians, noise floor."""
    ratios = [row[OURS]["ratio_to_aiohttp"] for row in rows]
    by_dimension: dict[str, float] = {}
    for dimension, values in (
        ("pattern", PATTERNS),
        ("connectors", CONNECTORS),
        ("body", BODIES),
        ("pool", POOLS),
    ):
        for value in values:
            mine = [row[OURS]["ratio_to_aiohttp"] for row in rows if row[dimension] == value]
            if mine:
                by_dimension[f"{dimension}={value}"] = median(mine)
    control = {
        str(row["concurrency"]): {
            "median": row[CONTROL]["ratio_to_aiohttp"],
            "lowest_round": min(row[CONTROL]["ratio_to_aiohttp_each_round"]),
            "highest_round": max(row[CONTROL]["ratio_to_aiohttp_each_round"]),
        }
        for row in rows
        if CONTROL in row
    }
    return {
        "cells": len(rows),
        "at_or_above_1_0": sum(1 for value in ratios if value >= 1.0),
        "at_or_above_0_95": sum(1 for value in ratios if value >= 0.95),
        "median": median(ratios) if ratios else None,
        "lowest": min(ratios, default=None),
        "highest": max(ratios, default=None),
        "median_by_dimension": by_dimension,
        "aa_control_by_concurrency": control,
    }

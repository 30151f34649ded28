"""Overhead and CPU per call: our client against bare aiohttp (and httpx) on the same server.

Every side sends the same ``PATCH /api/v1/oauth/{connector}/reauthorise`` with the
same JSON body and headers, reads the whole answer and decodes its JSON. Each run
gets a fresh client, warms up one request per worker (opening the connections),
then sends for a fixed time from ``concurrency`` workers. Rounds interleave the
sides, rotating their order, so drift on a shared machine falls on every side alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import attrs

from patchworks_async import PatchworksClient, ReauthoriseRequest
from patchworks_async._constants import USER_AGENT

from ._process import Control, Server
from ._stats import median, ratio

OURS = "patchworks_async"
AIOHTTP = "aiohttp"
HTTPX = "httpx"
SIDES = (OURS, AIOHTTP, HTTPX)

#: The instance every call reauthorises (the server preseeds it).
CONNECTOR = "0"
#: The body, as a model for our client and as a dict for the others.
REQUEST = ReauthoriseRequest(timezone="UTC", date_format="Y-m-d H:i:s", connection_pool_id=7)
PAYLOAD = {"timezone": "UTC", "date_format": "Y-m-d H:i:s", "connection_pool_id": 7}
#: Pool size for every side, so that concurrency 64 opens 64 connections on each.
POOL = 100

Call = Callable[[], Awaitable[object]]


@attrs.frozen(kw_only=True)
class Run:
    """One timed run of one side at one concurrency."""

    side: str
    concurrency: int
    round: int
    calls: int
    seconds: float
    cpu_seconds: float
    server_cpu_seconds: float
    connections: int
    client_connections: int | None

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds

    @property
    def cpu_us(self) -> float:
        """Client-process CPU per call, in microseconds."""
        return self.cpu_seconds / self.calls * 1e6


def _headers(api_key: str) -> dict[str, str]:
    return {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Authorization": api_key,
    }


@contextlib.asynccontextmanager
async def _ours(server: Server) -> AsyncIterator[tuple[Call, Callable[[], int | None]]]:
    # Limiters off, retries on (the default policy): nothing fails, so none is taken.
    async with PatchworksClient(
        base_url=server.url, api_key=server.api_key, rate_limit=None, max_connections=POOL
    ) as client:

        def call() -> Awaitable[object]:
            return client.oauth.reauthorise(CONNECTOR, REQUEST)

        yield call, lambda: client.connections_opened


@contextlib.asynccontextmanager
async def _aiohttp(server: Server) -> AsyncIterator[tuple[Call, Callable[[], int | None]]]:
    url = f"{server.url}/api/v1/oauth/{CONNECTOR}/reauthorise"
    headers = _headers(server.api_key)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL)) as session:

        async def call() -> object:
            # What one writes by hand: json=, read the body, then look at the status.
            async with session.patch(url, json=PAYLOAD, headers=headers) as response:
                data = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"aiohttp side: HTTP {response.status}")
                return data

        yield call, lambda: None


@contextlib.asynccontextmanager
async def _httpx(server: Server) -> AsyncIterator[tuple[Call, Callable[[], int | None]]]:
    # Imported here: httpx is the bench extra's, and the rest runs without it.
    import httpx

    url = f"{server.url}/api/v1/oauth/{CONNECTOR}/reauthorise"
    headers = _headers(server.api_key)
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    async with httpx.AsyncClient(limits=limits) as client:

        async def call() -> object:
            response = await client.patch(url, json=PAYLOAD, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"httpx side: HTTP {response.status_code}")
            return response.json()

        yield call, lambda: None


_FACTORIES = {OURS: _ours, AIOHTTP: _aiohttp, HTTPX: _httpx}


async def _drive(call: Call, concurrency: int, duration: float) -> tuple[int, float, float]:
    """Send from ``concurrency`` workers for ``duration`` s: (calls, wall s, CPU s)."""
    loop = asyncio.get_running_loop()

    async def worker(deadline: float) -> int:
        done = 0
        while loop.time() < deadline:
            await call()
            done += 1
        return done

    cpu = time.process_time()
    started = time.perf_counter()
    counts = await asyncio.gather(*(worker(loop.time() + duration) for _ in range(concurrency)))
    return sum(counts), time.perf_counter() - started, time.process_time() - cpu


async def run_one(
    server: Server,
    control: Control,
    side: str,
    concurrency: int,
    duration: float,
    number: int = 0,
) -> Run:
    """One fresh client of ``side``: warm up, then send for ``duration`` seconds."""
    before = await control.stats()
    async with _FACTORIES[side](server) as (call, client_connections):
        await asyncio.gather(*(call() for _ in range(concurrency)))
        # The garbage of the run before (httpx leaves plenty) is not this run's to collect.
        gc.collect()
        cpu_before = (await control.stats())["cpu"]
        calls, seconds, cpu = await _drive(call, concurrency, duration)
        cpu_after = (await control.stats())["cpu"]
        opened = client_connections()
    after = await control.stats()
    return Run(
        side=side,
        concurrency=concurrency,
        round=number,
        calls=calls,
        seconds=seconds,
        cpu_seconds=cpu,
        server_cpu_seconds=cpu_after - cpu_before,
        connections=int(after["connections"] - before["connections"]),
        client_connections=opened,
    )


async def run_rounds(
    server: Server,
    *,
    sides: Sequence[str],
    concurrencies: Sequence[int],
    rounds: int,
    duration: float,
    progress: Callable[[str], None],
) -> list[Run]:
    """``rounds`` rounds; in each, every concurrency, with the sides' order varied.

    The order is rotated each round and reversed every other round, so no side
    always runs right after the same other side.
    """
    control = Control(server)
    runs: list[Run] = []
    for number in range(rounds):
        for concurrency in concurrencies:
            shift = number % len(sides)
            order = [*sides[shift:], *sides[:shift]]
            for side in reversed(order) if number % 2 else order:
                run = await run_one(server, control, side, concurrency, duration, number)
                progress(
                    f"round {number + 1}/{rounds} c={concurrency:<3} {side:<16} "
                    f"{run.per_second:8.0f}/s {run.cpu_us:6.0f} us/call"
                )
                runs.append(run)
    return runs


def _paired_ratios(mine: Sequence[Run], base: Sequence[Run], value: str) -> list[float]:
    """``value`` of ``mine`` over that of ``base`` within each round (run side by side)."""
    by_round = {run.round: getattr(run, value) for run in base}
    return [
        ratio(getattr(run, value), by_round[run.round]) for run in mine if run.round in by_round
    ]


def summarise(runs: Sequence[Run], sides: Sequence[str]) -> list[dict[str, Any]]:
    """Medians per (concurrency, side), and ratios against bare aiohttp.

    The ratios are medians of per-round ratios: within a round the sides run one
    after the other, so a burst of load from elsewhere on the machine moves both.
    """
    rows: list[dict[str, Any]] = []
    for concurrency in sorted({run.concurrency for run in runs}):
        base = [run for run in runs if run.concurrency == concurrency and run.side == AIOHTTP]
        for side in sides:
            mine = [run for run in runs if run.concurrency == concurrency and run.side == side]
            if not mine:
                continue
            rate = median(run.per_second for run in mine)
            cpu = median(run.cpu_us for run in mine)
            rate_ratios = _paired_ratios(mine, base, "per_second")
            cpu_ratios = _paired_ratios(mine, base, "cpu_us")
            counted = [run.client_connections for run in mine if run.client_connections is not None]
            rows.append(
                {
                    "concurrency": concurrency,
                    "side": side,
                    "rounds": len(mine),
                    "requests_per_second": rate,
                    "requests_per_second_each_round": [run.per_second for run in mine],
                    "ratio_to_aiohttp": median(rate_ratios),
                    "ratio_to_aiohttp_each_round": rate_ratios,
                    "cpu_us_per_call": cpu,
                    "cpu_us_each_round": [run.cpu_us for run in mine],
                    "cpu_ratio_to_aiohttp": median(cpu_ratios),
                    "server_cpu_busy": median(r.server_cpu_seconds / r.seconds for r in mine),
                    # Per run (each run has a fresh client), as the server counted them.
                    "connections_opened": max(run.connections for run in mine),
                    # Our client counts its own; the others are counted by the server only.
                    "client_connections_opened": max(counted) if counted else None,
                    "calls": sum(run.calls for run in mine),
                }
            )
    return rows

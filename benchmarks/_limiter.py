"""Limiter accuracy: do the client's limiters keep to their limits, and use all of them?

Phases against the same server, each ``windows`` one-second windows long, with
arrival times taken by the server (``time.monotonic()`` as each request arrives):

- ``client-wide``: the client-wide limit is the only one, and demand always
  exceeds it (spread over instances that have no limit of their own);
- ``per-instance``: several instances with different limits, each with more
  demand than its limit, under a client-wide limit that leaves them room;
- ``per-instance, busy client-wide``: the same instances under a client-wide
  limit their sum nearly fills. An instance's request that waits for the
  client-wide limiter is counted from when it leaves, so the instances lose share
  here by design; only their windows are judged.

For each limiter: the largest count in any sliding window of one period (target:
never above the limit) and the achieved share of the limit (target: at least 98%),
measured from the first to the last arrival (``n`` requests span ``n - 1`` intervals).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from patchworks_async import PatchworksClient, RateLimit

from ._overhead import REQUEST
from ._process import Control, Server
from ._stats import achieved_rate, max_in_window

#: Instance ids (preseeded by the server) that get limits of their own.
LIMITED = ("1", "2", "3")
#: Instance ids with no limit of their own, for the client-wide phase.
UNLIMITED = tuple(str(index) for index in range(10, 18))
#: Workers per limited instance: always more demand than its limit.
WORKERS_PER_INSTANCE = 4


async def _hammer(client: PatchworksClient, workers: Mapping[str, int], seconds: float) -> int:
    """``workers[c]`` workers per connector ``c``, each calling back to back for ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def worker(connector: str) -> int:
        done = 0
        while loop.time() < deadline:
            await client.oauth.reauthorise(connector, REQUEST)
            done += 1
        return done

    counts = await asyncio.gather(
        *(worker(connector) for connector, count in workers.items() for _ in range(count))
    )
    return sum(counts)


def judge(name: str, limit: RateLimit, times: list[float], *, note: str | None) -> dict[str, Any]:
    """One limiter's row: the busiest window, and the share of the limit reached.

    ``note`` says why the share target does not apply to this row (``None``: it does).
    """
    times = sorted(times)
    largest = max_in_window(times, limit.period)
    rate = achieved_rate(times)
    return {
        "limiter": name,
        "limit": limit.duration,
        "period_seconds": limit.period,
        "requests": len(times),
        "max_in_any_window": largest,
        "within_limit": largest <= limit.duration,
        "achieved_per_second": rate,
        "achieved_share": rate / limit.per_second,
        # The share target applies only where that limiter is what holds traffic back.
        "share_judged": note is None,
        "note": note,
    }


async def _phase(
    server: Server,
    *,
    client_rate: RateLimit,
    instance_rates: Mapping[str, RateLimit],
    workers: Mapping[str, int],
    seconds: float,
    client_note: str | None,
    instance_note: str | None,
) -> list[dict[str, Any]]:
    control = Control(server)
    async with PatchworksClient(
        base_url=server.url, api_key=server.api_key, rate_limit=client_rate
    ) as client:
        for connector, rate in instance_rates.items():
            client.set_instance_rate_limit(connector, rate)
        await control.start_arrivals()
        try:
            await _hammer(client, workers, seconds)
        finally:
            arrivals = await control.stop_arrivals()
    rows = [judge("client-wide", client_rate, [t for t, _ in arrivals], note=client_note)]
    for connector, rate in instance_rates.items():
        times = [t for t, c in arrivals if c == connector]
        rows.append(judge(f"instance {connector}", rate, times, note=instance_note))
    return rows


async def run(
    server: Server,
    *,
    windows: int,
    client_per_second: int,
    roomy_client_per_second: int,
    instance_per_second: tuple[int, ...],
) -> dict[str, Any]:
    """The three phases; returns their rows by phase name."""
    seconds = float(windows)
    phases = {
        "client-wide": await _phase(
            server,
            client_rate=RateLimit("second", client_per_second),
            instance_rates={},
            # About twice the limit's worth of workers.
            workers=dict.fromkeys(UNLIMITED, max(2, 2 * client_per_second // len(UNLIMITED))),
            seconds=seconds,
            client_note=None,
            instance_note=None,
        )
    }
    instance_rates = {
        connector: RateLimit("second", per_second)
        for connector, per_second in zip(LIMITED, instance_per_second, strict=True)
    }
    busy = "the client-wide limit delays them"
    for name, client_limit, instance_note in (
        ("per-instance", roomy_client_per_second, None),
        ("per-instance, busy client-wide", client_per_second, busy),
    ):
        phases[name] = await _phase(
            server,
            client_rate=RateLimit("second", client_limit),
            instance_rates=instance_rates,
            workers=dict.fromkeys(instance_rates, WORKERS_PER_INSTANCE),
            seconds=seconds,
            client_note="not the binding limit",
            instance_note=instance_note,
        )
    return {
        "windows": windows,
        "client_per_second": client_per_second,
        "roomy_client_per_second": roomy_client_per_second,
        "instance_per_second": list(instance_per_second),
        "phases": phases,
    }

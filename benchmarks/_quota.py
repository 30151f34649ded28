"""Adaptive quota: does the client use what a shared key leaves, without running into 429s?

Each run is the real client against the real ``FakePatchworks`` over loopback,
on a virtual clock (``tests/virtual_time.py``): the event loop's clock jumps to
the next timer whenever every task waits, and the fake's quota windows and its
background consumer read the same clock. Ten minutes of traffic take a few
seconds, and the timing is exact (nothing waits on the real network for long:
loopback delivers as the write happens).

The server's quota is a per-key fixed window of 60 s (Laravel's throttle); the
client is configured at 240 a minute and always has more work than the quota
allows (``WORKERS`` callers back to back). Scenarios: a server limit of 120, 240
and 600 a minute with the key to itself; and a 240 a minute limit shared with a
background consumer taking 0%, 40% (steady) and 60% (bursts of ``BURST``). Each
runs with ``adaptive_quota`` on and off.

Judged after the first window (from one window after the first request to the
end): the client's 429s per minute (target: at most 1), and the share of what the
other consumer left that the client used (target: at least 95%): the client's
successful calls over ``limit * minutes - background calls allowed``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs

from patchworks_async import (
    Event,
    EventKind,
    PatchworksClient,
    PatchworksError,
    RateLimit,
    RateLimitState,
    ReauthoriseRequest,
    RetryPolicy,
)
from patchworks_async.testing import BackgroundConsumer, FakePatchworks
from tests.virtual_time import run_virtual

WINDOW: Final = 60.0
CONFIGURED: Final = RateLimit("minute", 240)
WORKERS: Final = 4
BURST: Final = 48
#: The bursts start this far into the run, so they do not line up with windows.
BURST_OFFSET: Final = 7.0
REQUEST: Final = ReauthoriseRequest(timezone="UTC")
MAX_429_PER_MINUTE: Final = 1.0
SHARE_TARGET: Final = 0.95


@attrs.frozen(kw_only=True)
class Scenario:
    """One server set-up."""

    name: str
    limit: int
    share: float = 0.0
    burst: int = 1

    def background(self) -> BackgroundConsumer | None:
        """The fake's other consumer of the key, if any."""
        if self.share == 0:
            return None
        offset = BURST_OFFSET if self.burst > 1 else 0.0
        return BackgroundConsumer(share=self.share, burst=self.burst, offset=offset)


SCENARIOS: Final = (
    Scenario(name="server 120/min", limit=120),
    Scenario(name="server 240/min", limit=240),
    Scenario(name="server 600/min", limit=600),
    Scenario(name="240/min, other consumer 0%", limit=240, share=0.0),
    Scenario(name="240/min, other consumer 40% steady", limit=240, share=0.4),
    Scenario(name="240/min, other consumer 60% bursty", limit=240, share=0.6, burst=BURST),
)


async def _drive(scenario: Scenario, adaptive: bool, minutes: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    fake = FakePatchworks(
        quota=scenario.limit,
        quota_window=WINDOW,
        background=scenario.background(),
        clock=loop.time,
        record=False,
    )
    async with fake:
        started = loop.time()
        deadline = started + minutes * WINDOW
        # (virtual time, status) of every answer, as the client saw it.
        answers: list[tuple[float, int]] = []

        def record(event: Event) -> None:
            if event.kind is EventKind.RESPONSE and event.status is not None:
                answers.append((loop.time(), event.status))

        async def first_window() -> int:
            # The other consumer's calls are applied lazily: bring them up to date.
            await asyncio.sleep(WINDOW)
            fake.quota_model.catch_up(loop.time())
            return fake.background_sent

        snapshot = asyncio.ensure_future(first_window())
        state = await _traffic(fake, adaptive, deadline, record)
        background_before = await snapshot
        fake.quota_model.catch_up(deadline)
        return _judge(fake, scenario, answers, started, deadline, background_before, state)


async def _traffic(
    fake: FakePatchworks, adaptive: bool, deadline: float, record: Callable[[Event], None]
) -> RateLimitState | None:
    """``WORKERS`` callers back to back until ``deadline``; returns the client's state."""
    loop = asyncio.get_running_loop()
    connector = fake.add_instance("1")
    async with PatchworksClient(
        base_url=fake.url,
        api_key=fake.api_key,
        rate_limit=CONFIGURED,
        adaptive_quota=adaptive,
        # Retries are what a bulk job would do; max_time is no object on a long run.
        retry=RetryPolicy(max_attempts=10, max_time=3600.0),
        on_event=record,
    ) as client:

        async def worker() -> None:
            while loop.time() < deadline:
                try:
                    await client.oauth.reauthorise(connector, REQUEST)
                except PatchworksError:  # every answer is counted from the events
                    continue

        await asyncio.gather(*(worker() for _ in range(WORKERS)))
        return client.rate_limit_state


def _judge(
    fake: FakePatchworks,
    scenario: Scenario,
    answers: list[tuple[float, int]],
    started: float,
    deadline: float,
    background_before: int,
    state: RateLimitState | None,
) -> dict[str, Any]:
    judged_from = started + WINDOW
    minutes = (deadline - judged_from) / WINDOW
    late = [status for moment, status in answers if judged_from <= moment < deadline]
    ok = late.count(200)
    too_many = late.count(429)
    background = fake.background_sent - background_before
    left = scenario.limit * minutes - background
    first_429 = sum(1 for moment, status in answers if moment < judged_from and status == 429)
    quota = state.quota if state is not None else None
    return {
        "client_ok": ok,
        "client_429": too_many,
        "client_429_first_window": first_429,
        "per_minute_429": too_many / minutes,
        "background_ok": background,
        "background_denied": fake.background_denied,
        "left_by_others": left,
        "used_share": ok / left if left > 0 else math.nan,
        "learnt_limit": quota.limit if quota is not None else None,
        "ignored": sum(quota.ignored.values()) if quota is not None else None,
    }


def run_one(scenario: Scenario, *, adaptive: bool, minutes: int) -> dict[str, Any]:
    """One scenario, one mode, on a fresh virtual-time loop.

    Args:
        scenario: the server's set-up.
        adaptive: the client's ``adaptive_quota``.
        minutes: virtual minutes of traffic.

    Returns:
        The row: counts, 429s per minute and the share used, after the first window.
    """

    async def main() -> dict[str, Any]:
        return await _drive(scenario, adaptive, minutes)

    row = run_virtual(main)
    return {"scenario": scenario.name, "limit": scenario.limit, "adaptive": adaptive, **row}


def run(minutes: int, scenarios: Sequence[Scenario] = SCENARIOS) -> dict[str, Any]:
    """Every scenario with adaptive mode on and off.

    Args:
        minutes: virtual minutes per run.
        scenarios: the set-ups.

    Returns:
        ``{"minutes", "rows"}``.
    """
    rows = [
        run_one(scenario, adaptive=adaptive, minutes=minutes)
        for scenario in scenarios
        for adaptive in (True, False)
    ]
    return {"minutes": minutes, "configured_per_minute": CONFIGURED.duration, "rows": rows}


def table(result: dict[str, Any]) -> str:
    """The markdown table of a run."""
    lines = [
        "| scenario | adaptive | 429s in window 1 | 429s/min after it "
        "| share of what the other left, used | client calls ok | other consumer ok / refused |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['scenario']} | {'on' if row['adaptive'] else 'off'} "
            f"| {row['client_429_first_window']} | {row['per_minute_429']:.2f} "
            f"| {row['used_share']:.1%} | {row['client_ok']:,} "
            f"| {row['background_ok']:,} / {row['background_denied']:,} |"
        )
    return "\n".join(lines)

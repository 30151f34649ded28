"""Adaptive quota across processes: ``python -m benchmarks._quota_processes [SECONDS]``.

Separate client processes on one API key, in real time, with no shared backend:
each sees the others only in ``X-RateLimit-Remaining``. The server (a process of
its own) allows 40 calls per 1-second window (a short window, so that a run takes
seconds; timing jitter then weighs far more than on the API's 60-second window);
three client processes are each configured at 20 a second (60 together) and always
want more. With and without another consumer of 30% of the key, adaptive mode on
and off. Judged from 2 s after the first answer to the end.

Run as ``server SHARE`` or ``client URL KEY on|off UNTIL`` it is one of the parts.
Every process started is waited for, and the server is stopped by its pid.

With ``PATCHWORKS_BENCH_REDIS_URL`` set, the client processes share a ``RedisLimiter``
there (one fresh namespace a run): the fleet is paced through Redis until the server
speaks, and a 429 seen by one pauses all.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Final

from patchworks_async import (
    Event,
    EventKind,
    PatchworksClient,
    PatchworksError,
    RateLimit,
    ReauthoriseRequest,
    RetryPolicy,
)
from patchworks_async.testing import BackgroundConsumer, FakePatchworks

QUOTA: Final = 40
PROCESSES: Final = 3
CONFIGURED: Final = RateLimit("second", 20)
WARM_UP: Final = 2.0
REDIS_URL: Final = "PATCHWORKS_BENCH_REDIS_URL"
REDIS_NAMESPACE: Final = "PATCHWORKS_BENCH_REDIS_NAMESPACE"


async def _serve(share: float) -> None:
    background = BackgroundConsumer(share=share) if share else None
    fake = FakePatchworks(quota=QUOTA, quota_window=1.0, background=background, record=False)
    async with fake:
        fake.add_instance("1")
        print(json.dumps({"url": fake.url, "key": fake.api_key}), flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        fake.quota_model.catch_up(time.monotonic())
        counts = {"ok": fake.background_sent, "refused": fake.background_denied}
        print(json.dumps(counts), flush=True)


async def _client(url: str, key: str, adaptive: bool, until: float) -> None:
    answers: list[tuple[float, int]] = []

    def record(event: Event) -> None:
        if event.kind is EventKind.RESPONSE and event.status is not None:
            answers.append((time.monotonic(), event.status))

    redis_url = os.environ.get(REDIS_URL)
    limiter = None
    if redis_url:
        from patchworks_async.redis import RedisLimiter

        limiter = RedisLimiter.from_url(redis_url, namespace=os.environ[REDIS_NAMESPACE])
    async with PatchworksClient(
        base_url=url,
        api_key=key,
        rate_limit=CONFIGURED,
        adaptive_quota=adaptive,
        limiter=limiter,
        on_event=record,
        retry=RetryPolicy(max_attempts=20, max_time=60.0),
    ) as client:

        async def worker() -> None:
            while time.monotonic() < until:
                try:
                    await client.oauth.reauthorise("1", ReauthoriseRequest(timezone="UTC"))
                except PatchworksError:  # every answer is counted from the events
                    continue

        await asyncio.gather(*(worker() for _ in range(4)))
    print(json.dumps(answers), flush=True)


def run_one(adaptive: bool, share: float, seconds: float) -> dict[str, Any]:
    """One run: a server process and ``PROCESSES`` client processes.

    Args:
        adaptive: the clients' ``adaptive_quota``.
        share: the other consumer's share of the key (0 for none).
        seconds: how long the clients call.

    Returns:
        Calls a second, share of what the other left, 429s, the other's counts.
    """
    python = sys.executable
    server = subprocess.Popen(  # noqa: S603  # our own interpreter and module
        [python, "-m", "benchmarks._quota_processes", "server", str(share)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        where = json.loads(server.stdout.readline())
        until = time.monotonic() + 1.0 + seconds
        mode = "on" if adaptive else "off"
        role = ["client", where["url"], where["key"], mode, str(until)]
        environment = {**os.environ, REDIS_NAMESPACE: f"quota-bench-{os.getpid()}-{until}"}
        clients = [
            subprocess.Popen(  # noqa: S603  # our own interpreter and module
                [python, "-m", "benchmarks._quota_processes", *role],
                stdout=subprocess.PIPE,
                text=True,
                env=environment,
            )
            for _ in range(PROCESSES)
        ]
        answers = [json.loads(client.communicate(timeout=seconds + 60)[0]) for client in clients]
    finally:
        server.send_signal(signal.SIGTERM)
        tail = server.communicate(timeout=10)[0]
    other = json.loads(tail.strip().splitlines()[-1])
    every = sorted(tuple(answer) for answers_of_one in answers for answer in answers_of_one)
    start = every[0][0] + WARM_UP
    judged = [status for moment, status in every if start <= moment < until]
    span = until - start
    left = QUOTA * span * (1 - share)
    return {
        "adaptive": adaptive,
        "other_share": share,
        "seconds_judged": span,
        "ok_per_second": judged.count(200) / span,
        "share_of_what_the_other_left": judged.count(200) / left,
        "client_429": judged.count(429),
        "other_ok": other["ok"],
        "other_refused": other["refused"],
    }


def main(argv: list[str]) -> None:
    """Dispatch on the role in ``argv``; with none (or seconds), run and print the table."""
    if argv and argv[0] == "server":
        asyncio.run(_serve(float(argv[1])))
        return
    if argv and argv[0] == "client":
        asyncio.run(_client(argv[1], argv[2], argv[3] == "on", float(argv[4])))
        return
    seconds = float(argv[0]) if argv else 20.0
    if os.environ.get(REDIS_URL):
        print(f"client processes share a RedisLimiter at {os.environ[REDIS_URL]}")
    print(
        f"| other consumer | adaptive | calls/s of {QUOTA}/s | share of what the other left "
        "| client 429s | other's calls ok / refused |\n|---|---|---|---|---|---|"
    )
    for share in (0.0, 0.3):
        for adaptive in (True, False):
            row = run_one(adaptive, share, seconds)
            print(
                f"| {share:.0%} | {'on' if adaptive else 'off'} | {row['ok_per_second']:.1f} "
                f"| {row['share_of_what_the_other_left']:.1%} "
                f"| {row['client_429']} in {row['seconds_judged']:.0f} s "
                f"| {row['other_ok']} / {row['other_refused']} |"
            )


if __name__ == "__main__":
    main(sys.argv[1:])

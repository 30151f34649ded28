"""One bulk job in a fresh process, for its peak memory: ``python -m benchmarks._memory``.

Prints one JSON line: items, outcomes, seconds, CPU per item, the RSS before the
job and its peak growth during it. The RSS is read from ``/proc/self/statm``
every 10 ms while the job runs (``ru_maxrss`` would also count any earlier peak,
such as one during imports); the baseline is taken after a tiny warm-up job that
opens the pool's connections, so imports and the pool are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence

from patchworks_async import PatchworksClient

from ._bulk import items

_SAMPLE_SECONDS = 0.01


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRss:
    """The largest RSS seen by a background task, sampled every 10 ms."""

    def __init__(self) -> None:
        self.peak = _rss_bytes()

    async def watch(self) -> None:
        while True:
            self.peak = max(self.peak, _rss_bytes())
            await asyncio.sleep(_SAMPLE_SECONDS)


async def _job(url: str, api_key: str, count: int, concurrency: int) -> dict[str, object]:
    async with PatchworksClient(base_url=url, api_key=api_key, rate_limit=None) as client:

        async def run(size: int) -> tuple[int, int]:
            ok = failed = 0
            # The items cycle over a few ids on purpose: deduplication off (its set is
            # measured on its own: 92 bytes an item, README "Bulk reauthorisation").
            async for outcome in client.oauth.reauthorise_many(
                items(size), concurrency=concurrency, deduplicate=False
            ):
                if outcome.ok:
                    ok += 1
                else:
                    failed += 1
            return ok, failed

        await run(2 * concurrency)
        before = _rss_bytes()
        peak = _PeakRss()
        watcher = asyncio.create_task(peak.watch())
        started = time.monotonic()
        cpu = time.process_time()
        try:
            ok, failed = await run(count)
        finally:
            watcher.cancel()
        cpu = time.process_time() - cpu
        seconds = time.monotonic() - started
        peak.peak = max(peak.peak, _rss_bytes())
    return {
        "items": count,
        "ok": ok,
        "failed": failed,
        "seconds": seconds,
        "cpu_us_per_item": cpu / count * 1e6,
        "rss_before_mb": before / 2**20,
        "peak_rss_mb": peak.peak / 2**20,
        "peak_growth_mb": (peak.peak - before) / 2**20,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; prints the JSON line and returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._memory")
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    result = asyncio.run(_job(args.url, args.api_key, args.items, args.concurrency))
    print(json.dumps(result), flush=True)
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

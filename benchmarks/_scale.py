"""Cost as the work grows, in a fresh process: ``python -m benchmarks._scale``.

One long-lived client reauthorises a new instance on every call, with rate fields
(so it learns a limit, and keeps per-instance state, for every instance it sees),
``concurrency`` calls at once behind a semaphore, in batches of ``batch`` calls.
After each batch it reads the client process's CPU time, its RSS, its Python heap
(``sys.getallocatedblocks``) and the size of the instance registry. It prints one
JSON line with a row per checkpoint (1,000, 10,000 and 100,000 instances seen, by
default): CPU microseconds per call as the median of the last ``window`` batches
before it (the machine's noise moves single batches), and memory at it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from patchworks_async import PatchworksClient, RetryPolicy

from ._matrix import RATED


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _run(
    url: str,
    api_key: str,
    *,
    calls: int,
    batch: int,
    window: int,
    concurrency: int,
    checkpoints: Sequence[int],
) -> dict[str, Any]:
    async with PatchworksClient(
        base_url=url,
        api_key=api_key,
        rate_limit=None,
        retry=RetryPolicy.disabled(),
        max_connections=concurrency,
    ) as client:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(connector: str) -> None:
            async with semaphore:
                await client.oauth.reauthorise(connector, RATED)

        # Warm-up on instance "0" only: the pool's connections, nothing per instance.
        await asyncio.gather(*(one("0") for _ in range(2 * concurrency)))
        gc.collect()
        rows: list[dict[str, Any]] = []
        start_rss = _rss_mb()
        start_blocks = sys.getallocatedblocks()
        seen = 0
        recent: list[tuple[float, float]] = []  # (CPU s per call, calls per s) of each batch
        while seen < calls:
            size = min(batch, calls - seen)
            cpu = time.process_time()
            wall = time.perf_counter()
            await asyncio.gather(*(one(str(seen + 1 + index)) for index in range(size)))
            cpu = time.process_time() - cpu
            wall = time.perf_counter() - wall
            seen += size
            recent = [*recent[-(window - 1) :], (cpu / size, size / wall)]
            if seen in checkpoints:
                gc.collect()
                limits = client._pipeline.rates.limits
                rows.append(
                    {
                        "instances_seen": seen,
                        "batches": len(recent),
                        "batch_calls": size,
                        "cpu_us_per_call": statistics.median(c for c, _ in recent) * 1e6,
                        "cpu_us_each_batch": [c * 1e6 for c, _ in recent],
                        "requests_per_second": statistics.median(r for _, r in recent),
                        "rss_growth_mb": _rss_mb() - start_rss,
                        "python_heap_blocks_growth": sys.getallocatedblocks() - start_blocks,
                        "registry_entries": len(limits.instances) if limits else 0,
                        "registry_bound": limits.instances.max_size if limits else 0,
                    }
                )
    return {"concurrency": concurrency, "batch": batch, "window": window, "checkpoints": rows}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; prints the JSON line and returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._scale")
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--window", type=int, default=5, help="batches in each median")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--checkpoints", default="1000,10000,100000")
    args = parser.parse_args(argv)
    checkpoints = [int(value) for value in args.checkpoints.split(",")]
    result = asyncio.run(
        _run(
            args.url,
            args.api_key,
            calls=args.calls,
            batch=args.batch,
            window=args.window,
            concurrency=args.concurrency,
            checkpoints=checkpoints,
        )
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

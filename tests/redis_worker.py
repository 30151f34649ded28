"""One worker process of the Redis tests: a bulk reauthorise job under a shared limiter.

Run as ``python -m tests.redis_worker --base-url ... --api-key ... --redis-url ...``.
It builds its own ``PatchworksClient(limiter=RedisLimiter.from_url(...))``, prints
``ready``, waits for one line on stdin (so that every worker starts together), runs
the job and prints one JSON line: ``{"ok": [...], "failed": [...]}`` (connectors).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import orjson

from patchworks_async import PatchworksClient, RateLimit, ReauthoriseRequest, RetryPolicy
from patchworks_async.redis import RedisLimiter


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.redis_worker")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--rate", type=int, required=True, help="client-wide requests a second")
    parser.add_argument("--name", required=True, help="this worker's connectors are NAME-0...")
    parser.add_argument("--count", type=int, required=True, help="items of this worker's own")
    parser.add_argument("--hot", default=None, help="an instance every worker also calls")
    parser.add_argument("--hot-count", type=int, default=0)
    parser.add_argument("--hot-rate", type=int, default=1, help="its requests a second")
    return parser


async def _work(args: argparse.Namespace) -> dict[str, list[str]]:
    limiter = RedisLimiter.from_url(args.redis_url, namespace=args.namespace)
    items = [(args.hot, ReauthoriseRequest()) for _ in range(args.hot_count)]
    items += [(f"{args.name}-{i}", ReauthoriseRequest()) for i in range(args.count)]
    result: dict[str, list[str]] = {"ok": [], "failed": []}
    async with PatchworksClient(
        base_url=args.base_url,
        api_key=args.api_key,
        rate_limit=RateLimit("second", args.rate),
        retry=RetryPolicy(backoff_base=0.01, backoff_max=0.05),
        limiter=limiter,
    ) as client:
        if args.hot is not None:
            client.set_instance_rate_limit(args.hot, RateLimit("second", args.hot_rate))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        async for outcome in client.oauth.reauthorise_many(items):
            result["ok" if outcome.ok else "failed"].append(str(outcome.connector))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    result = asyncio.run(_work(_parser().parse_args(argv)))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

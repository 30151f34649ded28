"""Run FakePatchworks on its own: ``python -m patchworks_async.testing --port 8080``.

It prints four flushed lines (``url: ...``, ``api_key: ...``, ``username: ...``,
``password: ...``) and serves until SIGINT or SIGTERM, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from ._server import FakePatchworks


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m patchworks_async.testing",
        description="A fake Patchworks Core API server for tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port, 0 for a free one (8080)")
    parser.add_argument("--api-key", default=None, help="the API key (default: random)")
    parser.add_argument("--username", default="fake-user@example.com", help="login username")
    parser.add_argument("--password", default=None, help="login password (default: random)")
    parser.add_argument(
        "--token-ttl", type=float, default=86400.0, help="login token lifetime in seconds"
    )
    parser.add_argument(
        "--quota", type=int, default=None, help="requests per window per credential"
    )
    parser.add_argument(
        "--quota-window", type=float, default=60.0, help="quota window in seconds (60)"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="delay before every answer, in seconds"
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="keep every request in memory (off by default for a long-running server)",
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Windows has no add_signal_handler; KeyboardInterrupt still stops it there.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with FakePatchworks(
        api_key=args.api_key,
        username=args.username,
        password=args.password,
        token_ttl=args.token_ttl,
        quota=args.quota,
        quota_window=args.quota_window,
        host=args.host,
        port=args.port,
        record=args.record,
        latency=args.latency,
    ) as fake:
        print(f"url: {fake.url}", flush=True)
        print(f"api_key: {fake.api_key}", flush=True)
        print(f"username: {fake.username}", flush=True)
        print(f"password: {fake.password}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmarks' server process: ``python -m benchmarks._serve --instances N``.

It runs :class:`~patchworks_async.testing.FakePatchworks` with recording off (a lean
server for long runs), preseeds instances ``0`` to ``N - 1`` (reauthorise answers 404
for an instance the fake does not know), and serves a second, tiny control app on
another port of 127.0.0.1 so the benchmark can read what only the server knows:

- ``POST /arrivals/start``: start recording ``(time.monotonic(), connector)`` per request;
- ``POST /arrivals/stop``: stop, and answer ``{"arrivals": [[t, connector], ...]}``;
- ``GET /stats``: ``{"requests", "connections", "cpu"}``: requests and TCP
  connections the fake has seen, and this process's CPU seconds.

``CLOCK_MONOTONIC`` is system-wide on Linux, so arrival times compare directly with
the client's ``time.monotonic()``. It prints ``url:``, ``api_key:`` and ``control:``
lines, flushed, then serves until SIGTERM or SIGINT and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Sequence

import orjson
from aiohttp import web

from patchworks_async.testing import FakePatchworks

_PREFIX_LENGTH = len("/api/v1/oauth/")


class RecordingFake(FakePatchworks):
    """FakePatchworks that can keep the arrival time and connector of every request.

    The fake's own recording keeps headers and bodies too; this keeps two values
    per request and only while asked to, so it stays cheap at thousands a second.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(record=False, **kwargs)  # type: ignore[arg-type]  # forwarded keywords
        self.arrivals: list[tuple[float, str]] | None = None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        arrivals = self.arrivals
        if arrivals is not None:
            path = request.raw_path
            connector = path[_PREFIX_LENGTH : path.find("/", _PREFIX_LENGTH)]
            arrivals.append((time.monotonic(), connector))
        return await super()._handle(request)


def _control_app(fake: RecordingFake) -> web.Application:
    async def start(_request: web.Request) -> web.Response:
        fake.arrivals = []
        return web.json_response({})

    async def stop(_request: web.Request) -> web.Response:
        arrivals, fake.arrivals = fake.arrivals or [], None
        return web.Response(
            body=orjson.dumps({"arrivals": arrivals}), content_type="application/json"
        )

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": fake.request_count,
                "connections": fake.connections_opened,
                "cpu": time.process_time(),
            }
        )

    app = web.Application()
    app.router.add_post("/arrivals/start", start)
    app.router.add_post("/arrivals/stop", stop)
    app.router.add_get("/stats", stats)
    return app


async def _serve(instances: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with RecordingFake() as fake:
        for index in range(instances):
            fake.add_instance(str(index))
        runner = web.AppRunner(_control_app(fake), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            print(f"url: {fake.url}", flush=True)
            print(f"api_key: {fake.api_key}", flush=True)
            print(f"control: http://{host}:{port}", flush=True)
            await stop.wait()
        finally:
            await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the server process; returns its exit code."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._serve")
    parser.add_argument("--instances", type=int, default=1000, help="instances 0..N-1 (1000)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.instances))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""OpenTelemetry's cost per call: the client with it off, and on (SDK providers, no exporter).

Runs the benchmark server (``python -m benchmarks._serve``) in its own process and,
for each mode in turn (rounds interleave the modes, so drift on a shared machine
falls on each alike), sends ``PATCH /api/v1/oauth/{connector}/reauthorise`` from
``--concurrency`` workers for ``--seconds``. It prints the client process's CPU
microseconds per call and the calls per second, median of the rounds.

"api" is ``opentelemetry=True`` with no SDK configured (the API's no-op providers);
"1%" is "on" with 1% of the traces sampled (``TraceIdRatioBased(0.01)``);
"on" uses an SDK ``TracerProvider`` whose spans go to a processor that drops them,
and an SDK ``MeterProvider`` with an ``InMemoryMetricReader`` that is never read:
the client's own cost, not an exporter's. ``--modes off`` runs with any
``patchworks_async`` on the path (run it with ``PYTHONPATH`` at another checkout to
compare with that one).

    python benchmarks/otel_overhead.py [--rounds 5] [--seconds 2] [--modes off,api,on] [--stub]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from benchmarks._process import server_process
from patchworks_async import PatchworksClient, ReauthoriseRequest
from patchworks_async._transport import RawResponse

REQUEST = ReauthoriseRequest(timezone="UTC", date_format="Y-m-d H:i:s")


def otel_arguments(sampled: float = 1.0) -> dict[str, Any]:
    """Client arguments for "on": SDK providers whose output goes nowhere."""
    from opentelemetry.sdk.metrics import MeterProvider  # only for "on"
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    tracer_provider = TracerProvider(sampler=TraceIdRatioBased(sampled))
    tracer_provider.add_span_processor(SpanProcessor())  # the base class drops every span
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return {"tracer_provider": tracer_provider, "meter_provider": meter_provider}


async def run(
    url: str, api_key: str, mode: str, seconds: float, concurrency: int, stub: bool = False
) -> tuple[float, float]:
    """One timed run; returns (CPU microseconds per call, calls per second).

    With ``stub`` the transport answers at once without a socket: what is left is
    the client's own work per call (and OpenTelemetry's), without the network's noise.
    """
    extra: dict[str, Any] = {}
    if mode == "on":
        extra = otel_arguments()
    elif mode == "1%":
        extra = otel_arguments(sampled=0.01)
    elif mode == "api":
        extra = {"opentelemetry": True}  # the global providers: no SDK set, so no-op ones
    async with PatchworksClient(
        base_url=url, api_key=api_key, rate_limit=None, max_connections=concurrency, **extra
    ) as client:
        if stub:
            answer = RawResponse(200, {"X-Request-Id": "0" * 32}, b'{"id": "0"}', url)

            async def send(*_: object) -> RawResponse:
                return answer

            client._pipeline.transport.send = send  # type: ignore[method-assign,assignment]  # a stub
        await asyncio.gather(*(client.oauth.reauthorise("0", REQUEST) for _ in range(concurrency)))
        calls = 0
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal calls
            while time.monotonic() < deadline:
                await client.oauth.reauthorise("0", REQUEST)
                calls += 1

        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    return cpu / calls * 1e6, calls / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--modes", default="off,api,on")
    parser.add_argument("--stub", action="store_true", help="no network: the client's own cost")
    args = parser.parse_args()
    modes = args.modes.split(",")
    results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    with server_process(instances=1) as server:
        for round_ in range(args.rounds):
            order = modes[round_ % len(modes) :] + modes[: round_ % len(modes)]
            for mode in order:
                results[mode].append(
                    asyncio.run(
                        run(
                            server.url,
                            server.api_key,
                            mode,
                            args.seconds,
                            args.concurrency,
                            args.stub,
                        )
                    )
                )
    for mode, runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        rate = statistics.median(r[1] for r in runs)
        print(
            f"otel {mode:>3}: {cpu:7.1f} us CPU per call  {rate:8.0f} calls/s  ({len(runs)} rounds)"
        )


if __name__ == "__main__":
    main()

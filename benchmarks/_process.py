"""Starting and stopping the server process, and talking to its control app.

Every process started here is stopped by its pid (SIGTERM, then SIGKILL after a
grace period), on errors too: use :func:`server_process` as a context manager.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import attrs
import orjson

_START_TIMEOUT = 20.0
_STOP_GRACE = 5.0


@attrs.frozen
class Server:
    """A running server process: where it listens and how to reach its control app."""

    pid: int
    url: str
    api_key: str
    control: str


def _read_banner(process: subprocess.Popen[bytes], keys: tuple[str, ...]) -> dict[str, str]:
    """Read ``key: value`` lines from the child's stdout until every key is seen."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    buffer = b""
    found: dict[str, str] = {}
    deadline = time.monotonic() + _START_TIMEOUT
    with selectors.DefaultSelector() as selector:
        # Raw reads of the pipe: a buffered readline could swallow lines that select
        # would then never report.
        selector.register(fd, selectors.EVENT_READ)
        while not all(key in found for key in keys):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise RuntimeError(f"the server did not start within {_START_TIMEOUT} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"the server exited early (code {process.wait()})")
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                key, _, value = line.decode().strip().partition(": ")
                found[key] = value
    return found


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Stop one child by its pid: SIGTERM, then SIGKILL if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(_STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def run_json(arguments: list[str], timeout: float) -> dict[str, Any]:
    """Run ``python <arguments>`` in a fresh process; its last stdout line, as JSON.

    The child is stopped by its pid on every way out (a timeout included).
    """
    process = subprocess.Popen(  # noqa: S603  # our own interpreter and module, no shell
        [sys.executable, *arguments], stdout=subprocess.PIPE, text=True
    )
    try:
        out, _ = process.communicate(timeout=timeout)
    finally:
        stop_process(process)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments[:2])} exited {process.returncode}")
    result: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
    return result


@contextlib.contextmanager
def server_process(instances: int) -> Iterator[Server]:
    """Run ``python -m benchmarks._serve`` on 127.0.0.1 for the duration of the block."""
    process = subprocess.Popen(  # noqa: S603  # our own interpreter and module, no shell
        [sys.executable, "-m", "benchmarks._serve", "--instances", str(instances)],
        stdout=subprocess.PIPE,
        bufsize=0,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        banner = _read_banner(process, ("url", "api_key", "control"))
        yield Server(process.pid, banner["url"], banner["api_key"], banner["control"])
    finally:
        stop_process(process)


class Control:
    """Calls to the server's control app (never inside a timed section)."""

    def __init__(self, server: Server) -> None:
        self._base = server.control

    async def _call(self, method: str, path: str) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self._base + path) as response,
        ):
            response.raise_for_status()
            return orjson.loads(await response.read())

    async def stats(self) -> dict[str, float]:
        """``requests`` and ``connections`` seen so far, and the server's CPU seconds."""
        result: dict[str, float] = await self._call("GET", "/stats")
        return result

    async def start_arrivals(self) -> None:
        """Start recording arrival times (and forget earlier ones)."""
        await self._call("POST", "/arrivals/start")

    async def stop_arrivals(self) -> list[tuple[float, str]]:
        """Stop recording; the ``(time.monotonic(), connector)`` of each request since start."""
        result = await self._call("POST", "/arrivals/stop")
        return [(float(when), str(connector)) for when, connector in result["arrivals"]]

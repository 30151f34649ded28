"""Resources: after 20,000 calls, and after a cancelled bulk job, nothing is left behind.

Counted from the process itself: open file descriptors (``/proc/self/fd``), the TCP
sockets among them by their ports (``/proc/net/tcp``), and asyncio tasks. The fake
server runs in the same process and loop, so each comparison is made against counts
taken with the fake already running, and again against counts taken before it started.

A socket the client closes is released by the loop on its next turns, and the fake's
side closes once it reads the end of the stream, so ``settle`` lets the loop turn
(``asyncio.sleep(0)``, a bounded number of times) until the count is back: it waits
for a state, never for a length of time.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from aiohttp import web

from patchworks_async import (
    AuthoriseRequest,
    PatchworksClient,
    ReauthoriseOutcome,
    ReauthoriseRequest,
)
from patchworks_async.testing import FakePatchworks

CALLS: Final = 20_000
CONCURRENCY: Final = 64
LINUX: Final = Path("/proc/self/fd").is_dir() and Path("/proc/net/tcp").is_file()
pytestmark = pytest.mark.skipif(not LINUX, reason="counts file descriptors through /proc")

AUTHORISE: Final = AuthoriseRequest(
    authentication_implementation_id="impl-1",
    timezone="UTC",
    date_format="Y-m-d",
    rate_limit_unit="minute",
    rate_limit_duration=60,
)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def tcp_sockets() -> list[tuple[int, int, str]]:
    """``(local port, remote port, state)`` of this process's TCP sockets."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor listdir itself used, closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
                found.append((local, remote, fields[3]))
    return found


def client_sockets(port: int) -> int:
    """Open sockets connected to ``port``: the client's side of its connections."""
    return sum(1 for _, remote, _ in tcp_sockets() if remote == port)


def package_tasks() -> list[asyncio.Task[Any]]:
    """Running tasks whose coroutine belongs to patchworks_async (not to its testing fake)."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code is not None else ""
        if "patchworks_async" in filename and "testing" not in filename:
            found.append(task)
    return found


async def settle(condition: Callable[[], bool], rounds: int = 10_000) -> bool:
    """Let the loop turn until ``condition`` holds (bounded); return whether it does."""
    for _ in range(rounds):
        if condition():
            return True
        await asyncio.sleep(0)
    return condition()


def resource_warnings(drop: Callable[[], object] = lambda: None) -> list[str]:
    """Call ``drop``, collect garbage; return the ResourceWarnings that came out of either."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drop()
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.slow
async def test_20000_calls_leave_no_descriptor_or_task() -> None:
    fds_before = fd_count()
    tasks_before = len(asyncio.all_tasks())
    async with FakePatchworks(record=False) as fake:
        ids = [fake.add_instance() for _ in range(1_000)]
        fds_with_fake = fd_count()
        tasks_with_fake = len(asyncio.all_tasks())
        started = time.perf_counter()
        async with PatchworksClient(
            base_url=fake.url,
            api_key=fake.api_key,
            rate_limit=None,
            max_connections=CONCURRENCY,
        ) as client:
            direct = await _direct_calls(client, ids, 4_000)
            items = ((ids[i % len(ids)], ReauthoriseRequest(timezone="UTC")) for i in range(16_000))
            # Each instance 16 times on purpose: deduplication off.
            job = client.oauth.reauthorise_many(items, concurrency=CONCURRENCY, deduplicate=False)
            bulk = [o async for o in job]
            peak_fds = fd_count()
            opened = client.connections_opened
            assert package_tasks() == []
        elapsed = time.perf_counter() - started
        assert direct + sum(o.ok for o in bulk) == CALLS
        assert fake.request_count == CALLS
        assert await settle(lambda: client_sockets(fake.port) == 0)
        assert await settle(lambda: fd_count() == fds_with_fake), (fd_count(), fds_with_fake)
        assert await settle(lambda: len(asyncio.all_tasks()) == tasks_with_fake)
    assert fd_count() == fds_before
    assert await settle(lambda: len(asyncio.all_tasks()) == tasks_before)
    assert resource_warnings() == []
    # The pool was reused, not churned: at most one connection per slot.
    assert opened <= CONCURRENCY
    print(
        f"\nresources: {CALLS} calls at concurrency {CONCURRENCY} in {elapsed:.1f}s "
        f"({CALLS / elapsed:.0f}/s), {opened} connections; fds {fds_before} before, "
        f"{fds_with_fake} with the fake, {peak_fds} at the peak, {fd_count()} after; "
        f"tasks {tasks_before} before, {tasks_with_fake} with the fake, "
        f"{len(asyncio.all_tasks())} after"
    )


async def _direct_calls(client: PatchworksClient, ids: list[str], count: int) -> int:
    slots = asyncio.Semaphore(CONCURRENCY)
    operations = (
        lambda i: client.oauth.authenticate(),
        lambda i: client.oauth.woo_app_auth(),
        lambda i: client.oauth.authorise(AUTHORISE),
        lambda i: client.oauth.reauthorise(ids[i % len(ids)], ReauthoriseRequest(type="x")),
    )

    async def one(i: int) -> bool:
        async with slots:
            await operations[i % len(operations)](i)
            return True

    return sum(await asyncio.gather(*(one(i) for i in range(count))))


@pytest.mark.parametrize("iterator_held", [False, True], ids=["loop-only", "iterator-kept"])
async def test_a_cancelled_bulk_job_leaves_no_task_and_no_connection(iterator_held: bool) -> None:
    # A server of the test's own, so that the answers it holds back can be let go at
    # the end: FakePatchworks's slow fault keeps its handler sleeping past its close.
    release = asyncio.Event()
    arrived = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        if arrived % 5 == 0:  # one answer in five waits until the end of the test
            await release.wait()
        return web.json_response({"id": request.match_info["connector"]})

    fds_before = fd_count()
    tasks_before = len(asyncio.all_tasks())
    app = web.Application()
    app.router.add_patch("/api/v1/oauth/{connector}/reauthorise", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port: int = runner.addresses[0][1]
    try:
        fds_with_server = fd_count()
        tasks_with_server = len(asyncio.all_tasks())
        outcomes: list[ReauthoriseOutcome] = []
        midway = asyncio.Event()
        client = PatchworksClient(base_url=f"http://127.0.0.1:{port}", api_key="k", rate_limit=None)

        items = [(str(i), ReauthoriseRequest()) for i in range(500)]
        # Kept: the caller still holds the iterator when its consumer is cancelled, so
        # asyncio's clean-up of a dropped async generator cannot be what stops the job.
        kept = client.oauth.reauthorise_many(items, concurrency=16) if iterator_held else None

        async def consume() -> None:
            outcomes_of_job = kept or client.oauth.reauthorise_many(items, concurrency=16)
            async for outcome in outcomes_of_job:
                outcomes.append(outcome)
                if len(outcomes) == 40:
                    midway.set()
                    await asyncio.Event().wait()  # hold the job here until it is cancelled

        try:
            job = asyncio.create_task(consume())
            await midway.wait()
            held = arrived // 5  # requests whose answers the server holds back
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
            assert await settle(lambda: package_tasks() == []), len(package_tasks())
        finally:
            await client.aclose()
        assert held > 0  # cancelled with requests waiting on the server
        assert len(outcomes) == 40
        assert await settle(lambda: client_sockets(port) == 0)
        assert await settle(lambda: fd_count() == fds_with_server), (fd_count(), fds_with_server)
        release.set()
        assert await settle(lambda: len(asyncio.all_tasks()) == tasks_with_server)
    finally:
        release.set()
        await runner.cleanup()
    assert fd_count() == fds_before
    assert await settle(lambda: len(asyncio.all_tasks()) == tasks_before)
    assert resource_warnings() == []


async def test_closing_every_way_leaves_no_unclosed_session() -> None:
    async with FakePatchworks() as fake:
        async with PatchworksClient(base_url=fake.url, api_key=fake.api_key) as used:
            await used.oauth.authenticate()
        unused = PatchworksClient(base_url=fake.url, api_key=fake.api_key)
        await unused.aclose()
        await unused.aclose()  # twice is fine
        closed_by_error = PatchworksClient(base_url=fake.url, api_key=fake.api_key)

        async def fail_inside(client: PatchworksClient) -> None:
            async with client:
                await client.oauth.authenticate()
                raise RuntimeError("the caller's own failure")

        with pytest.raises(RuntimeError):
            await fail_inside(closed_by_error)
        del used, unused, closed_by_error
        assert resource_warnings() == []


async def test_the_warning_check_catches_an_unclosed_session() -> None:
    # The checks above must be able to fail: an aiohttp session left open is reported.
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
    try:
        # The session is garbage as soon as it is made, inside the recording block.
        found = resource_warnings(aiohttp.ClientSession)
    finally:
        loop.set_exception_handler(None)
    assert any("Unclosed client session" in text for text in found)
    assert "Unclosed client session" in reported

"""The Redis-backed shared limiter, against a real redis-server.

Tests marked ``redis`` use the server whose URL is in ``PATCHWORKS_TEST_REDIS_URL``
(``.ci/run`` starts one) and are skipped without it; each test has a namespace of its
own. The outage tests start and kill a redis-server of their own. Proof is taken from
arrival times (FakePatchworks records ``time.monotonic()`` per request) or grant times.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from patchworks_async import (
    LimiterBackend,
    PatchworksClient,
    RateLimit,
    ReauthoriseOutcome,
    ReauthoriseRequest,
    RetryPolicy,
)
from patchworks_async._limits import SAFETY_MARGIN, PauseGate
from patchworks_async.redis import RedisLimiter
from patchworks_async.testing import FakePatchworks, Fault
from tests.virtual_time import sliding_window_max

# Grants and arrivals are timed where a task wakes up: Redis reserves each grant's time
# exactly, but a loaded loop wakes some milliseconds late, which can move one grant into
# the next window. As in test_ratelimit_e2e, the limit is checked in windows 20 ms
# shorter than the limit's own (at most `duration` grants in any `1 s - 20 ms`).
WINDOW = 1.0 - 0.02

REDIS_URL = os.environ.get("PATCHWORKS_TEST_REDIS_URL", "")
ROOT = Path(__file__).resolve().parent.parent
FAST_RETRY = RetryPolicy(backoff_base=0.01, backoff_max=0.05)
WORKERS = 4

needs_redis = pytest.mark.skipif(not REDIS_URL, reason="PATCHWORKS_TEST_REDIS_URL is not set")


def _achieved(times: list[float], rate: RateLimit) -> float:
    """The share of ``rate`` reached from the first to the last of ``times``."""
    ordered = sorted(times)
    return (len(ordered) - 1) / (ordered[-1] - ordered[0]) / rate.per_second


async def _until(condition: Callable[[], bool]) -> None:
    """Return once ``condition()`` holds (it is looked at every 5 ms; 10 s at most)."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110  # the condition lives in another process or task
            await asyncio.sleep(0.005)


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


# -- without a server ------------------------------------------------------------------------


def test_is_a_limiter_backend_and_connects_lazily() -> None:
    limiter = RedisLimiter.from_url("redis://127.0.0.1:1/0", namespace="jobs")
    assert isinstance(limiter, LimiterBackend)
    assert limiter.key_prefix == "patchworks:{jobs}:"


def test_bind_hashes_the_credential_and_refuses_another() -> None:
    limiter = RedisLimiter.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(RuntimeError, match="no scope"):
        limiter.key_prefix  # noqa: B018  # the property raises: that is the test
    limiter.bind("pw_live_secret")
    limiter.bind("pw_live_secret")  # the same again is fine
    digest = hashlib.sha256(b"pw_live_secret").hexdigest()[:16]
    assert limiter.key_prefix == f"patchworks:{{{digest}}}:"
    with pytest.raises(ValueError, match="another credential"):
        limiter.bind("pw_live_other")


def test_namespace_wins_over_bind() -> None:
    limiter = RedisLimiter.from_url("redis://127.0.0.1:1/0", namespace="jobs")
    limiter.bind("pw_live_secret")
    assert limiter.key_prefix == "patchworks:{jobs}:"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"namespace": ""},
        {"namespace": "a{b}"},
        {"on_unavailable": "ignore"},
        {"safety_margin": -0.1},
        {"safety_margin": 1.0},
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"namespace|on_unavailable|safety_margin"):
        RedisLimiter.from_url("redis://127.0.0.1:1/0", **kwargs)


# -- the Lua GCRA, straight -------------------------------------------------------------------


async def _grants(limiters: list[Any], count: int) -> list[float]:
    times: list[float] = []

    async def one(index: int) -> None:
        await limiters[index % len(limiters)].acquire()
        times.append(time.monotonic())

    await asyncio.gather(*(one(i) for i in range(count)))
    return times


@pytest.mark.redis
@needs_redis
async def test_gcra_spaces_grants_of_several_workers(namespace: str) -> None:
    rate = RateLimit("second", 40)
    backends = [RedisLimiter.from_url(REDIS_URL, namespace=namespace) for _ in range(3)]
    try:
        times = await _grants([b.client_limiter(rate) for b in backends], 81)
    finally:
        for backend in backends:
            await backend.aclose()
    most, achieved = sliding_window_max(times, WINDOW), _achieved(times, rate)
    print(f"grants: max {most} in any 1 s window, {achieved:.1%} of the rate")
    assert most <= rate.duration
    assert achieved >= 0.95


@pytest.mark.redis
@needs_redis
async def test_gcra_burst_is_opt_in(namespace: str) -> None:
    rate = RateLimit("second", 20, burst=4)
    backend = RedisLimiter.from_url(REDIS_URL, namespace=namespace)
    try:
        times = await _grants([backend.client_limiter(rate)], 30)
    finally:
        await backend.aclose()
    ordered = sorted(times)
    assert ordered[3] - ordered[0] < 0.03  # the burst goes at once
    assert sliding_window_max(times, WINDOW) <= rate.duration + rate.burst - 1


@pytest.mark.redis
@needs_redis
async def test_instance_departures_are_spaced_across_workers(namespace: str) -> None:
    rate = RateLimit("second", 10)
    interval = rate.interval * (1 + SAFETY_MARGIN)
    first, second = (RedisLimiter.from_url(REDIS_URL, namespace=namespace) for _ in range(2))
    a = first.instance_limiter("i-1", rate)
    b = second.instance_limiter("i-1", rate)
    loop = asyncio.get_running_loop()
    try:
        await a.acquire()
        granted_a = loop.time()
        await b.acquire()  # one interval later
        granted_b = loop.time()
        # B leaves at once; A was held up (by the client-wide limit, say) until now:
        # granted one interval apart, they would leave together.
        await b.recharge(loop.time() - granted_b)
        left_b = loop.time()
        await a.recharge(loop.time() - granted_a)
        left_a = loop.time()
        await a.acquire()  # A's departure counts: the next grant is an interval later
        next_grant = loop.time()
    finally:
        await first.aclose()
        await second.aclose()
    assert left_a - left_b >= interval - 0.005
    assert next_grant - left_a >= interval - 0.005


@pytest.mark.redis
@needs_redis
async def test_pause_from_one_worker_holds_another_and_closes_its_gate(namespace: str) -> None:
    rate = RateLimit("second", 100)
    first, second = (RedisLimiter.from_url(REDIS_URL, namespace=namespace) for _ in range(2))
    gate = PauseGate()
    second.attach(gate)
    limiter = second.client_limiter(rate)
    loop = asyncio.get_running_loop()
    try:
        await limiter.acquire()  # connected and warm
        first.pause(0.3)
        await _until(lambda: not first._tasks)  # published
        started = loop.time()
        await limiter.acquire()
        waited = loop.time() - started
    finally:
        await first.aclose()
        await second.aclose()
    assert 0.25 <= waited < 0.6
    assert gate._until > 0  # the gate learnt the pause


@pytest.mark.redis
@needs_redis
async def test_pause_that_begins_during_a_reserved_wait_is_kept(namespace: str) -> None:
    rate = RateLimit("second", 2)
    first, second = (RedisLimiter.from_url(REDIS_URL, namespace=namespace) for _ in range(2))
    limiter = second.client_limiter(rate)
    loop = asyncio.get_running_loop()
    try:
        await limiter.acquire()
        started = loop.time()
        waiting = asyncio.create_task(limiter.acquire())  # its slot is 0.5 s away
        await asyncio.sleep(0.1)  # it is asleep on its reservation now
        first.pause(0.8)
        await waiting
        granted = loop.time() - started
    finally:
        await first.aclose()
        await second.aclose()
    assert granted >= 0.85  # not at its slot (0.5 s): after the pause


@pytest.mark.redis
@needs_redis
async def test_keys_hold_no_credential_and_expire(redis_client: Redis) -> None:
    credential = f"pw_live_{uuid.uuid4().hex}"
    backend = RedisLimiter.from_url(REDIS_URL)
    backend.bind(credential)
    rate = RateLimit("minute", 60)
    try:
        await backend.client_limiter(rate).acquire()
        instance = backend.instance_limiter("shop/1", rate)
        await instance.acquire()
        await instance.recharge(0.0)
        backend.pause(5)
        await _until(lambda: not backend._tasks)
        keys = sorted(str(k) for k in await redis_client.keys(backend.key_prefix + "*"))
        ttls = [await redis_client.pttl(key) for key in keys]
    finally:
        await backend.aclose()
    prefix = backend.key_prefix
    assert keys == [prefix + "client", prefix + "instance:shop/1", prefix + "pause"]
    full_hash = hashlib.sha256(credential.encode()).hexdigest()
    for key in keys:
        assert credential not in key
        assert full_hash not in key
    # Each key outlives its last useful instant by a second: an interval (1 s), or the pause.
    assert all(0 < ttl <= 6000 for ttl in ttls), ttls
    assert max(ttls[:2]) <= 2100


@pytest.mark.redis
@needs_redis
async def test_client_binds_a_hash_of_its_credential(
    fake: FakePatchworks, redis_client: Redis
) -> None:
    backends = [RedisLimiter.from_url(REDIS_URL) for _ in range(2)]
    key = fake.add_instance()
    clients = [
        PatchworksClient(
            base_url=fake.url, api_key=fake.api_key, rate_limit=RateLimit("second", 5), limiter=b
        )
        for b in backends
    ]
    try:
        for client in clients:
            client.set_instance_rate_limit(key, RateLimit("second", 5))
        await asyncio.gather(
            *(c.oauth.reauthorise(key, ReauthoriseRequest()) for c in clients for _ in range(4))
        )
        stored = [str(k) for k in await redis_client.keys(backends[0].key_prefix + "*")]
    finally:
        for client in clients:
            await client.aclose()
    # Two clients of one key share one prefix, and so one budget: 8 calls at 5/s.
    assert backends[0].key_prefix == backends[1].key_prefix
    assert stored
    assert all(fake.api_key not in k for k in stored)
    # Within 20 ms of arrival jitter: the fake shares this process's event loop.
    assert sliding_window_max(_reauthorise_arrivals(fake), WINDOW) <= 5


# -- four worker processes, one FakePatchworks --------------------------------------------------


async def _run_workers(
    fake: FakePatchworks,
    namespace: str,
    argv: Iterable[str],
    during: Callable[[], Awaitable[None]] | None = None,
) -> list[dict[str, list[str]]]:
    """Start the workers, let them go together, return what each one reports."""
    procs = []
    try:
        for index in range(WORKERS):
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tests.redis_worker",
                    *("--base-url", fake.url, "--api-key", fake.api_key),
                    *("--redis-url", REDIS_URL, "--namespace", namespace),
                    *("--name", f"w{index}", *argv),
                    cwd=ROOT,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line == b"ready\n", line
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        if during is not None:
            await during()
        results = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 60)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    reports = []
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()
        reports.append(orjson.loads(out.splitlines()[-1]))
    return reports


def _reauthorise_arrivals(fake: FakePatchworks, fragment: str = "/reauthorise") -> list[float]:
    return [r.arrived for r in fake.requests if fragment in r.path]


@pytest.mark.redis
@needs_redis
async def test_four_processes_share_one_quota(fake: FakePatchworks, namespace: str) -> None:
    rate, hot_rate, count, hot_count = RateLimit("second", 20), RateLimit("second", 5), 15, 1
    fake.add_instance("hot")
    for index in range(WORKERS):
        for item in range(count):
            fake.add_instance(f"w{index}-{item}")
    argv = ["--rate", "20", "--count", str(count)]
    argv += ["--hot", "hot", "--hot-count", str(hot_count), "--hot-rate", "5"]
    reports = await _run_workers(fake, namespace, argv)

    assert all(len(r["ok"]) == count + hot_count and not r["failed"] for r in reports)
    times = _reauthorise_arrivals(fake)
    assert len(times) == WORKERS * (count + hot_count)
    most = sliding_window_max(times, WINDOW)
    # The share is taken while the workers' own items keep the client-wide budget busy:
    # the hot items queue behind them (first in, first out in each worker), then
    # leave 0.2 s apart, and that tail is the instance's limit at work.
    busy_until = max(r.arrived for r in fake.requests if "/hot/" not in r.path)
    achieved = _achieved([t for t in times if t <= busy_until], rate)
    print(f"client-wide: max {most} in any 1 s window, {achieved:.1%} of the rate")
    assert most <= rate.duration
    assert achieved >= 0.95
    hot = _reauthorise_arrivals(fake, "/hot/")
    assert sliding_window_max(hot, WINDOW) <= hot_rate.duration
    assert min(b - a for a, b in itertools.pairwise(hot)) >= hot_rate.interval - 0.01


@pytest.mark.redis
@needs_redis
async def test_a_429_seen_by_one_worker_pauses_all(fake: FakePatchworks, namespace: str) -> None:
    count, retry_after = 10, 1.0
    for index in range(WORKERS):
        for item in range(count):
            fake.add_instance(f"w{index}-{item}")

    async def throttle_midway() -> None:
        await _until(lambda: fake.request_count >= 12)
        fake.add_faults(Fault.too_many(retry_after=retry_after))

    reports = await _run_workers(
        fake, namespace, ["--rate", "20", "--count", str(count)], throttle_midway
    )

    assert all(len(r["ok"]) == count and not r["failed"] for r in reports)
    requests = [r for r in fake.requests if "/reauthorise" in r.path]
    refused = next(r for r in requests if r.status == 429)
    during = [r.arrived for r in requests if refused.arrived < r.arrived < refused.arrived + 0.98]
    # At most one request granted before the pause was stored (grants are 50 ms apart).
    assert len(during) <= 1, during
    assert all(t < refused.arrived + 0.06 for t in during), during
    for index in range(WORKERS):  # every worker had work left, and held it back
        assert any(
            r.arrived >= refused.arrived + 0.98 and f"/w{index}-" in r.path for r in requests
        )
    assert sliding_window_max([r.arrived for r in requests], WINDOW) <= 20


# -- Redis goes away midway ----------------------------------------------------------------------


class RedisServer:
    """A redis-server of the test's own on 127.0.0.1, without persistence."""

    def __init__(self, binary: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.binary = binary
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(10):
            while b"Ready to accept connections" not in await self.proc.stdout.readline():
                assert self.proc.returncode is None

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH")
    server = RedisServer(binary)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


async def _outcomes(client: PatchworksClient, keys: list[str]) -> list[ReauthoriseOutcome]:
    items = [(key, ReauthoriseRequest()) for key in keys]
    return [outcome async for outcome in client.oauth.reauthorise_many(items)]


async def _job_with_outage(
    fake: FakePatchworks,
    server: RedisServer,
    on_unavailable: Any,
    outage: Callable[[], Awaitable[None]],
) -> list[ReauthoriseOutcome]:
    keys = [fake.add_instance(f"o-{i}") for i in range(30)]
    limiter = RedisLimiter.from_url(server.url, namespace="outage", on_unavailable=on_unavailable)
    async with PatchworksClient(
        base_url=fake.url,
        api_key=fake.api_key,
        rate_limit=RateLimit("second", 20),
        retry=FAST_RETRY,
        limiter=limiter,
    ) as client:
        job = asyncio.create_task(_outcomes(client, keys))
        await _until(lambda: fake.request_count >= 8)
        await server.kill()
        await outage()
        outcomes = await asyncio.wait_for(job, 30)
    assert sorted(o.index for o in outcomes) == list(range(30))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    return outcomes


def _messages(caplog: pytest.LogCaptureFixture, fragment: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if fragment in r.getMessage()]


@pytest.mark.redis
@needs_redis
async def test_redis_outage_wait_holds_calls_until_it_is_back(
    fake: FakePatchworks, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="patchworks_async.redis")
    marks: dict[str, float] = {}

    async def outage() -> None:
        marks["down"] = time.monotonic()
        await _until(lambda: bool(_messages(caplog, "unreachable")))
        await asyncio.sleep(0.5)  # the outage itself: calls must sit it out
        await own_redis.start()
        marks["up"] = time.monotonic()

    await _job_with_outage(fake, own_redis, "wait", outage)

    times = _reauthorise_arrivals(fake)
    assert len(times) == 30
    # Nothing left while Redis was away, but a request already granted before it went.
    assert not [t for t in times if marks["down"] + 0.06 < t < marks["up"]]
    assert sliding_window_max(times, WINDOW) <= 20
    assert len(_messages(caplog, "unreachable")) == 1  # once per outage
    assert "nothing is sent unpaced" in _messages(caplog, "unreachable")[0]
    assert _messages(caplog, "answers again")


@pytest.mark.redis
@needs_redis
async def test_redis_outage_local_falls_back_with_a_warning(
    fake: FakePatchworks, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="patchworks_async.redis")
    marks: dict[str, float] = {}

    async def outage() -> None:
        marks["down"] = time.monotonic()  # and it never comes back

    await _job_with_outage(fake, own_redis, "local", outage)

    times = _reauthorise_arrivals(fake)
    assert len(times) == 30
    assert len([t for t in times if t > marks["down"] + 0.1]) >= 10  # the job went on
    assert sliding_window_max(times, WINDOW) <= 20  # one process: still paced
    warnings = _messages(caplog, "unreachable")
    assert len(warnings) == 1
    assert "in-process limiter" in warnings[0]

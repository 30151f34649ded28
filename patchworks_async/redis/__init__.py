"""Rate limits shared by many processes and hosts through Redis: :class:`RedisLimiter`.

Install the extra (``pip install 'patchworks-async[redis]'``), then give every worker
a limiter on the same Redis::

    from patchworks_async import PatchworksClient
    from patchworks_async.redis import RedisLimiter

    limiter = RedisLimiter.from_url("redis://redis.internal:6379/0")
    async with PatchworksClient(api_key=key, limiter=limiter) as client:
        ...

Workers with the same credential then share one client-wide budget and one budget
per instance. How the guarantee of the in-process limiters (no sliding window of
one unit holds more than ``duration`` requests; a long run reaches over 95% of
the rate) is kept across processes:

- Every decision is one Lua script, atomic on the server and timed by Redis' own
  clock (``TIME``), so the hosts' clocks never matter. It is GCRA: a key holds the
  theoretical arrival time (TAT) of the next request, and ``burst=1`` spaces
  requests ``interval * (1 + SAFETY_MARGIN)`` apart, like ``StrictLimiter``.
- A caller *reserves* the next slot (the script moves the TAT on and answers how
  long to wait), sleeps until it, then asks once more whether a pause began in
  the meantime. Slots are used back to back; a poll-and-retry loop would lose a
  sleep's overshoot and a round trip on every request. Only one task per process
  and limiter holds a reservation, so none is more than one slot per worker ahead
  and a cancelled wait wastes one slot at most.
- An instance's request leaves only after it has also waited for the client-wide
  limit. ``recharge`` therefore spaces *departures* as well: in one process the
  instance lock does that, but two workers' requests granted one interval apart
  could otherwise leave together. It also moves the grant to now, as
  ``StrictLimiter.recharge`` does.
- A 429 (or a spent quota) seen by one worker stores the Redis time until which
  every worker must hold; each script checks it, and a worker that learns of a
  pause closes its own client's pause gate too.

Keys are ``patchworks:{ID}:client``, ``patchworks:{ID}:instance:CONNECTOR`` and
``patchworks:{ID}:pause``. ``ID`` is the namespace you chose, or the first 16 hex
digits of the SHA-256 of what :meth:`RedisLimiter.bind` was given: never the
credential itself. The braces are a Redis Cluster hash tag (one credential's keys
live on one shard, so one script may touch two of them). A key expires a second
after it stops mattering. Redis 5 or later is needed (scripts that call ``TIME``
before writing).

Limits, plainly: a pause reaches a worker through its limiters, so a client with
``rate_limit=None`` learns of it only on calls to instances with a known limit.
With ``on_unavailable="local"`` each worker paces only itself during an outage.
If Redis loses its data (a restart without persistence), a worker's grant made
just before the loss is unknown to the new server; each worker still spaces its
own grants, and the outage itself is a gap. One ``RedisLimiter`` serves one client.
"""

try:
    from ._backend import RedisLimiter
except ModuleNotFoundError as error:  # pragma: no cover - only without the extra
    if error.name is None or error.name.split(".")[0] != "redis":
        raise
    raise ModuleNotFoundError(
        "patchworks_async.redis needs redis-py: pip install 'patchworks-async[redis]'",
        name=error.name,
    ) from error

__all__ = ["RedisLimiter"]

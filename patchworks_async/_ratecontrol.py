"""One client's rate-limit state in its one event loop: which limiters apply, what headers taught.

:class:`RateControl` builds the client's limits (``_limits.Limits``) inside the
running loop at the first call and refuses any other loop; keeps the instances'
limits asked for before that; learns from each answer's rate-limit headers
(``X-RateLimit-*``, ``Retry-After``) and feeds the adaptive quota; pauses every
call when the quota is spent or a 429 says so. The pipeline (``_pipeline``)
asks it for the limits and hands it the answers; the client reads
``rate_limit_state`` from it.

How it differs from its neighbours: ``_ratelimit`` only parses headers (pure),
``_adaptive`` only computes the adaptive pace (pure), ``_limits`` holds the
limiters and the pause gate themselves; this module holds one client's state
that ties them together, and knows which event loop the client serves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from . import _sansio
from ._adaptive import QuotaTracker
from ._config import ClientConfig, check_rate_limit
from ._errors import EventLoopError, RateLimitError
from ._limits import AdaptiveLimiter, InstanceRegistry, Limiter, Limits, StrictLimiter
from ._ratelimit import RateLimitState, parse_rate_limit_headers, parse_retry_after, read_quota
from .models import Connector, RateLimit

if TYPE_CHECKING:
    from ._sansio import Request
    from ._transport import RawResponse, Transport


def _quota_of(config: ClientConfig) -> QuotaTracker | None:
    """The adaptive quota's tracker, or ``None`` when it is off (or nothing is limited)."""
    if config.adaptive_quota is None or config.rate_limit is None:
        return None
    return QuotaTracker(
        config.rate_limit, config.adaptive_quota.ceiling, max_pause=config.retry.max_retry_after
    )


class RateControl:
    """One client's rate-limit state: its limits in its loop, what the server's headers taught.

    Args:
        config: the client's checked configuration.
        transport: the client's transport (its pool's size bounds the calls in flight).
    """

    def __init__(self, config: ClientConfig, transport: Transport) -> None:
        self.config = config
        self.transport = transport
        self.retry = config.retry
        self.backend = config.backend
        self.rate_limit = config.rate_limit  # the configured client-wide limit
        # Pure, so made now; the limiter that follows it is made inside the loop.
        self.quota = _quota_of(config)
        # Built lazily inside the running loop (aiolimiter and asyncio objects belong to one).
        self.limits: Limits | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the one loop the limits serve
        self.pending_rates: dict[str, RateLimit | None] = {}
        self.rate_limit_state: RateLimitState | None = None
        # Adaptive mode: the headers of the latest response the tracker used, and when
        # it was read; parsed into ``rate_limit_state`` only when someone asks.
        self.latest_headers: tuple[Mapping[str, str], float] | None = None
        self.closed = False  # set by the client's aclose: no limits are built after it

    def current_rate_limit_state(self) -> RateLimitState | None:
        """The latest rate-limit figures (parsed now if only kept), with the learnt quota."""
        latest, self.latest_headers = self.latest_headers, None
        if latest is not None:
            headers, seen = latest
            self.rate_limit_state = parse_rate_limit_headers(headers, now=seen)
        state = self.rate_limit_state
        if state is None or self.quota is None or self.limits is None:
            return state
        # The tracker's clock is the loop's (its time() answers outside it too).
        now = self.loop.time() if self.loop is not None else self.quota.last_seen
        return attrs.evolve(state, quota=self.quota.figures(now))

    def learn_rate(self, connector: Connector | None, rate_limit: RateLimit | None) -> None:
        """After a call succeeded: its instance is paced at the rate fields the call sent.

        The one rule for ``authorise`` (the new instance's id, from the answer),
        ``reauthorise`` and each bulk item (the connector called): the limit is
        learnt only once the server accepted it. Without rate fields (``None``), or
        without an id, nothing changes.

        Args:
            connector: the instance the call created or changed, or ``None``.
            rate_limit: the rate the call sent, or ``None``.

        Raises:
            InvalidRequestError: an id the answer gave that is not a valid connector.
        """
        if rate_limit is None or connector is None:
            return
        limits = self.limits
        if (
            limits is not None
            and type(connector) is str
            and limits.instances.refresh(connector, rate_limit)
        ):
            # A known instance keeping its limit (every reauthorise with rate fields
            # says it again): the id was checked when it was learnt, nothing changes.
            return
        self.set_instance_rate_limit(connector, rate_limit)

    def set_instance_rate_limit(self, connector: str | int, rate_limit: RateLimit | None) -> None:
        """Pace calls on one instance at ``rate_limit`` (``PatchworksClient``'s method).

        Args:
            connector: the instance id.
            rate_limit: the instance's limit, or ``None`` to stop pacing it.

        Raises:
            InvalidRequestError: a bad connector or a value that is not a RateLimit.
        """
        key = _sansio.connector_key(connector)
        rate_limit = check_rate_limit(rate_limit)
        if self.limits is None:
            self.pending_rates[key] = rate_limit
            return
        self._set_rate(self.limits, key, rate_limit)

    def instance_rate_limit(self, key: str) -> RateLimit | None:
        """The limit an instance (a checked key) is paced at, or ``None``."""
        if self.limits is None:
            return self.pending_rates.get(key)
        return self.limits.instances.rate_for(key)

    def _set_rate(self, limits: Limits, key: str, rate: RateLimit | None) -> None:
        backend = self.backend
        shared = (
            backend.instance_limiter(key, rate)
            if backend is not None and rate is not None
            else None
        )
        limits.instances.set(key, rate, shared)

    def limits_in(self, loop: asyncio.AbstractEventLoop) -> Limits:
        """The limits, built in ``loop`` at the first call; any other loop is refused.

        Args:
            loop: the running loop.

        Returns:
            The limits of this client.

        Raises:
            EventLoopError: the client already serves another event loop.
        """
        if self.loop is not None and loop is not self.loop:
            raise EventLoopError(
                "this PatchworksClient already serves another event loop (one client serves "
                "one loop: its limiters and connection pool belong to it); create the client "
                "inside the loop that uses it, e.g. one per asyncio.run()"
            )
        limits = self._ensure_limits()
        self.loop = loop
        return limits

    def _ensure_limits(self) -> Limits:
        limits = self.limits
        if limits is not None:
            return limits
        if self.closed:
            raise RuntimeError("the client is closed")
        limits = Limits(
            client_limiter=self._client_limiter(),
            instances=InstanceRegistry(self.config.max_instance_limiters),
            max_in_flight=self.transport.pool_limit,
        )
        if self.backend is not None:
            self.backend.attach(limits.gate)
        self.limits = limits
        for key, rate in self.pending_rates.items():
            self._set_rate(limits, key, rate)
        self.pending_rates.clear()
        return limits

    def _client_limiter(self) -> Limiter | None:
        rate_limit = self.config.rate_limit
        if rate_limit is None:
            return None
        limiter: Limiter = (
            self.backend.client_limiter(rate_limit)
            if self.backend is not None
            else StrictLimiter(rate_limit)
        )
        if self.quota is not None:
            # Shared or not, the configured limiter paces until the server has spoken.
            limiter = AdaptiveLimiter(self.quota, limiter)
        return limiter

    def paused_too_long(self, limits: Limits, request: Request, url: str) -> RateLimitError:
        """The error for a call that would wait out a pause longer than ``max_retry_after``.

        An earlier 429 asked every call to wait; waiting that long in silence would
        freeze the caller (a day's Retry-After would stall a bulk job for a day).

        Args:
            limits: the limits whose pause gate is closed.
            request: the call that would wait.
            url: the call's URL.

        Returns:
            The error to raise instead of waiting.
        """
        remaining = limits.gate.remaining()
        return RateLimitError(
            status=429,
            method=request.method,
            url=url,
            headers={},
            body=None,
            message=(
                f"the client is paused for {remaining:.0f}s by an earlier 429, "
                f"over max_retry_after {self.retry.max_retry_after:g}s"
            ),
            retry_after=remaining,
        )

    def observe_limits(self, limits: Limits, raw: RawResponse) -> None:
        """Learn the rate-limit headers of ``raw``; pause every call when the quota is spent."""
        now = time.time()
        if self.quota is not None and self.learn_quota(raw, now):
            # The adaptive limiter holds calls until the reset itself; the state is
            # parsed from these headers only if ``rate_limit_state`` is read.
            self.latest_headers = (raw.headers, now)
            return
        state = parse_rate_limit_headers(raw.headers, now=now)
        if state is None:
            return
        self.rate_limit_state = state
        self.latest_headers = None
        if state.remaining is not None and state.remaining <= 0 and raw.status != 429:
            # The quota is spent: hold every call until it resets (or a short default
            # when the server did not say when).
            pause = (
                state.pause_for(now=now)
                if state.reset_at is not None
                else (self.retry.default_retry_after)
            )
            self.pause(limits, pause)

    def learn_quota(self, raw: RawResponse, now: float) -> bool:
        """Feed the adaptive tracker one response; True when its figures were used."""
        quota = self.quota
        if quota is None:  # only called in adaptive mode
            raise RuntimeError("learn_quota called without adaptive_quota")
        headers = raw.headers
        monotonic = asyncio.get_running_loop().time()
        reading = read_quota(headers.get("X-RateLimit-Limit"), headers.get("X-RateLimit-Remaining"))
        used = quota.observe(reading, monotonic, counted=raw.status != 429)
        if used and raw.status == 429:
            # The quota's own 429 (it carries the quota's figures): Retry-After is the reset.
            wait = parse_retry_after(headers.get("Retry-After"), now=now)
            if wait is not None:
                quota.observe_reset(wait, monotonic)
        return used

    def pause(self, limits: Limits, seconds: float) -> None:
        """Hold every call of this client (and of the shared backend) for ``seconds``."""
        if seconds <= 0:
            return
        limits.gate.pause(seconds)
        if self.backend is not None:
            self.backend.pause(seconds)

"""The extension point for shared limiter backends, and a call's tracker."""

from __future__ import annotations

from typing import Any

from ._limits import Limiter
from .models import RateLimit


class CallTracker:
    """Learns what happened inside one call (for bulk outcomes)."""

    __slots__ = ("attempts",)

    def __init__(self) -> None:
        self.attempts = 0


class LimiterBackend:
    """Base class of shared limiter backends (see ``patchworks_async.redis``).

    A backend makes the limiters the client uses, and spreads a pause (a 429) to
    every process that shares it.
    """

    def client_limiter(self, rate: RateLimit) -> Limiter:
        """The client-wide limiter for ``rate``."""
        raise NotImplementedError

    def instance_limiter(self, connector: str, rate: RateLimit) -> Limiter:
        """The limiter of one instance."""
        raise NotImplementedError

    def bind(self, credential_fingerprint: str) -> None:
        """Called once by the client with a hash of its credential (never the credential).

        A shared backend scopes its keys by it, so that clients of one credential
        share one budget and clients of different credentials do not.
        """

    def attach(self, gate: Any) -> None:
        """Called once with the client's pause gate, inside the running loop."""

    def pause(self, seconds: float) -> None:
        """A 429 was seen: pause every sharer for ``seconds``."""

    async def aclose(self) -> None:
        """Release the backend's connections."""

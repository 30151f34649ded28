"""The extension point for shared limiter backends, and a call's tracker."""

from __future__ import annotations

from typing import Protocol

from ._limits import Limiter
from .models import RateLimit


class CallTracker:
    """Learns what happened inside one call, and tells it to stop retrying (bulk jobs).

    Attributes:
        attempts: attempts started so far.
        sends: attempts handed to the transport so far (they may have reached the server).
        sending: True while an attempt is in the transport.
        stopped: set by a stopping bulk job: the call makes no further attempt.
    """

    __slots__ = ("attempts", "sending", "sends", "stopped")

    def __init__(self) -> None:
        self.attempts = 0
        self.sends = 0
        self.sending = False
        self.stopped = False


class PauseTarget(Protocol):
    """What :meth:`LimiterBackend.attach` is given: the client's pause gate."""

    def pause(self, seconds: float) -> None:
        """Hold the client's calls for ``seconds`` from now (a longer pause is kept)."""

    def remaining(self) -> float:
        """Seconds until the client's calls may leave again (0 when open)."""


class LimiterBackend:
    """Base class of shared limiter backends (see ``patchworks_async.redis``).

    A backend makes the limiters the client uses, and spreads a pause (a 429) to
    every process that shares it.
    """

    def client_limiter(self, rate: RateLimit) -> Limiter:
        """The client-wide limiter for ``rate``.

        Args:
            rate: the client's ``rate_limit``.

        Returns:
            A :class:`Limiter` the client waits on before every call.
        """
        raise NotImplementedError

    def instance_limiter(self, connector: str, rate: RateLimit) -> Limiter:
        """The limiter of one instance.

        Args:
            connector: the instance id, as a string.
            rate: the instance's limit.

        Returns:
            A :class:`Limiter` the client waits on before every call on that instance.
        """
        raise NotImplementedError

    def bind(self, credential_fingerprint: str) -> None:
        """Called once by the client with a hash of its credential (never the credential).

        A shared backend scopes its keys by it, so that clients of one credential
        share one budget and clients of different credentials do not.

        Args:
            credential_fingerprint: a SHA-256 hex digest of the client's credential.

        Raises:
            ValueError: the backend refuses the binding (the client raises
                ``InvalidRequestError`` naming ``limiter``).
        """

    def attach(self, gate: PauseTarget) -> None:
        """Called once with the client's pause gate, inside the running loop.

        Args:
            gate: the client's pause gate; a pause learnt from the backend closes it too.
        """

    def pause(self, seconds: float) -> None:
        """A 429 was seen: pause every sharer for ``seconds``.

        Args:
            seconds: how long to pause (always positive); the client has already
                paused its own gate.
        """

    async def aclose(self) -> None:
        """Release the backend's connections."""

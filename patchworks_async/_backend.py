"""The extension point for shared limiter backends, and a call's tracker."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

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
    """What :meth:`LimiterBackend.attach` is given: the client's pause gate.

    A backend keeps it to close the gate when it learns of a pause from a sharer.
    """

    def pause(self, seconds: float) -> None:
        """Hold the client's calls for ``seconds`` from now (a longer pause is kept).

        Args:
            seconds: how long to hold the calls.
        """

    def remaining(self) -> float:
        """Seconds until the client's calls may leave again.

        Returns:
            The seconds left of the pause; 0 when the gate is open.
        """


@runtime_checkable
class LimiterBackend(Protocol):
    """A shared limiter backend, as ``PatchworksClient(limiter=...)`` takes it.

    A backend makes the limiters the client uses, and spreads a pause (a 429) to
    every process that shares it; ``patchworks_async.redis.RedisLimiter`` is one.
    A class of your own is a backend when it has these six methods (mypy checks
    it against this protocol where you pass it to the client). Subclass
    ``LimiterBackend`` to inherit the no-op ``bind``, ``attach``, ``pause`` and
    ``aclose``; ``client_limiter`` and ``instance_limiter`` you always write. A
    limiter they return is a :class:`Limiter`: a ``rate`` attribute (the
    :class:`RateLimit`) and two coroutine methods: ``acquire()`` waits for one
    request's turn and counts it, ``recharge(seconds_since_grant)`` counts it as
    leaving now. ``attach`` is given a :class:`PauseTarget`.
    """

    def client_limiter(self, rate: RateLimit) -> Limiter:
        """Make the client-wide limiter for ``rate``.

        Args:
            rate: the client's ``rate_limit``.

        Returns:
            A limiter the client waits on before every call.
        """
        ...

    def instance_limiter(self, connector: str, rate: RateLimit) -> Limiter:
        """Make the limiter of one instance.

        Args:
            connector: the instance id, as a string.
            rate: the instance's limit.

        Returns:
            A limiter the client waits on before every call on that instance.
        """
        ...

    def bind(self, credential_fingerprint: str) -> None:
        """Take the hash of the client's credential (never the credential); called once.

        A shared backend scopes its keys by it, so that clients of one credential
        share one budget and clients of different credentials do not.

        Args:
            credential_fingerprint: a SHA-256 hex digest of the client's credential.

        Raises:
            ValueError: the backend refuses the binding (the client raises
                ``InvalidRequestError`` naming ``limiter``).
        """
        return  # a body, so that a subclass inherits this no-op (mypy: not abstract)

    def attach(self, gate: PauseTarget) -> None:
        """Take the client's pause gate; called once, inside the running loop.

        Args:
            gate: the client's pause gate; a pause learnt from the backend closes it too.
        """
        return  # a body, so that a subclass inherits this no-op (mypy: not abstract)

    def pause(self, seconds: float) -> None:
        """Pause every sharer for ``seconds``: a 429 was seen.

        Args:
            seconds: how long to pause (always positive); the client has already
                paused its own gate.
        """
        return  # a body, so that a subclass inherits this no-op (mypy: not abstract)

    async def aclose(self) -> None:
        """Release the backend's connections (the client's ``aclose`` calls it)."""
        return  # a body, so that a subclass inherits this no-op (mypy: not abstract)

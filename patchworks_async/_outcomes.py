"""The outcome of one item of a bulk reauthorisation, and when a failure stops the job.

Pure: no event loop. ``ReauthoriseOutcome`` is a union of a success and a failure
class, so a type checker knows ``result`` is present once ``ok`` is checked.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeAlias

import attrs

from ._errors import (
    AuthenticationError,
    HostUnreachableError,
    PatchworksError,
    PermissionDeniedError,
)
from .models import Instance

#: 403s in a row (distinct instances: duplicates are never sent) that stop a job.
FORBIDDEN_IN_A_ROW: Final = 3


@attrs.frozen(kw_only=True)
class ReauthoriseSuccess:
    """An item of a bulk reauthorisation that succeeded.

    Attributes:
        connector: the connector as given.
        result: what ``client.oauth.reauthorise`` returns: the :class:`Instance`
            (the response's JSON object, a ``dict``).
        attempts: how many requests were sent for it.
        elapsed: seconds from its first wait to its outcome.
        index: its position in the input, from 0.
    """

    connector: Any
    result: Instance
    attempts: int = 0
    elapsed: float = 0.0
    index: int = 0

    @property
    def ok(self) -> Literal[True]:
        """Always True: narrows :data:`ReauthoriseOutcome` to this class."""
        return True

    @property
    def error(self) -> None:
        """Always ``None`` (the failure's field, for code that checks ``error``)."""
        return None


@attrs.frozen(kw_only=True)
class ReauthoriseFailure:
    """An item of a bulk reauthorisation that failed (bad input and duplicates included).

    Attributes:
        connector: the item's connector as given (``None`` when the item had none).
        error: the :class:`PatchworksError` it failed with.
        attempts: how many requests were sent for it (0 when its input was refused).
        elapsed: seconds from its first wait to its outcome.
        index: its position in the input, from 0.
    """

    connector: Any
    error: PatchworksError
    attempts: int = 0
    elapsed: float = 0.0
    index: int = 0

    @property
    def ok(self) -> Literal[False]:
        """Always False: narrows :data:`ReauthoriseOutcome` to this class."""
        return False

    @property
    def result(self) -> None:
        """Always ``None`` (the success's field, for code that checks ``result``)."""
        return None


#: One item's outcome: ``if outcome.ok:`` (or ``match``) narrows it to one class.
ReauthoriseOutcome: TypeAlias = ReauthoriseSuccess | ReauthoriseFailure


def stop_reason(error: PatchworksError, forbidden_in_a_row: int) -> str | None:
    """Whether a failed item shows that the whole job cannot succeed, and why.

    A 401 reaching a bulk job was not cured by a fresh login (the client tries
    one when it logs in): the credential is wrong, and every item would get it.
    A 403 may be one instance's own (one the key may not touch), so only
    ``FORBIDDEN_IN_A_ROW`` of them in a row, with no other answer between,
    stop the job: then the key lacks the rights, not one instance.

    Args:
        error: the item's error.
        forbidden_in_a_row: 403s in a row so far, this one included.

    Returns:
        ``"authentication"``, ``"permission"``, ``"unreachable"``, or ``None`` to go on.
    """
    if isinstance(error, AuthenticationError):
        return "authentication"
    if isinstance(error, HostUnreachableError):
        return "unreachable"
    if isinstance(error, PermissionDeniedError) and forbidden_in_a_row >= FORBIDDEN_IN_A_ROW:
        return "permission"
    return None

"""Ring 1 (pure): the retry table and the honesty of waits."""

from __future__ import annotations

from typing import Any

import pytest

from patchworks_async import (
    APIError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PatchworksError,
    RateLimitError,
    RequestTimeoutError,
    ResponseDecodeError,
    RetryPolicy,
    ServerError,
    TransportError,
    UnprocessableEntityError,
)
from patchworks_async._retry import decide, is_retriable
from patchworks_async._sansio import Safety

IDEM = Safety.IDEMPOTENT
CREATES = Safety.CREATES


def api(status: int, cls: type[APIError] = APIError, **extra: Any) -> APIError:
    return cls(status=status, method="PATCH", url="u", headers={}, body=None, **extra)


def refused() -> TransportError:
    return TransportError("refused", method="POST", url="u", sent=False)


def dropped() -> TransportError:
    return TransportError("dropped", method="POST", url="u", sent=True)


def connect_timeout() -> RequestTimeoutError:
    return RequestTimeoutError("connect", method="POST", url="u", sent=False)


def read_timeout() -> RequestTimeoutError:
    return RequestTimeoutError("read", method="POST", url="u", sent=True)


def bad_json() -> ResponseDecodeError:
    return ResponseDecodeError("bad", status=200, method="POST", url="u", body=b"")


TABLE: list[tuple[str, PatchworksError, bool, bool]] = [
    # name, error, retried when idempotent, retried for authorise
    ("refused", refused(), True, True),
    ("connect timeout", connect_timeout(), True, True),
    ("read timeout", read_timeout(), True, False),
    ("dropped", dropped(), True, False),
    ("408", api(408), True, False),
    ("429", api(429, RateLimitError), True, True),
    ("500", api(500, ServerError), True, False),
    ("502", api(502, ServerError), True, False),
    ("503", api(503, ServerError), True, True),
    ("504", api(504, ServerError), True, False),
    ("400", api(400), False, False),
    ("401", api(401, AuthenticationError), False, False),
    ("404", api(404, NotFoundError), False, False),
    ("422", api(422, UnprocessableEntityError), False, False),
    ("501", api(501, ServerError), False, False),
    ("bad json", bad_json(), True, False),
    ("bad input", InvalidRequestError("x"), False, False),
]


@pytest.mark.parametrize(("name", "error", "idempotent", "creates"), TABLE)
def test_retry_table(name: str, error: PatchworksError, idempotent: bool, creates: bool) -> None:
    assert is_retriable(error, IDEM) is idempotent, name
    assert is_retriable(error, CREATES) is creates, name


def test_attempts_are_capped() -> None:
    policy = RetryPolicy(max_attempts=3)
    kwargs = {"error": api(500, ServerError), "safety": IDEM, "elapsed": 0.0, "backoff_delay": 0.1}
    assert decide(policy, attempt=1, **kwargs).retry  # type: ignore[arg-type]
    assert decide(policy, attempt=2, **kwargs).retry  # type: ignore[arg-type]
    assert not decide(policy, attempt=3, **kwargs).retry  # type: ignore[arg-type]
    assert not decide(RetryPolicy.disabled(), attempt=1, **kwargs).retry  # type: ignore[arg-type]


def test_retry_after_is_used_exactly_not_the_jittered_backoff() -> None:
    decision = decide(
        RetryPolicy(),
        error=api(429, RateLimitError, retry_after=10.0),
        safety=IDEM,
        attempt=1,
        elapsed=0.0,
        backoff_delay=0.3,
    )
    assert decision.retry
    assert decision.delay == 10.0
    assert decision.server_delay


def test_503_retry_after_is_honoured() -> None:
    decision = decide(
        RetryPolicy(),
        error=api(503, ServerError, retry_after=4.0),
        safety=CREATES,
        attempt=1,
        elapsed=0.0,
        backoff_delay=0.3,
    )
    assert decision.delay == 4.0


def test_429_without_header_waits_the_default() -> None:
    decision = decide(
        RetryPolicy(default_retry_after=2.5),
        error=api(429, RateLimitError),
        safety=IDEM,
        attempt=1,
        elapsed=0.0,
        backoff_delay=0.01,
    )
    assert decision.delay == 2.5


def test_retry_after_over_the_cap_gives_up_at_once() -> None:
    decision = decide(
        RetryPolicy(max_retry_after=120),
        error=api(429, RateLimitError, retry_after=121.0),
        safety=IDEM,
        attempt=1,
        elapsed=0.0,
        backoff_delay=0.1,
    )
    assert not decision.retry
    assert "max_retry_after" in decision.reason


def test_total_time_cap_never_shortens_a_server_wait() -> None:
    decision = decide(
        RetryPolicy(max_time=30),
        error=api(429, RateLimitError, retry_after=20.0),
        safety=IDEM,
        attempt=1,
        elapsed=15.0,
        backoff_delay=0.1,
    )
    assert not decision.retry  # it would have to leave early to fit: it gives up instead


def test_backoff_delay_is_used_without_retry_after() -> None:
    decision = decide(
        RetryPolicy(),
        error=api(502, ServerError),
        safety=IDEM,
        attempt=2,
        elapsed=1.0,
        backoff_delay=0.7,
    )
    assert decision.delay == 0.7
    assert not decision.server_delay


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": True},
        {"max_time": 0},
        {"backoff_base": -1},
        {"max_retry_after": 0},
    ],
)
def test_policy_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_tls_failures_are_not_retried() -> None:
    tls = TransportError("bad certificate", method="POST", url="u", sent=False, retriable=False)
    assert not is_retriable(tls, IDEM)
    assert not is_retriable(tls, CREATES)

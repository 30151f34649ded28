"""Ring 1 (pure): Retry-After and X-RateLimit-* parsing."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patchworks_async._ratelimit import RateLimitState, parse_rate_limit_headers, parse_retry_after

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_retry_after_http_date() -> None:
    value = email.utils.formatdate(NOW + 30, usegmt=True)
    assert parse_retry_after(value, now=NOW) == pytest.approx(30.0)
    past = email.utils.formatdate(NOW - 30, usegmt=True)
    assert parse_retry_after(past, now=NOW) == 0.0


@given(st.text(max_size=40))
def test_retry_after_never_raises_and_is_never_negative(value: str) -> None:
    result = parse_retry_after(value, now=NOW)
    assert result is None or result >= 0


def test_rate_limit_headers() -> None:
    state = parse_rate_limit_headers(
        {
            "X-RateLimit-Limit": "240",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "1800000010",
        },
        now=NOW,
    )
    assert state == RateLimitState(limit=240, remaining=0, reset_at=1800000010.0, observed_at=NOW)
    assert state.pause_for(now=NOW) == pytest.approx(10.0)
    assert parse_rate_limit_headers({"Content-Type": "x"}, now=NOW) is None
    lower = parse_rate_limit_headers({"x-ratelimit-remaining": "3"}, now=NOW)
    assert lower is not None
    assert lower.remaining == 3
    assert lower.pause_for(now=NOW) == 0.0


def test_retry_after_state_pauses() -> None:
    state = parse_rate_limit_headers({"Retry-After": "4"}, now=NOW)
    assert state is not None
    assert state.pause_for(now=NOW + 1) == pytest.approx(3.0)
    assert state.pause_for(now=NOW + 10) == 0.0


def test_garbage_numbers_are_ignored() -> None:
    state = parse_rate_limit_headers(
        {"X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": "2"}, now=0
    )
    assert state is not None
    assert state.limit is None
    assert state.remaining == 2

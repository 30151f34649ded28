"""The argparse types the two command lines share, with the messages they had before."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest

from patchworks_async import _argtypes


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        (_argtypes.positive_int, "3", 3),
        (_argtypes.non_negative_int, "0", 0),
        (_argtypes.positive_float, "0.5", 0.5),
        (_argtypes.seconds, "0", 0.0),
        (_argtypes.positive_seconds, "2.5", 2.5),
    ],
)
def test_good_values_parse(parse: Callable[[str], Any], text: str, expected: float) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (_argtypes.positive_int, "x", "expected a whole number, got 'x'"),
        (_argtypes.positive_int, "0", "must be at least 1"),
        (_argtypes.non_negative_int, "-1", "must be 0 or more"),
        (_argtypes.positive_float, "inf", "must be a positive number"),
        (_argtypes.positive_float, "nan", "must be a positive number"),
        (_argtypes.positive_float, "s", "expected a number of seconds, got 's'"),
        (_argtypes.seconds, "-1", "must be 0 or a positive number of seconds"),
        (_argtypes.seconds, "inf", "must be 0 or a positive number of seconds"),
        (_argtypes.positive_seconds, "0", "must be a positive number of seconds"),
    ],
)
def test_bad_values_are_refused(parse: Callable[[str], Any], text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)
    assert str(info.value) == message

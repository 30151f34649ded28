"""``argparse`` types shared by the command line and ``python -m patchworks_async.testing``."""

from __future__ import annotations

import argparse
import math


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _number_of_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    return value


def positive_int(text: str) -> int:
    """Parse a whole number of at least 1."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    """Parse a whole number of at least 0."""
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def positive_float(text: str) -> float:
    """Parse a finite number above 0."""
    value = _number_of_seconds(text)
    if not value > 0 or value == math.inf:  # NaN fails the comparison
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def seconds(text: str) -> float:
    """Parse a finite number of seconds, 0 or more."""
    value = _number_of_seconds(text)
    if not value >= 0 or value == math.inf:  # NaN fails the comparison
        raise argparse.ArgumentTypeError("must be 0 or a positive number of seconds")
    return value


def positive_seconds(text: str) -> float:
    """Parse a finite number of seconds above 0."""
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value

"""Value types for the command-line options of ``python -m experiments`` (argparse ``type=``).

Shared by the ``compare``/``reconstruct`` parsers (:mod:`experiments.cli`) and the ``train``
parser (:mod:`learning.cli`), so that every option is checked with the same one-line messages.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable


def int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum``; ``what`` names the option in the message."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be >= {minimum}, got {value}")
        return value

    return parse


def odd_patch(text: str) -> int:
    """argparse type of ``--patch-size``: an odd integer >= 1."""
    value = int_at_least(1, "--patch-size")(text)
    if value % 2 == 0:
        raise argparse.ArgumentTypeError(f"--patch-size must be odd (e.g. 7), got {value}")
    return value


def positive_float(what: str, *, allow_zero: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number > 0 (>= 0 with ``allow_zero``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(
                f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {text}")
        return value

    return parse

"""The one validation vocabulary: value kinds with their bounds, checked alike everywhere.

A :class:`Kind` says what a value must be (an integer >= 1, an odd patch side, one of some
choices, a window ...). The same kind checks a command-line option (:func:`arg`, an argparse
``type=``; :func:`int_at_least`, :func:`odd_patch`, :func:`positive_float` are the common ones) and
a study spec's TOML value (:meth:`Kind.check`), and the method registry declares its parameters
with kinds (:mod:`experiments.methods.registry`). Every refusal reads ``<where>: expected <what>,
got <value>``: one line, naming the option or the spec's key.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import UserError

KINDS = ("int", "float", "bool", "choice", "window", "names", "path", "size")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


@dataclass(frozen=True)
class Kind:
    """A value kind and its bounds.

    ``kind``: ``int`` (>= ``minimum``, ``odd`` when asked), ``float`` (finite, > ``minimum`` or
    >= it with ``inclusive``), ``bool``, ``choice`` (one of ``choices``), ``window`` (a number > 0
    or ``[height, width]``: a ``(h, w)`` tuple), ``names`` (one name or a list of names, each one
    of ``choices`` when given: a sorted tuple), ``path`` (an existing file: its absolute path) or
    ``size`` (an integer >= ``minimum`` or ``"native"``: None).
    """

    kind: str
    minimum: float | None = None
    odd: bool = False
    choices: tuple[str, ...] | None = None
    inclusive: bool = False
    noun: str = "name"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    def describe(self) -> str:
        """What a valid value is, in words (the middle of every refusal)."""
        if self.kind == "int":
            return f"an integer >= {int(self.minimum or 0)}" + (" (odd)" if self.odd else "")
        if self.kind == "float":
            return f"a number {'>=' if self.inclusive else '>'} {self.minimum or 0:g}"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "window":
            return "a window: a number > 0 or [height, width]"
        if self.kind == "names":
            return f"a {self.noun} or a list of {self.noun}s"
        if self.kind == "size":
            return f'an integer >= {int(self.minimum or 0)} or "native"'
        return "a file path (string)"

    def refuse(self, where: str, value, *, grid: bool = False) -> UserError:
        """The one-line refusal of ``value`` at ``where``."""
        return UserError(f"{where}: expected {self.describe()}"
                         f"{' (or a list of them)' if grid else ''}, got {value!r}")

    def check(self, value, where: str, *, base: Path | None = None, grid: bool = False):
        """``value`` (a TOML or Python value) checked and normalised; :class:`UserError` if bad.

        ``base``: the folder relative paths start from (default: the current folder); ``grid``:
        the refusal says that a list of such values would do too.
        """
        k = self.kind
        if k == "int":
            if not _is_int(value) or value < (self.minimum or 0) or (self.odd and value % 2 == 0):
                raise self.refuse(where, value, grid=grid)
            return int(value)
        if k == "float":
            low = self.minimum or 0
            if not _is_number(value) or value < low or (value == low and not self.inclusive):
                raise self.refuse(where, value, grid=grid)
            return float(value)
        if k == "bool":
            if not isinstance(value, bool):
                raise self.refuse(where, value, grid=grid)
            return value
        if k == "choice":
            if value not in self.choices:
                raise self.refuse(where, value, grid=grid)
            return value
        if k == "window":
            hw = [value, value] if _is_number(value) else value
            if not (isinstance(hw, (list, tuple)) and len(hw) == 2
                    and all(_is_number(x) and x > 0 for x in hw)):
                raise self.refuse(where, value, grid=grid)
            return tuple(int(x) if float(x).is_integer() else float(x) for x in hw)
        if k == "names":
            names = [value] if isinstance(value, str) else value
            if not (isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)):
                raise self.refuse(where, value, grid=grid)
            unknown = [n for n in names if self.choices is not None and n not in self.choices]
            if unknown:
                raise UserError(f"{where}: unknown {self.noun} {unknown[0]!r}; choose from "
                                f"{', '.join(self.choices)}")
            return tuple(sorted(set(names)))
        if k == "size":
            if value == "native" or value is None:
                return None
            if not _is_int(value) or value < (self.minimum or 0):
                raise self.refuse(where, value, grid=grid)
            return int(value)
        if not isinstance(value, str) or not value:
            raise self.refuse(where, value, grid=grid)
        path = Path(value)
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        if not path.is_file():
            raise UserError(f"{where}: {value} is not a file")
        return str(path.resolve())

    def parse(self, text: str, where: str):
        """A command-line string as this kind's value (numbers converted first), checked."""
        value: Any = text
        if self.kind in ("int", "size") and text != "native":
            try:
                value = int(text)
            except ValueError:
                raise self.refuse(where, text) from None
        elif self.kind == "float":
            try:
                value = float(text)
            except ValueError:
                raise self.refuse(where, text) from None
        elif self.kind == "bool":
            value = {"true": True, "false": False}.get(text.lower(), text)
        return self.check(value, where)


def arg(kind: Kind) -> Callable[[str], Any]:
    """argparse ``type=`` of a kind: argparse prefixes the option's name to the refusal."""
    def parse(text: str):
        try:
            return kind.parse(text, "")
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(": ")) from None

    parse.__name__ = kind.kind  # argparse names the type in some messages
    return parse


def grid(kind: Kind, value, where: str, *, base: Path | None = None) -> list:
    """A spec value that may be one value or a list of them: the distinct checked values, in order."""
    if isinstance(value, dict):
        raise kind.refuse(where, value, grid=True)
    if isinstance(value, list):  # a list is always a grid (a window's [h, w] is one entry of it)
        if not value:
            hint = " (for none write [[]])" if kind.kind == "names" else ""
            raise UserError(f"{where}: empty grid; give at least one value{hint}")
        entries = value
    else:
        entries = [value]
    return list(dict.fromkeys(kind.check(v, where, base=base, grid=True) for v in entries))


# The kinds every entry point uses.
COUNT = Kind("int", minimum=1)
PATCH = Kind("int", minimum=1, odd=True)


def int_at_least(minimum: int, what: str = "") -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum`` (``what``: kept for callers that name the option)."""
    return arg(Kind("int", minimum=minimum))


def odd_patch(text: str) -> int:
    """argparse type of ``--patch-size``: an odd integer >= 1."""
    return arg(PATCH)(text)


def positive_float(what: str = "", *, allow_zero: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number > 0 (>= 0 with ``allow_zero``)."""
    return arg(Kind("float", minimum=0, inclusive=allow_zero))

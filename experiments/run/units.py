"""Units: the one thing every engine runs, and the keys that say when two are the same.

A *setting* is a method with its parameters: as given (``given``) and with the defaults of its
library function filled in (``resolved``; a checkpoint setting adds ``checkpoint_sha256``, the
checkpoint's content, instead of defaults it cannot know). A *unit* is one (pair, size, setting,
seed), plus how it is timed (repeats, device, threads, timing mode).

Keys: a unit's key hashes everything that defines its numbers: the pair's name and origin, the
size, the method and :func:`key_params` (every resolved parameter whose :class:`~experiments.
methods.registry.Param` has ``key=True``, left out at its ``earlier`` value), the seed, the
repeats, the device, the threads and the timing mode. So a changed default is a new unit, and a
parameter added later keeps the keys of studies run before it. A method without a seed
(``exact``) has one unit per (pair, size), seed None.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.pairs import file_stem
from ..methods.registry import METHODS

#: Bump when the meaning of a unit's numbers changes for reasons the key does not see.
KEY_VERSION = 1


@dataclass(frozen=True)
class Setting:
    """One method setting; ``name``: its named setting (``compare``'s method column), if any."""

    method: str
    given: tuple[tuple[str, Any], ...]
    resolved: tuple[tuple[str, Any], ...] = ()
    name: str | None = None

    @property
    def options(self) -> dict:
        """Keyword arguments for the library (the given parameters that are arguments)."""
        schema = METHODS[self.method].params
        return {k: v for k, v in self.given if schema[k].arg}

    @property
    def checkpoint(self) -> str | None:
        return dict(self.given).get("checkpoint")


@dataclass(frozen=True)
class Unit:
    """One (pair, size, setting, seed) and how it is timed; ``key`` identifies its numbers.

    ``name`` is what the results' ``method`` column shows: the named setting in ``compare``
    (``dpm-keep``), the method in a study (whose ``setting`` column tells the settings apart).
    """

    key: str
    setting_key: str
    pair: str
    origin: str
    max_size: int | None
    method: str
    name: str
    given: tuple[tuple[str, Any], ...]
    resolved: tuple[tuple[str, Any], ...]
    seed: int | None
    repeats: int
    device: str
    threads: int
    timing: str
    checkpoint_sha256: str | None = None

    @property
    def options(self) -> dict:
        return Setting(self.method, self.given, self.resolved).options

    @property
    def params(self) -> dict:
        return dict(self.resolved)

    @property
    def patch_size(self) -> int:
        return int(self.params.get("patch_size") or 7)

    @property
    def iterations(self) -> list[int] | None:
        """The iterations the run reports (None: only the run can tell, e.g. a checkpoint's own)."""
        return METHODS[self.method].iterations(self.params)

    @property
    def file_key(self) -> str:
        """``<pair>__<name>``: the unit in file names (``compare``'s artifacts, its failures)."""
        return f"{file_stem(self.pair)}__{self.name}"


def _hash(obj) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def key_params(s: Setting) -> dict:
    """The parameters that the setting's and its units' keys hash (see the module docstring)."""
    schema = METHODS[s.method].params
    out = {}
    for k, v in s.resolved:
        p = schema.get(k)
        if p is not None and (not p.key or p.at_earlier(v)):
            continue
        out[k] = v
    return out


def setting_key(s: Setting) -> str:
    """Hash of the method and its :func:`key_params`."""
    return _hash(dict(v=KEY_VERSION, method=s.method, params=key_params(s)))


def unit_key(*, pair: str, origin: str, max_size: int | None, method: str, params: dict,
             seed: int | None, repeats: int, device: str, threads: int, timing: str) -> str:
    """Hash of everything that defines a unit's numbers (see the module docstring)."""
    return _hash(dict(v=KEY_VERSION, pair=pair, origin=origin, max_size=max_size, method=method,
                      params=params, seed=seed, repeats=repeats, device=device, threads=threads,
                      timing=timing))


def make_units(settings: list[Setting], sources: list, *, max_sizes: list, seeds: list[int],
               repeats: int, device: str, threads: int, timing: str) -> list[Unit]:
    """Every unit, in run order: pair, size, setting, seed (``sources``: objects with ``name``
    and ``origin``, e.g. :class:`~experiments.data.pairs.PairSource`)."""
    per_setting = [(s, setting_key(s), key_params(s)) for s in settings]
    units = []
    for src in sources:
        for size in max_sizes:
            for s, skey, params in per_setting:
                for seed in (seeds if METHODS[s.method].seeded else [None]):
                    key = unit_key(pair=src.name, origin=src.origin, max_size=size, method=s.method,
                                   params=params, seed=seed, repeats=repeats, device=device,
                                   threads=threads, timing=timing)
                    units.append(Unit(key=key, setting_key=skey, pair=src.name, origin=src.origin,
                                      max_size=size, method=s.method, name=s.name or s.method,
                                      given=s.given, resolved=s.resolved, seed=seed, repeats=repeats,
                                      device=device, threads=threads, timing=timing,
                                      checkpoint_sha256=dict(s.resolved).get("checkpoint_sha256")))
    return units


# --------------------------------------------------------------------------- presentation
def fmt_value(v) -> str:
    """A parameter value as a label shows it (``50x50``, ``zero_border+a_frame``, ``true``)."""
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return f"{v[0]}x{v[1]}"
    if isinstance(v, tuple):
        return "+".join(v) if v else "none"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str) and "/" in v:
        return Path(v).name
    return str(v)


def fmt_given(s: Setting) -> str:
    return "(" + ", ".join(f"{k}={fmt_value(v)}" for k, v in s.given) + ")"


def setting_labels(settings: list[Setting]) -> dict[str, str]:
    """Short legend label of each setting (by setting key): its name (or method) and the
    parameters that vary among the settings of that name, e.g. ``dpm window=50x50``."""
    groups: dict[str, list[Setting]] = {}
    for s in settings:
        groups.setdefault(s.name or s.method, []).append(s)
    out = {}
    for name, group in groups.items():
        varying = [k for k in dict.fromkeys(k for s in group for k, _ in s.given)
                   if len({dict(s.resolved).get(k) for s in group}) > 1]
        for s in group:
            p = dict(s.resolved)
            parts = [f"{k}={fmt_value(p.get(k))}" for k in varying if k in p]
            out[setting_key(s)] = " ".join([name, *parts])
    return out


def param_columns() -> list[str]:
    """The parameter columns of a study's results: every registered parameter with ``column``
    set, windows split into ``window_h`` / ``window_w`` (``patch_size`` is a column of every row
    already)."""
    cols: list[str] = []
    for method in METHODS.values():
        for k, p in method.params.items():
            if k == "patch_size" or not p.column:
                continue
            names = ["window_h", "window_w"] if p.kind.kind == "window" else [k]
            cols.extend(n for n in names if n not in cols)
    return cols


def param_values(unit: Unit) -> dict:
    """A unit's values for :func:`param_columns` (None where its method has no such one)."""
    out = dict.fromkeys(param_columns())
    for k, v in unit.params.items():
        if k == "window":
            out["window_h"], out["window_w"] = float(v[0]), float(v[1])
        elif k == "quirks":
            out[k] = "+".join(v) if v else ""
        elif k in out:
            out[k] = v
    return out

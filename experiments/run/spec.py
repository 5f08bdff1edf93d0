"""The study spec (TOML) parsed into a plain description: what to run, nothing resolved yet.

A spec names the data, a grid per method parameter, image sizes, seeds and how to time::

    title = "DPM against PatchMatch"       # optional, heads REPORT.md
    max_size = [64, 128]                   # longer side in px; "native" = no downscaling
    seeds = [0, 1, 2]
    repeats = 3                            # timed runs per unit (median, min, max recorded)
    device = "cpu"                         # auto | cpu | cuda
    threads = 1                            # CPU threads of each unit (numba and torch)
    timing = "shared"                      # shared | exclusive (timed sections one at a time per host)

    [data]                                 # optional; default: every built-in pair
    sources = ["chelsea", "middlebury:data/MiddEval3"]   # anything --data accepts
    limit = 2                              # optional, per dataset or folder
    select = "*"                           # optional glob, per dataset or folder

    [methods.pm]
    iterations = [5, 10]
    refine_radius = [0, 8]

    [methods.dpm]
    window = [50, [100, 200]]              # 50 x 50 and 100 x 200 (height, width)
    quirks = [[], ["zero_border", "a_frame"]]

    [methods.dpm-keep]                     # a named setting: dpm with keep_current = true
    window = 25

    [methods.exact]

A ``[methods.NAME]`` table names a registered method or named setting
(:mod:`experiments.methods.registry`); every parameter takes one value or a list of values (its
grid), checked by the parameter's kind (:mod:`experiments.options`); a table's settings are the
product of its grids. ``[[methods.dpm]]`` (an array of tables) gives several grids of one method,
whose settings are joined. ``window`` entries are a number (a square window) or ``[height,
width]``; ``quirks`` entries are a quirk name or a list of names (``[]``: none). Relative paths
are relative to the current folder. ``methods.exact.max_pixels`` is one limit for the whole
study (default: by device, see :data:`~experiments.methods.registry.EXACT_MAX_PIXELS`).

Every problem is a :class:`~experiments.errors.UserError` whose one line names the key, raised
before any work. Resolving the spec (defaults, checkpoints, data) is :mod:`.planning`'s business.
"""
from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from ..data.builtin import BUILTIN_PAIRS
from ..devices import DEVICE_CHOICES
from ..errors import UserError
from ..methods.registry import METHODS, NAMED
from ..options import COUNT, Kind, grid
from .units import Setting

TIMING_MODES = ("shared", "exclusive")
SIZE = Kind("size", minimum=8)
SEED = Kind("int", minimum=0)


@dataclass
class Spec:
    """A parsed study (:func:`load_spec`): plain values, every one checked."""

    path: str
    text: str
    title: str
    data: list[str]
    limit: int | None
    select: str | None
    max_sizes: list[int | None]
    seeds: list[int]
    repeats: int
    device: str
    threads: int
    timing: str
    settings: list[Setting]

    def with_overrides(self, *, timing: str | None = None, repeats: int | None = None) -> "Spec":
        """A copy with the command line's ``--timing`` / ``--repeats`` in force."""
        return replace(self, timing=timing or self.timing, repeats=repeats or self.repeats)


_TOP = {"title", "max_size", "seeds", "repeats", "device", "threads", "timing", "data", "methods"}
_DATA = {"sources", "limit", "select"}


def load_spec(path: str | Path) -> Spec:
    """Read and check a spec file; raise :class:`UserError` (one line naming the key)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"spec {path} does not exist (give a .toml file; see "
                        "experiments/specs/dpm_vs_pm.toml)")
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}") from None
    try:
        return parse_spec_dict(raw, path=str(path), text=text)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def parse_spec_dict(raw: dict, *, path: str = "<spec>", text: str = "",
                    base: Path | None = None) -> Spec:
    """Check a parsed TOML document (see the module docstring); raises :class:`UserError`."""
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise UserError(f"{unknown[0]}: unknown key; the spec's keys are {', '.join(sorted(_TOP))}")
    title = raw.get("title", Path(path).stem)
    if not isinstance(title, str):
        raise UserError(f"title: expected a string, got {title!r}")
    data = raw.get("data", {})
    if not isinstance(data, dict):
        raise UserError(f"data: expected a table ([data] with sources, limit, select), got {data!r}")
    bad = sorted(set(data) - _DATA)
    if bad:
        raise UserError(f"data.{bad[0]}: unknown key; [data] takes {', '.join(sorted(_DATA))}")
    sources = data.get("sources", list(BUILTIN_PAIRS))
    if isinstance(sources, str):
        sources = [sources]
    if not isinstance(sources, list) or not all(isinstance(s, str) and s for s in sources):
        raise UserError(f"data.sources: expected a list of built-in pair names, KIND:PATH or "
                        f"folders, got {sources!r}")
    if not sources:
        raise UserError("data.sources: empty grid; give at least one pair, dataset or folder")
    limit = data.get("limit")
    if limit is not None:
        COUNT.check(limit, "data.limit")
    select = data.get("select")
    if select is not None and (not isinstance(select, str) or not select):
        raise UserError(f"data.select: expected a glob (string), got {select!r}")
    return Spec(path=path, text=text, title=title, data=sources, limit=limit, select=select,
                max_sizes=grid(SIZE, raw.get("max_size", "native"), "max_size"),
                seeds=grid(SEED, raw.get("seeds", 0), "seeds"),
                repeats=COUNT.check(raw.get("repeats", 3), "repeats"),
                device=Kind("choice", choices=DEVICE_CHOICES).check(raw.get("device", "auto"), "device"),
                threads=COUNT.check(raw.get("threads", 1), "threads"),
                timing=Kind("choice", choices=TIMING_MODES).check(raw.get("timing", "shared"), "timing"),
                settings=_settings(raw.get("methods"), base=base))


def _settings(methods, *, base: Path | None) -> list[Setting]:
    """Every setting of the ``[methods.*]`` tables, in order, duplicates joined."""
    names = ", ".join(NAMED)
    if not isinstance(methods, dict) or not methods:
        raise UserError(f"methods: no method; add a table such as [methods.pm] or [methods.dpm] "
                        f"(methods: {names})")
    settings: list[Setting] = []
    limit, limit_where = None, None
    for name, tables in methods.items():
        if name not in NAMED:
            raise UserError(f"methods.{name}: unknown method; choose from {names}")
        named = NAMED[name]
        if isinstance(tables, dict):
            tables = [tables]
        if not (isinstance(tables, list) and tables and all(isinstance(t, dict) for t in tables)):
            raise UserError(f"methods.{name}: expected a table ([methods.{name}]) or an array of "
                            f"tables ([[methods.{name}]]), got {tables!r}")
        for i, table in enumerate(tables):
            where = f"methods.{name}" + (f"[{i}]" if len(tables) > 1 else "")
            grids = _grids(named.method, table, where, base=base)
            fixed = [k for k, _ in named.given if k in grids]
            if fixed:
                raise UserError(f"{where}.{fixed[0]}: fixed by {name} ({fixed[0]} = "
                                f"{dict(named.given)[fixed[0]]!r}); vary it in [methods.{named.method}]")
            missing = [k for k in named.needs if k not in grids]
            if missing:
                raise UserError(f"{where}: {name} needs {missing[0]} (e.g. {missing[0]} = "
                                "\"data/dpm_learned.pt\")")
            if "max_pixels" in grids:
                value = grids.pop("max_pixels")[0]
                if limit_where is not None and value != limit:
                    raise UserError(f"{where}.max_pixels: {value} differs from {limit_where}"
                                    f".max_pixels = {limit}; it is one limit for the whole "
                                    "study, so all exact tables must give the same max_pixels")
                limit, limit_where = value, where
            for combo in itertools.product(*grids.values()):
                given = tuple(named.given) + tuple(zip(grids, combo))
                settings.append(Setting(named.method, given, (), None if name == named.method else name))
    if limit is not None:  # the one limit, in every setting that has the parameter
        settings = [replace(s, given=s.given + (("max_pixels", limit),))
                    if "max_pixels" in METHODS[s.method].params else s for s in settings]
    return list(dict.fromkeys(settings))


def _grids(method: str, table: dict, where: str, *, base: Path | None) -> dict[str, list]:
    schema = METHODS[method].params
    grids = {}
    for key, value in table.items():
        if key not in schema:
            raise UserError(f"{where}.{key}: unknown parameter of {method}; choose from "
                            f"{', '.join(schema)}")
        grids[key] = grid(schema[key].kind, value, f"{where}.{key}", base=base)
    if len(grids.get("max_pixels", [0])) > 1:
        raise UserError(f"{where}.max_pixels: give one value (it is a limit, not a grid)")
    return grids


__all__ = ["Spec", "TIMING_MODES", "load_spec", "parse_spec_dict"]

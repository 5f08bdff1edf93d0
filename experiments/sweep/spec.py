"""The study spec (TOML): its schema, its checks, and its expansion into units.

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

    [methods.exact]

Every method parameter takes one value or a list of values (its grid); a method's settings are
the product of its grids. ``[[methods.dpm]]`` (an array of tables) gives several grids of one
method, whose settings are joined. List-valued parameters take a list of entries: ``window``
entries are a number (a square window) or ``[height, width]``; ``quirks`` entries are a quirk
name or a list of names (``[]``: none). Relative paths are relative to the current folder.

A *unit* is one (pair, method setting, max_size, seed); its key (:attr:`Unit.key`) hashes
everything that defines its numbers: the pair's name and origin, the size, the method and all its
parameters *with the defaults filled in* (so a changed default is a new unit; a parameter added
later is left out while it has the value of the earlier behaviour, :data:`LATER_PARAMS`), the checkpoint's
content, the seed, the repeats, the device, the threads and the timing mode. ``exact`` does not
depend on the seed: it has one unit per (pair, size).

Every problem is a :class:`~experiments.errors.UserError` whose one line names the key, raised
before any work.
"""
from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ..data import KINDS, check_subset_options, is_builtin, parse_spec, resolve_data
from ..devices import DEVICE_CHOICES
from ..errors import UserError, first_line, one_line
from ..data import BUILTIN_PAIRS, PairSource

#: Bump when the meaning of a unit's numbers changes for reasons the key does not see.
KEY_VERSION = 1
#: Parameters added to the schema after studies were run with KEY_VERSION 1, with the value that
#: reproduces the earlier behaviour: left out of the key at that value, so that a study begun before
#: keeps its finished units (their numbers are the same).
LATER_PARAMS = {"dpm": {"outside": "clamp"}}
TIMING_MODES = ("shared", "exclusive")
DEVICES = DEVICE_CHOICES


# --------------------------------------------------------------------------- schema
@dataclass(frozen=True)
class Param:
    """One method parameter: its type and bounds, and how it reaches the method.

    ``kind``: ``int``, ``float`` (ints accepted), ``bool``, ``choice`` (one of ``choices``),
    ``window`` (a number or ``[height, width]``), ``names`` (a set of names, each one of
    ``choices`` when given) or ``path`` (an existing file). ``arg``: passed to the method as a
    keyword argument (False: used by the sweep itself).
    """

    kind: str
    doc: str
    minimum: float | None = None
    odd: bool = False
    choices: tuple[str, ...] | None = None
    arg: bool = True


_PATCH = Param("int", "odd patch side (px) of the matching, the reconstruction and the energy",
               minimum=1, odd=True)
#: Parameters of each method. DPM's are passed through to ``diff_pm.DifferentiablePatchMatch``
#: as keyword arguments (``checkpoint`` excepted): a new DPM option needs one line here.
METHOD_PARAMS: dict[str, dict[str, Param]] = {
    "pm": {
        "iterations": Param("int", "PatchMatch iterations", minimum=1),
        "patch_size": _PATCH,
        "refine_radius": Param("int", "second search candidate at radii 2..refine_radius (0: "
                                      "Barnes et al.'s one per radius)", minimum=0),
    },
    "dpm": {
        "iterations": Param("int", "DPM iterations", minimum=1),
        "sample_count": Param("int", "k: (k+1)^2 particles per pixel", minimum=1),
        "window": Param("window", "search window (height, width) in px around each offset"),
        "temperature": Param("float", "softmax temperature of the evaluation", minimum=0),
        "evaluation": Param("choice", "soft (softmax-weighted) or hard (argmax)",
                            choices=("soft", "hard")),
        "keep_current": Param("bool", "keep each pixel's current offset as a candidate"),
        "reference_quirks": Param("bool", "every quirk of the DeepPruner reference"),
        "noise": Param("choice", "one uniform draw serves a particle's x and y sample (shared, the "
                                "reference) or separate draws (independent)",
                       choices=("shared", "independent")),
        "search_range": Param("choice", "initial range: the reference's full [-W, W] x [-H, H] "
                                        "or the offsets inside B", choices=("full", "inside")),
        "outside": Param("choice", "particles outside B: compared at B's border (clamp, the reference) "
                                   "or mirrored into B (reflect)", choices=("clamp", "reflect")),
        "quirks": Param("names", "reference quirks to reproduce (names from diff_pm.QUIRKS)"),
        "patch_size": _PATCH,
        "checkpoint": Param("path", "learnt DPM checkpoint (from `train`); the parameters not "
                                    "given come from the checkpoint", arg=False),
    },
    "exact": {
        "patch_size": _PATCH,
        "max_pixels": Param("int", "run only when sqrt(pixels of A x pixels of B) <= max_pixels "
                                   "(0: no limit)", minimum=0, arg=False),
    },
}
#: The exact NNF's size limit when ``max_pixels`` is not given (as ``compare`` on the CPU).
EXACT_MAX_PIXELS = 40000


# --------------------------------------------------------------------------- checks
def _describe(p: Param) -> str:
    if p.kind == "int":
        what = f"an integer >= {int(p.minimum)}" + (" (odd)" if p.odd else "")
    elif p.kind == "float":
        what = "a number > 0"
    elif p.kind == "bool":
        what = "true or false"
    elif p.kind == "choice":
        what = "one of " + ", ".join(repr(c) for c in p.choices)
    elif p.kind == "window":
        what = "a window: a number > 0 or [height, width]"
    elif p.kind == "names":
        what = "a quirk name or a list of names"
    else:
        what = "a file path (string)"
    return what


def _bad(where: str, p: Param, value) -> UserError:
    return UserError(f"{where}: expected {_describe(p)} (or a list of them), got {value!r}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _entry(where: str, p: Param, v, *, base: Path, quirks: tuple[str, ...] | None):
    """One grid entry checked and normalised (tuples for windows and name sets)."""
    if p.kind == "int":
        if not _is_int(v) or v < p.minimum or (p.odd and v % 2 == 0):
            raise _bad(where, p, v)
        return int(v)
    if p.kind == "float":
        if not _is_number(v) or v <= 0:
            raise _bad(where, p, v)
        return float(v)
    if p.kind == "bool":
        if not isinstance(v, bool):
            raise _bad(where, p, v)
        return v
    if p.kind == "choice":
        if v not in p.choices:
            raise _bad(where, p, v)
        return v
    if p.kind == "window":
        hw = [v, v] if _is_number(v) else v
        if not (isinstance(hw, list) and len(hw) == 2 and all(_is_number(x) and x > 0 for x in hw)):
            raise _bad(where, p, v)
        return tuple(int(x) if float(x).is_integer() else float(x) for x in hw)
    if p.kind == "names":
        names = [v] if isinstance(v, str) else v
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise _bad(where, p, v)
        unknown = [n for n in names if quirks is not None and n not in quirks]
        if unknown:
            raise UserError(f"{where}: unknown quirk {unknown[0]!r}; diff_pm.QUIRKS has "
                            f"{', '.join(quirks)}")
        return tuple(sorted(set(names)))
    # path
    if not isinstance(v, str) or not v:
        raise _bad(where, p, v)
    path = Path(v) if Path(v).is_absolute() else base / v
    if not path.is_file():
        raise UserError(f"{where}: {v} is not a file")
    return str(path.resolve())


def _grid(where: str, p: Param, value, *, base: Path, quirks) -> list:
    """A parameter's grid: the list of its distinct normalised values, in spec order."""
    if isinstance(value, dict):
        raise _bad(where, p, value)
    if isinstance(value, list):
        if not value:
            hint = " (for no quirks write [[]])" if p.kind == "names" else ""
            raise UserError(f"{where}: empty grid; give at least one value{hint}")
        entries = value
    else:
        entries = [value]
    out = [_entry(where, p, v, base=base, quirks=quirks) for v in entries]
    return list(dict.fromkeys(out))


def _run_list(where: str, value, check: Callable[[Any], Any], what: str) -> list:
    entries = value if isinstance(value, list) else [value]
    if not entries:
        raise UserError(f"{where}: empty grid; give at least one value")
    out = []
    for v in entries:
        checked = check(v)
        if checked is _INVALID:
            raise UserError(f"{where}: expected {what} (or a list of them), got {v!r}")
        out.append(checked)
    return list(dict.fromkeys(out))


_INVALID = object()


def _count(where: str, v) -> int:
    """A run setting that must be an integer >= 1."""
    if not _is_int(v) or v < 1:
        raise UserError(f"{where}: expected an integer >= 1, got {v!r}")
    return v


def _one_of(where: str, v, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise UserError(f"{where}: expected one of {', '.join(choices)}, got {v!r}")
    return v


def _size(v):
    if v == "native":
        return None
    return int(v) if _is_int(v) and v >= 8 else _INVALID


def _seed(v):
    return int(v) if _is_int(v) and v >= 0 else _INVALID


# --------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class Setting:
    """One method setting: every parameter value, as given and with defaults filled in."""

    method: str
    given: tuple[tuple[str, Any], ...]
    resolved: tuple[tuple[str, Any], ...]

    @property
    def options(self) -> dict:
        """Keyword arguments for the method (the given parameters that are arguments)."""
        schema = METHOD_PARAMS[self.method]
        return {k: v for k, v in self.given if schema[k].arg}

    @property
    def checkpoint(self) -> str | None:
        return dict(self.given).get("checkpoint")


@dataclass
class Spec:
    """A checked spec (:func:`load_spec`)."""

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
    exact_max_pixels: int = EXACT_MAX_PIXELS

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
    base = Path.cwd() if base is None else base
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
        _count("data.limit", limit)
    select = data.get("select")
    if select is not None and (not isinstance(select, str) or not select):
        raise UserError(f"data.select: expected a glob (string), got {select!r}")

    max_sizes = _run_list("max_size", raw.get("max_size", "native"), _size,
                          'an integer >= 8 or "native"')
    seeds = _run_list("seeds", raw.get("seeds", 0), _seed, "an integer >= 0")
    repeats = _count("repeats", raw.get("repeats", 3))
    device = _one_of("device", raw.get("device", "auto"), DEVICES)
    threads = _count("threads", raw.get("threads", 1))
    timing = _one_of("timing", raw.get("timing", "shared"), TIMING_MODES)

    methods = raw.get("methods")
    if not isinstance(methods, dict) or not methods:
        raise UserError("methods: no method; add a table such as [methods.pm] or [methods.dpm] "
                        f"(methods: {', '.join(METHOD_PARAMS)})")
    settings: list[Setting] = []
    exact_max, exact_max_where = EXACT_MAX_PIXELS, None
    for name, tables in methods.items():
        if name not in METHOD_PARAMS:
            raise UserError(f"methods.{name}: unknown method; choose from "
                            f"{', '.join(METHOD_PARAMS)}")
        if isinstance(tables, dict):
            tables = [tables]
        if not (isinstance(tables, list) and tables and all(isinstance(t, dict) for t in tables)):
            raise UserError(f"methods.{name}: expected a table ([methods.{name}]) or an array of "
                            f"tables ([[methods.{name}]]), got {tables!r}")
        for i, table in enumerate(tables):
            where = f"methods.{name}" + (f"[{i}]" if len(tables) > 1 else "")
            grids = _method_grids(name, table, where, base=base)
            if name == "exact" and "max_pixels" in grids:
                value = grids.pop("max_pixels")[0]
                if exact_max_where is not None and value != exact_max:
                    raise UserError(f"{where}.max_pixels: {value} differs from {exact_max_where}"
                                    f".max_pixels = {exact_max}; it is one limit for the whole "
                                    "study, so all exact tables must give the same max_pixels")
                exact_max, exact_max_where = value, where
            for combo in itertools.product(*grids.values()):
                given = tuple(zip(grids, combo))
                settings.append(Setting(name, given, ()))
    settings = list(dict.fromkeys(settings))
    return Spec(path=path, text=text, title=title, data=sources, limit=limit, select=select,
                max_sizes=max_sizes, seeds=seeds, repeats=repeats, device=device,
                threads=threads, timing=timing, settings=settings, exact_max_pixels=exact_max)


def _quirk_names() -> tuple[str, ...]:
    import diff_pm  # deferred: imports torch; only DPM quirks need it

    return tuple(diff_pm.QUIRKS)


def _method_grids(method: str, table: dict, where: str, *, base: Path) -> dict[str, list]:
    schema = METHOD_PARAMS[method]
    grids = {}
    for key, value in table.items():
        if key not in schema:
            raise UserError(f"{where}.{key}: unknown parameter of {method}; choose from "
                            f"{', '.join(schema)}")
        p = schema[key]
        quirks = _quirk_names() if p.kind == "names" else None
        grids[key] = _grid(f"{where}.{key}", p, value, base=base, quirks=quirks)
    if method == "exact" and len(grids.get("max_pixels", [0])) > 1:
        raise UserError(f"{where}.max_pixels: give one value (it is a limit, not a grid)")
    return grids


# --------------------------------------------------------------------------- defaults
def method_defaults(method: str) -> dict:
    """The defaults of the function or class behind ``method``, for the schema's parameters.

    ``pm``: ``classic_pm.patchmatch``; ``dpm``: ``diff_pm.DifferentiablePatchMatch``; ``exact``:
    ``classic_pm.exact_nnf``. Reading them makes the unit key follow a changed default.
    """
    if method == "dpm":
        import diff_pm  # deferred: heavy import (torch, numba)

        target = diff_pm.DifferentiablePatchMatch.__init__
    else:
        import classic_pm  # deferred: heavy import (numba)

        target = classic_pm.patchmatch if method == "pm" else classic_pm.exact_nnf
    sig = inspect.signature(target)
    out = {}
    for name, p in sig.parameters.items():
        if p.default is inspect.Parameter.empty or name in ("features", "callback", "seed",
                                                             "threads", "device"):
            continue
        v = p.default
        if isinstance(v, (tuple, list, frozenset, set)):
            v = tuple(sorted(v)) if isinstance(v, (frozenset, set)) or name == "quirks" else tuple(v)
        if name == "window":
            v = tuple(int(x) if float(x).is_integer() else float(x) for x in v)
        out[name] = v
    return out


def resolve_settings(spec: Spec, *, checkpoint_loader=None) -> None:
    """Fill each setting's defaults and check that the installed method accepts it.

    DPM settings are built once (on the CPU, nothing run), so a value the constructor refuses
    is a :class:`UserError` before any work; a DPM option that this ``diff_pm`` does not have is
    one too. Checkpoints are loaded once by ``checkpoint_loader`` (see :func:`run_sweep`).
    """
    defaults = {m: method_defaults(m) for m in {s.method for s in spec.settings}}
    out = []
    for s in spec.settings:
        where = f"methods.{s.method}"
        d = defaults[s.method]
        if s.method == "dpm":
            missing = [k for k, _ in s.given if METHOD_PARAMS["dpm"][k].arg and k not in d]
            if missing:
                raise UserError(f"{where}.{missing[0]}: this diff_pm.DifferentiablePatchMatch has "
                                f"no option {missing[0]!r} (it takes {', '.join(d)})")
            if s.checkpoint is None:
                _check_dpm(s, where)
            elif checkpoint_loader is None:
                raise UserError(f"{where}.checkpoint: this entry point cannot load checkpoints; "
                                "use `python -m experiments sweep`")
            else:
                _check_checkpoint(s, where, checkpoint_loader)
        given = dict(s.given)
        if s.method == "dpm" and s.checkpoint is not None:
            resolved = dict(given)  # the checkpoint's own settings are not known here
            resolved["checkpoint_sha256"] = file_sha256(s.checkpoint)
        else:
            resolved = {k: v for k, v in d.items() if k in METHOD_PARAMS[s.method]
                        or s.method == "dpm"}
            resolved.update(given)
            if s.method == "dpm":
                resolved.pop("materialize", None)  # same numbers either way
        out.append(Setting(s.method, s.given, tuple(sorted(resolved.items()))))
    unique: dict[tuple, Setting] = {}
    for s in out:  # settings that differ only in the order of their keys are one
        unique.setdefault((s.method, s.resolved), s)
    spec.settings = list(unique.values())


def _check_dpm(s: Setting, where: str) -> None:
    import diff_pm  # deferred: heavy import

    try:
        diff_pm.DifferentiablePatchMatch(**s.options)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where} {_fmt_given(s)}: {first_line(exc)}") from None


def _check_checkpoint(s: Setting, where: str, loader) -> None:
    try:
        loader(Path(s.checkpoint).read_bytes(), device="cpu", options=s.options)
    except UserError as exc:
        raise UserError(f"{where}.checkpoint: {exc}") from None
    except Exception as exc:  # a corrupt or foreign file: say so in one line
        raise UserError(f"{where}.checkpoint: {s.checkpoint} could not be loaded "
                        f"({one_line(exc)})") from None


def _fmt_given(s: Setting) -> str:
    return "(" + ", ".join(f"{k}={_fmt_value(v)}" for k, v in s.given) + ")"


def _fmt_value(v) -> str:
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return f"{v[0]}x{v[1]}"
    if isinstance(v, tuple):
        return "+".join(v) if v else "none"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str) and "/" in v:
        return Path(v).name
    return str(v)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- units
@dataclass(frozen=True)
class Unit:
    """One (pair, method setting, size, seed) of a study: what a worker needs besides the pair.

    ``key`` hashes everything that defines the unit's numbers (see the module docstring);
    ``setting_key`` the method setting alone (the same across pairs, sizes and seeds).
    """

    key: str
    setting_key: str
    pair: str
    origin: str
    max_size: int | None
    method: str
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
        return int(dict(self.resolved).get("patch_size") or 7)


def _hash(obj) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def key_params(s: Setting) -> dict:
    """The parameters that the setting's and its units' keys hash: defaults filled in, the checkpoint
    by content (not path), :data:`LATER_PARAMS` left out at their earlier behaviour."""
    later = LATER_PARAMS.get(s.method, {})
    return {k: v for k, v in s.resolved if k != "checkpoint" and not (k in later and v == later[k])}


def setting_key(s: Setting) -> str:
    """Hash of the method and its :func:`key_params`."""
    return _hash(dict(v=KEY_VERSION, method=s.method, params=key_params(s)))


@dataclass
class Source:
    """A pair source of the spec and the dataset it belongs to (for the report)."""

    dataset: str
    source: PairSource


def resolve_sources(spec: Spec, log=None) -> list[Source]:
    """The spec's ``[data]`` as pair sources (:func:`experiments.data.resolve_data`).

    Paths are made absolute first (they are part of the unit keys, through each pair's origin).
    Raises :class:`UserError` (one line, naming ``data.sources``) for bad data.
    """
    try:
        check_subset_options(list(spec.data), limit=spec.limit, select=spec.select,
                             names=("data.limit", "data.select"))
    except UserError as exc:
        raise UserError(f"data.sources: {exc}") from None
    out: list[Source] = []
    labels: dict[str, int] = {}
    for entry in spec.data:
        absolute = _absolute(entry)
        try:
            found = resolve_data([absolute], limit=spec.limit, select=spec.select, log=log)
        except UserError as exc:
            raise UserError(f"data.sources: {exc}") from None
        label = "built-in" if is_builtin(entry) else _kind(absolute)
        labels[label] = labels.get(label, 0) + 1
        if label != "built-in" and labels[label] > 1:
            label = f"{label}:{Path(absolute.partition(':')[2] or absolute).name}"
        out.extend(Source(label, s) for s in found)
    seen: set[str] = set()
    for s in out:
        if s.source.name in seen:
            raise UserError(f"data.sources: pair {s.source.name!r} occurs twice; list each pair "
                            "or folder once")
        seen.add(s.source.name)
    return out


def _absolute(entry: str) -> str:
    if is_builtin(entry):
        return entry
    kind, sep, rest = entry.partition(":")
    if sep and kind in KINDS:
        return f"{kind}:{Path(rest).resolve()}" if rest else entry
    return str(Path(entry).resolve()) if Path(entry).exists() else entry


def _kind(entry: str) -> str:
    try:
        return parse_spec(entry)[0]
    except UserError:
        return "data"


def expand(spec: Spec, sources: list[Source]) -> list[Unit]:
    """Every unit of the study, in run order: pair, size, setting, seed."""
    per_setting = []  # what each setting's units share: (setting, its key, params, checkpoint)
    for s in spec.settings:
        per_setting.append((s, setting_key(s), key_params(s), dict(s.resolved).get("checkpoint_sha256")))
    units = []
    for src in sources:
        for size in spec.max_sizes:
            for s, skey, params, sha in per_setting:
                seeds = [None] if s.method == "exact" else spec.seeds
                for seed in seeds:
                    ident = dict(v=KEY_VERSION, pair=src.source.name, origin=src.source.origin,
                                 max_size=size, method=s.method, params=params,
                                 seed=seed, repeats=spec.repeats, device=spec.device,
                                 threads=spec.threads, timing=spec.timing)
                    units.append(Unit(
                        key=_hash(ident), setting_key=skey, pair=src.source.name,
                        origin=src.source.origin, max_size=size, method=s.method,
                        given=s.given, resolved=s.resolved, seed=seed, repeats=spec.repeats,
                        device=spec.device, threads=spec.threads, timing=spec.timing,
                        checkpoint_sha256=sha))
    return units


def setting_labels(settings: list[Setting]) -> dict[str, str]:
    """Short legend label of each setting (by setting key): the method and the parameters that
    vary among that method's settings, e.g. ``dpm window=50x50 keep_current=true``."""
    by_method: dict[str, list[Setting]] = {}
    for s in settings:
        by_method.setdefault(s.method, []).append(s)
    out = {}
    for method, group in by_method.items():
        varying = [k for k in dict.fromkeys(k for s in group for k, _ in s.given)
                   if len({dict(s.resolved).get(k) for s in group}) > 1]
        for s in group:
            p = dict(s.resolved)
            parts = [f"{k}={_fmt_value(p.get(k))}" for k in varying if k in p]
            out[setting_key(s)] = " ".join([method, *parts])
    return out


def param_columns() -> list[str]:
    """The setting columns of the results table: every schema parameter, windows split."""
    cols: list[str] = []
    for schema in METHOD_PARAMS.values():
        for k, p in schema.items():
            names = ["window_h", "window_w"] if p.kind == "window" else [k]
            if k in ("patch_size", "max_pixels"):
                continue
            cols.extend(n for n in names if n not in cols)
    return cols


def param_values(unit: Unit) -> dict:
    """A unit's values for :func:`param_columns` (None where its method has no such one)."""
    p = unit.params
    out = dict.fromkeys(param_columns())
    for k, v in p.items():
        if k == "window":
            out["window_h"], out["window_w"] = float(v[0]), float(v[1])
        elif k == "quirks":
            out[k] = "+".join(v) if v else ""
        elif k in out:
            out[k] = v
    return out


__all__ = ["Spec", "Setting", "Unit", "Source", "Param", "METHOD_PARAMS", "TIMING_MODES",
           "load_spec", "parse_spec_dict", "resolve_settings", "resolve_sources", "expand",
           "setting_labels", "setting_key", "param_columns", "param_values", "method_defaults",
           "file_sha256"]

"""The registry's parts: :class:`Param`, :class:`Method`, :class:`Named`, :class:`Context`, the two
tables (:data:`METHODS`, :data:`NAMED`) and the functions that fill and read them. The suite's own
methods are registered in :mod:`.registry`; see its docstring for what a registration holds.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # annotations only
    from ..options import Kind
    from .timed import MethodRun

_NOTHING = object()


@dataclass(frozen=True)
class Param:
    """One parameter of a method.

    ``arg``: passed to the library as a keyword argument (False: read by the suite itself, like a
    checkpoint's path or the exact NNF's size limit). ``key``: part of the unit key (False: it
    does not change the numbers). ``earlier``: for a parameter added after studies were run, the
    value that reproduces the earlier behaviour; at that value it stays out of the unit key, so
    those studies keep their finished units. ``column``: a column of a study's results.
    """

    kind: Kind
    doc: str
    arg: bool = True
    key: bool = True
    earlier: Any = _NOTHING
    column: bool = True

    def at_earlier(self, value) -> bool:
        return self.earlier is not _NOTHING and value == self.earlier


@dataclass
class Context:
    """Where a unit runs: the resolved torch device, CPU threads, and its checkpoints.

    ``checkpoints``: checkpoint content by SHA-256; ``loader(data, *, device, options) ->
    (model, info)`` turns one into a ready-to-run DPM (handed in by the command line, which alone
    may import :mod:`learning`).
    """

    device: str
    threads: int
    checkpoints: dict[str, bytes] = field(default_factory=dict)
    loader: Callable | None = None

    def checkpoint_model(self, sha: str, options: dict):
        """The learnt DPM of checkpoint ``sha`` with ``options`` on top (built once per process)."""
        cache = (sha, json.dumps(options, sort_keys=True, default=list), self.device)
        if cache not in _MODELS:
            if sha not in self.checkpoints or self.loader is None:
                raise RuntimeError("a checkpoint setting needs the checkpoint's content and a loader")
            _MODELS[cache] = self.loader(self.checkpoints[sha], device=self.device, options=options)[0]
        return _MODELS[cache]


_MODELS: dict[tuple, object] = {}  # checkpoint models built in this process


#: What a method can be to a reader (see :class:`Method`).
ROLES = ("matcher", "limit", "baseline")


@dataclass(frozen=True)
class Method:
    """One method: see the module docstring.

    ``prepare(params, options, context) -> run``: ``params`` are the unit's resolved parameters,
    ``options`` the given ones that reach the library, ``run(pair, *, seed, progress=None)`` one
    timed run (:class:`~experiments.methods.timed.MethodRun`). ``defaults()``: the library's
    defaults of the parameters. ``seeded``: whether the seed changes its numbers (False: one unit
    per pair and size). ``validate(options)``: raises ``TypeError``/``ValueError`` for options the
    library refuses. ``skip(params, pair, device)``: why a pair is not run (None: it is).
    ``reports(params)``: the iterations a run reports, when not 1..``iterations``. ``role``: what
    the method is to a reader, one of :data:`ROLES`: a ``matcher`` (a method under comparison), a
    ``limit`` (the exact NNF: what a matcher of the same patches can reach, drawn as a level line
    and left out of budgets and Pareto fronts) or a ``baseline`` (what "good" means: no matching
    at all; in every table, never a candidate). ``checkpoint_settings``: a checkpoint given to the
    method supplies its settings too (a learnt DPM), not only features (the other parameters then
    keep the library's defaults).
    """

    name: str
    label: str
    params: dict[str, Param]
    prepare: Callable[[dict, dict, Context], Callable[..., MethodRun]]
    defaults: Callable[[], dict]
    seeded: bool = True
    validate: Callable[[dict], Any] | None = None
    skip: Callable[[dict, Any, str], str | None] | None = None
    reports: Callable[[dict], list[int]] | None = None
    role: str = "matcher"
    checkpoint_settings: bool = False

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"method {self.name!r}: role must be one of {', '.join(ROLES)}, got {self.role!r}")

    def iterations(self, params: dict) -> list[int] | None:
        """The iteration numbers a run reports: ``reports(params)`` when declared, else 1..n for
        a method with an ``iterations`` parameter; None when only the run can tell."""
        if self.reports is not None:
            return list(self.reports(params))
        n = params.get("iterations") if "iterations" in self.params else None
        return None if n is None else list(range(1, int(n) + 1))


@dataclass(frozen=True)
class Named:
    """A method with some parameters fixed, under its own name (``compare``'s vocabulary).

    ``needs``: parameters the user must supply (``dpm-learned`` needs a ``checkpoint``).
    ``marker`` and ``linestyle`` draw it in figures.
    """

    name: str
    method: str
    label: str
    given: tuple[tuple[str, Any], ...] = ()
    needs: tuple[str, ...] = ()
    marker: str = "o"
    linestyle: Any = "-"


METHODS: dict[str, Method] = {}
NAMED: dict[str, Named] = {}


def register(method: Method, *named: Named) -> Method:
    """Add ``method`` (and named settings of it) to the registry; names must be new."""
    taken = [n for n in [method.name, *(s.name for s in named)] if n in NAMED or n in METHODS]
    if taken:
        raise ValueError(f"method name {taken[0]!r} is registered already")
    for s in named:
        if s.method != method.name:
            raise ValueError(f"named setting {s.name!r} is of {s.method!r}, not {method.name!r}")
        unknown = [k for k, _ in s.given if k not in method.params]
        if unknown:
            raise ValueError(f"named setting {s.name!r}: {method.name} has no parameter {unknown[0]!r}")
    METHODS[method.name] = method
    if not any(s.name == method.name for s in named):
        NAMED[method.name] = Named(method.name, method.name, method.label)
    for s in named:
        NAMED[s.name] = s
    return method


def name_settings(*named: Named) -> None:
    """Add named settings of methods registered already (they take this place in the tables' order)."""
    for s in named:
        if s.name in NAMED or s.name in METHODS:
            raise ValueError(f"method name {s.name!r} is registered already")
        unknown = [k for k, _ in s.given if k not in METHODS[s.method].params]
        if unknown:
            raise ValueError(f"named setting {s.name!r}: {s.method} has no parameter {unknown[0]!r}")
        NAMED[s.name] = s


def unregister(name: str) -> None:
    """Remove a method and its named settings (tests register toy methods)."""
    METHODS.pop(name, None)
    for n in [n for n, s in NAMED.items() if s.method == name]:
        del NAMED[n]


def label(name: str) -> str:
    """The long label of a named setting or method (the name itself when unknown)."""
    s = NAMED.get(name)
    return s.label if s is not None else name


def role(name: str) -> str:
    """The role of a named setting's method (``matcher`` when unknown, like a toy method of a test)."""
    s = NAMED.get(name)
    m = METHODS.get(s.method if s is not None else name)
    return m.role if m is not None else "matcher"


def order(names) -> list[str]:
    """``names`` in registration order (unknown names last, in their order)."""
    rank = {n: i for i, n in enumerate(NAMED)}
    return sorted(dict.fromkeys(names), key=lambda n: rank.get(n, len(rank)))


def signature_defaults(fn: Callable, params: dict[str, Param]) -> dict:
    """The defaults of ``fn``'s keyword arguments that are parameters, normalised by their kinds."""
    out = {}
    for name, p in inspect.signature(fn).parameters.items():
        if name in params and p.default is not inspect.Parameter.empty:
            out[name] = params[name].kind.check(p.default, f"default {name}")
    return out

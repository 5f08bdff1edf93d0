"""A study resolved into units, once: defaults filled in, checkpoints read, data found.

:func:`plan` turns a :class:`~experiments.run.spec.Spec` (a study's TOML, or ``compare``'s fixed
study) into a :class:`Plan`: every setting with its library's defaults filled in and checked
against the installed method (a DPM option the constructor refuses fails here, before any work),
every checkpoint read once (its SHA-256 and its content from the same bytes, checked by the
loader the command line hands in), every pair source found, and the units in run order.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..data.datasets import KINDS
from ..data.pairs import PairSource
from ..data.resolve import check_subset_options, is_builtin, parse_spec, resolve_data
from ..errors import UserError, first_line, one_line
from ..methods.registry import METHODS
from .spec import Spec
from .units import Setting, Unit, fmt_given, make_units, setting_labels


@dataclass
class Source:
    """A pair source and the dataset it belongs to (for the report)."""

    dataset: str
    source: PairSource


@dataclass
class Plan:
    """What a study runs: its units (in run order), their sources, settings and checkpoints.

    ``labels``: setting key -> legend label; ``datasets``: pair -> dataset; ``checkpoints``:
    SHA-256 -> content; ``checkpoint_info``: SHA-256 -> what the loader said of it.
    """

    spec: Spec
    sources: list[Source]
    settings: list[Setting]
    units: list[Unit]
    labels: dict[str, str]
    datasets: dict[str, str]
    checkpoints: dict[str, bytes] = field(default_factory=dict)
    checkpoint_info: dict[str, dict] = field(default_factory=dict)


def plan(spec: Spec, *, loader: Callable | None = None, log: Callable = print,
         sources: list[PairSource] | None = None) -> Plan:
    """Resolve ``spec`` (see the module docstring); :class:`UserError` (one line) before any work.

    ``loader(data, *, device, options) -> (model, info)`` builds checkpoint models (None: a
    checkpoint setting is refused). ``sources``: the pairs, resolved already (``compare``);
    default: the spec's ``[data]``.
    """
    settings, checkpoints, info = resolve_settings(spec.settings, loader=loader)
    found = (resolve_sources(spec, log=log) if sources is None
             else [Source(s.name.partition("/")[0] if "/" in s.name else "", s) for s in sources])
    units = make_units(settings, [s.source for s in found], max_sizes=spec.max_sizes,
                       seeds=spec.seeds, repeats=spec.repeats, device=spec.device,
                       threads=spec.threads, timing=spec.timing)
    return Plan(spec, found, settings, units, setting_labels(settings),
                {s.source.name: s.dataset for s in found}, checkpoints, info)


def resolve_settings(settings: list[Setting], *, loader: Callable | None = None):
    """Fill each setting's defaults and check that the installed method accepts it.

    Returns ``(settings, checkpoints, info)``: the distinct resolved settings in order, checkpoint
    contents and the loader's facts by SHA-256. Settings that differ only in the order of their
    parameters are one.
    """
    defaults = {m: METHODS[m].defaults() for m in {s.method for s in settings}}
    checkpoints: dict[str, bytes] = {}
    info: dict[str, dict] = {}
    unique: dict[tuple, Setting] = {}
    for s in settings:
        method, d = METHODS[s.method], defaults[s.method]
        where = f"methods.{s.name or s.method}"
        missing = [k for k, _ in s.given if method.params[k].arg and k not in d]
        if missing:
            raise UserError(f"{where}.{missing[0]}: this {method.label} ({s.method}) has no option "
                            f"{missing[0]!r} (it takes {', '.join(d)})")
        if s.checkpoint is not None:
            data = _read(s.checkpoint, where)
            sha = hashlib.sha256(data).hexdigest()
            checkpoints.setdefault(sha, data)
            own = method.checkpoint_settings  # a learnt DPM: the checkpoint's own settings apply
            info[sha] = _check_checkpoint(s, data, where, loader, options=s.options if own else {})
            resolved = dict(({} if own else d), **dict(s.given), checkpoint_sha256=sha)
        else:
            if method.validate is not None:
                try:
                    method.validate(s.options)
                except (TypeError, ValueError) as exc:
                    raise UserError(f"{where} {fmt_given(s)}: {first_line(exc)}") from None
            resolved = dict(d, **dict(s.given))
        out = Setting(s.method, s.given, tuple(sorted(resolved.items())), s.name)
        unique.setdefault((out.method, out.resolved), out)
    return list(unique.values()), checkpoints, info


def _read(path: str, where: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"{where}.checkpoint: cannot read {path}: {exc.strerror or exc}") from None


def _check_checkpoint(s: Setting, data: bytes, where: str, loader, *, options: dict) -> dict:
    """Load the checkpoint once on the CPU with ``options``: its facts, or one line."""
    if loader is None:
        raise UserError(f"{where}.checkpoint: this entry point cannot load checkpoints; use "
                        "`python -m experiments sweep` or `compare --checkpoint`")
    try:
        return loader(data, device="cpu", options=options)[1]
    except UserError as exc:
        raise UserError(f"{where}.checkpoint: {exc}") from None
    except Exception as exc:  # a corrupt or foreign file: say so in one line
        raise UserError(f"{where}.checkpoint: {s.checkpoint} could not be loaded "
                        f"({one_line(exc, empty='no message')}); pass a checkpoint written by "
                        "`python -m experiments train`") from None


def resolve_sources(spec: Spec, log=None) -> list[Source]:
    """The spec's ``[data]`` as pair sources (:func:`experiments.data.resolve.resolve_data`).

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

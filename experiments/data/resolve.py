"""``--data`` values as loadable pair sources: built-in names, ``KIND:PATH``, detected folders.

:func:`resolve_data` is what ``compare`` and a study's ``[data]`` call; :func:`detect_layout`
names the dataset kind of a folder; ``limit`` and ``select`` pick pairs of datasets and folders.
Only layouts are scanned here; nothing is decoded until ``PairSource.load(max_size)``.
"""
from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Callable

from ..errors import UserError
from .builtin import ALL_BUILTIN_PAIRS, builtin_pair
from .datasets import (KINDS, _deeppruner, _hpatches, _is_hpatches_sequence, _kitti, _middlebury,
                       _middlebury_layout, _sintel, _subdirs)
from .pairs import PairSource


# --------------------------------------------------------------------------- layout, selection
# What detect_layout looks for, per kind (also the text of its error messages).
_LOOKED_FOR = {
    "middlebury": "SCENE/im0.png + im1.png (Middlebury)",
    "sintel": "training/clean/ + training/flow/ (MPI-Sintel)",
    "sintel-final": "training/final/ + training/flow/ (MPI-Sintel)",
    "kitti-flow": "training/image_2/ + flow_occ/ (KITTI 2015 flow)",
    "kitti-stereo": "training/image_2/ + image_3/ + disp_occ_0/ (KITTI 2015 stereo)",
    "hpatches": "SEQ/1.ppm (HPatches)",
    "deeppruner": "image_1/ + image_2/ (DeepPruner demo folder)",
}


def detect_layout(path: str | Path) -> str:
    """The dataset kind (one of :data:`KINDS`) whose layout ``path`` has.

    ``path`` may be the dataset root or its ``training`` folder (Sintel, KITTI), a folder of
    scenes / sequences or one of them (Middlebury, HPatches; Middlebury also a folder holding a
    folder of scenes, as ``middlebury:PATH`` reads it), or a DeepPruner ``BASE``. A Sintel
    folder with both passes is ``sintel`` (the clean pass). Raises :class:`UserError` (one line,
    listing what was looked for) when no kind or several match.
    """
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"--data {path} is not a folder")
    sub = _subdirs(path)
    found = []
    if (path / "image_1").is_dir() and (path / "image_2").is_dir():
        found.append("deeppruner")
    if any(_middlebury_layout(path)):  # where middlebury:PATH reads
        found.append("middlebury")
    for root in [path] + [d for d in sub if d.name == "training"]:
        if (root / "flow").is_dir() and (root / "clean").is_dir():
            found.append("sintel")
        elif (root / "flow").is_dir() and (root / "final").is_dir():
            found.append("sintel-final")
        if (root / "image_2").is_dir() and (root / "flow_occ").is_dir():
            found.append("kitti-flow")
        if all((root / d).is_dir() for d in ("image_2", "image_3", "disp_occ_0")):
            found.append("kitti-stereo")
    if _is_hpatches_sequence(path) or any(_is_hpatches_sequence(d) for d in sub):
        found.append("hpatches")
    found = list(dict.fromkeys(found))
    if len(found) == 1:
        return found[0]
    if found:
        raise UserError(f"{path} looks like several datasets ({', '.join(found)}); say which "
                        f"with KIND:PATH, e.g. --data {found[0]}:{path}")
    raise UserError(f"{path} has no known dataset layout; looked for "
                    f"{'; '.join(_LOOKED_FOR.values())}; or say KIND:PATH with KIND in "
                    f"{', '.join(KINDS)}")


def parse_spec(spec: str) -> tuple[str, Path]:
    """``KIND:PATH`` or a bare ``PATH`` -> (kind, path); the kind of a bare path is detected."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in KINDS:
        if not rest:
            raise UserError(f"--data {spec!r} names no folder; write {kind}:PATH")
        path = Path(rest)
    elif sep and re.fullmatch(r"[a-z][a-z0-9-]+", kind) and not Path(spec).exists():
        raise UserError(f"unknown dataset kind {kind!r} in {spec!r}; choose from "
                        f"{', '.join(KINDS)}")
    else:
        kind, path = "", Path(spec)
    if not path.exists():
        raise UserError(f"dataset folder {path} does not exist")
    if not path.is_dir():
        raise UserError(f"--data {path} is a file; pass the dataset's folder")
    return kind or detect_layout(path), path


def resolve_dataset(spec: str, *, limit: int | None = None, select: str | None = None,
                    log: Callable[[str], None] | None = None) -> list[PairSource]:
    """Pairs of a dataset as loadable sources, in sorted name order.

    Parameters
    ----------
    spec : str
        ``KIND:PATH`` (KIND in :data:`KINDS`; ``sintel`` is the clean pass) or a bare ``PATH``
        whose layout :func:`detect_layout` recognises.
    limit : int, optional
        Keep the first ``limit`` pairs (after ``select``).
    select : str, optional
        ``fnmatch`` pattern on the pair name (e.g. ``"sintel-clean/alley_*"``), applied first.
    log : callable, optional
        Receives one-line notes: DeepPruner folders whose paired file names differ, and (when a
        pair is loaded) image files whose NaN or inf pixels were replaced.

    Only the layout is scanned and the ground-truth files' existence checked; nothing is decoded
    until ``PairSource.load(max_size)``. Raises :class:`UserError` (one line) for an unknown or
    ambiguous layout, a missing ground-truth file, an empty dataset or an empty selection.
    """
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit}: give a positive number of pairs")
    kind, path = parse_spec(spec)
    if kind == "middlebury":
        sources = _middlebury(path, log=log)
    elif kind in ("sintel", "sintel-final"):
        sources = _sintel(path, "clean" if kind == "sintel" else "final", log=log)
    elif kind in ("kitti-flow", "kitti-stereo"):
        sources = _kitti(path, kind.removeprefix("kitti-"), log=log)
    elif kind == "hpatches":
        sources = _hpatches(path, log=log)
    else:
        sources = _deeppruner(path, log)
    sources.sort(key=lambda s: s.name)
    if select is not None:
        picked = [s for s in sources if fnmatch.fnmatchcase(s.name, select)]
        if not picked:
            raise UserError(f"--select {select!r} matches none of the {len(sources)} pairs of "
                            f"{spec} (names look like {sources[0].name})")
        sources = picked
    return sources[:limit] if limit is not None else sources


def is_builtin(spec: str) -> bool:
    """Whether a ``--data`` value names a built-in pair (a folder of that name takes precedence)."""
    return spec in ALL_BUILTIN_PAIRS and not Path(spec).is_dir()


def check_subset_options(specs: list[str], *, limit: int | None, select: str | None,
                         names: tuple[str, str] = ("--limit", "--select")) -> None:
    """Refuse ``limit``/``select`` when no value of ``specs`` is a dataset or folder.

    They pick pairs of datasets and folders only (built-in pairs are always kept), so with
    built-ins alone they would silently do nothing. ``names`` are the options' names in messages.
    """
    if (limit is None and select is None) or not all(is_builtin(s) for s in specs):
        return
    option = names[1] if select is not None else names[0]
    raise UserError(f"{option} picks pairs of a dataset or folder, but the data are built-in pairs "
                    f"only ({', '.join(specs)}); add a dataset (KIND:PATH or a folder) or drop {option}")


def resolve_data(specs: list[str], *, limit: int | None = None, select: str | None = None,
                 log: Callable[[str], None] | None = None) -> list[PairSource]:
    """Turn ``--data`` values into loadable pair sources, in the order given.

    Each value is a built-in pair name (:data:`experiments.data.builtin.ALL_BUILTIN_PAIRS`), ``KIND:PATH`` or a
    folder whose layout is detected (:func:`resolve_dataset`; ``limit`` and ``select`` apply to each
    dataset or folder, built-in names are always kept). Raises :class:`UserError` for unknown
    names, bad folders and pair names that occur twice.
    """
    sources: list[PairSource] = []
    for spec in specs:
        if is_builtin(spec):
            sources.append(PairSource(spec, f"built-in {spec}", lambda m, n=spec: builtin_pair(n, max_size=m)))
        elif ":" not in spec and not Path(spec).exists():
            raise UserError(f"--data {spec!r} is neither a built-in pair ({', '.join(ALL_BUILTIN_PAIRS)}), "
                            f"nor KIND:PATH (KIND in {', '.join(KINDS)}), nor an existing folder")
        else:
            sources.extend(resolve_dataset(spec, limit=limit, select=select, log=log))
    seen: set[str] = set()
    for s in sources:
        if s.name in seen:
            raise UserError(f"pair name {s.name!r} occurs twice in --data; list each pair or "
                            "folder once (folders with the same name need different names)")
        seen.add(s.name)
    return sources

"""What the figures of a ``compare`` run need beyond the tables: final matches, a few reconstructions.

``OUT/artifacts/<pair>__<method>.npz`` (``Unit.file_key``) holds ``nnf`` (the last iteration's
matches, float32 ``(Ha, Wa, 2)``), ``iterations`` (those of the kept reconstructions) and
``recons`` (uint8 ``(k, Ha, Wa, 3)``). Written atomically after a unit's last row, so an artifact
also marks the unit finished (resume); regenerable, not needed to read the tables.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.pairs import file_stem

STRIP_COLUMNS = 6  # reconstructions kept per method for iterations_<pair>.png


def strip_iterations(n: int, k: int = STRIP_COLUMNS) -> list[int]:
    """The iterations (of 1..n) whose reconstructions are kept for ``iterations_<pair>.png``: the
    ones nearest 1/k, 2/k ... k/k of ``n`` (so the figure's columns are the same fractions of every
    method's iterations), each once; always the last."""
    return sorted(set(column_targets(n, k)))


def column_targets(n: int, k: int = STRIP_COLUMNS) -> list[int]:
    """The iteration (of 1..n) nearest c/k of ``n`` for each column c = 1..k."""
    return [max(1, round(c / k * n)) for c in range(1, k + 1)]


def artifact_path(out: Path, pair: str, method: str) -> Path:
    return Path(out) / "artifacts" / f"{file_stem(pair)}__{method}.npz"


def save_artifact(path: Path, nnf, iterations, recons) -> None:
    """Write one artifact atomically (a temporary file renamed)."""
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, nnf=np.asarray(nnf, np.float32), iterations=np.asarray(iterations),
                        recons=np.stack(recons))
    os.replace(tmp, path)


def load_artifact(out: Path, pair: str, method: str) -> dict | None:
    """The artifact of (pair, method) as a dict of arrays, None when there is none."""
    p = artifact_path(out, pair, method)
    if not p.exists():
        return None
    with np.load(p) as z:
        return {k: z[k] for k in z.files}

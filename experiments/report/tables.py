"""Tables of a ``compare`` run read off ``metrics.csv``: last iterations, seeds, datasets.

* :func:`summary_table`: each (pair, method, seed)'s last iteration (``summary.csv``).
* :func:`per_seed`: a metric per (dataset, pair, method, seed), a method without a seed given for
  every seed of the run (its value does not depend on it), so that methods pair up seed by seed.
* :func:`dataset_table`: per method the mean over a dataset's pairs, and its seed-to-seed
  spread (the standard deviation over seeds of that mean); never a mean across datasets.
* :func:`paired_difference`: method A minus method B on a dataset, seed by seed, with the
  standard error of the mean difference: the noise a difference has to beat.
* :data:`DATASET_VIEWS`: the columns each dataset's community reads.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..methods.registry import order

MEAN_COLUMNS = ["psnr", "ssim", "l1", "mse", "energy", "epe", "within_1px", "within_3px",
                "within_5px", "bad_2_0", "fl", "d1", "epe_noc", "epe_occ", "cum_time_s"]
#: Per dataset kind: its title and the columns its community reads (then PSNR and time for all).
DATASET_VIEWS = {
    "built-in": ("Built-in pairs", [("epe", "EPE px"), ("within_1px", "<=1px")]),
    "middlebury": ("Middlebury stereo", [("epe", "EPE px"), ("bad_2_0", "bad-2.0 %")]),
    "sintel": ("MPI-Sintel clean", [("epe", "EPE all"), ("epe_noc", "EPE noc"),
                                    ("epe_occ", "EPE occ")]),
    "sintel-final": ("MPI-Sintel final", [("epe", "EPE all"), ("epe_noc", "EPE noc"),
                                          ("epe_occ", "EPE occ")]),
    "kitti-flow": ("KITTI 2015 flow", [("epe", "EPE px"), ("fl", "Fl-all %")]),
    "kitti-stereo": ("KITTI 2015 stereo", [("epe", "EPE px"), ("d1", "D1-all %")]),
    "hpatches": ("HPatches", [("epe", "EPE px"), ("within_1px", "<=1px"), ("within_3px", "<=3px"),
                              ("within_5px", "<=5px")]),
}
COMMON_VIEW = [("psnr", "PSNR dB"), ("cum_time_s", "time s")]
FORMATS = {"psnr": "{:.2f}", "ssim": "{:.3f}", "l1": "{:.4f}", "mse": "{:.5f}", "energy": "{:.5f}",
           "epe": "{:.2f}", "epe_noc": "{:.2f}", "epe_occ": "{:.2f}", "within_1px": "{:.3f}",
           "within_3px": "{:.3f}", "within_5px": "{:.3f}", "bad_2_0": "{:.1f}", "fl": "{:.1f}",
           "d1": "{:.1f}", "cum_time_s": "{:.3g}", "iteration": "{:.0f}", "n": "{:.0f}",
           "pairs": "{:.0f}", "seeds": "{:.0f}"}


def view(dataset: str) -> tuple[str, list[tuple[str, str]]]:
    """``(title, [(column, header)])`` of a dataset's table (its label's kind decides)."""
    kind = dataset.partition(":")[0]
    title, cols = DATASET_VIEWS.get(kind, (dataset, [("epe", "EPE px"), ("within_1px", "<=1px")]))
    return (title if kind == dataset else f"{title} ({dataset})"), cols + COMMON_VIEW


def _method_rank(methods) -> dict[str, int]:
    return {m: i for i, m in enumerate(order(methods))}


def summary_table(df):
    """Each (pair, method, seed)'s last iteration (the ``summary.csv`` rows): pairs in run order,
    methods in registry order, then seeds."""
    if df.empty:
        return df
    d = df.assign(_s=df["seed"].fillna(-1))
    last = d.loc[d.groupby(["pair", "method", "_s"], sort=False)["iteration"].idxmax()]
    pairs = {p: i for i, p in enumerate(dict.fromkeys(df["pair"]))}
    rank = _method_rank(last["method"])
    last = last.assign(_p=last["pair"].map(pairs), _m=last["method"].map(rank))
    last = last.sort_values(["_p", "_m", "_s"], kind="stable")
    return last.drop(columns=["_p", "_m", "_s"]).reset_index(drop=True)


def seeds_of(summary) -> list[int]:
    """The run's seeds (those of its seeded methods)."""
    return sorted(int(s) for s in summary["seed"].dropna().unique())


def per_seed(summary, column: str) -> pd.DataFrame:
    """``column`` per (dataset, pair, method, seed) (see the module docstring)."""
    seeds = seeds_of(summary) or [0]
    d = summary[["dataset", "pair", "method", "seed", column]]
    seeded, fixed = d[d["seed"].notna()], d[d["seed"].isna()]
    fixed = fixed.drop(columns="seed").merge(pd.DataFrame({"seed": seeds}), how="cross")
    return pd.concat([seeded, fixed], ignore_index=True).astype({"seed": int})


def dataset_table(summary, dataset: str) -> pd.DataFrame:
    """Per method of ``dataset``: the mean over its pairs of :data:`MEAN_COLUMNS` (for each seed,
    then averaged over seeds), ``<column>_sd`` its standard deviation over seeds (NaN with one
    seed), ``pairs`` and ``seeds``."""
    sub = summary[summary["dataset"] == dataset]
    rows = []
    for method in order(sub["method"]):
        m = sub[sub["method"] == method]
        by_seed = m.assign(_s=m["seed"].fillna(-1)).groupby("_s")[MEAN_COLUMNS].mean(numeric_only=True)
        row = dict(method=method, pairs=m["pair"].nunique(), seeds=len(by_seed))
        for c in MEAN_COLUMNS:
            values = by_seed[c].dropna()
            row[c] = float(values.mean()) if len(values) else math.nan
            row[f"{c}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def paired_difference(summary, dataset: str, a: str, b: str, column: str) -> dict | None:
    """``a - b`` in ``column`` on ``dataset``: per seed the mean over the pairs both ran, then
    ``mean``, ``se`` (standard error over seeds; NaN with one seed), ``seeds`` and ``pairs``.
    None when they share no pair with a value."""
    d = per_seed(summary[summary["dataset"] == dataset], column)
    wide = d.pivot_table(index=["pair", "seed"], columns="method", values=column, aggfunc="mean")
    if a not in wide or b not in wide:
        return None
    diff = (wide[a] - wide[b]).dropna()
    if diff.empty:
        return None
    per = diff.groupby(level="seed").mean()
    n = len(per)
    return dict(mean=float(per.mean()), se=float(per.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
                seeds=n, pairs=diff.index.get_level_values("pair").nunique())


def cell(col: str, v, sd=None) -> str:
    """A table cell: ``-`` for a missing value, the column's format, ``± sd`` when given."""
    if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)):
        return "-"
    fmt = FORMATS.get(col)
    try:
        text = fmt.format(float(v)) if fmt else str(v)
    except (TypeError, ValueError):
        text = str(v)
    if sd is not None and isinstance(sd, (float, np.floating)) and math.isfinite(sd):
        text += " ± " + (fmt.format(float(sd)) if fmt else f"{sd:.3g}")
    return text


def markdown_table(df, cols, *, spread: bool = False) -> str:
    """Markdown table of ``df``; ``cols``: (column, header); ``spread``: add ``± <column>_sd``."""
    text = {"pair", "method", "dataset"}
    head = "| " + " | ".join(h for _, h in cols) + " |"
    sep = "|" + "|".join("---" if c in text else "---:" for c, _ in cols) + "|"
    body = ["| " + " | ".join(cell(c, r.get(c), r.get(f"{c}_sd") if spread else None) for c, _ in cols)
            + " |" for _, r in df.iterrows()]
    return "\n".join([head, sep, *body])

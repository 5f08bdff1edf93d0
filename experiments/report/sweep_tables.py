"""A study's results aggregated: points per setting and iteration, Pareto fronts, equal-time tables.

Aggregation: for each (dataset, size, setting, seed, iteration) the metric and the cumulative
time are averaged over the dataset's pairs; then the median over seeds is drawn, with the
seeds' minimum and maximum as the spread. Every iteration of a unit is an operating point (a run
stopped there gives the same numbers), so Pareto fronts and equal-time tables use them all.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..methods.registry import role

#: Metrics drawn and tabled: (column, label, higher is better).
METRICS = (("psnr", "PSNR (dB)", True), ("epe", "EPE (px)", False))
#: Every metric aggregated (the datasets' own too, for their tables).
AGGREGATED = ("psnr", "epe", "within_1px", "within_3px", "within_5px", "bad_2_0", "fl", "d1",
              "epe_noc", "epe_occ")


BUDGETS = 4  # equal-time budgets per (dataset, size) in the table


# --------------------------------------------------------------------------- aggregation
def _size_label(v) -> str:
    return "native" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{int(v)} px"


def seed_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, size, setting, seed, iteration): metrics and times averaged over pairs."""
    d = df.copy()
    d["size"] = d["max_size"].map(_size_label)
    d["seed"] = d["seed"].fillna(-1)
    d["side"] = d[["height", "width"]].max(axis=1)
    cols = [c for c in AGGREGATED if c in d]
    for c in cols:
        d[c] = pd.to_numeric(d[c], errors="coerce").replace([np.inf, -np.inf], np.nan)
    keys = ["dataset", "size", "setting", "method", "seed", "iteration"]
    agg = {c: "mean" for c in cols}
    agg.update(cum_time_s="mean", side="mean", pair="nunique")
    return d.groupby(keys, sort=False, dropna=False).agg(agg).reset_index()


def point_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, size, setting, iteration): median, min and max over seeds."""
    s = seed_table(df)
    keys = ["dataset", "size", "setting", "method", "iteration"]
    cols = [c for c in AGGREGATED if c in s] + ["cum_time_s", "side"]
    g = s.groupby(keys, sort=False, dropna=False)[cols]
    out = g.median()
    lo, hi = g.min().add_suffix("_min"), g.max().add_suffix("_max")
    out = pd.concat([out, lo, hi], axis=1).reset_index()
    out["seeds"] = s.groupby(keys, sort=False, dropna=False).size().to_numpy()
    return out


def pareto(points: pd.DataFrame, metric: str, higher: bool) -> pd.DataFrame:
    """The points that no other point beats in both time (lower) and ``metric``."""
    p = points.dropna(subset=[metric, "cum_time_s"]).sort_values(["cum_time_s", metric],
                                                                  ascending=[True, not higher])
    best = -np.inf if higher else np.inf
    keep = []
    for i, r in p.iterrows():
        v = r[metric]
        if (v > best) if higher else (v < best):
            keep.append(i)
            best = v
    return p.loc[keep]


def budget_table(points: pd.DataFrame) -> pd.DataFrame:
    """Best (setting, iteration) of each method within equal time budgets.

    Budgets per (dataset, size): :data:`BUDGETS` times, log-spaced from the fastest first
    iteration to the slowest last one of the matchers (the exact NNF and the baselines, whose
    role is not ``matcher``, are no candidates). Best = highest median PSNR among the points whose
    median cumulative time is within the budget.
    """
    rows = []
    for (dataset, size), g in points.groupby(["dataset", "size"], sort=False):
        g = g[g["method"].map(role) == "matcher"].dropna(subset=["psnr", "cum_time_s"])
        if g.empty:
            continue
        lo, hi = g["cum_time_s"].min(), g["cum_time_s"].max()
        budgets = np.geomspace(lo, hi, BUDGETS) if hi > lo > 0 else [hi]
        for budget in budgets:
            for method, m in g.groupby("method", sort=False):
                ok = m[m["cum_time_s"] <= budget * (1 + 1e-9)]
                if ok.empty:
                    rows.append(dict(dataset=dataset, size=size, budget_s=budget, method=method))
                    continue
                best = ok.loc[ok["psnr"].idxmax()]
                rows.append(dict(dataset=dataset, size=size, budget_s=budget, method=method,
                                 setting=best["setting"], iteration=int(best["iteration"]),
                                 psnr=best["psnr"], epe=best["epe"],
                                 time_s=best["cum_time_s"]))
    return pd.DataFrame(rows)


def final_table(points: pd.DataFrame) -> pd.DataFrame:
    """Each setting's last iteration per (dataset, size)."""
    idx = points.groupby(["dataset", "size", "setting"], sort=False)["iteration"].idxmax()
    return points.loc[idx].reset_index(drop=True)


# --------------------------------------------------------------------------- REPORT.md
def _fmt(v, fmt: str) -> str:
    """A table cell: ``-`` for missing values, ``fmt`` for numbers ("" : as text)."""
    if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)):
        return "-"
    if fmt and isinstance(v, (int, float, np.integer, np.floating)):
        return fmt.format(float(v))
    return str(v)


def _md(df: pd.DataFrame, cols: list[tuple[str, str, str]]) -> str:
    """Markdown table of ``df``; ``cols``: (column, header, format; "" for text)."""
    head = "| " + " | ".join(h for _, h, _ in cols) + " |"
    sep = "|" + "|".join("---" if f == "" else "---:" for _, _, f in cols) + "|"
    body = ["| " + " | ".join(_fmt(r.get(c), f) for c, _, f in cols) + " |"
            for _, r in df.iterrows()]
    return "\n".join([head, sep, *body])


def timing_conditions(df: pd.DataFrame) -> list[str]:
    """Sentences on how the timings were taken: repeats, threads, contention."""
    if df.empty:
        return ["No unit finished."]
    units = df.drop_duplicates("unit")
    n = len(units)
    lines = []
    repeats = sorted(units["repeats"].unique())
    lines.append(f"Every timed run was repeated {', '.join(map(str, repeats))} time(s); "
                 "`time_s` is the median per iteration, `time_min_s`/`time_max_s` the extremes "
                 "(JIT compilation, reconstructions and metrics excluded).")
    thr = sorted({(int(a), int(b)) for a, b in zip(units["torch_threads"], units["numba_threads"])})
    lines.append("Threads in force during the timed runs (torch, numba): "
                 + ", ".join(f"({a}, {b})" for a, b in thr) + ".")
    hosts = units.groupby("host")["host_cores"].max()
    workers = units["worker"].nunique()
    lines.append(f"{n} units ran on {len(hosts)} host(s) ("
                 + ", ".join(f"{h}: {c} cores" for h, c in hosts.items())
                 + f"), {workers} worker(s); timing mode: "
                 + ", ".join(sorted(units["timing"].unique())) + ".")
    busy = units[units["concurrent_units"] > 0]
    timed = units[units["concurrent_timed"] > 0]
    peak = units["concurrent_max"].fillna(units["concurrent_units"]).astype(int)
    over = units[(peak + 1) * units["threads"] > units["host_cores"]]
    if len(busy):
        lines.append(
            f"**Timings were taken under contention:** {len(busy)} of {n} units had other units "
            f"of this suite running on the same host during their timed section (up to "
            f"{int(peak.max())} at the same moment, up to {int(units['concurrent_units'].max())} "
            f"one after another); {len(timed)} overlapped another unit's timed section; "
            f"{len(over)} had more of this suite's threads busy on the host than it has cores at "
            "some moment. Compare times within one sweep, and prefer `--timing exclusive` (or "
            "one worker per host) for absolute numbers.")
    else:
        lines.append("No other unit of this suite ran on the same host during any timed section.")
    load = units["load_avg_1m"].astype(float)
    if load.notna().any():
        lines.append(f"Host load average (1 min) at the end of the timed sections: median "
                     f"{load.median():.2f}, max {load.max():.2f} (other programs count too).")
    if not units["repeats_agree"].astype(bool).all():
        bad = int((~units["repeats_agree"].astype(bool)).sum())
        lines.append(f"Note: in {bad} units the repeats did not give identical final NNFs "
                     "(quality columns are those of the first repeat).")
    return lines

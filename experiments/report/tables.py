"""Tables of a ``compare`` run read off ``metrics.csv``: the last iteration, the means over pairs."""
from __future__ import annotations

from ..methods.registry import order

MEAN_COLUMNS = ["psnr", "ssim", "l1", "mse", "energy", "epe", "within_1px", "cum_time_s"]


def _method_rank(methods) -> dict[str, int]:
    return {m: i for i, m in enumerate(order(methods))}


def summary_table(df):
    """Each (pair, method)'s last iteration (the ``summary.csv`` rows): pairs in run order,
    methods in registry order."""
    if df.empty:
        return df
    last = df.loc[df.groupby(["pair", "method"], sort=False)["iteration"].idxmax()]
    pairs = {p: i for i, p in enumerate(dict.fromkeys(df["pair"]))}
    rank = _method_rank(last["method"])
    last = last.assign(_p=last["pair"].map(pairs), _m=last["method"].map(rank))
    return last.sort_values(["_p", "_m"], kind="stable").drop(columns=["_p", "_m"]).reset_index(drop=True)


def method_means(summary):
    """Mean of the last-iteration metrics over the pairs, per method (pairs with GT for EPE)."""
    g = summary.groupby("method", sort=False)[MEAN_COLUMNS].mean(numeric_only=True).reset_index()
    g["n"] = summary.groupby("method", sort=False).size().to_numpy()
    rank = _method_rank(g["method"])
    return g.sort_values("method", key=lambda s: s.map(rank), kind="stable")

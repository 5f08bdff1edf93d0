"""The statistics of the learning study: per-pair means, summaries with spreads, paired differences.

The unit of every standard error is the **test pair**: a feature set's number on a pair is its mean
over the matcher's seeds and (for trained features) the training seeds; a paired difference
between two feature sets (or matchers) is taken pair by pair, and its standard error is the
standard deviation of those differences over the pairs divided by sqrt(pairs). The spread over
seeds (evaluation and training seeds) is reported beside it, never instead of it.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

__all__ = ["METRICS", "with_groups", "pair_means", "summary", "paired", "per_seed_relative"]

#: The metrics of the study's tables (mean and median end-point error in px, fraction within
#: 1 px, PSNR in dB).
METRICS = ("epe", "median_epe", "within_1px", "psnr")


def with_groups(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``group`` column: the feature set without its training seed (`` sN``), so the
    training seeds of one arm form one group; baselines are grouped by matcher (``zero``, ``random``)."""
    df = df.copy()
    df["group"] = [m if fs == "-" else re.sub(r" s\d+$", "", fs) for fs, m in zip(df["feature_set"], df["matcher"])]
    return df


def pair_means(df: pd.DataFrame, *, texture: str | None = None) -> pd.DataFrame:
    """Per (group, matcher, pair): the mean of :data:`METRICS` over seeds and training seeds
    (``texture``: only the pairs of that class)."""
    df = with_groups(df) if "group" not in df else df
    if texture is not None:
        df = df[df["texture"] == texture]
    return df.groupby(["group", "matcher", "pair", "texture"], sort=False)[list(METRICS)].mean().reset_index()


def summary(df: pd.DataFrame, *, texture: str | None = None) -> pd.DataFrame:
    """Per (group, matcher): mean over pairs of :func:`pair_means` (columns :data:`METRICS`), the
    number of pairs ``n``, and ``<metric>_spread``: the standard deviation, over the runs' seeds
    (evaluation seed x training seed), of the mean over pairs (0 for a single run)."""
    df = with_groups(df) if "group" not in df else df
    if texture is not None:
        df = df[df["texture"] == texture]
    g = pair_means(df).groupby(["group", "matcher"], sort=False)
    means = g[list(METRICS)].mean()
    means["n"] = g["pair"].nunique()
    runs = df.assign(seed=df["seed"].fillna(-1), train_seed=df["train_seed"].fillna(-1))
    per_run = runs.groupby(["group", "matcher", "train_seed", "seed"], sort=False)[list(METRICS)].mean()
    spread = per_run.groupby(["group", "matcher"], sort=False).std(ddof=1).fillna(0.0)
    return means.join(spread.add_suffix("_spread")).reset_index()


def paired(df: pd.DataFrame, a: tuple[str, str], b: tuple[str, str], *, metric: str = "epe",
           texture: str | None = None) -> dict:
    """Paired difference ``a - b`` of ``metric`` over the test pairs both have.

    ``a``, ``b``: ``(group, matcher)``. Returns ``n`` (pairs), ``a``, ``b`` (means over those
    pairs), ``diff`` (mean of the per-pair differences), ``se`` (its standard error: sd / sqrt(n);
    NaN for n < 2), ``rel`` (``diff / b``) and ``rel_se`` (``se / b``), ``z`` (``diff / se``).
    """
    pm = pair_means(df, texture=texture)
    pa = pm[(pm["group"] == a[0]) & (pm["matcher"] == a[1])].set_index("pair")[metric]
    pb = pm[(pm["group"] == b[0]) & (pm["matcher"] == b[1])].set_index("pair")[metric]
    both = pa.index.intersection(pb.index)
    d = (pa[both] - pb[both]).to_numpy(float)
    n = len(d)
    if n == 0:
        return dict(n=0, a=math.nan, b=math.nan, diff=math.nan, se=math.nan, rel=math.nan, rel_se=math.nan,
                    z=math.nan)
    mean_b = float(pb[both].mean())
    diff = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return dict(n=n, a=float(pa[both].mean()), b=mean_b, diff=diff, se=se,
                rel=diff / mean_b if mean_b else math.nan, rel_se=se / mean_b if mean_b else math.nan,
                z=diff / se if se and se == se else math.nan)


def per_seed_relative(df: pd.DataFrame, arm_group: str, b: tuple[str, str], matcher: str, *,
                      metric: str = "epe", texture: str | None = None) -> dict[int, float]:
    """``mean(a) / mean(b) - 1`` for each training seed of ``arm_group`` with ``matcher`` (pairs both
    have; evaluation seeds averaged): how much the gain moves from one training seed to another."""
    df = with_groups(df)
    if texture is not None:
        df = df[df["texture"] == texture]
    pb = df[(df["group"] == b[0]) & (df["matcher"] == b[1])].groupby("pair")[metric].mean()
    out = {}
    arm = df[(df["group"] == arm_group) & (df["matcher"] == matcher)]
    for seed, rows in arm.groupby("train_seed"):
        pa = rows.groupby("pair")[metric].mean()
        both = pa.index.intersection(pb.index)
        out[int(seed)] = float(np.mean(pa[both]) / np.mean(pb[both]) - 1.0) if len(both) else math.nan
    return out

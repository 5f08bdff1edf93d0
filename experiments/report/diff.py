"""Two ``compare`` runs side by side: ``python -m experiments diff RUN_A RUN_B``.

Per (pair, method) present in both runs: each quality metric of B minus A at the last iteration
(means over seeds), and the ratio of B's compute time to A's. Where both runs have several seeds,
a difference is flagged when it exceeds twice its standard error (the two runs' seed spreads
combined); with one seed no flag can be given and the output says so. ``--fail-above PCT``:
the exit status is 1 when B is worse than A by more than PCT percent in any quality metric of
any (pair, method) (PSNR, SSIM and the within-N-px fractions lower, the errors higher).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..errors import UserError
from .tables import summary_table

#: Quality metrics compared, and whether higher is better.
QUALITY = {"psnr": True, "ssim": True, "l1": False, "mse": False, "energy": False, "epe": False,
           "within_1px": True}


def load_run(folder: str | Path) -> pd.DataFrame:
    """A run's ``metrics.csv`` as its last iterations (:func:`summary_table`); one-line errors."""
    path = Path(folder) / "metrics.csv"
    if not path.is_file():
        raise UserError(f"{folder} holds no metrics.csv; give the --out folder of a `compare` run")
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is unreadable ({exc})") from None
    missing = [c for c in ("pair", "method", "iteration", "seed", "cum_time_s") if c not in df]
    if missing:
        raise UserError(f"{path} has no column {missing[0]!r}; is it a metrics.csv of `compare`?")
    return summary_table(df)


def _stats(summary: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in [*QUALITY, "cum_time_s"] if c in summary]
    g = summary.groupby(["pair", "method"], sort=False)[cols]
    return (g.mean().join(g.std(ddof=1).add_suffix("_sd")).join(g.size().rename("n"))).reset_index()


def compare_runs(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """One row per (pair, method) in both runs: ``d_<metric>`` (B - A), ``rel_<metric>`` (B's change
    in percent, signed so that negative is worse), ``flag_<metric>`` (beyond twice the standard
    error; None without seed spread), ``time_ratio`` (B / A)."""
    m = _stats(a).merge(_stats(b), on=["pair", "method"], suffixes=("_a", "_b"))
    out = m[["pair", "method"]].copy()
    for c, higher in QUALITY.items():
        if f"{c}_a" not in m:
            continue
        va, vb = m[f"{c}_a"], m[f"{c}_b"]
        out[f"d_{c}"] = vb - va
        sign = 1.0 if higher else -1.0
        out[f"rel_{c}"] = [sign * (y - x) / abs(x) * 100 if math.isfinite(x) and x != 0 and math.isfinite(y)
                           else math.nan for x, y in zip(va, vb)]
        se = ((m[f"{c}_sd_a"] ** 2 / m["n_a"]) + (m[f"{c}_sd_b"] ** 2 / m["n_b"])) ** 0.5
        several = (m["n_a"] > 1) & (m["n_b"] > 1)
        out[f"flag_{c}"] = [bool(abs(d) > 2 * e) if ok and math.isfinite(e) else None
                            for d, e, ok in zip(out[f"d_{c}"], se, several)]
    out["time_ratio"] = m["cum_time_s_b"] / m["cum_time_s_a"]
    return out


def render(table: pd.DataFrame, *, fail_above: float | None) -> tuple[list[str], int]:
    """The printed lines and the exit status (1: a regression beyond ``fail_above`` percent)."""
    lines, worse = [], []
    for _, r in table.iterrows():
        parts = []
        for c in QUALITY:
            d = r.get(f"d_{c}")
            if d is None or not math.isfinite(d):
                continue
            parts.append(f"{c} {d:+.4g}" + ("*" if r.get(f"flag_{c}") else ""))
            rel = r.get(f"rel_{c}")
            if fail_above is not None and rel is not None and math.isfinite(rel) and rel < -fail_above:
                worse.append(f"{r['pair']} {r['method']} {c} {rel:+.1f}%")
        ratio = r["time_ratio"]
        lines.append(f"{r['pair']:<20s} {r['method']:<13s} " + "  ".join(parts)
                     + (f"  time x{ratio:.2f}" if math.isfinite(ratio) else ""))
    flags = [c for c in QUALITY if f"flag_{c}" in table and table[f"flag_{c}"].notna().any()]
    lines.append("(* beyond twice the standard error of the seeds)" if flags
                 else "(one seed in a run: differences are not judged against a seed spread)")
    if worse:
        lines.append(f"{len(worse)} regression(s) beyond {fail_above:g}%: " + "; ".join(worse))
    return lines, 1 if worse else 0


def diff_runs(run_a: str | Path, run_b: str | Path, *, fail_above: float | None = None) -> tuple[list[str], int]:
    """Read two runs and compare them (see the module docstring): ``(lines, exit status)``."""
    a, b = load_run(run_a), load_run(run_b)
    table = compare_runs(a, b)
    if table.empty:
        raise UserError(f"{run_a} and {run_b} share no (pair, method); nothing to compare")
    only = sorted(set(zip(a["pair"], a["method"])) ^ set(zip(b["pair"], b["method"])))
    lines, status = render(table, fail_above=fail_above)
    head = [f"B = {run_b} against A = {run_a}: B - A at the last iteration, per (pair, method)"]
    settings = [_run_settings(run_a), _run_settings(run_b)]
    changed = [k for k in dict.fromkeys([*settings[0], *settings[1]])
               if k != "pairs" and settings[0].get(k) != settings[1].get(k)]
    if changed:
        head.append("settings that differ: " + "; ".join(
            f"{k} {settings[0].get(k)!r} -> {settings[1].get(k)!r}" for k in changed))
    if only:
        head.append(f"({len(only)} (pair, method) in one run only, left out)")
    return head + lines, status


def _run_settings(folder) -> dict:
    """The settings that define a run's numbers (config.json's ``run``; empty when unreadable)."""
    try:
        return json.loads((Path(folder) / "config.json").read_text()).get("run", {})
    except (OSError, ValueError):
        return {}

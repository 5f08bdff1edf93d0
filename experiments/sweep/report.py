"""``REPORT.md`` and figures of a sweep (matplotlib, Agg backend).

Aggregation: for each (dataset, size, setting, seed, iteration) the metric and the cumulative
time are averaged over the dataset's pairs; then the median over seeds is drawn, with the
seeds' minimum and maximum as the spread. Every iteration of a unit is an operating point (a run
stopped there gives the same numbers), so Pareto fronts and equal-time tables use them all.

* ``quality_time_<metric>.png``: metric against cumulative time, one panel per (dataset, size);
  a line per setting through its iterations, its last iteration marked with the seeds' spread;
  the Pareto front (best quality reachable in at most that time) in black.
* ``quality_iteration_<metric>.png``: metric against iteration with seed bands.
* ``quality_size.png``: the last iteration's metrics against image size.
* ``REPORT.md``: setup, timing conditions (contention), tables (best setting of each method at
  equal time budgets, all settings), failures, figures.
"""
from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from ..figures import METHOD_MARKER as MARKERS  # noqa: E402
from ..figures import _save as _save_figure  # noqa: E402

#: Metrics drawn and tabled: (column, label, higher is better).
METRICS = (("psnr", "PSNR (dB)", True), ("epe", "EPE (px)", False))
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
    for c, _, _ in METRICS:
        d[c] = d[c].replace([np.inf, -np.inf], np.nan)
    keys = ["dataset", "size", "setting", "method", "seed", "iteration"]
    agg = {c: "mean" for c, _, _ in METRICS}
    agg.update(cum_time_s="mean", side="mean", pair="nunique")
    return d.groupby(keys, sort=False, dropna=False).agg(agg).reset_index()


def point_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, size, setting, iteration): median, min and max over seeds."""
    s = seed_table(df)
    keys = ["dataset", "size", "setting", "method", "iteration"]
    cols = [c for c, _, _ in METRICS] + ["cum_time_s", "side"]
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
    iteration to the slowest last one of the non-exact methods. Best = highest median PSNR among
    the points whose median cumulative time is within the budget.
    """
    rows = []
    for (dataset, size), g in points.groupby(["dataset", "size"], sort=False):
        g = g[g["method"] != "exact"].dropna(subset=["psnr", "cum_time_s"])
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


# --------------------------------------------------------------------------- figures
def _save(fig, path: Path) -> str:
    """Save as a 256-colour PNG without dithering (:func:`experiments.figures._save`)."""
    return _save_figure(fig, path, photo=True, dither=Image.Dither.NONE)


def _colours(settings: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10" if len(settings) <= 10 else "tab20")
    return {s: cmap(i % cmap.N) for i, s in enumerate(settings)}


def _style(settings: pd.Series, methods: pd.Series) -> tuple[dict, dict]:
    """Colour per setting (in order of appearance) and the method of each setting."""
    colours = _colours(list(dict.fromkeys(settings)))
    return colours, dict(zip(settings, methods))


def _panels(points: pd.DataFrame):
    """One panel per (dataset, size): the figure, its axes, and (axes, title, rows) per panel."""
    datasets = list(dict.fromkeys(points["dataset"]))
    sizes = list(dict.fromkeys(points["size"]))
    fig, axes = plt.subplots(len(datasets), len(sizes), squeeze=False,
                             figsize=(4.2 * len(sizes) + 2.5, 3.4 * len(datasets)))
    panels = [(axes[i, j], f"{ds}, {size}",
               points[(points["dataset"] == ds) & (points["size"] == size)])
              for i, ds in enumerate(datasets) for j, size in enumerate(sizes)]
    return fig, axes, panels


def _label_panel(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)


def _legend(axes, colours: dict, methods: dict) -> None:
    handles = [plt.Line2D([], [], color=c, marker=MARKERS.get(methods.get(s), "o"), label=s)
               for s, c in colours.items()]
    axes[0, -1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       fontsize=7, frameon=False)


def _plot_settings(points: pd.DataFrame, metric: str, path: Path, title: str, draw, finish, *,
                   draw_exact: bool) -> str | None:
    """One panel per (dataset, size); per setting ``draw(ax, h, colour, marker)`` with ``h`` its rows
    by iteration (the exact NNF: a dotted line at its value, and ``draw`` too if ``draw_exact``);
    then ``finish(ax, panel_title, g)`` per panel."""
    if points[metric].notna().sum() == 0:
        return None
    colours, methods = _style(points["setting"], points["method"])
    fig, axes, panels = _panels(points)
    for ax, panel_title, g in panels:
        for s, h in g.groupby("setting", sort=False):
            h = h.sort_values("iteration")
            exact = methods[s] == "exact"
            if exact:
                ax.axhline(h[metric].iloc[-1], color=colours[s], ls=":", lw=1)
            if draw_exact or not exact:
                draw(ax, h, colours[s], MARKERS.get(methods[s], "o"))
        finish(ax, panel_title, g)
    _legend(axes, colours, methods)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_quality_time(points: pd.DataFrame, metric: str, label: str, higher: bool,
                      path: Path) -> str | None:
    """Metric against cumulative time per (dataset, size); Pareto front in black."""
    def draw(ax, h, c, mk):
        ax.plot(h["cum_time_s"], h[metric], color=c, lw=0.8, alpha=0.6)
        last = h.iloc[-1]
        ax.errorbar(last["cum_time_s"], last[metric],
                    xerr=[[last["cum_time_s"] - last["cum_time_s_min"]],
                          [last["cum_time_s_max"] - last["cum_time_s"]]],
                    yerr=[[last[metric] - last[f"{metric}_min"]],
                          [last[f"{metric}_max"] - last[metric]]],
                    color=c, marker=mk, ms=5, lw=0.8, capsize=2)

    def finish(ax, panel_title, g):
        front = pareto(g[g["method"] != "exact"], metric, higher)
        if len(front):  # the best value reachable within each time, to the panel's end
            xs = [*front["cum_time_s"], g["cum_time_s_max"].max()]
            ys = [*front[metric], front[metric].iloc[-1]]
            ax.step(xs, ys, where="post", color="k", lw=1.2, ls="--")
        ax.set_xscale("log")
        _label_panel(ax, panel_title, "cumulative time (s, median of repeats)", label)
        ax.grid(alpha=0.3, which="both")

    return _plot_settings(points, metric, path, f"{label} against time (median over seeds; bars: seeds' "
                          "min-max; dashed: Pareto front)", draw, finish, draw_exact=True)


def plot_quality_iteration(points: pd.DataFrame, metric: str, label: str, path: Path) -> str | None:
    """Metric against iteration with the seeds' band, per (dataset, size)."""
    def draw(ax, h, c, mk):
        ax.plot(h["iteration"], h[metric], color=c, lw=1, marker=mk, ms=2.5)
        ax.fill_between(h["iteration"], h[f"{metric}_min"], h[f"{metric}_max"], color=c, alpha=0.18, lw=0)

    def finish(ax, panel_title, g):
        _label_panel(ax, panel_title, "iteration", label)
        ax.grid(alpha=0.3)

    return _plot_settings(points, metric, path, f"{label} against iteration (median over seeds; band: seeds' "
                          "min-max; dotted: exact NNF)", draw, finish, draw_exact=False)


def plot_quality_size(finals: pd.DataFrame, path: Path) -> str | None:
    """Last-iteration metrics against image size (longer side), one column per dataset."""
    metrics = [(c, lab) for c, lab, _ in METRICS if finals[c].notna().any()]
    if not metrics or finals["side"].nunique() < 2:
        return None
    colours, methods = _style(finals["setting"], finals["method"])
    datasets = list(dict.fromkeys(finals["dataset"]))
    fig, axes = plt.subplots(len(metrics), len(datasets), squeeze=False,
                             figsize=(4.6 * len(datasets) + 2.5, 3.3 * len(metrics)))
    for j, ds in enumerate(datasets):
        g = finals[finals["dataset"] == ds]
        for i, (metric, label) in enumerate(metrics):
            ax = axes[i, j]
            for s, h in g.groupby("setting", sort=False):
                h = h.sort_values("side")
                c = colours[s]
                ax.errorbar(h["side"], h[metric],
                            yerr=[h[metric] - h[f"{metric}_min"], h[f"{metric}_max"] - h[metric]],
                            color=c, marker=MARKERS.get(methods[s], "o"), ms=4, lw=1, capsize=2,
                            ls=":" if methods[s] == "exact" else "-")
            ax.set_xscale("log", base=2)
            sides = sorted(g["side"].dropna().round().unique())
            ax.set_xticks(sides, [f"{s:.0f}" for s in sides])
            ax.minorticks_off()
            if i == 0:
                ax.set_title(ds, fontsize=9)
            ax.set_xlabel("image size (longer side of A, px, mean over pairs)", fontsize=8)
            ax.set_ylabel(f"{label}, last iteration", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3, which="both")
    _legend(axes, colours, methods)
    fig.suptitle("quality against image size (median over seeds; bars: seeds' min-max)",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def make_figures(out: Path, points: pd.DataFrame, finals: pd.DataFrame | None = None) -> list[str]:
    """Every figure of ``points`` (:func:`point_table`) into ``out``; returns their file names.

    ``finals``: :func:`final_table` of ``points`` when the caller has it already.
    """
    for p in out.glob("quality_*.png"):
        p.unlink()
    made = []
    for metric, label, higher in METRICS:
        made.append(plot_quality_time(points, metric, label, higher,
                                      out / f"quality_time_{metric}.png"))
        made.append(plot_quality_iteration(points, metric, label,
                                           out / f"quality_iteration_{metric}.png"))
    finals = final_table(points) if finals is None else finals
    made.append(plot_quality_size(finals, out / "quality_size.png"))
    return [m for m in made if m]


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


def write_report(out: Path, df: pd.DataFrame, plan, meta: dict, *, log=print) -> Path:
    """Figures and ``REPORT.md`` of a sweep's results; returns the report's path."""
    points = point_table(df) if len(df) else None
    finals = final_table(points) if points is not None else None
    figures = make_figures(out, points, finals) if points is not None else []
    spec = plan.spec
    lines = [f"# {spec.title}", "",
             f"Generated by `{meta.get('command') or 'python -m experiments sweep'}` on "
             f"{_dt.datetime.now().isoformat(timespec='seconds')}; spec: `{Path(spec.path).name}` "
             "(copied to `spec.toml`); every row in `results.csv` / `results.parquet`.", ""]
    c = meta.get("counts", {})
    lines += ["## Setup", "",
              f"* units: {c.get('units')} ({len(plan.sources)} pairs x {len(spec.max_sizes)} sizes"
              f" x {len(spec.settings)} method settings x seeds {spec.seeds}; `exact` once per "
              f"pair and size); finished {df['unit'].nunique() if len(df) else 0}, failed "
              f"{len(meta.get('failures', []))}, skipped {len(meta.get('skipped', {}))}",
              f"* sizes (longer side): {', '.join(_size_label(s) for s in spec.max_sizes)}; "
              f"device `{spec.device}`; {spec.threads} thread(s) per unit; timing `{spec.timing}`",
              f"* data: {', '.join(f'`{d}`' for d in spec.data)}"
              + (f" (limit {spec.limit})" if spec.limit else "")
              + (f" (select `{spec.select}`)" if spec.select else ""),
              f"* git {meta.get('git', {}).get('commit', 'unknown')[:12]}"
              + (" (uncommitted changes)" if meta.get("git", {}).get("dirty") else "")
              + f"; {_versions(meta)}", ""]
    lines += ["Method settings:", "",
              "| setting | method | parameters (given) |", "|---|---|---|"]
    for s in meta.get("method_settings", []):
        given = ", ".join(f"{k}={v}" for k, v in s["given"].items()) or "defaults"
        lines.append(f"| {s['label']} | {s['method']} | {given} |")
    lines += ["", "## Timing conditions", ""] + [f"* {t}" for t in timing_conditions(df)]
    if points is not None:
        budget = budget_table(points)
        lines += ["", "## Best setting of each method at equal time budgets", "",
                  "Highest median PSNR among the (setting, iteration) points whose median "
                  "cumulative time (mean over pairs) is within the budget.", "",
                  _md(budget, [("dataset", "dataset", ""), ("size", "size", ""),
                               ("budget_s", "budget s", "{:.3g}"), ("method", "method", ""),
                               ("setting", "best setting", ""), ("iteration", "it", "{:.0f}"),
                               ("psnr", "PSNR dB", "{:.2f}"), ("epe", "EPE px", "{:.2f}"),
                               ("time_s", "time s", "{:.3g}")]) if len(budget) else "(none)"]
        finals["psnr_spread"] = finals["psnr_max"] - finals["psnr_min"]
        lines += ["", "## Every setting at its last iteration", "",
                  "Median over seeds of the mean over pairs; spread = max - min over seeds.", "",
                  _md(finals, [("dataset", "dataset", ""), ("size", "size", ""),
                               ("setting", "setting", ""), ("iteration", "it", "{:.0f}"),
                               ("psnr", "PSNR dB", "{:.2f}"),
                               ("psnr_spread", "PSNR spread", "{:.2f}"),
                               ("epe", "EPE px", "{:.2f}"), ("cum_time_s", "time s", "{:.3g}"),
                               ("seeds", "seeds", "{:.0f}")])]
    if figures:
        lines += ["", "## Figures", ""]
        for f in figures:
            lines += [f"![{f}]({f})", ""]
    if meta.get("failures"):
        lines += ["## Failed units", "", "Rerun the same command to try them again.", "",
                  "| pair | method | parameters | size | seed | reason |", "|---|---|---|---|---|---|"]
        for f in meta["failures"]:
            lines.append(f"| {f.get('pair')} | {f.get('method')} | {f.get('params')} | "
                         f"{_size_label(f.get('max_size'))} | {f.get('seed')} | {f.get('error')} |")
        lines.append("")
    if meta.get("skipped"):
        lines += ["## Skipped", ""] + [f"* {v}" for v in meta["skipped"].values()] + [""]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    log(f"wrote {path} ({len(figures)} figures)")
    return path


def _versions(meta: dict) -> str:
    v = meta.get("versions", {})
    keys = ("python", "numpy", "numba", "torch", "dask", "distributed", "pandas", "pyarrow")
    return ", ".join(f"{k} {v[k]}" for k in keys if v.get(k))

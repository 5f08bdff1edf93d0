"""Figures of a study: quality against time, iteration and image size (no pyplot, no backend).

* ``quality_time_<metric>.png``: metric against cumulative time, one panel per (dataset, size);
  a line per setting through its iterations, its last iteration marked with the seeds' spread;
  the Pareto front (best quality reachable in at most that time) in black.
* ``quality_iteration_<metric>.png``: metric against iteration with seed bands.
* ``quality_size.png``: the last iteration's metrics against image size.

Each ``plot_*`` draws into ``fig`` (a new :class:`~matplotlib.figure.Figure` when None) and
returns it (None when there is nothing to draw); :func:`make_figures` writes them.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.lines import Line2D
from PIL import Image

from .figures import _save as _save_figure
from .figures import marker, new_figure
from .sweep_tables import METRICS, final_table, pareto


# --------------------------------------------------------------------------- figures
def _save(fig, path: Path) -> str:
    """Save as a 256-colour PNG without dithering (:func:`experiments.report.figures._save`)."""
    return _save_figure(fig, path, photo=True, dither=Image.Dither.NONE)


def _colours(settings: list[str]) -> dict[str, tuple]:
    cmap = matplotlib.colormaps["tab10" if len(settings) <= 10 else "tab20"]
    return {s: cmap(i % cmap.N) for i, s in enumerate(settings)}


def _style(settings: pd.Series, methods: pd.Series) -> tuple[dict, dict]:
    """Colour per setting (in order of appearance) and the method of each setting."""
    colours = _colours(list(dict.fromkeys(settings)))
    return colours, dict(zip(settings, methods))


def _panels(points: pd.DataFrame, fig=None):
    """One panel per (dataset, size): the figure, its axes, and (axes, title, rows) per panel."""
    datasets = list(dict.fromkeys(points["dataset"]))
    sizes = list(dict.fromkeys(points["size"]))
    if fig is None:
        fig = new_figure(figsize=(4.2 * len(sizes) + 2.5, 3.4 * len(datasets)))
    axes = fig.subplots(len(datasets), len(sizes), squeeze=False)
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
    handles = [Line2D([], [], color=c, marker=marker(methods.get(s)), label=s)
               for s, c in colours.items()]
    axes[0, -1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       fontsize=7, frameon=False)


def _plot_settings(points: pd.DataFrame, metric: str, title: str, draw, finish, *,
                   draw_exact: bool, fig=None):
    """One panel per (dataset, size); per setting ``draw(ax, h, colour, marker)`` with ``h`` its rows
    by iteration (the exact NNF: a dotted line at its value, and ``draw`` too if ``draw_exact``);
    then ``finish(ax, panel_title, g)`` per panel."""
    if points[metric].notna().sum() == 0:
        return None
    colours, methods = _style(points["setting"], points["method"])
    fig, axes, panels = _panels(points, fig)
    for ax, panel_title, g in panels:
        for s, h in g.groupby("setting", sort=False):
            h = h.sort_values("iteration")
            exact = methods[s] == "exact"
            if exact:
                ax.axhline(h[metric].iloc[-1], color=colours[s], ls=":", lw=1)
            if draw_exact or not exact:
                draw(ax, h, colours[s], marker(methods[s]))
        finish(ax, panel_title, g)
    _legend(axes, colours, methods)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_quality_time(points: pd.DataFrame, metric: str, label: str, higher: bool, *, fig=None):
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

    return _plot_settings(points, metric, f"{label} against time (median over seeds; bars: seeds' "
                          "min-max; dashed: Pareto front)", draw, finish, draw_exact=True, fig=fig)


def plot_quality_iteration(points: pd.DataFrame, metric: str, label: str, *, fig=None):
    """Metric against iteration with the seeds' band, per (dataset, size)."""
    def draw(ax, h, c, mk):
        ax.plot(h["iteration"], h[metric], color=c, lw=1, marker=mk, ms=2.5)
        ax.fill_between(h["iteration"], h[f"{metric}_min"], h[f"{metric}_max"], color=c, alpha=0.18, lw=0)

    def finish(ax, panel_title, g):
        _label_panel(ax, panel_title, "iteration", label)
        ax.grid(alpha=0.3)

    return _plot_settings(points, metric, f"{label} against iteration (median over seeds; band: seeds' "
                          "min-max; dotted: exact NNF)", draw, finish, draw_exact=False, fig=fig)


def plot_quality_size(finals: pd.DataFrame, *, fig=None):
    """Last-iteration metrics against image size (longer side), one column per dataset."""
    metrics = [(c, lab) for c, lab, _ in METRICS if finals[c].notna().any()]
    if not metrics or finals["side"].nunique() < 2:
        return None
    colours, methods = _style(finals["setting"], finals["method"])
    datasets = list(dict.fromkeys(finals["dataset"]))
    if fig is None:
        fig = new_figure(figsize=(4.6 * len(datasets) + 2.5, 3.3 * len(metrics)))
    axes = fig.subplots(len(metrics), len(datasets), squeeze=False)
    for j, ds in enumerate(datasets):
        g = finals[finals["dataset"] == ds]
        for i, (metric, label) in enumerate(metrics):
            ax = axes[i, j]
            for s, h in g.groupby("setting", sort=False):
                h = h.sort_values("side")
                c = colours[s]
                ax.errorbar(h["side"], h[metric],
                            yerr=[h[metric] - h[f"{metric}_min"], h[f"{metric}_max"] - h[metric]],
                            color=c, marker=marker(methods[s]), ms=4, lw=1, capsize=2,
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
    return fig


def make_figures(out: Path, points: pd.DataFrame, finals: pd.DataFrame | None = None) -> list[str]:
    """Every figure of ``points`` (:func:`point_table`) into ``out``; returns their file names.

    ``finals``: :func:`final_table` of ``points`` when the caller has it already.
    """
    for p in out.glob("quality_*.png"):
        p.unlink()
    figures = {}
    for metric, label, higher in METRICS:
        figures[f"quality_time_{metric}.png"] = plot_quality_time(points, metric, label, higher)
        figures[f"quality_iteration_{metric}.png"] = plot_quality_iteration(points, metric, label)
    finals = final_table(points) if finals is None else finals
    figures["quality_size.png"] = plot_quality_size(finals)
    return [_save(fig, out / name) for name, fig in figures.items() if fig is not None]

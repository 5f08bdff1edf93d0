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

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.lines import Line2D
from PIL import Image

from ..methods.registry import role
from .plotting import _save as _save_figure
from .plotting import colour as figure_colour
from .plotting import is_level, marker, new_figure
from .sweep_tables import METRICS, final_table, pareto


# --------------------------------------------------------------------------- figures
def _save(fig, path: Path) -> str:
    """Save as a 256-colour PNG without dithering (:func:`experiments.report.figures._save`)."""
    return _save_figure(fig, path, photo=True, dither=Image.Dither.NONE)


LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


@dataclass(frozen=True)
class Style:
    colour: object
    linestyle: object
    marker: str


def parse_label(label: str) -> tuple[str, dict[str, str]]:
    """A setting's label (``dpm window=25x25 keep_current=true``) as its name and parameters."""
    name, *parts = str(label).split()
    return name, dict(p.split("=", 1) for p in parts if "=" in p)


def styles(settings: pd.Series, methods: pd.Series) -> tuple[dict[str, Style], list]:
    """One style per setting, the varied parameters made visible: per method, the first parameter
    that varies among its settings gives the colour, the second the line style, the third the
    marker (a method with more: a colour per setting); a method without varied parameters has
    its own colour (:func:`~experiments.report.plotting.colour`) and marker. Returns the styles
    and the legend's handles (one per value, not per setting)."""
    method_of = dict(zip(settings, methods))
    groups: dict[str, list[str]] = {}
    for label in dict.fromkeys(settings):
        groups.setdefault(parse_label(label)[0], []).append(label)
    taken = [figure_colour(parse_label(g[0])[0]) for g in groups.values() if len(g) == 1]
    palette = [c for c in (matplotlib.colormaps["tab10"](i) for i in range(10)) if c not in taken]
    palette += [matplotlib.colormaps["tab20b"](i) for i in range(20)]
    out, handles, k = {}, [], 0
    for name, labels in groups.items():
        base = marker(name if name in method_of.values() else method_of[labels[0]])
        if len(labels) == 1:
            out[labels[0]] = Style(figure_colour(name), "-", base)
            handles.append(Line2D([], [], color=out[labels[0]].colour, marker=base, label=labels[0]))
            continue
        params = [parse_label(lab)[1] for lab in labels]
        keys = [key for key in dict.fromkeys(key for p in params for key in p)
                if len({p.get(key) for p in params}) > 1]
        if len(keys) > 3:  # too many to encode apart: a colour per setting
            keys = []
        values = {key: list(dict.fromkeys(p.get(key) for p in params)) for key in keys}
        colours = {v: palette[(k + i) % len(palette)] for i, v in enumerate(values[keys[0]])} if keys else {}
        k += len(colours) if keys else len(labels)
        for j, (lab, p) in enumerate(zip(labels, params)):
            c = colours[p[keys[0]]] if keys else palette[(k - len(labels) + j) % len(palette)]
            ls = LINESTYLES[values[keys[1]].index(p[keys[1]]) % 4] if len(keys) > 1 else "-"
            mk = MARKERS[values[keys[2]].index(p[keys[2]]) % 7] if len(keys) > 2 else base
            out[lab] = Style(c, ls, mk)
        if not keys:
            handles += [Line2D([], [], color=out[lab].colour, marker=base, label=lab) for lab in labels]
            continue
        handles += [Line2D([], [], color=colours[v], lw=3, label=f"{name} {keys[0]}={v}") for v in values[keys[0]]]
        if len(keys) > 1:
            handles += [Line2D([], [], color="0.3", ls=LINESTYLES[i % 4], label=f"{name} {keys[1]}={v}")
                        for i, v in enumerate(values[keys[1]])]
        if len(keys) > 2:
            handles += [Line2D([], [], color="0.3", marker=MARKERS[i % 7], ls="none", label=f"{name} {keys[2]}={v}")
                        for i, v in enumerate(values[keys[2]])]
    return out, handles


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


def _legend(axes, handles: list) -> None:
    axes[0, -1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       fontsize=7, frameon=False)


def _plot_settings(points: pd.DataFrame, metric: str, title: str, draw, finish, *,
                   draw_exact: bool, fig=None):
    """One panel per (dataset, size); per setting ``draw(ax, h, style)`` with ``h`` its rows by
    iteration (a method reported once, the exact NNF or a baseline: a horizontal line at its value,
    and ``draw`` too for the exact NNF if ``draw_exact``); then ``finish(ax, panel_title, g)`` per panel."""
    if points[metric].notna().sum() == 0:
        return None
    look, handles = styles(points["setting"], points["method"])
    fig, axes, panels = _panels(points, fig)
    for ax, panel_title, g in panels:
        for s, h in g.groupby("setting", sort=False):
            h = h.sort_values("iteration")
            level = is_level(h["method"].iloc[0])
            if level:
                ax.axhline(h[metric].iloc[-1], color=look[s].colour, ls=":", lw=1)
            # a baseline is a level only: its near-zero time would stretch a time axis by decades
            if not level or (draw_exact and role(h["method"].iloc[0]) == "limit"):
                draw(ax, h, look[s])
        finish(ax, panel_title, g)
    _legend(axes, handles)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_quality_time(points: pd.DataFrame, metric: str, label: str, higher: bool, *, fig=None):
    """Metric against cumulative time per (dataset, size); Pareto front in black."""
    def draw(ax, h, st):
        ax.plot(h["cum_time_s"], h[metric], color=st.colour, ls=st.linestyle, lw=1.0, alpha=0.8)
        last = h.iloc[-1]
        ax.errorbar(last["cum_time_s"], last[metric],
                    xerr=[[last["cum_time_s"] - last["cum_time_s_min"]],
                          [last["cum_time_s_max"] - last["cum_time_s"]]],
                    yerr=[[last[metric] - last[f"{metric}_min"]],
                          [last[f"{metric}_max"] - last[metric]]],
                    color=st.colour, marker=st.marker, ms=5, lw=0.8, capsize=2)

    def finish(ax, panel_title, g):
        front = pareto(g[~g["method"].map(is_level).astype(bool)], metric, higher)
        if len(front):  # the best value reachable within each time, to the panel's end
            xs = [*front["cum_time_s"], g["cum_time_s_max"].max()]
            ys = [*front[metric], front[metric].iloc[-1]]
            ax.step(xs, ys, where="post", color="k", lw=1.2, ls="--")
        ax.set_xscale("log")
        _label_panel(ax, panel_title, "cumulative time (s, median of repeats)", label)
        ax.grid(alpha=0.3, which="both")

    return _plot_settings(points, metric, f"{label} against time (median over seeds; bars: seeds' "
                          "min-max; dashed: Pareto front; dotted: exact NNF and baselines)", draw, finish, draw_exact=True, fig=fig)


def plot_quality_iteration(points: pd.DataFrame, metric: str, label: str, *, fig=None):
    """Metric against iteration with the seeds' band, per (dataset, size)."""
    def draw(ax, h, st):
        ax.plot(h["iteration"], h[metric], color=st.colour, ls=st.linestyle, lw=1, marker=st.marker, ms=2.5)
        ax.fill_between(h["iteration"], h[f"{metric}_min"], h[f"{metric}_max"], color=st.colour,
                        alpha=0.15, lw=0)

    def finish(ax, panel_title, g):
        _label_panel(ax, panel_title, "iteration", label)
        ax.grid(alpha=0.3)

    return _plot_settings(points, metric, f"{label} against iteration (median over seeds; band: seeds' "
                          "min-max; dotted: exact NNF and baselines)", draw, finish, draw_exact=False, fig=fig)


def plot_quality_size(finals: pd.DataFrame, *, fig=None):
    """Last-iteration metrics against image size (longer side), one column per dataset."""
    metrics = [(c, lab) for c, lab, _ in METRICS if finals[c].notna().any()]
    if not metrics or finals["side"].nunique() < 2:
        return None
    look, handles = styles(finals["setting"], finals["method"])
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
                st = look[s]
                ax.errorbar(h["side"], h[metric],
                            yerr=[h[metric] - h[f"{metric}_min"], h[f"{metric}_max"] - h[metric]],
                            color=st.colour, marker=st.marker, ms=4, lw=1, capsize=2,
                            ls=":" if is_level(h["method"].iloc[0]) else st.linestyle)
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
    _legend(axes, handles)
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

"""Figures of a ``compare`` run (matplotlib figures without pyplot: no backend, no global state).

* ``grid.png``: one row per pair: Image A | Image B | differentiable | classic (| learnt DPM),
  each reconstruction titled with its L1 and L2 (MSE) errors, PSNR and SSIM (DeepPruner README).
* ``iterations_<pair>.png``: per-iteration reconstructions, one row per method.
* ``convergence.png``: PSNR and energy against iteration and against cumulative time (log axis),
  one line per method and pair, the exact NNF as a dotted limit line.
* ``nnf_<pair>.png``: NNFs as flow colour maps (displacement ``match - pixel``; hue = direction,
  saturation = length, one scale per pair) for every method and the ground truth when known.

Plot functions draw on ``ax`` (the axes of a new :class:`matplotlib.figure.Figure` when None)
and return it; figure functions build a ``Figure`` and write it as PNG (Agg, chosen per figure by
:func:`_save`). Nothing here selects a backend or touches pyplot. Methods are drawn with their
registered marker and line style (:mod:`experiments.methods.registry`).
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import hsv_to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from PIL import Image

from ..data.pairs import Pair, file_stem
from ..methods.registry import NAMED, order
from ..methods.registry import label as method_label
from .artifacts import load_artifact
from .tables import summary_table

DPI = 100
#: Titles of the grid's columns, first (the DeepPruner README's order), then the others by name.
GRID_TITLES = {"dpm": "differentiable (dpm)", "pm": "classic (pm)",
               "dpm-reference": "as the original (dpm-reference)",
               "dpm-keep": "DPM + current (dpm-keep)", "dpm-learned": "learnt DPM (dpm-learned)"}


def marker(method: str) -> str:
    """The registered marker of a method or named setting (``o`` when unknown)."""
    return NAMED[method].marker if method in NAMED else "o"


def linestyle(method: str):
    """The registered line style of a method or named setting (solid when unknown)."""
    return NAMED[method].linestyle if method in NAMED else "-"


def tab10(i: int):
    return matplotlib.colormaps["tab10"](i % 10)


def new_figure(**kw) -> Figure:
    """A figure of its own (not pyplot's), drawn with Agg when saved."""
    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def _new_ax(ax):
    if ax is None:
        ax = new_figure().subplots()
    return ax


def _save(fig, path: Path, *, photo: bool = False,
          dither: Image.Dither = Image.Dither.FLOYDSTEINBERG) -> str:
    """Save as PNG; ``photo`` figures are stored with a 256-colour palette (about 3x smaller),
    quantised with ``dither`` (``Image.Dither.NONE`` keeps flat colours flat: plots)."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, bbox_inches="tight", format="png")
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if photo:
        img = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=dither)
    img.save(path, format="PNG", optimize=True)
    return path.name


def _fmt_metrics(row) -> str:
    return (f"L1 {row['l1']:.4f}  L2 {row['mse']:.5f}\n"
            f"PSNR {row['psnr']:.2f} dB  SSIM {row['ssim']:.3f}")


# --------------------------------------------------------------------------- primitives
def plot_image(image: np.ndarray, *, title: str = "", ax=None, fontsize: float = 8):
    """Show an ``(H, W, 3)`` image in [0, 1] without ticks."""
    ax = _new_ax(ax)
    ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)
    return ax


def flow_of(nnf: np.ndarray) -> np.ndarray:
    """Displacement ``(dy, dx) = match - pixel``, shape (H, W, 2), from an absolute NNF."""
    h, w = nnf.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([nnf[..., 0] - ys, nnf[..., 1] - xs], axis=-1).astype(np.float32)


def flow_to_rgb(flow: np.ndarray, max_mag: float) -> np.ndarray:
    """Colour-code a flow: hue = direction, saturation = length / ``max_mag``; NaN -> gray."""
    dy, dx = flow[..., 0], flow[..., 1]
    bad = ~(np.isfinite(dx) & np.isfinite(dy))
    dy, dx = np.nan_to_num(dy), np.nan_to_num(dx)
    hue = (np.arctan2(-dy, -dx) / (2 * np.pi) + 0.5) % 1.0
    sat = np.clip(np.hypot(dx, dy) / max(max_mag, 1e-6), 0, 1)
    rgb = hsv_to_rgb(np.stack([hue, sat, np.ones_like(hue)], axis=-1))
    rgb[bad] = 0.35
    return rgb


def plot_flow(nnf: np.ndarray, *, max_mag: float, title: str = "", valid=None, ax=None):
    """Flow colour map of an absolute NNF (``valid`` False -> gray)."""
    ax = _new_ax(ax)
    flow = flow_of(nnf)
    if valid is not None:
        flow[~valid] = np.nan
    return plot_image(flow_to_rgb(flow, max_mag), title=title, ax=ax)


def plot_colour_wheel(max_mag: float, ax=None):
    """The key of :func:`flow_to_rgb`: displacement (dx right, dy down) up to ``max_mag``."""
    ax = _new_ax(ax)
    n = 101
    y, x = np.mgrid[-1:1:n * 1j, -1:1:n * 1j]
    rgb = flow_to_rgb(np.stack([y * max_mag, x * max_mag], -1), max_mag)
    rgb[np.hypot(x, y) > 1] = 1.0
    ax.imshow(rgb, extent=(-max_mag, max_mag, max_mag, -max_mag))
    ax.set_title(f"key: displacement\n(|d| up to {max_mag:.0f} px)", fontsize=8)
    ax.set_xlabel("dx (px)", fontsize=7)
    ax.set_ylabel("dy (px)", fontsize=7)
    ax.tick_params(labelsize=6)
    return ax


def plot_metric(df, *, y: str, x: str = "iteration", ax=None, colours: dict | None = None,
                logx: bool = False, logy: bool = False, limit: bool = True):
    """One line per (pair, method) of ``y`` against ``x``; the exact NNF as a dotted limit."""
    ax = _new_ax(ax)
    pairs = list(dict.fromkeys(df["pair"]))
    colours = colours or {p: tab10(i) for i, p in enumerate(pairs)}
    for (pair, method), g in df.groupby(["pair", "method"], sort=False):
        g = g.sort_values("iteration")
        if method == "exact":
            if limit and np.isfinite(g[y].iloc[0]):
                ax.axhline(g[y].iloc[0], color=colours[pair], ls=":", lw=1.2)
                if x != "iteration":  # where the exhaustive search gets there
                    ax.plot(g[x], g[y], color=colours[pair], marker="*", ms=9, ls="none")
            continue
        ax.plot(g[x], g[y], color=colours[pair], ls=linestyle(method), marker=marker(method),
                ms=3, lw=1.3)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if x == "iteration":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, which="major", alpha=0.3)
    return ax


# --------------------------------------------------------------------------- figures
def grid_columns(summary) -> list[tuple[str, str]]:
    """``(method, title)`` of the grid's reconstruction columns: :data:`GRID_TITLES`' methods
    first, then every other method of the run but the exact NNF, in registry order."""
    ran = [m for m in order(summary["method"]) if m != "exact"]
    first = [m for m in GRID_TITLES if m in ran]
    return [(m, GRID_TITLES.get(m, f"{method_label(m)} ({m})")) for m in first + [m for m in ran if m not in first]]


def grid_figure(out: Path, summary, pairs: dict[str, Pair]) -> str | None:
    """``grid.png``: rows = pairs; A | B | differentiable | classic (| learnt)."""
    methods = grid_columns(summary)
    names = [p for p in dict.fromkeys(summary["pair"]) if p in pairs]
    if not names:
        return None
    ncol = 2 + len(methods)
    fig = new_figure(figsize=(2.7 * ncol, 2.55 * len(names)))
    axes = fig.subplots(len(names), ncol, squeeze=False)
    for r, name in enumerate(names):
        pair = pairs[name]
        plot_image(pair.a, title=f"{name}: Image A\n(target, {pair.a.shape[1]}x{pair.a.shape[0]})",
                   ax=axes[r, 0])
        plot_image(pair.b, title=f"Image B\n(source, {pair.b.shape[1]}x{pair.b.shape[0]})",
                   ax=axes[r, 1])
        for c, (method, label) in enumerate(methods, start=2):
            ax = axes[r, c]
            rows = summary[(summary["pair"] == name) & (summary["method"] == method)]
            art = load_artifact(out, name, method)
            if rows.empty or art is None:
                ax.axis("off")
                ax.text(0.5, 0.5, f"{label}\nnot run", ha="center", va="center", fontsize=8)
                continue
            row = rows.iloc[0]
            plot_image(art["recons"][-1] / 255.0,
                       title=f"{label}, it {int(row['iteration'])}\n{_fmt_metrics(row)}",
                       ax=ax, fontsize=7.5)
    fig.tight_layout()
    return _save(fig, out / "grid.png", photo=True)


def iterations_figure(out: Path, df, pair: Pair) -> str | None:
    """``iterations_<pair>.png``: reconstructions per iteration, one row per method."""
    rows = []
    for method in order(df.loc[df["pair"] == pair.name, "method"]):
        art = load_artifact(out, pair.name, method)
        if art is not None:
            rows.append((method, art))
    if not rows:
        return None
    ncol = 1 + max(len(a["iterations"]) for _, a in rows)
    h, w = pair.a.shape[:2]
    cell_w = 2.2
    cell_h = cell_w * h / w + 0.45
    fig = new_figure(figsize=(cell_w * ncol, cell_h * len(rows)))
    axes = fig.subplots(len(rows), ncol, squeeze=False)
    sel = df[df["pair"] == pair.name]
    for r, (method, art) in enumerate(rows):
        plot_image(pair.a, title="Image A (target)", ax=axes[r, 0], fontsize=7.5)
        axes[r, 0].set_ylabel(method_label(method), fontsize=8.5)
        for c in range(1, ncol):
            ax = axes[r, c]
            k = c - 1
            if k >= len(art["iterations"]):
                ax.axis("off")
                continue
            it = int(art["iterations"][k])
            m = sel[(sel["method"] == method) & (sel["iteration"] == it)]
            psnr = m["psnr"].iloc[0] if not m.empty else math.nan
            label = "exact NNF" if method == "exact" else f"{method} it {it}"
            plot_image(art["recons"][k] / 255.0, title=f"{label}\nPSNR {psnr:.2f} dB", ax=ax,
                       fontsize=7.5)
    fig.suptitle(f"{pair.name}: reconstruction of A after each iteration", fontsize=10)
    fig.tight_layout()
    return _save(fig, out / f"iterations_{file_stem(pair.name)}.png", photo=True)


def convergence_figure(out: Path, df) -> str | None:
    """``convergence.png``: PSNR and energy vs iteration and vs cumulative time."""
    if df.empty:
        return None
    pairs = list(dict.fromkeys(df["pair"]))
    colours = {p: tab10(i) for i, p in enumerate(pairs)}
    fig = new_figure(figsize=(12, 8.5))
    axes = fig.subplots(2, 2)
    specs = [(0, 0, "psnr", "iteration", False), (0, 1, "psnr", "cum_time_s", True),
             (1, 0, "energy", "iteration", False), (1, 1, "energy", "cum_time_s", True)]
    for r, c, y, x, logx in specs:
        ax = plot_metric(df, y=y, x=x, ax=axes[r, c], colours=colours, logx=logx,
                         logy=(y == "energy"))
        ax.set_xlabel("iteration" if x == "iteration" else "cumulative compute time (s, log)")
        ax.set_ylabel("PSNR of the reconstruction (dB)" if y == "psnr"
                      else "energy: patch MSE per pixel and channel (log)")
    axes[0, 0].set_title("Quality against iteration", fontsize=10)
    axes[0, 1].set_title("Quality against time", fontsize=10)
    handles = [Line2D([], [], color=colours[p], lw=3, label=p) for p in pairs]
    methods = order(df["method"])
    handles += [Line2D([], [], color="k", ls=linestyle(m), marker=None if m == "exact" else marker(m),
                       ms=4, label=method_label(m) + (" (limit; star: its time)" if m == "exact" else ""))
                for m in methods]
    if "exact" not in methods:
        handles.append(Line2D([], [], color="0.6", ls=":",
                              label="exact NNF limit: not computed (see REPORT.md)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=9,
               frameon=False, bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, out / "convergence.png")


def nnf_figure(out: Path, df, pair: Pair) -> str | None:
    """``nnf_<pair>.png``: flow colour maps of every method and of the ground truth."""
    panels = []
    for method in order(df.loc[df["pair"] == pair.name, "method"]):
        art = load_artifact(out, pair.name, method)
        if art is not None:
            panels.append((method_label(method), art["nnf"], None))
    if pair.gt is not None:
        panels.append(("ground truth (gray: none)", np.nan_to_num(pair.gt), pair.valid))
    if not panels:
        return None
    # one colour scale per pair, from the most trustworthy field: GT, else exact, else classic
    by_label = {label: nnf for label, nnf, _ in panels}
    ref = next((by_label[k] for k in ("ground truth (gray: none)", method_label("exact"), method_label("pm"))
                if k in by_label), panels[0][1])
    mag = np.hypot(*np.moveaxis(flow_of(ref), -1, 0))
    if pair.gt is not None and pair.valid is not None and pair.valid.any():
        mag = mag[pair.valid]
    # GT is clean: its 99th percentile; estimated fields have outliers: their 90th
    max_mag = float(max(np.percentile(mag, 99 if pair.gt is not None else 90), 1.0))
    n = len(panels) + 1
    h, w = pair.a.shape[:2]
    side = 3.4
    fig = new_figure(figsize=(side * (n - 1) + 2.6, side * h / w + 0.9))
    axes = fig.subplots(1, n, squeeze=False, gridspec_kw=dict(width_ratios=[1.0] * (n - 1) + [0.7]))
    for ax, (label, nnf, valid) in zip(axes[0], panels):
        plot_flow(nnf, max_mag=max_mag, title=label, valid=valid, ax=ax)
    plot_colour_wheel(max_mag, ax=axes[0, -1])
    fig.suptitle(f"{pair.name}: NNF as displacement (match in B - pixel of A)", fontsize=10)
    fig.tight_layout()
    return _save(fig, out / f"nnf_{file_stem(pair.name)}.png")


def make_all(out: Path, df, pairs: dict[str, Pair]) -> list[str]:
    """Every figure of the run (of its first seed: the artifacts'); returns the file names written."""
    seeds = sorted(df["seed"].dropna().unique())
    if seeds:
        df = df[df["seed"].isna() | (df["seed"] == seeds[0])]
    made = []
    summary = summary_table(df)
    for name in [grid_figure(out, summary, pairs), convergence_figure(out, df)]:
        if name:
            made.append(name)
    for pair in pairs.values():
        for fn in (iterations_figure, nnf_figure):
            name = fn(out, df, pair)
            if name:
                made.append(name)
    return made

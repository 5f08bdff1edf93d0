"""How the suite draws (matplotlib figures without pyplot: no backend, no global state).

The method is the thing compared, so it gets the strongest cue everywhere: its colour (one per
method, the same in every figure: :func:`colour`), with its registered marker and line style. The
exact NNF and the trivial baselines (methods whose role is not ``matcher``) are levels:
:func:`is_level`. Primitive plots draw on ``ax`` (the axes of a new
:class:`matplotlib.figure.Figure` when None) and return it; :func:`_save` writes a figure as PNG
with Agg, chosen per figure. Used by the figures of ``compare`` (:mod:`.figures`) and of studies
(:mod:`.sweep_figures`).
"""
from __future__ import annotations

import io
import zlib
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import hsv_to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from ..data import writers
from ..methods.registry import NAMED, order, role

DPI = 100


def marker(method: str) -> str:
    """The registered marker of a method or named setting (``o`` when unknown)."""
    return NAMED[method].marker if method in NAMED else "o"


def linestyle(method: str):
    """The registered line style of a method or named setting (solid when unknown)."""
    return NAMED[method].linestyle if method in NAMED else "-"


def tab10(i: int):
    return matplotlib.colormaps["tab10"](i % 10)


#: Fixed colours of the limit and the baselines; every other method takes the next tab10 colour.
FIXED_COLOURS = {"exact": "black", "zero": "0.45", "random": "0.7"}


def is_level(method: str) -> bool:
    """Whether a method is drawn as a horizontal line: the limit and the baselines (one value, no
    iterations to follow; their role in the registry)."""
    return role(method) != "matcher"


def colour(method: str):
    """The method's colour, the same in every figure of the suite (registry order)."""
    if method in FIXED_COLOURS:
        return FIXED_COLOURS[method]
    others = [m for m in NAMED if m not in FIXED_COLOURS]
    if method in others:
        return tab10(others.index(method))
    return tab10(len(others) + zlib.crc32(method.encode()) % 5)  # unregistered: stable across runs


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
    """Displacement ``(dy, dx) = match - pixel``, shape (H, W, 2), from an absolute NNF (the
    writers' ``(u, v)`` in (y, x) order)."""
    return np.ascontiguousarray(writers.flow_of(nnf)[..., ::-1])


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


def plot_metric(df, *, y: str, x: str = "iteration", ax=None, logx: bool = False,
                logy: bool = False):
    """One line per method of ``y`` against ``x`` (one pair's rows), colour = method; the exact NNF
    and the baselines as horizontal lines at their value (and, against time, a marker where the
    exact NNF is reached; a baseline's near-zero time would stretch the axis by decades)."""
    ax = _new_ax(ax)
    for method in order(df["method"]):
        g = df[df["method"] == method].sort_values("iteration")
        if not np.isfinite(g[y]).any():
            continue
        if is_level(method):
            ax.axhline(g[y].iloc[-1], color=colour(method), ls=linestyle(method), lw=1.2)
            if x != "iteration" and role(method) == "limit":
                ax.plot(g[x], g[y], color=colour(method), marker=marker(method), ms=7, ls="none")
            continue
        ax.plot(g[x], g[y], color=colour(method), marker=marker(method), ms=3, lw=1.4)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if x == "iteration":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, which="major", alpha=0.3)
    return ax


def plot_error(nnf: np.ndarray, gt: np.ndarray, valid: np.ndarray, *, vmax: float,
               title: str = "", ax=None):
    """End-point error map of matches against the ground truth (gray where there is none)."""
    ax = _new_ax(ax)
    err = np.hypot(nnf[..., 0] - gt[..., 0], nnf[..., 1] - gt[..., 1])
    err = np.where(valid, err, np.nan)
    cmap = matplotlib.colormaps["magma"].with_extremes(bad="0.35")
    im = ax.imshow(err, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return im

"""``training.png``: training and validation curves of a ``train`` run against the baselines.

The figure is a :class:`matplotlib.figure.Figure` of its own (no pyplot, no backend chosen at
import); :func:`save_training_plot` writes it with Agg.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_training", "save_training_plot"]


def plot_training(rows: list[dict], baselines: dict, *, title: str = "", fig: Figure | None = None) -> Figure:
    """Training loss, validation PSNR, EPE and within-1px against step, into ``fig`` (a new
    11 x 7.5 in figure when None); returns the figure."""
    train = [r for r in rows if r["kind"] == "train"]
    if fig is None:
        fig = Figure(figsize=(11, 7.5))
    axes = fig.subplots(2, 2)
    ax = axes[0, 0]
    if train:
        steps = np.array([r["step"] for r in train])
        loss = np.array([r["loss"] for r in train], float)
        ax.plot(steps, loss, color="0.75", lw=0.6, label="train (per step)")
        k = max(1, min(25, len(loss) // 10))
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, color="C0", lw=1.5, label=f"train ({k}-step mean)")
    styles = {"pm": ("C1", "pm-learned (classic PatchMatch, learnt features)"),
              "dpm": ("C2", "dpm-learned, T = 1e10 (hard)")}
    for mode, (col, lab) in styles.items():
        ev = [r for r in rows if r["kind"] == "heldout" and r["mode"] == mode]
        if not ev:
            continue
        s = [r["step"] for r in ev]
        for axx, key in ((axes[0, 1], "psnr"), (axes[1, 0], "epe"), (axes[1, 1], "within_1px")):
            axx.plot(s, [r[key] for r in ev], "o-", color=col, ms=3, label=lab)
    base_style = {"pm": ("k", ":", "pm (classic)")}
    for name, vals in baselines.items():
        col, ls, lab = base_style.get(name, ("C4", "-.", name))
        for axx, key in ((axes[0, 1], "psnr"), (axes[1, 0], "epe"), (axes[1, 1], "within_1px")):
            if key in vals and np.isfinite(vals[key]):
                axx.axhline(vals[key], color=col, ls=ls, lw=1, label=lab)
    axes[0, 0].set(title="training loss (the arm's)", xlabel="step", ylabel="loss")
    axes[0, 1].set(title="validation PSNR (mean over pairs)", xlabel="step", ylabel="dB")
    axes[1, 0].set(title="validation end-point error", xlabel="step", ylabel="pixels")
    axes[1, 1].set(title="validation matches within 1 px", xlabel="step", ylabel="fraction")
    for axx in axes.flat:
        axx.grid(alpha=0.3)
        axx.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    FigureCanvasAgg(fig)  # tight_layout needs a renderer
    fig.tight_layout()
    return fig


def save_training_plot(rows: list[dict], baselines: dict, path: Path, *, title: str = "") -> Path:
    """``training.png``: :func:`plot_training` written as PNG (Agg, 100 dpi)."""
    fig = plot_training(rows, baselines, title=title)
    FigureCanvasAgg(fig).print_figure(path, dpi=100)
    return path

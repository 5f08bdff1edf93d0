"""Figures of a ``compare`` run (matplotlib figures without pyplot: no backend, no global state).

The method is the thing compared, so it gets the strongest cue everywhere: its colour (one per
method, the same in every figure: :func:`colour`), with its registered marker; pairs get panels.
The exact NNF (the quality limit) and the trivial baselines are drawn as horizontal lines in
every panel they apply to.

* ``grid.png``: one row per pair: Image A | Image B | each method's reconstruction, titled with
  its L1 and L2 (MSE) errors, PSNR and SSIM (the DeepPruner README's presentation).
* ``iterations_<pair>.png``: reconstructions per iteration, one row per method; the columns are
  fractions of each method's own iterations (1/6 ... 6/6), every cell titled with its iteration.
* ``convergence.png``: per pair (columns) PSNR against iteration, PSNR against cumulative time and
  end-point error against iteration (rows); colour = method.
* ``nnf_<pair>.png``: matches as displacement colour maps (hue = direction, saturation = length,
  one scale per pair) for the ground truth and every matcher, and below them each matcher's
  end-point error against the ground truth on one shared colour scale.

Styles and primitive plots are in :mod:`.plotting`; figure functions here build a ``Figure`` and
write it as PNG (Agg, chosen per figure by :func:`~.plotting._save`). Nothing here selects a
backend or touches pyplot.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter, ScalarFormatter

from ..data.pairs import Pair, file_stem
from ..methods.registry import order, role
from ..methods.registry import label as method_label
from .artifacts import STRIP_COLUMNS, column_targets, load_artifact
from .plotting import (_save, colour, flow_of, is_level, linestyle, marker, new_figure, plot_colour_wheel,
                       plot_error, plot_flow, plot_image, plot_metric)
from .tables import summary_table

#: Titles of the grid's columns, first (the DeepPruner README's order), then the others by name.
GRID_TITLES = {"dpm": "differentiable (dpm)", "pm": "classic (pm)",
               "dpm-reference": "as the original (dpm-reference)",
               "dpm-keep": "DPM + current (dpm-keep)", "dpm-learned": "learnt DPM (dpm-learned)",
               "pm-learned": "PM, learnt (pm-learned)", "pm-normalised": "PM, normalised (pm-normalised)",
               "pm-kd": "kd-tree NNF (pm-kd)", "zero": "no motion (zero)", "random": "random (random)"}


def _fmt_metrics(row) -> str:
    return (f"L1 {row['l1']:.4f}  L2 {row['mse']:.5f}\n"
            f"PSNR {row['psnr']:.2f} dB  SSIM {row['ssim']:.3f}")


# --------------------------------------------------------------------------- figures
def grid_columns(summary) -> list[tuple[str, str]]:
    """``(method, title)`` of the grid's reconstruction columns: :data:`GRID_TITLES`' methods
    first, then every other method of the run but the exact NNF, in registry order."""
    ran = [m for m in order(summary["method"]) if role(m) != "limit"]
    first = [m for m in GRID_TITLES if m in ran]
    return [(m, GRID_TITLES.get(m, _short(f"{method_label(m)} ({m})", m)))
            for m in first + [m for m in ran if m not in first]]


def _short(title: str, name: str, width: int = 34) -> str:
    """A column title that fits above a thumbnail: the long one, else the name alone."""
    return title if len(title) <= width else name


def grid_figure(out: Path, summary, pairs: dict[str, Pair], last: dict | None = None) -> str | None:
    """``grid.png``: rows = pairs; A | B | differentiable | classic (| learnt). ``last``: each
    (pair, method)'s last reconstruction when already loaded (else read from the artifacts)."""
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
            if last is not None:
                recon = last.get((name, method))
            else:
                art = load_artifact(out, name, method)
                recon = None if art is None else art["recons"][-1]
            if rows.empty or recon is None:
                ax.axis("off")
                ax.text(0.5, 0.5, f"{label}\nnot run", ha="center", va="center", fontsize=8)
                continue
            row = rows.iloc[0]
            plot_image(recon / 255.0,
                       title=f"{label}, it {int(row['iteration'])}\n{_fmt_metrics(row)}",
                       ax=ax, fontsize=7.5)
    fig.tight_layout()
    return _save(fig, out / "grid.png", photo=True)


def _pair_artifacts(out: Path, df, pair: Pair, arts: dict | None) -> dict:
    """Method -> artifact of ``pair``'s methods in ``df`` (``arts`` when given), registry order."""
    if arts is None:
        arts = {m: load_artifact(out, pair.name, m) for m in order(df.loc[df["pair"] == pair.name, "method"])}
    return {m: a for m, a in arts.items() if a is not None}


def iterations_figure(out: Path, df, pair: Pair, arts: dict | None = None) -> str | None:
    """``iterations_<pair>.png``: A and B on top, then per method (rows) the reconstructions at the
    same fractions of its iterations (columns; see :func:`strip_columns`), each titled with its
    iteration and PSNR."""
    rows, once = [], []  # methods with iterations; methods reported once (exact, baselines)
    sel = df[df["pair"] == pair.name]
    for method, art in _pair_artifacts(out, df, pair, arts).items():
        (once if len(art["iterations"]) == 1 and int(art["iterations"][0]) == 0 else rows).append((method, art))
    if not rows and not once:
        return None
    h, w = pair.a.shape[:2]
    cell_w = 2.0
    cell_h = cell_w * h / w + 0.5
    ncol = 1 + STRIP_COLUMNS
    nrow = 1 + len(rows) + (1 if once else 0)
    fig = new_figure(figsize=(cell_w * (ncol - 0.4), cell_h * nrow + 0.4))
    axes = fig.subplots(nrow, ncol, squeeze=False, gridspec_kw=dict(width_ratios=[0.6] + [1.0] * STRIP_COLUMNS))
    for ax in axes.flat:
        ax.axis("off")
    plot_image(pair.a, title="Image A (to rebuild)", ax=axes[0, 1], fontsize=8)
    plot_image(pair.b, title="Image B (patch source)", ax=axes[0, 2], fontsize=8)

    def show(ax, method, art, k, what):
        it = int(art["iterations"][k])
        m = sel[(sel["method"] == method) & (sel["iteration"] == it)]
        psnr = m["psnr"].iloc[0] if not m.empty else math.nan
        ax.axis("on")
        plot_image(art["recons"][k] / 255.0, title=f"{what}\nPSNR {psnr:.2f} dB", ax=ax, fontsize=7)

    for r, (method, art) in enumerate(rows, start=1):
        axes[r, 0].text(0.95, 0.5, method, ha="right", va="center", fontsize=10, fontweight="bold",
                        transform=axes[r, 0].transAxes)
        its = [int(i) for i in art["iterations"]]
        n = int(sel.loc[sel["method"] == method, "iteration"].max())
        for c, k in strip_columns(its, n).items():
            show(axes[r, c], method, art, k, f"{method}: it {its[k]} of {n} ({c}/{STRIP_COLUMNS})")
    if once:  # one value each: side by side in the last row, from the right
        axes[-1, 0].text(0.95, 0.5, "once", ha="right", va="center", fontsize=10, fontweight="bold",
                         transform=axes[-1, 0].transAxes)
        for j, (method, art) in enumerate(reversed(once)):
            show(axes[-1, ncol - 1 - j], method, art, 0, "exact NNF" if method == "exact" else method)
    fig.suptitle(f"{pair.name}: A rebuilt from B's patches as the iterations go; columns: the same "
                 f"fraction (1/{STRIP_COLUMNS} ... {STRIP_COLUMNS}/{STRIP_COLUMNS}) of each method's "
                 "iterations", fontsize=10)
    fig.tight_layout()
    return _save(fig, out / f"iterations_{file_stem(pair.name)}.png", photo=True)


def strip_columns(iterations: list[int], n: int) -> dict[int, int]:
    """Column (1..:data:`STRIP_COLUMNS`) -> index into ``iterations`` (the kept reconstructions of
    a method with ``n`` iterations): column c shows the iteration nearest c/C of n, each once; a
    method reported once (the exact NNF, the baselines) sits in the last column."""
    if n <= 0 or len(iterations) == 1:
        return {STRIP_COLUMNS: len(iterations) - 1}
    out, used = {}, set()
    for c, target in enumerate(column_targets(n), start=1):
        k = min(range(len(iterations)), key=lambda i: abs(iterations[i] - target))
        if k not in used:
            out[c] = k
            used.add(k)
    return out


def convergence_figure(out: Path, df) -> str | None:
    """``convergence.png``: per pair (columns) PSNR against iteration and against cumulative time,
    and EPE against iteration where there is ground truth (rows); colour = method."""
    if df.empty:
        return None
    pairs = list(dict.fromkeys(df["pair"]))
    rows = [("psnr", "iteration", "PSNR (dB)"), ("psnr", "cum_time_s", "PSNR (dB)")]
    if df["epe"].notna().any():
        rows.append(("epe", "iteration", "end-point error (px, log)"))
    fig = new_figure(figsize=(3.3 * len(pairs) + 0.8, 2.9 * len(rows) + 1.0))
    axes = fig.subplots(len(rows), len(pairs), squeeze=False)
    for c, pair in enumerate(pairs):
        sub = df[df["pair"] == pair]
        for r, (y, x, ylabel) in enumerate(rows):
            ax = plot_metric(sub, y=y, x=x, ax=axes[r, c], logx=x != "iteration", logy=y == "epe")
            if y == "epe":  # plain numbers on the log axis
                ax.yaxis.set_major_formatter(ScalarFormatter())
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("iteration" if x == "iteration" else "cumulative compute time (s, log)",
                          fontsize=8)
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel(ylabel, fontsize=8)
            if r == 0:
                ax.set_title(pair, fontsize=9)
    methods = order(df["method"])
    handles = [Line2D([], [], color=colour(m), lw=2.5, marker=marker(m),
                      ls=linestyle(m) if is_level(m) else "-",
                      label=f"{m}: {method_label(m)}" + (" (limit)" if role(m) == "limit" else "")) for m in methods]
    if "exact" not in methods:
        handles.append(Line2D([], [], color="black", ls=":", label="exact NNF: not computed (see REPORT.md)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8.5,
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("Convergence: colour = method; horizontal lines: the exact NNF and the baselines",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.04 + 0.025 * math.ceil(len(handles) / 4), 1, 1))
    return _save(fig, out / "convergence.png")


def nnf_figure(out: Path, df, pair: Pair, arts: dict | None = None) -> str | None:
    """``nnf_<pair>.png``: the ground truth's and every matcher's displacement colour maps, and
    below them the matchers' end-point errors on one colour scale (pairs with ground truth)."""
    panels = [(m, art["nnf"]) for m, art in _pair_artifacts(out, df, pair, arts).items() if role(m) != "baseline"]
    if not panels:
        return None
    has_gt = pair.gt is not None and pair.valid is not None and pair.valid.any()
    if has_gt:  # one colour scale per pair: the ground truth's 99th percentile
        mag = np.hypot(*np.moveaxis(flow_of(np.nan_to_num(pair.gt)), -1, 0))[pair.valid]
        max_mag = float(max(np.percentile(mag, 99), 1.0))
    else:  # estimated fields have outliers: the 90th percentile of the first method's
        max_mag = float(max(np.percentile(np.hypot(*np.moveaxis(flow_of(panels[0][1]), -1, 0)), 90), 1.0))
    cols = len(panels) + (1 if has_gt else 0) + 1
    h, w = pair.a.shape[:2]
    side = 2.9
    nrow = 2 if has_gt else 1
    fig = new_figure(figsize=(side * (cols - 1) + 1.9, (side * h / w + 0.55) * nrow + 0.5))
    axes = fig.subplots(nrow, cols, squeeze=False, gridspec_kw=dict(width_ratios=[1.0] * (cols - 1) + [0.6]))
    c0 = 0
    if has_gt:
        plot_flow(np.nan_to_num(pair.gt), max_mag=max_mag, title="ground truth (gray: none)",
                  valid=pair.valid, ax=axes[0, 0])
        plot_image(pair.a, title="Image A", ax=axes[1, 0], fontsize=8)
        c0 = 1
    errors = []
    for k, (method, nnf) in enumerate(panels):
        plot_flow(nnf, max_mag=max_mag, title=f"{method}", ax=axes[0, c0 + k])
        axes[0, c0 + k].title.set_color(colour(method))
        if has_gt:
            err = np.hypot(*np.moveaxis(nnf - np.nan_to_num(pair.gt), -1, 0))[pair.valid]
            errors.append((method, nnf, float(err.mean())))
    plot_colour_wheel(max_mag, ax=axes[0, -1])
    if has_gt:  # one error scale for every method: the ground truth's displacement scale
        im = None
        for k, (method, nnf, mean) in enumerate(errors):
            im = plot_error(nnf, np.nan_to_num(pair.gt), pair.valid, vmax=max_mag,
                            title=f"{method}: EPE {mean:.1f} px", ax=axes[1, c0 + k])
        axes[1, -1].axis("off")
        cbar = fig.colorbar(im, ax=axes[1, -1], fraction=0.9, shrink=0.9)
        cbar.set_label("end-point error (px)", fontsize=8)
        cbar.ax.tick_params(labelsize=7)
    fig.suptitle(f"{pair.name}: matches as displacement (match in B - pixel of A)"
                 + ("; below: end-point error against the ground truth" if has_gt else ""), fontsize=10)
    fig.tight_layout()
    return _save(fig, out / f"nnf_{file_stem(pair.name)}.png")


def make_all(out: Path, df, pairs: dict[str, Pair]) -> list[str]:
    """Every figure of the run (of its first seed: the artifacts'); returns the file names written."""
    seeds = sorted(df["seed"].dropna().unique())
    if seeds:
        df = df[df["seed"].isna() | (df["seed"] == seeds[0])]
    made, last = [], {}
    for pair in pairs.values():  # each artifact read once: the per-pair figures, then the grid
        arts = _pair_artifacts(out, df, pair, None)
        last.update({(pair.name, m): art["recons"][-1].copy() for m, art in arts.items()})  # not the stacks
        made += [fn(out, df, pair, arts) for fn in (iterations_figure, nnf_figure)]
    made = [grid_figure(out, summary_table(df), pairs, last), convergence_figure(out, df), *made]
    return [name for name in made if name]

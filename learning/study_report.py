"""``REPORT.md`` and ``test_results.png`` of a learning study (:mod:`learning.study`).

The report answers the study's three questions with paired differences over the test pairs
(:mod:`learning.study_stats`: the unit of every standard error is a test pair), checks the target,
and shows every number behind them: the test table (feature set x matcher; mean and median
end-point error, within 1 px, PSNR, with the seeds' spread; the ``zero`` and ``random`` baselines),
the same split by texture, and every choice made on validation.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from .data import LOW_TEXTURE_FRACTION, LOW_TEXTURE_STD, TRAIN_IMAGES, VALIDATION_IMAGES
from .harness import MATCHERS
from .study_stats import METRICS, paired, per_seed_relative, summary, with_groups

__all__ = ["write_report", "plot_test", "TARGET_GAIN", "TARGET_PSNR_DB"]

#: The target: classic PatchMatch on the best learnt features at least this much lower mean EPE
#: than on normalised patches of the same area (beyond 2 standard errors) ...
TARGET_GAIN = 0.20
#: ... with a PSNR no more than this much lower.
TARGET_PSNR_DB = 0.5
TEXTURES = (None, "textured", "low-texture")


def _f(v, digits=2) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _diff(p: dict, unit: str = "px", digits: int = 2) -> str:
    """``diff ± se unit (rel ± rel_se)``; one pair has no standard error."""
    if not p["n"]:
        return "-"
    space = f" {unit}" if unit else ""
    if p["n"] < 2:
        return f"{p['diff']:+.{digits}f}{space} (1 pair, no SE)"
    rel = "" if unit in ("dB", "") or math.isnan(p["rel"]) else f" ({p['rel']:+.0%} ± {p['rel_se']:.0%})"
    return f"{p['diff']:+.{digits}f} ± {_f(p['se'], digits)}{space}{rel}"


def _tex(t) -> str:
    return t or "all"


def _groups(tdf: pd.DataFrame, meta: dict) -> dict:
    """Names of the groups the answers compare."""
    g = with_groups(tdf)
    learned = g[g["kind"] == "learned"]
    arms = {arm: rows["group"].iloc[0] for arm, rows in learned.groupby("arm", sort=False)}
    best = arms[meta["best_arm"]]
    area = int(learned[learned["arm"] == meta["best_arm"]]["area"].iloc[0])
    untrained = g[g["kind"] == "untrained"]["group"]
    return dict(arms=arms, best=best, normalised=f"normalised {area}x{area}", raw="raw 7x7",
                untrained=untrained.iloc[0] if len(untrained) else None)


def _answer_rows(tdf, a: str, b: str, matchers, metric="epe") -> list[str]:
    rows = []
    for m in matchers:
        for tex in TEXTURES:
            p = paired(tdf, (a, m), (b, m), metric=metric, texture=tex)
            q = paired(tdf, (a, m), (b, m), metric="psnr", texture=tex)
            w = paired(tdf, (a, m), (b, m), metric="within_1px", texture=tex)
            if p["n"]:
                rows.append(f"| {m} | {_tex(tex)} | {p['n']} | {_f(p['a'])} | {_f(p['b'])} | {_diff(p)} | "
                            f"{_diff(w, '', 3)} | {_diff(q, 'dB')} |")
    return rows


_HEAD = ("| matcher | pairs | n | EPE a | EPE b | EPE a - b (± SE; relative) | within 1 px a - b | PSNR a - b |",
         "|---|---|---:|---:|---:|---|---|---|")


def _target(tdf, G) -> list[str]:
    lines = []
    ok_all = True
    for tex in TEXTURES:
        p = paired(tdf, (G["best"], "pm"), (G["normalised"], "pm"), texture=tex)
        q = paired(tdf, (G["best"], "pm"), (G["normalised"], "pm"), metric="psnr", texture=tex)
        if not p["n"]:
            continue
        gain_ok = p["rel"] <= -TARGET_GAIN
        sig_ok = p["n"] > 1 and p["diff"] + 2 * p["se"] < 0
        psnr_ok = q["diff"] >= -TARGET_PSNR_DB
        ok_all &= gain_ok and sig_ok and psnr_ok
        miss = "" if gain_ok else f"; missed the 20% by {(-TARGET_GAIN - p['rel']) * -100:.1f} points"
        lines.append(f"* PatchMatch, {_tex(tex)} pairs ({p['n']}): EPE {p['rel']:+.1%} ± {p['rel_se']:.1%} "
                     f"({'meets' if gain_ok else 'misses'} <= -20%{miss}; "
                     f"{'beyond' if sig_ok else 'not beyond'} 2 SE: z = {p['z']:.1f}); PSNR {q['diff']:+.2f} dB "
                     f"({'within' if psnr_ok else 'beyond'} -{TARGET_PSNR_DB} dB)")
    e = paired(tdf, (G["best"], "exact"), (G["normalised"], "exact"))
    ex_ok = e["n"] and e["diff"] <= 0
    ok_all &= bool(ex_ok)
    lines.append(f"* exact NNF, all pairs: EPE {_diff(e)}: {'no worse' if ex_ok else 'worse'} than normalised patches")
    lines.insert(0, f"**Target {'reached' if ok_all else 'not reached'}** (best arm on validation: "
                    f"`{G['best']}`, against `{G['normalised']}`):")
    return lines


def plot_test(tdf: pd.DataFrame, *, order: list[str], fig: Figure | None = None) -> Figure:
    """EPE (log scale), within 1 px and PSNR (rows) per matcher (columns): one bar per feature set
    (colour), error bar = the seeds' spread; ``zero`` and ``random`` as lines in every panel."""
    s = summary(tdf)
    fig = fig or Figure(figsize=(16, 10))
    axes = fig.subplots(3, len(MATCHERS), squeeze=False)
    colours = {g: f"C{i % 10}" for i, g in enumerate(order)}
    for col, m in enumerate(MATCHERS):
        rows = s[s["matcher"] == m].set_index("group")
        for row, (metric, label) in enumerate((("epe", "mean EPE (px)"), ("within_1px", "within 1 px"),
                                               ("psnr", "PSNR (dB)"))):
            ax = axes[row, col]
            present = [g for g in order if g in rows.index]
            x = np.arange(len(present))
            ax.bar(x, [rows.loc[g, metric] for g in present], yerr=[rows.loc[g, metric + "_spread"] for g in present],
                   color=[colours[g] for g in present], capsize=2)
            for base, ls in (("zero", "--"), ("random", ":")):
                b = s[(s["group"] == base) & (s["matcher"] == base)]
                if len(b):
                    ax.axhline(float(b[metric].iloc[0]), color="k", ls=ls, lw=1, label=base)
            ax.set_xticks(x, present, rotation=70, fontsize=7, ha="right")
            if metric == "epe":
                ax.set_yscale("log")  # the baselines sit an order of magnitude above the matchers
                ax.yaxis.set_major_formatter(ScalarFormatter())
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_ylabel(label)
            ax.grid(axis="y", alpha=0.3)
            if row == 0:
                ax.set_title(m)
                ax.legend(fontsize=7)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    return fig


def _table(s: pd.DataFrame, order: list[str]) -> list[str]:
    lines = ["| feature set | matcher | pairs | EPE px | median EPE px | within 1 px | PSNR dB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    rank = {g: i for i, g in enumerate(order + ["zero", "random"])}
    s = s.assign(r=s["group"].map(lambda g: rank.get(g, len(rank))),
                 m=s["matcher"].map(lambda m: (list(MATCHERS) + ["zero", "random"]).index(m)))
    for _, r in s.sort_values(["r", "m"]).iterrows():
        cells = [f"{_f(r[k], 3 if k == 'within_1px' else 2)} ± {_f(r[k + '_spread'], 3 if k == 'within_1px' else 2)}"
                 for k in METRICS]
        lines.append(f"| {r['group']} | {r['matcher']} | {int(r['n'])} | " + " | ".join(cells) + " |")
    return lines


def write_report(out: Path, vdf: pd.DataFrame, tdf: pd.DataFrame, meta: dict, times: dict) -> Path:
    """Write ``OUT/REPORT.md`` and ``OUT/test_results.png``; returns the report's path."""
    out = Path(out)
    st = meta["settings"]
    tdf = with_groups(tdf)
    G = _groups(tdf, meta)
    order = list(dict.fromkeys(tdf[tdf["kind"].isin(["raw", "normalised", "untrained"])]["group"]))
    order += list(G["arms"].values())
    fig = plot_test(tdf, order=order)
    FigureCanvasAgg(fig).print_figure(out / "test_results.png", dpi=90)
    textures = tdf.drop_duplicates("pair").set_index("pair")["texture"]
    L = ["# Learning study: what the gradients buy", "",
         f"`{st.get('command') or 'python -m experiments learn-study'}`" + (" (quick)" if st["quick"] else ""), "",
         f"Test pairs ({len(textures)}, {st['size']} px): " + ", ".join(f"`{p}` ({t})" for p, t in textures.items())
         + f". Training images: {', '.join(TRAIN_IMAGES)}; validation: {len(meta['pairs']['validation'])} warps of "
           f"{', '.join(VALIDATION_IMAGES)} (every choice below was made there; the three splits share no image, "
           "checked by pixel content). Texture rule: a pair is low-texture when at least "
           f"{LOW_TEXTURE_FRACTION:.0%} of A's valid pixels have a 7x7 luminance std below {LOW_TEXTURE_STD}.",
         "",
         f"Seeds: training {st['train_seeds']}, PatchMatch {st['eval_seeds']}, DPM {st['dpm_seeds']} (the exact NNF "
         f"has none); {st['steps']} training steps at most, batch {st['batch']} crops of {st['crop']} px. "
         "Standard errors (SE) are over test pairs (each pair's number averaged over seeds and training seeds); "
         "± in the tables of results is the spread (std) over seeds. All matchers run in hard mode; every "
         "reconstruction votes 7x7 RGB patches of B at the matches.", "",
         "Time (s, on " + f"{st['threads']} threads): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()), "",
         "## Answers", "",
         f"### 1. Trained features against normalised patches of the same area (`{G['best']}` vs `{G['normalised']}`)",
         "", *_HEAD, *_answer_rows(tdf, G["best"], G["normalised"], ("exact", "pm")), "",
         f"Against raw 7x7 patches (`{G['raw']}`; beating them proves little):", "", *_HEAD,
         *_answer_rows(tdf, G["best"], G["raw"], ("exact", "pm")), ""]
    if G["untrained"]:
        L += [f"The untrained net (`{G['untrained']}`) against the same normalised patches:", "", *_HEAD,
              *_answer_rows(tdf, G["untrained"], G["normalised"], ("pm",)), ""]
    arms = G["arms"]
    L += ["Each training seed of the best arm, PatchMatch EPE relative to the normalised patches: "
          + ", ".join(f"seed {k}: {v:+.1%}" for k, v in per_seed_relative(
              tdf, G["best"], (G["normalised"], "pm"), "pm").items()), ""]
    if "dpm-ce" in meta["choices"] and "contrastive" in meta["choices"]:
        L += ["### 2. Training through DPM (`dpm-ce`) against training without it (`contrastive`)", "",
              f"a = `{arms['dpm-ce']}`, b = `{arms['contrastive']}`:", "", *_HEAD,
              *_answer_rows(tdf, arms["dpm-ce"], arms["contrastive"], MATCHERS), ""]
    if "recon" in arms:
        L += [f"The earlier loss (`{arms['recon']}`) against `contrastive`:", "", *_HEAD,
              *_answer_rows(tdf, arms["recon"], arms.get("contrastive", G["best"]), ("pm", "dpm-keep")), ""]
    L += ["### 3. Do learnt features close DPM's gap to PatchMatch?", "",
          "| a | b | pairs | EPE a - b (± SE) | PSNR a - b |", "|---|---|---|---|---|"]
    for m in ("dpm-keep", "dpm-reference"):
        for a, b in (((G["raw"], m), (G["raw"], "pm")), ((G["best"], m), (G["raw"], "pm")),
                     ((G["best"], m), (G["best"], "pm")), ((G["best"], m), (G["raw"], m))):
            p, q = paired(tdf, a, b), paired(tdf, a, b, metric="psnr")
            L.append(f"| {a[0]}, {a[1]} | {b[0]}, {b[1]} | {p['n']} | {_diff(p)} | {_diff(q, 'dB')} |")
    L += ["", "### Target", "", *_target(tdf, G), "",
          "## Test results", "", "![test results](test_results.png)", "", "All test pairs (mean over pairs; ± the "
          "spread over seeds):", "", *_table(summary(tdf), order), ""]
    for tex in ("textured", "low-texture"):
        s = summary(tdf, texture=tex)
        if len(s):
            L += [f"{tex.capitalize()} pairs:", "", *_table(s, order), ""]
    L += _validation_section(vdf, meta)
    (out / "REPORT.md").write_text("\n".join(L) + "\n")
    return out / "REPORT.md"


def _validation_section(vdf: pd.DataFrame, meta: dict) -> list[str]:
    L = ["## Choices made on validation", "",
         "Classic PatchMatch (5 iterations), mean EPE over the validation pairs and seeds; per arm the lowest is "
         "chosen (net, step count, matching patch), per area the best eps of the normalised patches.", "",
         "| features | steps | patch | area | validation EPE px | within 1 px |", "|---|---:|---:|---:|---:|---:|"]
    v = vdf[vdf["split"] == "validation"]
    v = v[v["matcher"] == "pm"]
    grouped = v.groupby(["feature_set", "step", "match_patch", "area"], dropna=False)[["epe", "within_1px"]].mean()
    for (name, step, p, area), r in grouped.sort_values("epe").iterrows():
        L.append(f"| {name} | {_f(step, 0)} | {_f(p, 0)} | {int(area)} | {r['epe']:.2f} | {r['within_1px']:.3f} |")
    st = meta["settings"]
    tried = (f"Tried on validation: {len(st['arms'])} arms x {len(st['nets'])} nets ({', '.join(st['nets'])}) x "
             f"{len(st['snapshots'])} step counts (of {st['steps']}) x {len(st['match_patches'])} matching patches "
             f"({', '.join(map(str, st['match_patches']))}), training seed {st['train_seeds'][0]}; normalised patches "
             f"at areas {', '.join(map(str, meta['areas']))} x eps {', '.join(f'{e:g}' for e in st['eps_choices'])}.")
    edge = [f"`{a}`'s matching patch ({c['match_patch']})" for a, c in meta["choices"].items()
            if c["match_patch"] == max(st["match_patches"]) and len(st["match_patches"]) > 1]
    edge += [f"the eps of area {a} ({e:g})" for a, e in meta["eps"].items()
             if e == max(st["eps_choices"]) and len(st["eps_choices"]) > 1]
    if edge:
        tried += " At the edge of the grid (a wider grid might do better): " + ", ".join(edge) + "."
    L += ["", tried, "", "Chosen: " + "; ".join(f"`{a}`: {c['net']}, {c['step']} steps, {c['match_patch']}x{c['match_patch']} "
                                     f"descriptor patch" for a, c in meta["choices"].items())
          + "; normalised eps by area: " + ", ".join(f"{a}: {e:g}" for a, e in meta["eps"].items()) + ".", "",
          "Final arms on validation (all training seeds, PatchMatch): "
          + ", ".join(f"`{a}` {e:.2f} px" for a, e in meta["validation_by_arm"].items())
          + f". Best: `{meta['best_arm']}`, seed {meta['best_seed']}: `{meta['checkpoint']}`.", ""]
    return L

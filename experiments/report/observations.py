"""Plain-language facts read off a ``compare`` run's summary: no judgement beyond the numbers.

Every comparison is made within one dataset (never across datasets) and states the noise it has
to beat: with several seeds, the standard error of the paired difference over seeds (a
difference within two standard errors is said to be inside the seed-to-seed spread); with one
seed, that the spread was not measured. Every matcher is held against the trivial baselines
(``zero``: no motion, ``random``: uniform matches) where the run has them.
"""
from __future__ import annotations

import math

from ..methods.registry import order, role
from .tables import paired_difference

#: Optional DPM settings compared with ``dpm``, and how each difference is named.
VARIANTS = (("dpm-reference", "The original code's configuration (dpm-reference - dpm)"),
            ("dpm-keep", "Keeping the current offset (dpm-keep - dpm)"),
            ("dpm-learned", "Learnt features vs fixed (dpm-learned - dpm)"))


def verdict(d: dict, unit: str, fmt: str = "{:+.2f}") -> str:
    """``+1.23 dB ± 0.10 (3 seeds): beyond the seed-to-seed spread`` or its alternatives."""
    text = fmt.format(d["mean"]) + f" {unit}"
    if d["seeds"] < 2 or not math.isfinite(d["se"]):
        return text + " (one seed: the seed-to-seed spread is not measured; rerun with --seeds 0 1 2)"
    inside = abs(d["mean"]) <= 2 * d["se"]
    return (text + f" ± {d['se']:.2f} (standard error over {d['seeds']} seeds): "
            + ("inside the seed-to-seed spread, no difference shown" if inside
               else "beyond the seed-to-seed spread"))


def _baselines(summary, dataset: str, methods: list[str]) -> list[str]:
    """Which matchers beat the trivial baselines in end-point error on ``dataset``."""
    out = []
    present = [b for b in methods if role(b) == "baseline"]
    if not present or summary.loc[summary["dataset"] == dataset, "epe"].isna().all():
        return out
    for m in (m for m in methods if role(m) != "baseline"):
        parts = []
        for b in present:
            d = paired_difference(summary, dataset, m, b, "epe")
            if d is None:
                continue
            if d["mean"] < 0 and not (d["seeds"] > 1 and abs(d["mean"]) <= 2 * d["se"]):
                parts.append(f"beats {b} by {-d['mean']:.2f} px")
            else:
                parts.append(f"**does not beat {b}** (EPE {d['mean']:+.2f} px against it)")
        if parts:
            out.append(f"- {dataset}: {m} " + ", ".join(parts) + " in mean EPE.")
    return out


def observations(summary) -> list[str]:
    """The facts of the run, per dataset (see the module docstring)."""
    out = []
    for dataset in dict.fromkeys(summary["dataset"]):
        sub = summary[summary["dataset"] == dataset]
        methods = order(sub["method"])
        out += _baselines(summary, dataset, methods)
        if "pm" in methods and "dpm" in methods:
            d = paired_difference(summary, dataset, "pm", "dpm", "psnr")
            if d is not None:
                out.append(f"- {dataset}: PSNR of classic (pm) minus differentiable (dpm) PatchMatch, "
                           f"mean over {d['pairs']} pairs: {verdict(d, 'dB')}.")
            d = paired_difference(summary, dataset, "pm", "dpm", "epe")
            if d is not None:
                out.append(f"- {dataset}: EPE of pm minus dpm: {verdict(d, 'px')}.")
            pm, dpm = (sub[sub["method"] == m]["cum_time_s"].mean() for m in ("pm", "dpm"))
            if math.isfinite(pm) and math.isfinite(dpm) and pm > 0:
                out.append(f"- {dataset}: dpm's iterations take {dpm / pm:.0f}x pm's compute time "
                           "on this device (mean over pairs and seeds).")
        for m, what in VARIANTS:
            if m in methods and "dpm" in methods:
                d = paired_difference(summary, dataset, m, "dpm", "psnr")
                if d is not None:
                    out.append(f"- {dataset}: {what}: PSNR {verdict(d, 'dB')}, at equal iterations.")
        if "exact" in methods:
            for m in (m for m in methods if role(m) == "matcher"):
                r = _energy_ratios(sub, m)
                if r:
                    out.append(f"- {dataset}: {m}'s energy at its last iteration is {min(r):.2f}x to "
                               f"{max(r):.2f}x the exact NNF's ({len(r)} pairs with the exact NNF).")
    return out or ["- (nothing to compare)"]


def _energy_ratios(sub, method: str) -> list[float]:
    """Per pair: the method's energy (mean over seeds) over the exact NNF's (non-zero ones)."""
    e = sub.groupby(["pair", "method"])["energy"].mean()
    out = []
    for pair in dict.fromkeys(sub["pair"]):
        a, b = e.get((pair, method), math.nan), e.get((pair, "exact"), math.nan)
        if math.isfinite(a) and math.isfinite(b) and b > 0:
            out.append(a / b)
    return out

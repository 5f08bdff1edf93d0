"""``REPORT.md`` of a ``compare`` run and its console summary (one line per dataset and method).

Results are shown per dataset, the way its community reads them (:data:`~experiments.report.
tables.DATASET_VIEWS`), never averaged across datasets; with several seeds every number is the
mean over seeds and ``±`` its seed-to-seed standard deviation. Observations:
:mod:`experiments.report.observations`.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from ..data.datasets import MIN_VALID_FRACTION
from ..data.pairs import dataset_of, file_stem
from ..methods.registry import label, order
from .figures import grid_columns
from .observations import observations
from .tables import cell, dataset_table, markdown_table, seeds_of, view

PAIR_COLS = [("pair", "pair"), ("method", "method"), ("iteration", "it"), ("psnr", "PSNR dB"),
             ("ssim", "SSIM"), ("l1", "L1"), ("mse", "L2 (MSE)"), ("energy", "energy"),
             ("epe", "EPE px"), ("within_1px", "<=1px"), ("cum_time_s", "time s")]


def console_table(summary) -> str:
    """One line per dataset and method (as RAFT's evaluation prints): its community's metrics,
    PSNR and time, mean over pairs (and seeds, ``±`` their spread)."""
    if summary.empty:
        return "(no rows)"
    lines = []
    for dataset in dict.fromkeys(summary["dataset"]):
        title, cols = view(dataset)
        table = dataset_table(summary, dataset)
        width = max(len(m) for m in table["method"])
        for _, r in table.iterrows():
            parts = [f"{h} {cell(c, r[c], r.get(c + '_sd'))}" for c, h in cols if math.isfinite(r[c])]
            lines.append(f"{dataset:<14s} {r['method']:<{width}s}  " + "  ".join(parts)
                         + f"  ({r['pairs']} pair{'s' if r['pairs'] != 1 else ''}"
                         + (f", {r['seeds']} seeds)" if r["seeds"] > 1 else ")"))
    return "\n".join(lines)


def _generic(reason: str) -> str:
    """A skip reason without its pair-specific number (so equal reasons are listed once)."""
    return re.sub(r" = \d+ > ", " exceeds ", reason)


def _per_pair(summary):
    """Per (pair, method): the last iteration's metrics, mean over seeds, ``_sd`` their spread."""
    keys = ["pair", "method"]
    cols = [c for c, _ in PAIR_COLS if c not in keys]
    g = summary.groupby(keys, sort=False)[cols]
    return g.mean(numeric_only=True).join(g.std(ddof=1, numeric_only=True).add_suffix("_sd")).reset_index()


def _shown_path(path: str) -> str:
    """A path as the reader can use it: relative to the working folder when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _setting_text(name: str, params: dict) -> str:
    """``name``: the setting's parameters as its library takes them (checkpoints by file name)."""
    shown = {k: v for k, v in params.items() if k != "checkpoint_sha256"}
    if "checkpoint" in shown:
        shown["checkpoint"] = Path(shown["checkpoint"]).name
    return f"`{name}`: " + ", ".join(f"{k}={v!r}" for k, v in shown.items())


def write_report(out: Path, df, summary, pairs: dict, meta: dict) -> Path:
    """Write ``out/REPORT.md``: setup, tables and figures of the run, readable on its own."""
    cfg = meta.get("config", {})
    run = meta.get("run", {})
    prov = meta.get("provenance", {})
    dev, ver, git = prov.get("device", {}), prov.get("versions", {}), prov.get("git", {})
    L = []
    L.append("# Classic vs differentiable PatchMatch: run report\n")
    L.append(f"Command: `{cfg.get('command', '?')}`  ")
    L.append(f"Finished: {meta.get('updated', '?')}; wall time of the last session "
             f"{meta.get('wall_s', math.nan):.0f} s (numba/torch warm-up "
             f"{meta.get('warmup_s', math.nan):.1f} s, excluded from all timings).\n")
    L.append("## Setup\n")
    L.append("| setting | value |\n|---|---|")
    gpu = f" ({dev['gpu']})" if dev.get("gpu") else ""
    rows = [
        ("device", f"{run.get('device')}{gpu}"),
        ("CPU", f"{prov.get('cpu', '?')}, {prov.get('cpu_count', '?')} logical cores"),
        ("threads", f"{run.get('threads')} (numba and torch threads of every timed method)"),
        ("patch size", run.get("patch_size")),
        ("methods", ", ".join(f"`{m}`" for m in run.get("methods", []))),
        ("max size", f"{run.get('max_size')} px (longer side)" if run.get("max_size")
         else "native resolution"),
        ("seeds", ", ".join(str(x) for x in run.get("seeds", []))
         + (" (numbers: mean over seeds ± standard deviation)" if len(run.get("seeds", [])) > 1 else "")),
        ("exact NNF", f"when sqrt(pixels of A x pixels of B) <= "
                      f"{run.get('exact_max_pixels')} (--exact-max-pixels)"),
        ("git commit", f"`{git.get('commit', '?')}`" + (" (uncommitted changes)"
                                                       if git.get("dirty") else "")),
        ("versions", ", ".join(f"{k} {v}" for k, v in ver.items() if v)),
    ]
    for name, params in reversed(list((meta.get("settings") or {}).items())):
        rows.insert(5, ("setting" if name else "", _setting_text(name, params)))
    if run.get("checkpoint"):
        li = meta.get("learned") or {}
        extra = ", ".join(f"{k} {li[k]}" for k in ("step", "parameters", "learned_temperature")
                          if k in li)
        rows.insert(5, ("checkpoint (learnt features)", f"`{_shown_path(run['checkpoint'])}`"
                        + (f" ({extra})" if extra else "")))
    L += [f"| {k} | {v} |" for k, v in rows]
    L.append("")
    L.append("## Pairs\n")
    L.append("| pair | dataset | A (w x h) | B (w x h) | ground truth | source |\n|---|---|---|---|---|---|")
    low = []
    for name, p in pairs.items():
        gt = f"yes ({p.valid.mean():.1%} of A valid)" if p.has_gt else "no"
        if p.has_gt and p.valid.mean() < MIN_VALID_FRACTION:
            low.append(f"{name} ({p.valid.mean():.1%})")
        L.append(f"| {name} | {dataset_of(p)} | {p.a.shape[1]} x {p.a.shape[0]} | {p.b.shape[1]} x "
                 f"{p.b.shape[0]} | {gt} | {p.source} |")
    L.append("")
    if low:
        L.append(f"**Little ground truth:** under {MIN_VALID_FRACTION:.0%} of A's pixels are valid on "
                 + ", ".join(low) + "; their end-point errors rest on few pixels.\n")
    skipped = meta.get("exact_skipped") or {}
    if skipped:
        L.append("**Exact NNF not computed** for " + ", ".join(skipped) + ":\n")
        for reason in dict.fromkeys(_generic(v) for v in skipped.values()):
            L.append(f"- {reason}")
        L.append("")
    sampled = meta.get("sampled_exact") or {}
    if sampled:
        L.append("**Distance to the optimum where the exact NNF was skipped**: each matcher's energy "
                 "above the exact NNF's, estimated on a seeded sample of A's interior pixels "
                 "(`classic_pm.sampled_exact_energy`; ± its standard error; first seed):\n")
        L.append("| pair | method | energy above exact | pixels | already exact |\n|---|---|---:|---:|---:|")
        for pair_name, gaps in sampled.items():
            for m, g in gaps.items():
                L.append(f"| {pair_name} | {m} | {100 * g['gap']:+.1f}% ± {100 * g['gap_se']:.1f}% | "
                         f"{g['samples']} | {g['exact_fraction']:.0%} |")
        L.append("")
    failures = meta.get("failures") or {}
    if failures:
        L.append("**Failed runs** (NaN rows in the tables; a resumed run retries them):\n")
        L += [f"- {k.replace('__', ' / ')}: {v}" for k, v in failures.items()]
        L.append("")
    L.append("## Observations\n")
    L += observations(summary)
    L.append("")
    seeds = seeds_of(summary)
    spread = len(seeds) > 1
    L.append("## Results by dataset\n")
    L.append("Mean over each dataset's pairs at every method's last iteration, in the columns its "
             "community reads" + (f"; mean over seeds {', '.join(map(str, seeds))} ± the seed-to-seed "
                                  "standard deviation of that mean" if spread else "")
             + ". `zero` (no motion) and `random` (uniform matches) are the trivial baselines: a "
             "matcher that does not beat them in EPE has matched nothing. Datasets are never "
             "averaged together.\n")
    for dataset in dict.fromkeys(summary["dataset"]):
        title, cols = view(dataset)
        table = dataset_table(summary, dataset)
        L.append(f"### {title}\n")
        L.append(markdown_table(table, [("method", "method"), ("pairs", "pairs"), *cols], spread=spread))
        L.append("")
    L.append("## Results per pair\n")
    L.append("Each method's own reconstruction of A from B's patches (pm, exact and the baselines: "
             "`classic_pm.vote`; dpm: `diff_pm.reconstruct`), compared with A. L1 and L2 (MSE) on "
             "[0, 1] RGB as in the DeepPruner README; energy = mean patch SSD per pixel and "
             "channel at the rounded matches (the same function for every method); EPE and "
             "<=1px against ground truth on valid pixels; time = cumulative compute time "
             "(JIT, metrics and reconstruction excluded)"
             + ("; mean over seeds ± standard deviation" if spread else "") + ".\n")
    L.append(markdown_table(_per_pair(summary), PAIR_COLS, spread=spread))
    L.append("")
    figs = set(meta.get("figures", []))
    if "grid.png" in figs:
        L.append("## Reconstructions\n")
        L.append("Rows are pairs: Image A (to rebuild) | Image B (patch source) | "
                 + " | ".join(title for _, title in grid_columns(summary))
                 + ", each at its last iteration.\n")
        L.append("![grid](grid.png)\n")
    if "convergence.png" in figs:
        L.append("## Convergence\n")
        limit = ("dotted horizontal lines: the exact NNF (the limit of any NNF method's energy)"
                 if (summary["method"] == "exact").any() else
                 "the exact NNF was not computed in this run, so no limit lines are drawn")
        L.append("PSNR and energy per iteration and against cumulative compute time, one column per "
                 f"pair; colour = method; {limit}; the baselines as level lines too.\n")
        L.append("![convergence](convergence.png)\n")
    L.append("## Per pair\n")
    for name in pairs:
        L.append(f"### {name}\n")
        sub = df[(df["pair"] == name) & (df["seed"].isna() | (df["seed"] == (seeds or [0])[0]))]
        per_method = []
        for m in order(sub["method"]):
            g = sub[sub["method"] == m].sort_values("iteration")
            if not g.empty:
                first, last = g.iloc[0], g.iloc[-1]
                per_method.append(f"{label(m)}: PSNR {cell('psnr', first['psnr'])} -> "
                                  f"{cell('psnr', last['psnr'])} dB over {len(g)} "
                                  f"iteration{'s' if len(g) > 1 else ''} "
                                  f"({cell('cum_time_s', last['cum_time_s'])} s)")
        L.append("; ".join(per_method) + ".\n")
        stem = file_stem(name)
        if f"iterations_{stem}.png" in figs:
            L.append(f"![iterations {name}](iterations_{stem}.png)\n")
        if f"nnf_{stem}.png" in figs:
            L.append(f"![nnf {name}](nnf_{stem}.png)\n")
    L.append("## Files\n")
    L.append("- `metrics.csv`: one row per (pair, method, seed, iteration); columns documented in "
             "docs/outputs.md of the suite.\n- `summary.csv`: the last iteration of each (pair, "
             "method, seed)."
             "\n- `config.json`: full configuration, versions, device, git commit, skipped work."
             "\n- `artifacts/`: final NNFs and per-iteration reconstructions used by the figures.")
    path = out / "REPORT.md"
    path.write_text("\n".join(L) + "\n")
    return path

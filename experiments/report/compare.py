"""``REPORT.md`` of a ``compare`` run and the console summary table."""
from __future__ import annotations

import math
import re
from pathlib import Path

from ..data.pairs import file_stem
from ..methods.registry import label, order
from .figures import grid_columns
from .tables import method_means

SUMMARY_COLS = [("pair", "pair"), ("method", "method"), ("iteration", "it"),
                ("psnr", "PSNR dB"), ("ssim", "SSIM"), ("l1", "L1"), ("mse", "L2 (MSE)"),
                ("energy", "energy"), ("epe", "EPE px"), ("within_1px", "<=1px"),
                ("cum_time_s", "time s")]
_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.3f}", "l1": "{:.4f}", "mse": "{:.5f}",
            "energy": "{:.5f}", "epe": "{:.2f}", "within_1px": "{:.3f}", "cum_time_s": "{:.2f}",
            "iteration": "{:d}"}


def _cell(col: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    fmt = _FORMATS.get(col)
    if fmt:
        try:
            return fmt.format(int(v) if col == "iteration" else float(v))
        except (TypeError, ValueError):
            pass
    return str(v)


def markdown_table(df, cols=SUMMARY_COLS) -> str:
    head = "| " + " | ".join(h for _, h in cols) + " |"
    sep = "|" + "|".join("---" if c in ("pair", "method") else "---:" for c, _ in cols) + "|"
    body = ["| " + " | ".join(_cell(c, r[c]) for c, _ in cols) + " |" for _, r in df.iterrows()]
    return "\n".join([head, sep, *body])


def console_table(summary) -> str:
    """Fixed-width text version of the summary (printed at the end of a run)."""
    if summary.empty:
        return "(no rows)"
    cells = [[h for _, h in SUMMARY_COLS]]
    cells += [[_cell(c, r[c]) for c, _ in SUMMARY_COLS] for _, r in summary.iterrows()]
    widths = [max(len(row[i]) for row in cells) for i in range(len(SUMMARY_COLS))]
    lines = []
    for k, row in enumerate(cells):
        lines.append("  ".join(v.ljust(w) if i < 2 else v.rjust(w)
                               for i, (v, w) in enumerate(zip(row, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _generic(reason: str) -> str:
    """A skip reason without its pair-specific number (so equal reasons are listed once)."""
    return re.sub(r" = \d+ > ", " exceeds ", reason)


def _ratio(a: float, b: float) -> float:
    """a / b, NaN when b is zero or not finite (e.g. the exact energy of an identical pair)."""
    return a / b if math.isfinite(b) and b > 0 else math.nan


def observations(summary) -> list[str]:
    """Plain-language facts read off the summary table (no judgement beyond the numbers)."""
    out = []
    pairs = list(dict.fromkeys(summary["pair"]))
    last = summary.set_index(["pair", "method"])
    methods = [m for m in order(summary["method"]) if m != "exact"]

    def get(p, m, c):
        try:
            return float(last.loc[(p, m), c])
        except KeyError:
            return math.nan

    if "pm" in methods and "dpm" in methods:
        d = [(p, get(p, "pm", "psnr") - get(p, "dpm", "psnr")) for p in pairs]
        d = [(p, x) for p, x in d if math.isfinite(x)]
        wins = sum(x > 0 for _, x in d)
        if d:
            out.append(f"- PSNR at the last iteration: classic (pm) is higher than differentiable "
                       f"(dpm) on {wins} of {len(d)} pairs (difference pm - dpm from "
                       f"{min(x for _, x in d):+.2f} to {max(x for _, x in d):+.2f} dB).")
        t = [_ratio(get(p, "dpm", "cum_time_s"), get(p, "pm", "cum_time_s")) for p in pairs]
        t = [x for x in t if math.isfinite(x) and x > 0]
        if t:
            out.append(f"- Compute time for all iterations: dpm takes {min(t):.0f}x to "
                       f"{max(t):.0f}x as long as pm on this device.")
    for m in methods:
        w = [get(p, m, "within_1px") for p in pairs]
        e = [get(p, m, "epe") for p in pairs]
        w = [x for x in w if math.isfinite(x)]
        e = [x for x in e if math.isfinite(x)]
        if w:
            out.append(f"- {label(m)} ({m}): mean EPE {sum(e) / len(e):.2f} px, "
                       f"{100 * sum(w) / len(w):.1f}% of valid pixels within 1 px of the ground "
                       f"truth (mean over {len(w)} pairs with ground truth).")
    for m in methods:
        r = [_ratio(get(p, m, "energy"), get(p, "exact", "energy")) for p in pairs]
        r = [x for x in r if math.isfinite(x)]
        if r:
            out.append(f"- {m} energy at the last iteration is {min(r):.2f}x to {max(r):.2f}x "
                       f"the exact NNF's ({len(r)} pairs with the exact NNF and non-zero "
                       "exact energy).")
    for m, what in (("dpm-reference", "The original code's configuration (dpm-reference - dpm)"),
                    ("dpm-keep", "Keeping the current offset (dpm-keep - dpm)"),
                    ("dpm-learned", "Learnt features vs fixed (dpm-learned - dpm)")):
        if m in methods and "dpm" in methods:
            d = [get(p, m, "psnr") - get(p, "dpm", "psnr") for p in pairs]
            d = [x for x in d if math.isfinite(x)]
            if d:
                out.append(f"- {what}: PSNR {min(d):+.2f} to {max(d):+.2f} dB over "
                           f"{len(d)} pairs, at equal iterations.")
    return out or ["- (nothing to compare)"]


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
        ("seed", run.get("seed")),
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
        rows.insert(5, ("checkpoint (dpm-learned)", f"`{run['checkpoint']}`"
                        + (f" ({extra})" if extra else "")))
    L += [f"| {k} | {v} |" for k, v in rows]
    L.append("")
    L.append("## Pairs\n")
    L.append("| pair | A (w x h) | B (w x h) | ground truth | source |\n|---|---|---|---|---|")
    for name, p in pairs.items():
        gt = f"yes ({p.valid.mean():.0%} of A valid)" if p.has_gt else "no"
        L.append(f"| {name} | {p.a.shape[1]} x {p.a.shape[0]} | {p.b.shape[1]} x "
                 f"{p.b.shape[0]} | {gt} | {p.source} |")
    L.append("")
    skipped = meta.get("exact_skipped") or {}
    if skipped:
        L.append("**Exact NNF not computed** for " + ", ".join(skipped) + ":\n")
        for reason in dict.fromkeys(_generic(v) for v in skipped.values()):
            L.append(f"- {reason}")
        L.append("")
    failures = meta.get("failures") or {}
    if failures:
        L.append("**Failed runs** (NaN rows in the tables; a resumed run retries them):\n")
        L += [f"- {k.replace('__', ' / ')}: {v}" for k, v in failures.items()]
        L.append("")
    L.append("## Observations\n")
    L += observations(summary)
    L.append("")
    L.append("## Results at the last iteration\n")
    L.append("Each method's own reconstruction of A from B's patches (pm and exact: "
             "`classic_pm.vote`; dpm: `diff_pm.reconstruct`), compared with A. L1 and L2 (MSE) on "
             "[0, 1] RGB as in the DeepPruner README; energy = mean patch SSD per pixel and "
             "channel at the rounded matches (the same function for every method); EPE and "
             "<=1px against ground truth on valid pixels; time = cumulative compute time "
             "(JIT, metrics and reconstruction excluded).\n")
    L.append(markdown_table(summary))
    L.append("")
    L.append("Mean over pairs (per method; EPE only over pairs with ground truth):\n")
    means = method_means(summary)
    L.append(markdown_table(means, [("method", "method"), ("n", "pairs"), ("psnr", "PSNR dB"),
                                    ("ssim", "SSIM"), ("l1", "L1"), ("mse", "L2 (MSE)"),
                                    ("energy", "energy"), ("epe", "EPE px"),
                                    ("within_1px", "<=1px"), ("cum_time_s", "time s")]))
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
        L.append("PSNR and energy per iteration and against cumulative compute time; colour = "
                 f"pair, line style = method; {limit}.\n")
        L.append("![convergence](convergence.png)\n")
    L.append("## Per pair\n")
    for name in pairs:
        L.append(f"### {name}\n")
        sub = df[df["pair"] == name]
        per_method = []
        for m in order(sub["method"]):
            g = sub[sub["method"] == m].sort_values("iteration")
            if not g.empty:
                first, last = g.iloc[0], g.iloc[-1]
                per_method.append(f"{label(m)}: PSNR {_cell('psnr', first['psnr'])} -> "
                                  f"{_cell('psnr', last['psnr'])} dB over {len(g)} "
                                  f"iteration{'s' if len(g) > 1 else ''} "
                                  f"({_cell('cum_time_s', last['cum_time_s'])} s)")
        L.append("; ".join(per_method) + ".\n")
        stem = file_stem(name)
        if f"iterations_{stem}.png" in figs:
            L.append(f"![iterations {name}](iterations_{stem}.png)\n")
        if f"nnf_{stem}.png" in figs:
            L.append(f"![nnf {name}](nnf_{stem}.png)\n")
    L.append("## Files\n")
    L.append("- `metrics.csv`: one row per (pair, method, iteration); columns documented in "
             "README.md (section Experiments).\n- `summary.csv`: the last iteration of each (pair, method)."
             "\n- `config.json`: full configuration, versions, device, git commit, skipped work."
             "\n- `artifacts/`: final NNFs and per-iteration reconstructions used by the figures.")
    path = out / "REPORT.md"
    path.write_text("\n".join(L) + "\n")
    return path

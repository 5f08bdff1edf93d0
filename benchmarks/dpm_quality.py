"""DPM quality against the original DeepPruner code: fidelity traces, the reference CSV, quirk by quirk.

Run ``.venv/bin/python -m benchmarks.dpm_quality [--study reference|quirks|shapes] [--sizes 320 native] [--seeds 0 1 2]``.

* ``--study reference`` (part of ``make bench``): the fidelity of ``reference_quirks=True`` against the
  original's traces, then the configurations of :func:`reference_configs` (the default, ``default
  +half_pixel``, ``default, outside=reflect`` and ``reference_quirks=True``) on the five built-in
  pairs at 320 px, seeds 0-2, against ``tests/data/dpm_reference/reference_builtin_320.csv`` (the
  original's own numbers, measured on the built-in pairs before real motion: the synthetic pairs
  are read as ``<name>-small``, :data:`SOURCES`).
* ``--study quirks``: every quirk of the reference one at a time, added to the default (``+name``)
  and removed from the reference (``-name``), at each size: the table of ``docs/diff_pm.md``.
* ``--study shapes``: the configurations of :func:`reference_configs` on the built-in pairs
  turned taller than wide (A and B transposed) and with B 1.25x larger than A (B upscaled), where
  the original's frame bugs (``y_clamp_width``, ``a_frame``) act; ground truth transformed with them.

Metrics as in ``reference_builtin_320.csv``: L1 and MSE of the model's own reconstruction
(``model.reconstruct``) against A, mean over pixels and RGB channels; PSNR with data range 1; end-point
error and within-1px of the model's matches (``model.matches``: the points its evaluation compared)
against the pair's ground truth on its valid pixels. Quality does not depend on the machine.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import diff_pm
from diff_pm import QUIRKS
from experiments import provenance
from experiments.devices import thread_scope
from experiments.methods import to_torch
from experiments.report.metrics import epe, l1, mse, psnr, within_1px
from experiments.options import int_at_least
from experiments.data import Pair, builtin_pair

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "dpm_reference"
REFERENCE_CSV = DATA / "reference_builtin_320.csv"
PAIRS = ("motorcycle", "astronaut", "coffee", "chelsea", "rocket")
#: The built-in pairs the original's numbers were measured on: the synthetic ones with their
#: warps before real motion, now named ``<name>-small`` (the CSV keeps the old names).
SOURCES = {name: name if name == "motorcycle" else f"{name}-small" for name in PAIRS}
METRICS = ("l1", "mse", "psnr", "epe", "within_1px")


def quirk_configs() -> dict[str, dict]:
    """Every behaviour of the reference one at a time: the default with one quirk (``default +name``),
    the reference without one (``reference -name``); and the reference's noise and search range, which the default
    keeps, replaced by the alternatives on both sides (both replaced: the suite's earlier default).
    """
    configs = {"default": {}, "noise=independent": dict(noise="independent"),
               "search_range=inside": dict(search_range="inside"),
               "independent+inside (earlier default)": dict(noise="independent", search_range="inside")}
    configs.update({f"default +{q}": dict(quirks=(q,)) for q in QUIRKS})
    configs["reference"] = dict(reference_quirks=True)
    configs["reference, noise=independent"] = dict(reference_quirks=True, noise="independent")
    configs["reference, search_range=inside"] = dict(reference_quirks=True, search_range="inside")
    configs.update({f"reference -{q}": dict(quirks=tuple(x for x in QUIRKS if x != q)) for q in QUIRKS})
    return configs


def reference_configs() -> dict[str, dict]:
    return {"default": {}, "default +half_pixel": dict(quirks=("half_pixel",)),
            "default, outside=reflect": dict(outside="reflect"), "reference": dict(reference_quirks=True)}


def measure(pair, seed: int, config: dict) -> dict:
    """One 21-iteration run of DPM in ``config`` on ``pair``; the metrics of :data:`METRICS`."""
    a, b = to_torch(pair.a, "cpu"), to_torch(pair.b, "cpu")
    model = diff_pm.DifferentiablePatchMatch(**config)
    with torch.no_grad():
        pos = model(a, b, generator=torch.Generator().manual_seed(seed))
        recon = model.reconstruct(b, pos)[0].permute(1, 2, 0).numpy()
        match = model.matches(pos, b.shape[-2:])[0].permute(1, 2, 0).numpy()
    return dict(l1=l1(pair.a, recon), mse=mse(pair.a, recon), psnr=psnr(pair.a, recon),
                epe=epe(match, pair.gt, pair.valid), within_1px=within_1px(match, pair.gt, pair.valid))


def reference_rows() -> list[dict]:
    with open(REFERENCE_CSV) as fh:
        return [dict(r, seed=int(r["seed"]), **{k: float(r[k]) for k in METRICS}) for r in csv.DictReader(fh)]


def trace_fidelity() -> list[dict]:
    """``reference_quirks=True`` against every trace: agreement of the offsets (worst iteration),
    pixels that differ, largest reconstruction difference."""

    out = []
    for path in sorted(DATA.glob("dpm_trace_*.npz")):
        z = np.load(path)
        t = lambda x: torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None]  # noqa: E731
        a, b = t(z["a"]), t(z["b"])
        seed = int(path.stem[-1])
        model = diff_pm.DifferentiablePatchMatch(reference_quirks=True)
        seen = []
        with torch.no_grad():
            pos = model(a, b, generator=torch.Generator().manual_seed(seed), callback=lambda i, p: seen.append(p))
            recon = model.reconstruct(b, pos)[0].permute(1, 2, 0).numpy()
        worst, differ = 1.0, 0
        for it, p in enumerate(seen):
            dx, dy = model.frame.offsets(p[:, 1:2], p[:, 0:1], tuple(a.shape[-2:]), tuple(b.shape[-2:]))
            ok = ((np.abs(dx[0, 0].numpy() - z["offset_x"][it]) <= 1e-4)
                  & (np.abs(dy[0, 0].numpy() - z["offset_y"][it]) <= 1e-4))
            worst, differ = min(worst, float(ok.mean())), max(differ, int((~ok).sum()))
        out.append(dict(trace=path.stem.replace("dpm_trace_", ""), offsets_agree_worst_iteration=worst,
                        pixels_differing_max=differ,
                        reconstruction_max_abs_diff=float(np.abs(recon - z["reconstruction"]).max())))
    return out


def transposed(pair):
    """The pair with A and B transposed (a landscape pair becomes taller than wide), ground truth too."""
    t = lambda x: None if x is None else np.ascontiguousarray(np.swapaxes(x, 0, 1))  # noqa: E731
    gt = None if pair.gt is None else t(pair.gt)[..., ::-1].copy()  # (y_B, x_B) -> (x_B, y_B)
    return Pair(pair.name, t(pair.a), t(pair.b), gt, t(pair.valid), source=pair.source)


def b_scaled(pair, scale: float = 1.25):
    """The pair with B resized by ``scale`` (bilinear, pixel centres at +0.5), ground truth mapped with it."""
    h, w = pair.b.shape[:2]
    b = cv2.resize(pair.b.astype(np.float32), (round(w * scale), round(h * scale)),
                   interpolation=cv2.INTER_LINEAR).astype(pair.b.dtype)
    sy, sx = b.shape[0] / h, b.shape[1] / w
    gt = None
    if pair.gt is not None:
        gt = pair.gt.copy()
        gt[..., 0] = (gt[..., 0] + 0.5) * sy - 0.5
        gt[..., 1] = (gt[..., 1] + 0.5) * sx - 0.5
    return Pair(pair.name, pair.a, b, gt, pair.valid, source=pair.source)


SHAPES = {"same": None, "tall": transposed, "b_larger": b_scaled}


def run_study(configs: dict, sizes: list, seeds: list, *, shapes=("same",), log=print) -> list[dict]:
    rows = []
    for size, shape in [(z, v) for v in shapes for z in sizes]:
        max_size = None if size == "native" else int(size)
        label = size if shape == "same" else f"{size} {shape}"
        for name in PAIRS:
            pair = builtin_pair(SOURCES[name], max_size=max_size)
            if SHAPES[shape] is not None:
                pair = SHAPES[shape](pair)
            for cname, config in configs.items():
                for seed in seeds:
                    t0 = time.perf_counter()
                    res = measure(pair, seed, config)
                    rows.append(dict(size=label, pair=name, config=cname, seed=seed, **res))
                    log(f"  {label:>6} {name:>10} {cname:>16} seed {seed}: L1 {res['l1']:.5f} MSE {res['mse']:.6f} "
                        f"EPE {res['epe']:7.2f}  ({time.perf_counter() - t0:.1f} s)")
    return rows


def _heading(label: str) -> str:
    """A size label of :func:`run_study` ("320", "native", "320 tall") as a table heading."""
    size, _, shape = label.partition(" ")
    return (f"{size} px" if size != "native" else size) + (f", {shape}" if shape else "")


def mean_table(rows: list[dict]) -> dict:
    """Means over seeds: ``{(size, pair, config): {metric: mean}}``."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["size"], r["pair"], r["config"]), []).append(r)
    return {k: {m: float(np.mean([r[m] for r in v])) for m in METRICS} for k, v in groups.items()}


def markdown(rows: list[dict], ref: list[dict] | None) -> str:
    """Per size: one row per config, columns = pairs (L1 / EPE means over seeds, relative to the reference)."""
    means = mean_table(rows)
    ref_means = mean_table([dict(r, size="320", config="original") for r in ref]) if ref else {}
    lines = []
    for size in dict.fromkeys(r["size"] for r in rows):
        configs = list(dict.fromkeys(r["config"] for r in rows if r["size"] == size))
        lines += [f"\n{_heading(size)}, mean over seeds {sorted({r['seed'] for r in rows})}: L1 / MSE / EPE (px) / within 1 px"
                  + (f" (%: against the original's own numbers, seeds {sorted({r['seed'] for r in ref})})"
                     if size == "320" and ref_means
                     else " (%: against `reference`)" if "reference" in configs else ""), "",
                  "| config | " + " | ".join(PAIRS) + " |", "|---|" + "---|" * len(PAIRS)]
        base_cfgs = (["original"] if size == "320" and ref_means else []) + configs
        for c in base_cfgs:
            cells = []
            for p in PAIRS:
                m = (ref_means if c == "original" else means).get((size, p, c))
                if m is None:
                    cells.append("")
                    continue
                cell = f"{m['l1']:.4f} / {m['mse']:.5f} / {m['epe']:.1f} / {m['within_1px']:.3f}"
                o = ref_means.get(("320", p, "original")) if size == "320" else None
                if o is None and c != "reference":
                    o = means.get((size, p, "reference"))
                if o is not None and c != "original":
                    cell += f" ({100 * (m['l1'] / o['l1'] - 1):+.1f}%, {100 * (m['mse'] / o['mse'] - 1):+.1f}%, " \
                            f"{100 * (m['epe'] / o['epe'] - 1):+.1f}%)"
                cells.append(cell)
            lines.append(f"| `{c}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(rows: list[dict], base: str = "reference") -> str:
    """Each configuration against ``base`` seed by seed (same draws of the generator): per size and
    pair, the mean relative difference of L1, MSE and EPE with its standard error over the seeds.
    Empty without ``base`` or with fewer than two seeds."""
    by = {(r["size"], r["pair"], r["config"], r["seed"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    configs = [c for c in dict.fromkeys(r["config"] for r in rows) if c != base]
    if len(seeds) < 2 or not any(r["config"] == base for r in rows) or not configs:
        return ""
    lines = []
    for size in dict.fromkeys(r["size"] for r in rows):
        lines += [f"\n{_heading(size)}, paired against `{base}` over {len(seeds)} seeds (mean ± standard error "
                  f"of the per-seed difference, relative to `{base}`'s mean): L1 / MSE / EPE", "",
                  "| config | " + " | ".join(PAIRS) + " |", "|---|" + "---|" * len(PAIRS)]
        for c in configs:
            cells = []
            for p in PAIRS:
                pairs = [(by.get((size, p, c, s)), by.get((size, p, base, s))) for s in seeds]
                pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
                if len(pairs) < 2:
                    cells.append("")
                    continue
                parts = []
                for m in ("l1", "mse", "epe"):
                    mean_base = np.mean([y[m] for _, y in pairs])
                    d = np.array([x[m] - y[m] for x, y in pairs]) / mean_base * 100
                    parts.append(f"{d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(len(d)):.2f}%")
                cells.append(" / ".join(parts))
            lines.append(f"| `{c}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metadata(threads: int) -> dict:
    """What the numbers depend on (:func:`experiments.provenance.record`): the code (commit of diff_pm,
    the data and this script), versions, CPU, the threads in force."""
    with thread_scope(threads):
        return provenance.record(device="cpu", threads=threads,
                                 paths=("diff_pm", "experiments", "benchmarks", "tests/data/dpm_reference"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dpm_quality", description=__doc__.splitlines()[0])
    parser.add_argument("--study", choices=("reference", "quirks", "shapes"), default="reference")
    parser.add_argument("--sizes", nargs="+", default=None, help="320, native, any max size (default: 320; "
                                                                 "quirks study: 320 native)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=None, help="subset of the study's configurations")
    parser.add_argument("--threads", type=int_at_least(1, "--threads"), default=1,
                        help="torch and numba threads (default 1; quality does not depend on it)")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON output (default reports/bench_dpm_<study>.json)")
    args = parser.parse_args(argv)
    sizes = args.sizes or (["320", "native"] if args.study == "quirks" else ["320"])
    configs = quirk_configs() if args.study == "quirks" else reference_configs()
    if args.configs:
        unknown = [c for c in args.configs if c not in configs]
        if unknown:
            parser.error(f"unknown configuration {unknown[0]!r}; choose from {', '.join(configs)}")
        configs = {c: configs[c] for c in args.configs}
    result = dict(metadata=metadata(args.threads), study=args.study, sizes=sizes, seeds=args.seeds, configs=configs)
    print("metadata: " + provenance.summary(result["metadata"]), flush=True)
    with thread_scope(args.threads):
        study(args, configs, sizes, result)
    out = args.output or Path(f"reports/bench_dpm_{args.study}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"written {out}")
    return 0


def study(args, configs: dict, sizes: list, result: dict) -> None:
    """Run ``args.study`` (fidelity first for ``reference``); print and store its rows and table in ``result``."""
    if args.study == "reference":
        fid = trace_fidelity()
        result["fidelity"] = fid
        print("fidelity of reference_quirks=True against the original's traces (21 iterations each):")
        for f in fid:
            print(f"  {f['trace']:>16}: offsets within 1e-4 px on {f['offsets_agree_worst_iteration']:.2%} of pixels "
                  f"at the worst iteration ({f['pixels_differing_max']} differ); reconstruction max |diff| "
                  f"{f['reconstruction_max_abs_diff']:.1e}")
    print("quality (21 iterations, the model's own reconstruction and matches):")
    shapes = ("tall", "b_larger") if args.study == "shapes" else ("same",)
    rows = run_study(configs, sizes, args.seeds, shapes=shapes)
    result["rows"] = rows
    # the original's numbers exist for seeds 0-2: compare over the seeds both sides ran
    ref = [r for r in reference_rows() if r["seed"] in args.seeds]
    table = markdown(rows, ref)
    print(table)
    result["table"] = table
    paired = paired_table(rows)
    if paired:
        print(paired)
        result["paired"] = paired


if __name__ == "__main__":
    sys.exit(main())

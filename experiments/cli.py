"""Command line: ``python -m experiments {compare,sweep,diff,reconstruct,train,learn-study} ...``.

The composer: it parses options (with the kinds of :mod:`experiments.options`), resolves the data
(:mod:`experiments.data`), runs units (:mod:`experiments.run`), writes reports
(:mod:`experiments.report`) and hands :mod:`learning` in where it is needed: the ``train``
command and the checkpoint loader of ``dpm-learned`` and of studies' checkpoint settings.

Bad input never ends in a traceback: it prints one line ``error: <what is wrong and how to fix
it>`` on stderr and exits with status 2 (130 on Ctrl-C, after saying how to resume).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import learning.cli

from .data import (BUILTIN_PAIRS, KINDS, check_pair, check_subset_options, folder_pair,
                   name_mismatch_note, resolve_data, safe_name, save_image, scan_folder)
from .devices import DEVICE_CHOICES, available_cores, resolve_device
from .errors import UserError
from .methods.registry import EXACT_MAX_PIXELS, METHODS, NAMED, Context, order
from .options import int_at_least, odd_patch, positive_float
from .run.spec import TIMING_MODES

DEFAULT_OUT = "reports/latest"
#: ``compare``'s methods when ``--methods`` is not given (the exact NNF where it is affordable).
DEFAULT_METHODS = ("pm", "pm-kd", "dpm", "exact", "zero", "random")
#: The old add-a-method flags and the named setting each adds.
METHOD_FLAGS = {"dpm_reference": "dpm-reference", "dpm_keep_current": "dpm-keep"}
#: What ``--checkpoint`` adds: the learnt features in DPM and in classic PatchMatch, and PatchMatch on
#: normalised patches of the same area (the hand-crafted control).
CHECKPOINT_METHODS = ("dpm-learned", "pm-learned", "pm-normalised")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (``error: ...``), exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _add_common(p: argparse.ArgumentParser, *, compare: bool) -> None:
    """The options ``compare`` and ``reconstruct`` share (``compare``: the help of compare's)."""
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help=("torch device for DPM and the exact NNF" if compare else "torch device for dpm")
                        + " (auto: cuda when available; pm always runs on the CPU)")
    p.add_argument("--threads", type=int_at_least(1, "--threads"), default=available_cores(),
                   metavar="N",
                   help=("CPU threads of every method, numba and torch alike (pm's bands, DPM's "
                         "scoring kernels and torch ops, the exact NNF)" if compare else
                         "CPU threads of pm's bands or of DPM's scoring kernels and torch ops")
                        + f"; default: all available cores ({available_cores()})")
    p.add_argument("--max-size", type=int_at_least(8, "--max-size"), default=None, metavar="PX",
                   help="area-downscale each image so its longer side is at most PX"
                        + (" (ground truth scaled along)" if compare else "")
                        + "; default: native resolution")
    p.add_argument("--seed", type=int_at_least(0, "--seed"), default=None, metavar="N",
                   help="seed of PatchMatch's random streams and DPM's torch.Generator"
                        + (" and the random baseline" if compare else "") + " (default 0)")
    p.add_argument("--patch-size", type=odd_patch, default=7, metavar="P",
                   help=("odd patch side of every method, the reconstructions and the energy"
                         if compare else "odd patch side of the matching and of the voting") + " (default 7)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m experiments",
                     description="Classic vs differentiable PatchMatch: runs, reports, training.")
    sub = parser.add_subparsers(dest="command", metavar="{compare,sweep,diff,reconstruct,train,learn-study}",
                                parser_class=_Parser)
    sub.required = True

    c = sub.add_parser("compare", help="the methods per iteration on image pairs; tables, "
                                       "figures and REPORT.md",
                       description="Run methods per iteration on every pair: by default classic "
                                   "PatchMatch (pm), differentiable PatchMatch (dpm), the exact "
                                   "NNF (exact, when affordable) and the trivial baselines zero "
                                   "(no motion) and random (uniform matches); --methods chooses "
                                   "any of " + ", ".join(NAMED) + ".")
    c.add_argument("--data", nargs="+", default=list(BUILTIN_PAIRS), metavar="NAME_OR_DIR",
                   help="built-in pair names (" + ", ".join(BUILTIN_PAIRS) + "), datasets as "
                        "KIND:PATH (KIND in " + ", ".join(KINDS) + ") and/or folders whose layout "
                        "is detected (default: all built-ins; see docs/datasets.md)")
    c.add_argument("--limit", type=int_at_least(1, "--limit"), default=None, metavar="N",
                   help="keep the first N pairs (sorted by name) of each dataset or folder")
    c.add_argument("--select", default=None, metavar="GLOB",
                   help="keep the pairs of each dataset or folder whose name matches GLOB "
                        "(e.g. 'sintel-clean/alley_*'; applied before --limit)")
    c.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}/)")
    c.add_argument("--methods", type=_method_list, default=None, metavar="NAME,...",
                   help="methods to run, comma-separated, from " + ", ".join(NAMED)
                        + f" (default {','.join(DEFAULT_METHODS)}; dpm-learned needs --checkpoint)")
    c.add_argument("--pm-iterations", type=int_at_least(1, "--pm-iterations"), default=5,
                   metavar="N", help="classic PatchMatch iterations (default 5)")
    c.add_argument("--dpm-iterations", type=int_at_least(1, "--dpm-iterations"), default=21,
                   metavar="N", help="differentiable PatchMatch iterations (default 21)")
    c.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="learnt features checkpoint (from `train` or `learn-study`): adds the methods "
                        + ", ".join(CHECKPOINT_METHODS))
    c.add_argument("--exact-max-pixels", type=int_at_least(0, "--exact-max-pixels"),
                   default=None, metavar="N",
                   help="compute the exact NNF only when sqrt(pixels of A x pixels of B) <= N "
                        f"(default {EXACT_MAX_PIXELS['cpu']} on CPU, "
                        f"{EXACT_MAX_PIXELS['cuda']} on CUDA; 0: never)")
    c.add_argument("--dpm-reference", action="store_true",
                   help="also run DPM exactly as the original DeepPruner code, its quirks included "
                        "(= adding dpm-reference to --methods; reference_quirks=True)")
    c.add_argument("--dpm-keep-current", action="store_true",
                   help="also run DPM keeping each pixel's current offset as a candidate "
                        "(= adding dpm-keep to --methods; not in the original)")
    c.add_argument("--seeds", type=int_at_least(0, "--seeds"), nargs="+", default=None, metavar="N",
                   help="run every seeded method with each of these seeds; the report gives the "
                        "mean and the seed-to-seed spread (default: --seed, 0)")
    c.add_argument("--score-at", choices=("run", "native"), default="run",
                   help="native: score every iteration at the pairs' native resolution, the matches "
                        "found at --max-size scaled back up and every reconstruction voted from "
                        "native B (numbers comparable with published tables); default: at the "
                        "resolution the methods ran at")
    c.add_argument("--write-outputs", action="store_true",
                   help="also write each method's final matches (first seed, at the scoring "
                        "resolution) as OUT/outputs/<pair>__<method>.flo, and for KITTI pairs as "
                        "KITTI 16-bit flow PNGs")
    c.add_argument("--fresh", action="store_true",
                   help="discard an unfinished run in --out instead of resuming it (a "
                        "finished run there is always replaced)")
    _add_common(c, compare=True)

    r = sub.add_parser("reconstruct", help="DeepPruner demo interface: rebuild every A of a "
                                           "folder from its B",
                       description="Rebuild each BASE/image_1/NAME from BASE/image_2's paired "
                                   "image; write SAVE_DIR/NAME.")
    r.add_argument("--base_dir", required=True, help="folder with image_1/ and image_2/")
    r.add_argument("--save_dir", required=True, help="where the reconstructions go")
    r.add_argument("--method", choices=("dpm", "pm"), default="dpm",
                   help="dpm (default, as the DeepPruner demo) or pm")
    r.add_argument("--iterations", type=int_at_least(1, "--iterations"), default=None,
                   metavar="N", help="iterations (default: 21 for dpm, 5 for pm)")
    _add_common(r, compare=False)

    t = sub.add_parser("train", help="train matching features, one arm (learning.train)")
    learning.cli.add_arguments(t)
    ls = sub.add_parser("learn-study", help="train every arm, choose on validation, measure feature sets x "
                                            "matchers on the test pairs; REPORT.md (learning.study)")
    learning.cli.add_study_arguments(ls)

    w = sub.add_parser("sweep", help="a study: a grid of (pair, method setting, size, seed) "
                                     "units on Dask; resumable; REPORT.md",
                       description="Run the units of a study spec (TOML) on Dask: an embedded "
                                   "LocalCluster by default, or an existing cluster by address. "
                                   "Rerunning the same command resumes.")
    w.add_argument("spec", metavar="SPEC.toml",
                   help="study spec (see experiments/specs/dpm_vs_pm.toml and README.md)")
    w.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default reports/sweep-<spec name>/)")
    where = w.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int_at_least(1, "--workers"), default=None, metavar="N",
                       help="worker processes of the embedded LocalCluster, one thread each "
                            f"(default: one per `threads` cores of the spec; {available_cores()} "
                            "cores here)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on an existing Dask cluster (tcp://HOST:PORT of `dask "
                            "scheduler`), or 'synchronous' for Dask's synchronous scheduler in "
                            "this process")
    w.add_argument("--timing", choices=TIMING_MODES, default=None,
                   help="exclusive: timed sections one at a time per host (a distributed.Lock "
                        "per host); default: the spec's `timing` (shared)")
    w.add_argument("--repeats", type=int_at_least(1, "--repeats"), default=None, metavar="N",
                   help="timed runs per unit (default: the spec's `repeats`)")
    w.add_argument("--fresh", action="store_true",
                   help="delete earlier results in --out instead of resuming")

    d = sub.add_parser("diff", help="two compare runs side by side: quality differences, time ratios",
                       description="Per (pair, method) in both runs: each quality metric of RUN_B "
                                   "minus RUN_A at the last iteration (means over seeds; * where "
                                   "both runs have several seeds and the difference exceeds twice "
                                   "its standard error) and B's compute time over A's.")
    d.add_argument("run_a", metavar="RUN_A", help="--out folder of a compare run (the baseline)")
    d.add_argument("run_b", metavar="RUN_B", help="--out folder of a compare run (compared with A)")
    d.add_argument("--fail-above", type=positive_float("--fail-above", allow_zero=True), default=None,
                   metavar="PCT", help="exit with status 1 when B is worse than A by more than PCT "
                                       "percent in a quality metric of any (pair, method)")
    return parser


def _method_list(text: str) -> tuple[str, ...]:
    """argparse type of ``--methods``: registered names, comma-separated, in registry order."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMED]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected method names from {', '.join(NAMED)} "
                                         f"(comma-separated), got {text!r}")
    return tuple(order(names))


def load_checkpoint_model(data: bytes, *, device: str, options: dict):
    """The learnt DPM of a checkpoint's content, with ``options`` on top: ``(model, info)``.

    The loader of ``dpm-learned`` and of a study's checkpoint settings, handed to the run room
    (which may not import :mod:`learning`) and to the Dask workers:
    :func:`learning.checkpoint.load_checkpoint` builds the model through
    :func:`learning.features.build_model`.
    """
    from learning.checkpoint import load_checkpoint  # deferred: imports torch and diff_pm

    return load_checkpoint(data, device=device, **options)


def compare_methods(args) -> tuple[str, ...]:
    """``--methods`` (default :data:`DEFAULT_METHODS`) plus the add-a-method flags' settings."""
    names = list(args.methods or DEFAULT_METHODS)
    names += [name for flag, name in METHOD_FLAGS.items() if getattr(args, flag)]
    if args.checkpoint:
        names.extend(CHECKPOINT_METHODS)
    names = order(names)
    for name in names:
        if "checkpoint" in NAMED[name].needs and not args.checkpoint:
            raise UserError(f"--methods {name} needs --checkpoint PATH (a checkpoint written by "
                            "`python -m experiments train`, e.g. data/dpm_learned.pt)")
    return tuple(names)


def cmd_compare(args) -> int:
    from .run import RunSettings, Runner, load_pairs  # deferred: imports numba and pandas

    log = lambda m: print(m, flush=True)  # noqa: E731
    methods = compare_methods(args)
    if args.seeds and args.seed is not None:
        raise UserError("give --seed N or --seeds N [N ...], not both")
    seeds = tuple(sorted(set(args.seeds or [args.seed or 0])))  # first = smallest: artifacts, figures, report
    # validates names and folder layouts, decodes nothing
    check_subset_options(args.data, limit=args.limit, select=args.select)
    sources = resolve_data(args.data, limit=args.limit, select=args.select, log=log)
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise UserError(f"--checkpoint {args.checkpoint} does not exist; train one with "
                        "`python -m experiments train` or fix the path")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    # decodes and checks every image before any compute
    pairs = load_pairs(sources, max_size=args.max_size, patch_size=args.patch_size)
    device = resolve_device(args.device)
    settings = RunSettings(
        pairs=tuple(s.name for s in sources), origins=tuple((s.name, s.origin) for s in sources),
        max_size=args.max_size, methods=methods, pm_iterations=args.pm_iterations,
        dpm_iterations=args.dpm_iterations, patch_size=args.patch_size, seeds=seeds,
        device=device, threads=args.threads,
        exact_max_pixels=(EXACT_MAX_PIXELS[device.split(":")[0]]
                          if args.exact_max_pixels is None else args.exact_max_pixels),
        checkpoint=str(Path(args.checkpoint).resolve()) if args.checkpoint else None,
        score_at=args.score_at, write_outputs=args.write_outputs, out=str(out),
        command=args.command_line,
    )
    by_name = {s.name: s for s in sources}
    native = (lambda name: by_name[name].load(None)) if args.score_at == "native" else None
    # planned (checkpoints read and loaded once) before anything in --out is touched
    runner = Runner(settings, pairs, fresh=args.fresh, log=log, loader=load_checkpoint_model,
                    native=native)
    runner.prepare_output()
    t0 = time.perf_counter()
    try:
        df = runner.run()
    except KeyboardInterrupt:
        runner.write_config("interrupted")
        print(f"interrupted: finished rows are in {out / 'metrics.csv'}; rerun the same command "
              "to resume", file=sys.stderr)
        return 130
    finish(runner, df, time.perf_counter() - t0)
    return 0


def finish(runner, df, wall: float) -> None:
    """summary.csv, figures, REPORT.md, final config.json and the console table."""
    from .report import compare, figures  # deferred: matplotlib and pandas, needed only at the end
    from .report.tables import summary_table

    out = runner.out
    summary = summary_table(df)
    summary.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    runner.meta["wall_s"] = round(wall, 2)
    made = figures.make_all(out, df, runner.pairs)
    runner.write_config("complete", figures=made)
    compare.write_report(out, df, summary, runner.pairs, runner.meta)
    print()
    print(compare.console_table(summary))
    print(f"\nwrote {out / 'REPORT.md'}, {out / 'metrics.csv'} ({len(df)} rows), "
          f"{len(made)} figures  [{wall:.0f} s]")


def cmd_sweep(args) -> int:
    from .report.sweep import write_report  # deferred: imports matplotlib, pandas
    from .run import load_spec, run_sweep  # deferred: imports dask, pandas

    log = lambda m: print(m, flush=True)  # noqa: E731
    spec = load_spec(args.spec).with_overrides(timing=args.timing, repeats=args.repeats)
    out = Path(args.out or f"reports/sweep-{Path(args.spec).stem}")
    try:
        res = run_sweep(spec, out=out, workers=args.workers, scheduler=args.scheduler,
                        fresh=args.fresh, log=log, checkpoint_loader=load_checkpoint_model,
                        command=args.command_line,
                        report=write_report)
    except KeyboardInterrupt:
        print(f"interrupted: finished units are in {out / 'units'}; rerun the same command to "
              "resume", file=sys.stderr)
        return 130
    rate = "" if res.units_per_minute != res.units_per_minute else \
        f" ({res.units_per_minute:.1f} units/min)"
    print(f"\n{res.units} units: {res.already_done} done before, {res.done} done now{rate}, "
          f"{res.failed} failed, {res.skipped} skipped; wrote {out / 'results.csv'} "
          f"({len(res.results)} rows), {res.report or 'no report'}  [{res.wall_s:.0f} s]")
    if res.failed:
        print(f"{res.failed} units failed (reasons in {out / 'failures.csv'}); rerun the same "
              "command to try them again", file=sys.stderr)
        return 1
    return 0


def cmd_reconstruct(args) -> int:

    log = lambda m: print(m, flush=True)  # noqa: E731
    pairs = scan_folder(args.base_dir)
    note = name_mismatch_note(args.base_dir, pairs)
    if note:
        log(note)
    save = Path(args.save_dir)
    try:
        save.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create --save_dir {save}: {exc.strerror or exc}") from None
    device = resolve_device(args.device)
    method = METHODS[args.method]
    options = dict(patch_size=args.patch_size)
    if args.iterations:
        options["iterations"] = args.iterations
    run = method.prepare(dict(method.defaults(), **options), options,
                         Context(device=device, threads=args.threads))

    # Load and check every pair before computing anything: bad input fails fast, in one line.
    loaded = []
    for pa, pb in pairs:
        pair = folder_pair(pa, pb, safe_name(pa.stem), args.max_size, log=log)
        check_pair(pair, args.patch_size)
        loaded.append((pa, pair))
    for pa, pair in tqdm(loaded, desc=f"reconstruct ({args.method})", unit="pair"):
        done = run(pair, seed=args.seed or 0)
        recon = np.clip(done.reconstruct(done.nnfs[-1]), 0.0, 1.0)
        save_image(save / pa.name, recon)
    print(f"wrote {len(pairs)} reconstructions to {save}/")
    return 0


def cmd_diff(args) -> int:
    from .report.diff import diff_runs  # deferred: imports pandas

    lines, status = diff_runs(args.run_a, args.run_b, fail_above=args.fail_above)
    print("\n".join(lines))
    return status


def cmd_train(args) -> int:
    return learning.cli.main(args, command=args.command_line)


def cmd_learn_study(args) -> int:
    return learning.cli.study_main(args, command=args.command_line)


COMMANDS = {"compare": cmd_compare, "reconstruct": cmd_reconstruct, "train": cmd_train,
            "sweep": cmd_sweep, "diff": cmd_diff, "learn-study": cmd_learn_study}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.command_line = "python -m experiments " + " ".join(argv)  # for the record
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

"""Command line: ``python -m experiments {compare,reconstruct,train} ...``.

Bad input never ends in a traceback: it prints one line ``error: <what is wrong and how to fix
it>`` on stderr and exits with status 2 (130 on Ctrl-C, after saying how to resume).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .errors import UserError
from .pairs import BUILTIN_PAIRS

DEFAULT_OUT = "reports/latest"
# The exact NNF runs only when sqrt(pixels of A x pixels of B) <= this many pixels. CPU: up to
# 200 x 200 pixels, 5-15 s per pair on 2 shared cores (320 x 213 takes about 50 s, too slow for
# `make compare`). CUDA: about 1200 x 800 pixels, seconds on a current GPU.
DEFAULT_EXACT_MAX_PIXELS = {"cpu": 40000, "cuda": 1_000_000}


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (``error: ...``), exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _int_at_least(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be >= {minimum}, got {value}")
        return value

    return parse


def _odd_patch(text: str) -> int:
    value = _int_at_least(1, "--patch-size")(text)
    if value % 2 == 0:
        raise argparse.ArgumentTypeError(f"--patch-size must be odd (e.g. 7), got {value}")
    return value


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="torch device for DPM and the exact NNF (auto: cuda when available)")
    p.add_argument("--threads", type=_int_at_least(1, "--threads"), default=_available_cores(),
                   metavar="N",
                   help="CPU threads for both methods (numba bands and torch); default: all "
                        f"available cores ({_available_cores()})")
    p.add_argument("--max-size", type=_int_at_least(8, "--max-size"), default=None, metavar="PX",
                   help="area-downscale each image so its longer side is at most PX "
                        "(ground truth scaled along); default: native resolution")
    p.add_argument("--seed", type=_int_at_least(0, "--seed"), default=0, metavar="N",
                   help="seed of PatchMatch's random streams and DPM's torch.Generator "
                        "(default 0)")
    p.add_argument("--patch-size", type=_odd_patch, default=7, metavar="P",
                   help="odd patch side for both methods, voting and the energy (default 7)")


def build_parser(*, with_train: bool = False) -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m experiments",
                     description="Classic vs differentiable PatchMatch: runs, reports, training.")
    sub = parser.add_subparsers(dest="command", metavar="{compare,reconstruct,train}",
                                parser_class=_Parser)
    sub.required = True

    c = sub.add_parser("compare", help="both methods per iteration on image pairs; tables, "
                                       "figures and REPORT.md",
                       description="Run classic PatchMatch (pm), differentiable PatchMatch (dpm), "
                                   "the exact NNF (exact, when affordable) and optionally a "
                                   "learnt DPM (dpm-learned) per iteration on every pair.")
    c.add_argument("--data", nargs="+", default=list(BUILTIN_PAIRS), metavar="NAME_OR_DIR",
                   help="built-in pair names (" + ", ".join(BUILTIN_PAIRS) + ") and/or folders "
                        "BASE with BASE/image_1/* and BASE/image_2/* (default: all built-ins)")
    c.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}/)")
    c.add_argument("--pm-iterations", type=_int_at_least(1, "--pm-iterations"), default=5,
                   metavar="N", help="classic PatchMatch iterations (default 5)")
    c.add_argument("--dpm-iterations", type=_int_at_least(1, "--dpm-iterations"), default=21,
                   metavar="N", help="differentiable PatchMatch iterations (default 21)")
    c.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="learnt DPM checkpoint (from `train`): adds the method dpm-learned")
    c.add_argument("--exact-max-pixels", type=_int_at_least(0, "--exact-max-pixels"),
                   default=None, metavar="N",
                   help="compute the exact NNF only when sqrt(pixels of A x pixels of B) <= N "
                        f"(default {DEFAULT_EXACT_MAX_PIXELS['cpu']} on CPU, "
                        f"{DEFAULT_EXACT_MAX_PIXELS['cuda']} on CUDA; 0: never)")
    c.add_argument("--dpm-keep-current", action="store_true",
                   help="also run DPM keeping each pixel's current offset as a candidate "
                        "(method dpm-keep; an improvement over the reference, off by default)")
    c.add_argument("--fresh", action="store_true",
                   help="discard an unfinished run in --out instead of resuming it (a "
                        "finished run there is always replaced)")
    _add_common(c)

    r = sub.add_parser("reconstruct", help="DeepPruner demo interface: rebuild every A of a "
                                           "folder from its B",
                       description="Rebuild each BASE/image_1/NAME from BASE/image_2's paired "
                                   "image; write SAVE_DIR/NAME.")
    r.add_argument("--base_dir", required=True, help="folder with image_1/ and image_2/")
    r.add_argument("--save_dir", required=True, help="where the reconstructions go")
    r.add_argument("--method", choices=("dpm", "pm"), default="dpm",
                   help="dpm (default, as the DeepPruner demo) or pm")
    r.add_argument("--iterations", type=_int_at_least(1, "--iterations"), default=None,
                   metavar="N", help="iterations (default: 21 for dpm, 5 for pm)")
    _add_common(r)

    if with_train:
        from . import train

        t = sub.add_parser("train", help="train DPM features end to end (experiments.train)")
        train.add_arguments(t)
    else:
        t = sub.add_parser("train", help="train DPM features end to end (experiments.train)",
                           add_help=False)
        t.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _train_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("experiments.train") is not None
    except (ImportError, ValueError):
        return False


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was requested but torch sees no CUDA device; "
                        "use --device cpu (or auto)")
    return name


def cmd_compare(args) -> int:
    from .pairs import resolve_data
    from .runner import Runner

    # validates names and folder layouts, decodes nothing
    sources = resolve_data(args.data, log=lambda m: print(m, flush=True))
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise UserError(f"--checkpoint {args.checkpoint} does not exist; train one with "
                        "`python -m experiments train` or fix the path")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    config = dict(
        pairs=[s.name for s in sources], origins={s.name: s.origin for s in sources},
        max_size=args.max_size, pm_iterations=args.pm_iterations,
        dpm_iterations=args.dpm_iterations, patch_size=args.patch_size, seed=args.seed,
        device=None, threads=args.threads, exact_max_pixels=args.exact_max_pixels,
        dpm_keep_current=bool(args.dpm_keep_current),
        checkpoint=str(Path(args.checkpoint).resolve()) if args.checkpoint else None,
        out=str(out), command="python -m experiments " + " ".join(sys.argv[1:]),
    )
    runner = Runner(config, sources, out, fresh=args.fresh, log=lambda m: print(m, flush=True))
    runner.load_pairs()  # decodes and checks every image before any heavy import or compute
    config["device"] = resolve_device(args.device)
    if args.exact_max_pixels is None:
        config["exact_max_pixels"] = DEFAULT_EXACT_MAX_PIXELS[config["device"].split(":")[0]]
    runner.load_checkpoint()
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
    from . import figures, report
    from .runner import summary_table

    out = runner.out
    summary = summary_table(df)
    summary.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    runner.meta["wall_s"] = round(wall, 2)
    made = figures.make_all(out, df, runner.pairs, runner.config)
    runner.write_config("complete", figures=made)
    report.write_report(out, df, summary, runner.pairs, runner.meta)
    print()
    print(report.console_table(summary))
    print(f"\nwrote {out / 'REPORT.md'}, {out / 'metrics.csv'} ({len(df)} rows), "
          f"{len(made)} figures  [{wall:.0f} s]")


def cmd_reconstruct(args) -> int:
    import numpy as np
    import torch

    from . import methods
    from .pairs import (_safe, check_pair, folder_pair, name_mismatch_note, save_image,
                        scan_folder)

    pairs = scan_folder(args.base_dir)
    note = name_mismatch_note(args.base_dir, pairs)
    if note:
        print(note, flush=True)
    save = Path(args.save_dir)
    try:
        save.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create --save_dir {save}: {exc.strerror or exc}") from None
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    iterations = args.iterations or (21 if args.method == "dpm" else 5)
    from tqdm.auto import tqdm

    # Load and check every pair before computing anything: bad input fails fast, in one line.
    loaded = []
    for pa, pb in pairs:
        pair = folder_pair(pa, pb, _safe(pa.stem), args.max_size)
        check_pair(pair, args.patch_size)
        loaded.append((pa, pair))
    for pa, pair in tqdm(loaded, desc=f"reconstruct ({args.method})", unit="pair"):
        if args.method == "pm":
            run = methods.run_pm(pair, iterations=iterations, patch_size=args.patch_size,
                                 seed=args.seed, threads=args.threads)
        else:
            model = methods.default_dpm(iterations=iterations, patch_size=args.patch_size)
            run = methods.run_dpm(model, pair, method="dpm", device=device, seed=args.seed,
                                  patch_size=args.patch_size)
        recon = np.clip(run.reconstruct(run.nnfs[-1]), 0.0, 1.0)
        save_image(save / pa.name, recon)
    print(f"wrote {len(pairs)} reconstructions to {save}/")
    return 0


def cmd_train(args) -> int:
    from . import train

    return int(train.run(args) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        wants_train = bool(argv) and argv[0] == "train"
        if wants_train and not _train_available():
            raise UserError("the training module experiments/train.py is not available in this "
                            "checkout yet; `compare` and `reconstruct` work without it")
        args = build_parser(with_train=wants_train).parse_args(argv)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "reconstruct":
            return cmd_reconstruct(args)
        return cmd_train(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

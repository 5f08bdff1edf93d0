"""Options of ``python -m experiments train`` and the hand-off to the training loop.

The experiments CLI (:mod:`experiments.cli`) builds the ``train`` sub-parser with
:func:`add_arguments` and calls :func:`main`, which converts the options into
:class:`~learning.settings.TrainSettings` (their defaults are the options' defaults). This module
stays light (no torch import), so the parser costs nothing for the other commands.
"""
from __future__ import annotations

import argparse

from experiments.devices import DEVICE_CHOICES, available_cores
from experiments.options import Kind, arg, int_at_least, positive_float

from .settings import ARMS, FEATURE_NETS, StudySettings, TrainSettings

__all__ = ["add_arguments", "main", "DEFAULT_OUT", "add_study_arguments", "study_main"]

D = TrainSettings()
DEFAULT_OUT = D.out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m experiments train`` (the defaults are the documented default run)."""
    parser.description = ("Train matching features (one arm: contrastive without DPM, dpm-ce through DPM's "
                          "hard choice, or recon, the soft-DPM reconstruction loss) on random warps of "
                          "scikit-image sample images; validate on warps of other images (never the test pairs).")
    g = parser.add_argument_group("run")
    g.add_argument("--out", default=DEFAULT_OUT,
                   help=f"output folder: dpm_learned.pt, train_log.csv, training.png, final_eval.csv "
                        f"(default {DEFAULT_OUT}/)")
    g.add_argument("--steps", type=int_at_least(0, "--steps"), default=D.steps, help="optimisation steps (default %(default)s)")
    g.add_argument("--seed", type=int_at_least(0, "--seed"), default=D.seed, help="seed of data, weights and DPM (default %(default)s)")
    g.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                   help="torch device (auto: cuda when available)")
    g.add_argument("--threads", type=int_at_least(1, "--threads"), default=D.threads,
                   help=f"CPU threads for torch and numba (default: all available, {available_cores()})")
    g.add_argument("--eval-every", type=int_at_least(0, "--eval-every"), default=D.eval_every, metavar="N",
                   help="validation every N steps (0: only at the end; default 100)")
    g.add_argument("--eval-size", type=int_at_least(16, "--eval-size"), default=D.eval_size, metavar="PX",
                   help="longer side of the validation pairs (default 128)")
    g.add_argument("--eval-iterations", type=int_at_least(1, "--eval-iterations"), default=D.eval_iterations, metavar="N",
                   help="DPM iterations of the validation and final comparison and of the saved model "
                        "(default 21, DPM's reference)")
    g.add_argument("--no-final-eval", dest="final_eval", action="store_false",
                   help="skip the final validation comparison (pm, pm-learned, dpm, dpm-learned)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    d = parser.add_argument_group("data")
    d.add_argument("--crop", type=int_at_least(16, "--crop"), default=D.crop, metavar="PX",
                   help="side of the square training crops (default 64)")
    d.add_argument("--batch", type=int_at_least(1, "--batch"), default=D.batch, help="pairs per step (default %(default)s)")
    d.add_argument("--images", nargs="+", default=list(D.images), metavar="NAME",
                   help="scikit-image sample images to train on (default: " + ", ".join(D.images) + ")")
    m = parser.add_argument_group("arm, features and optimisation")
    m.add_argument("--arm", choices=ARMS, default=D.arm,
                   help="the loss: contrastive (InfoNCE, no DPM), dpm-ce (cross-entropy over DPM's candidates, "
                        "hard search) or recon (soft DPM, reconstruction + EPE; default %(default)s)")
    m.add_argument("--net", choices=FEATURE_NETS, default=D.net,
                   help="rf7 / rf15: 3x3 conv net with a 7x7 / 15x15 receptive field; linear7: the earlier "
                        "7x7 projection (default %(default)s)")
    m.add_argument("--match-patch", type=arg(Kind("int", minimum=1, odd=True)), default=D.match_patch, metavar="P",
                   help="odd side of the descriptor patch stacked into the saved features (default %(default)s)")
    m.add_argument("--iterations", type=int_at_least(0, "--iterations"), default=D.iterations,
                   help="DPM iterations per step of dpm-ce and recon (0: the arm's default, 8 and 2)")
    m.add_argument("--window", type=int_at_least(0, "--window"), default=D.window, metavar="PX",
                   help="DPM's search window in training (0: crop x 100 / 128)")
    m.add_argument("--anchors", type=int_at_least(1, "--anchors"), default=D.anchors,
                   help="supervised pixels per pair of contrastive and dpm-ce (default %(default)s)")
    m.add_argument("--tau", type=positive_float("--tau"), default=D.tau,
                   help="temperature of contrastive's InfoNCE (default %(default)s)")
    m.add_argument("--temperature", type=positive_float("--temperature"), default=D.temperature,
                   help="initial DPM score temperature of dpm-ce and recon (learnt, log-parameterised; default 50)")
    m.add_argument("--fixed-temperature", dest="learn_temperature", action="store_false",
                   help="keep the temperature fixed at --temperature")
    m.add_argument("--channels", type=int_at_least(1, "--channels"), default=D.channels, help="feature channels (default %(default)s)")
    m.add_argument("--hidden", type=int_at_least(0, "--hidden"), default=D.hidden,
                   help="hidden width (conv nets: >= 1; linear7: its residual 1x1 MLP, 0 = none; default 32)")
    m.add_argument("--lr", type=positive_float("--lr"), default=D.lr, help="Adam learning rate (default %(default)s)")
    m.add_argument("--epe-weight", type=positive_float("--epe-weight", allow_zero=True), default=D.epe_weight,
                   help="recon: weight of the end-point-error loss (pixels / crop side) added to the "
                        "reconstruction loss (default 1; 0: reconstruction only)")


def main(args: argparse.Namespace, *, command: str = "") -> int:
    """Run the training described by parsed ``args`` (see :func:`learning.train.run`);
    ``command``: the command line, for the record."""
    from . import train  # deferred: imports torch and diff_pm, needed only when training runs

    return int(train.run(TrainSettings.from_args(args, command=command)) or 0)


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m experiments learn-study`` (:class:`learning.study.StudySettings`)."""
    S = StudySettings()
    parser.description = ("The learning study: train every arm (contrastive, dpm-ce, recon) with two receptive "
                          "fields, choose on validation pairs, retrain the choices with more seeds, and measure "
                          "feature sets x matchers (exact NNF, PatchMatch, DPM) on the test pairs; REPORT.md.")
    parser.add_argument("--out", default=S.out, help="output folder (default %(default)s/)")
    parser.add_argument("--quick", action="store_true",
                        help="a few minutes: 64 px pairs, 6 training steps on 32 px crops, fewer seeds, pairs and choices "
                             "(same phases)")
    parser.add_argument("--steps", type=int_at_least(1, "--steps"), default=S.steps,
                        help="training steps of every run (default %(default)s; snapshots at 1/3 and 2/3)")
    parser.add_argument("--size", type=int_at_least(16, "--size"), default=S.size, metavar="PX",
                        help="longer side of the validation and test pairs (default %(default)s)")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(S.arms), metavar="ARM",
                        help="training arms (default: " + " ".join(S.arms) + ")")
    parser.add_argument("--nets", nargs="+", choices=("rf7", "rf15"), default=list(S.nets), metavar="NET",
                        help="receptive fields tried for every arm (default: " + " ".join(S.nets) + ")")
    parser.add_argument("--match-patches", nargs="+", type=arg(Kind("int", minimum=1, odd=True)),
                        default=list(S.match_patches), metavar="P",
                        help="descriptor patch sides tried on validation (default: "
                             + " ".join(map(str, S.match_patches)) + ")")
    parser.add_argument("--eps", nargs="+", type=positive_float("--eps"), default=list(S.eps_choices), metavar="E",
                        help="eps of the normalised patches tried on validation (default: "
                             + " ".join(f"{e:g}" for e in S.eps_choices) + ")")
    parser.add_argument("--data", nargs="+", default=[], metavar="NAME_OR_DIR",
                        help="more test pairs: datasets with ground truth as `compare --data` takes them")
    parser.add_argument("--limit", type=int_at_least(1, "--limit"), default=None, metavar="N",
                        help="keep the first N pairs of each --data dataset")
    parser.add_argument("--save-best", default=None, metavar="PATH",
                        help="also write the checkpoint of the best arm (chosen on validation) there, "
                             "e.g. data/dpm_learned.pt")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="torch device (auto: cuda when available)")
    parser.add_argument("--threads", type=int_at_least(1, "--threads"), default=S.threads,
                        help=f"CPU threads (default: all available, {available_cores()})")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def study_main(args: argparse.Namespace, *, command: str = "") -> int:
    """Run the study of parsed ``args`` (:func:`learning.study.run_study`)."""
    from .study import run_study  # deferred: imports torch and the matchers

    settings = StudySettings(out=args.out, quick=args.quick, steps=args.steps, size=args.size, data=tuple(args.data),
                             arms=tuple(dict.fromkeys(args.arms)), nets=tuple(dict.fromkeys(args.nets)),
                             match_patches=tuple(sorted(set(args.match_patches))),
                             eps_choices=tuple(sorted(set(args.eps))), limit=args.limit, save_best=args.save_best,
                             device=args.device, threads=args.threads, progress=args.progress, command=command)
    report = run_study(settings, log=lambda m: print(m, flush=True))
    print(f"wrote {report}")
    return 0

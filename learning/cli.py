"""Options of ``python -m experiments train`` and the hand-off to the training loop.

The experiments CLI (:mod:`experiments.cli`) builds the ``train`` sub-parser with
:func:`add_arguments` and calls :func:`main`, which converts the options into
:class:`~learning.settings.TrainSettings` (their defaults are the options' defaults). This module
stays light (no torch import), so the parser costs nothing for the other commands.
"""
from __future__ import annotations

import argparse

from experiments.devices import DEVICE_CHOICES, available_cores
from experiments.options import int_at_least, positive_float

from .settings import TrainSettings

__all__ = ["add_arguments", "main", "DEFAULT_OUT"]

D = TrainSettings()
DEFAULT_OUT = D.out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m experiments train`` (the defaults are the documented default run)."""
    parser.description = ("Train learnt DPM features end to end through DifferentiablePatchMatch and the "
                          "voting reconstruction, on random warps of scikit-image sample images; "
                          "evaluate on the built-in (held-out) pairs.")
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
                   help="held-out evaluation every N steps (0: only before and after; default 100)")
    g.add_argument("--eval-size", type=int_at_least(16, "--eval-size"), default=D.eval_size, metavar="PX",
                   help="longer side of the held-out pairs during training and in the final "
                        "evaluation (default 128)")
    g.add_argument("--eval-iterations", type=int_at_least(1, "--eval-iterations"), default=D.eval_iterations, metavar="N",
                   help="iterations of pm, dpm and dpm-learned in the final held-out comparison and of "
                        "the saved model (default 21, DPM's reference)")
    g.add_argument("--no-final-eval", dest="final_eval", action="store_false",
                   help="skip the final held-out comparison (pm, dpm, dpm-learned)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    d = parser.add_argument_group("data")
    d.add_argument("--crop", type=int_at_least(16, "--crop"), default=D.crop, metavar="PX",
                   help="side of the square training crops (default 64)")
    d.add_argument("--batch", type=int_at_least(1, "--batch"), default=D.batch, help="pairs per step (default %(default)s)")
    d.add_argument("--images", nargs="+", default=list(D.images), metavar="NAME",
                   help="scikit-image sample images to train on (default: " + ", ".join(D.images) + ")")
    m = parser.add_argument_group("model and optimisation")
    m.add_argument("--iterations", type=int_at_least(1, "--iterations"), default=D.iterations,
                   help="DPM iterations unrolled during training (default 1: two evaluation steps; "
                        "see docs/training.md for why not more)")
    m.add_argument("--temperature", type=positive_float("--temperature"), default=D.temperature,
                   help="initial softmax temperature (learnt, log-parameterised; default 100)")
    m.add_argument("--fixed-temperature", dest="learn_temperature", action="store_false",
                   help="keep the temperature fixed at --temperature")
    m.add_argument("--channels", type=int_at_least(1, "--channels"), default=D.channels, help="feature channels (default %(default)s)")
    m.add_argument("--hidden", type=int_at_least(0, "--hidden"), default=D.hidden,
                   help="width of the residual 1x1 MLP (0: linear features; default 16)")
    m.add_argument("--lr", type=positive_float("--lr"), default=D.lr, help="Adam learning rate (default %(default)s)")
    m.add_argument("--epe-weight", type=positive_float("--epe-weight", allow_zero=True), default=D.epe_weight,
                   help="weight of the end-point-error loss (pixels / crop side) added to the "
                        "reconstruction loss (default 1; 0: reconstruction only)")


def main(args: argparse.Namespace, *, command: str = "") -> int:
    """Run the training described by parsed ``args`` (see :func:`learning.train.run`);
    ``command``: the command line, for the record."""
    from . import train  # deferred: imports torch and diff_pm, needed only when training runs

    return int(train.run(TrainSettings.from_args(args, command=command)) or 0)

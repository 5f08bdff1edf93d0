"""``python -m experiments train``: learn DPM features end to end through the reconstruction.

What is trained
---------------
:class:`experiments.learned.LearnedFeatures` (a 7 x 7 projection to 16 channels, a residual 1 x 1
MLP and a log-parameterised softmax temperature; about 3k parameters) replaces DPM's fixed 147-channel
neighbourhood features. Each step draws a batch of training pairs, runs
:class:`diff_pm.DifferentiablePatchMatch` (soft evaluation at the learnt temperature, ``--iterations``
unrolled iterations, otherwise the reference configuration), rebuilds A from B's pixels with
:func:`diff_pm.reconstruct`, and minimises the mean L1 reconstruction error on pixels of A whose
true match lies inside B (plus ``--epe-weight`` x the mean end-point error, off by default).
Gradients reach the features through the softmax weights of every evaluation step.

Why soft during training: at the reference temperature (``1e10``) the softmax is one-hot, so the
chosen offset does not depend on the scores and the features receive no gradient. Training uses a
moderate, learnt temperature; held-out evaluation reports both that soft setting and the reference
(practically hard) temperature, at equal iterations with the fixed-feature ``dpm`` and ``pm``.

Data
----
Training pairs are made on the fly: a random crop (random scale, flip, colour-channel order) of one
of :data:`TRAIN_IMAGES`, warped by :func:`experiments.pairs.make_warped_pair` (random rotation,
scale, translation, perspective, gain, bias and noise; exact ground truth). The held-out pairs are
the built-in pairs of ``compare`` (``motorcycle`` and the synthetic ``astronaut``, ``coffee``,
``chelsea``, ``rocket``); :func:`check_disjoint` verifies, by pixel content, that no training image
is one of their source images (``skimage.data.cat`` *is* ``chelsea``, so names are not enough).

Outputs (``--out``)
-------------------
``dpm_learned.pt`` (checkpoint, see :mod:`experiments.learned`), ``train_log.csv`` (one row per
training step and one per held-out evaluation, appended as they happen), ``training.png``,
``final_eval.csv`` (per-iteration held-out metrics of pm, dpm and dpm-learned at equal iterations)
and ``config.json``.

Reproducibility: one ``numpy`` Generator for the data, explicit ``torch.Generator`` s for the initial
weights and for DPM's particles, ``torch.use_deterministic_algorithms`` on CPU: the same seed gives
the same weights on CPU.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .cli import _available_cores, _int_at_least, resolve_device
from .errors import UserError

__all__ = ["add_arguments", "run", "TRAIN_IMAGES", "check_disjoint", "heldout_sources", "PairSampler",
           "reconstruction_loss", "train_step", "evaluate_heldout", "evaluate_pm", "final_evaluation"]

#: scikit-image sample images used for training (all shipped with scikit-image, no download).
#: Disjoint from every held-out image (checked by content in :func:`check_disjoint`).
TRAIN_IMAGES = ("camera", "immunohistochemistry", "hubble_deep_field", "colorwheel", "retina",
                "brick", "grass", "gravel", "coins", "moon")

DEFAULT_OUT = "checkpoints/latest"
LOG_FIELDS = ("step", "kind", "mode", "loss", "recon", "psnr", "epe", "within_1px", "temperature", "lr",
              "elapsed_s")


# --------------------------------------------------------------------------- CLI
def _positive_int(what: str, minimum: int = 1):
    """argparse type: an integer >= minimum (the CLI's own checker, same messages)."""
    return _int_at_least(minimum, what)


def _positive_float(what: str, *, allow_zero: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {text}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m experiments train`` (the defaults are the documented default run)."""
    parser.description = ("Train learnt DPM features end to end through DifferentiablePatchMatch and the "
                          "voting reconstruction, on random warps of scikit-image sample images; "
                          "evaluate on the built-in (held-out) pairs.")
    g = parser.add_argument_group("run")
    g.add_argument("--out", default=DEFAULT_OUT,
                   help=f"output folder: dpm_learned.pt, train_log.csv, training.png, final_eval.csv "
                        f"(default {DEFAULT_OUT}/)")
    g.add_argument("--steps", type=_positive_int("--steps", 0), default=1500, help="optimisation steps (default 1500)")
    g.add_argument("--seed", type=_positive_int("--seed", 0), default=0, help="seed of data, weights and DPM (default 0)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="torch device (auto: cuda when available)")
    g.add_argument("--threads", type=_positive_int("--threads"), default=_available_cores(),
                   help=f"CPU threads for torch and numba (default: all available, {_available_cores()})")
    g.add_argument("--eval-every", type=_positive_int("--eval-every", 0), default=100, metavar="N",
                   help="held-out evaluation every N steps (0: only before and after; default 100)")
    g.add_argument("--eval-size", type=_positive_int("--eval-size", 16), default=128, metavar="PX",
                   help="longer side of the held-out pairs during training and in the final "
                        "evaluation (default 128)")
    g.add_argument("--eval-iterations", type=_positive_int("--eval-iterations"), default=21, metavar="N",
                   help="iterations of pm, dpm and dpm-learned in the final held-out comparison and of "
                        "the saved model (default 21, DPM's reference)")
    g.add_argument("--no-final-eval", dest="final_eval", action="store_false",
                   help="skip the final held-out comparison (pm, dpm, dpm-learned)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    d = parser.add_argument_group("data")
    d.add_argument("--crop", type=_positive_int("--crop", 16), default=64, metavar="PX",
                   help="side of the square training crops (default 64)")
    d.add_argument("--batch", type=_positive_int("--batch"), default=8, help="pairs per step (default 8)")
    d.add_argument("--images", nargs="+", default=list(TRAIN_IMAGES), metavar="NAME",
                   help="scikit-image sample images to train on (default: " + ", ".join(TRAIN_IMAGES) + ")")
    m = parser.add_argument_group("model and optimisation")
    m.add_argument("--iterations", type=_positive_int("--iterations"), default=1,
                   help="DPM iterations unrolled during training (default 1: two evaluation steps; "
                        "see docs/training.md for why not more)")
    m.add_argument("--temperature", type=_positive_float("--temperature"), default=100.0,
                   help="initial softmax temperature (learnt, log-parameterised; default 100)")
    m.add_argument("--fixed-temperature", dest="learn_temperature", action="store_false",
                   help="keep the temperature fixed at --temperature")
    m.add_argument("--channels", type=_positive_int("--channels"), default=16, help="feature channels (default 16)")
    m.add_argument("--hidden", type=_positive_int("--hidden", 0), default=16,
                   help="width of the residual 1x1 MLP (0: linear features; default 16)")
    m.add_argument("--lr", type=_positive_float("--lr"), default=3e-3, help="Adam learning rate (default 3e-3)")
    m.add_argument("--epe-weight", type=_positive_float("--epe-weight", allow_zero=True), default=1.0,
                   help="weight of the end-point-error loss (pixels / crop side) added to the "
                        "reconstruction loss (default 1; 0: reconstruction only)")


# --------------------------------------------------------------------------- data
def _load_sample(name: str) -> np.ndarray:
    import skimage.data

    from .pairs import to_rgb_float

    fn = getattr(skimage.data, name, None)
    if fn is None or not callable(fn):
        raise UserError(f"--images: scikit-image has no sample image {name!r} (e.g. {', '.join(TRAIN_IMAGES[:4])})")
    try:
        return to_rgb_float(fn())
    except Exception as exc:  # noqa: BLE001 - e.g. an image that needs a download (no internet)
        raise UserError(f"--images: skimage.data.{name}() could not be loaded ({type(exc).__name__}); "
                        "choose images shipped with scikit-image") from None


def heldout_sources() -> dict[str, np.ndarray]:
    """Every image the held-out built-in pairs are made from, by name (float RGB)."""
    from .pairs import builtin_sources

    return builtin_sources()


def _fingerprint(image: np.ndarray) -> str:
    small = np.ascontiguousarray((np.asarray(image, np.float32) * 255 + 0.5).astype(np.uint8))
    return hashlib.sha1(small.tobytes() + str(small.shape).encode()).hexdigest()


def check_disjoint(train: dict[str, np.ndarray], heldout: dict[str, np.ndarray] | None = None) -> None:
    """Raise :class:`UserError` if a training image is (pixel for pixel, or by name) a held-out image."""
    heldout = heldout_sources() if heldout is None else heldout
    prints = {_fingerprint(v): k for k, v in heldout.items()}
    for name, img in train.items():
        clash = prints.get(_fingerprint(img)) or (name if name in heldout else None)
        if clash is not None:
            raise UserError(f"training image {name!r} is the held-out image {clash!r}; held-out pairs must "
                            "never be trained on (drop it from --images)")


class PairSampler:
    """Random training pairs: crop (random scale, flip, channel order) + :func:`make_warped_pair`.

    Parameters
    ----------
    images : list of ndarray, shape (H, W, 3), float32
    crop : int
        Side of the square crops.
    rng : numpy.random.Generator
        The only source of randomness.
    """

    def __init__(self, images, crop: int, rng: np.random.Generator):
        self.images = [np.ascontiguousarray(i, np.float32) for i in images]
        small = [i for i in self.images if min(i.shape[:2]) < crop]
        if small:
            raise UserError(f"--crop {crop} is larger than a training image ({small[0].shape[1]}x{small[0].shape[0]})")
        self.crop, self.rng = int(crop), rng

    def crop_image(self) -> np.ndarray:
        import cv2

        rng, c = self.rng, self.crop
        img = self.images[rng.integers(len(self.images))]
        h, w = img.shape[:2]
        # region side between the crop itself (native resolution) and 3/4 of the shorter side
        hi = max(c, 0.75 * min(h, w))
        side = int(round(math.exp(rng.uniform(math.log(c), math.log(hi)))))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        region = img[y:y + side, x:x + side]
        if side != c:
            region = cv2.resize(region, (c, c), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            region = region[:, ::-1]
        return np.ascontiguousarray(region[:, :, rng.permutation(3)])

    def pair(self):
        from .pairs import make_warped_pair

        return make_warped_pair(self.crop_image(), rng=self.rng, name="train")

    def batch(self, n: int, device: str):
        """``a, b`` (N, 3, c, c), ``gt`` (N, 2, c, c) (0 where invalid) and ``valid`` (N, 1, c, c) float."""
        return stack_pairs([self.pair() for _ in range(n)], device)


def stack_pairs(pairs, device: str):
    """Torch batch of same-size pairs with ground truth (see :meth:`PairSampler.batch`)."""
    import torch

    a = np.stack([p.a.transpose(2, 0, 1) for p in pairs])
    b = np.stack([p.b.transpose(2, 0, 1) for p in pairs])
    gt = np.stack([np.nan_to_num(p.gt).transpose(2, 0, 1) for p in pairs])
    valid = np.stack([p.valid[None] for p in pairs]).astype(np.float32)
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device)  # noqa: E731
    return t(a), t(b), t(gt), t(valid)


# --------------------------------------------------------------------------- loss and steps
def reconstruction_loss(a, b, positions, valid, *, gt=None, epe_weight: float = 0.0, patch_size: int = 7,
                        parts: bool = False):
    """Mean L1 of ``diff_pm.reconstruct(b, positions)`` against ``a`` on valid pixels (+ EPE term).

    Shape:
        - a, b: ``(N, C, H, W)``; positions, gt: ``(N, 2, H, W)``; valid: ``(N, 1, H, W)`` 0/1
        - returns: scalar tensor ``recon + epe_weight * epe / max(H, W)`` (EPE in pixels); with
          ``parts=True`` also the two terms as floats: ``(total, recon, epe_pixels)``
    """
    import diff_pm

    recon = diff_pm.reconstruct(b, positions, patch_size=patch_size)
    denom = valid.sum().clamp_min(1.0)
    l1 = ((recon - a).abs().mean(1, keepdim=True) * valid).sum() / denom
    loss, epe_px = l1, float("nan")
    if gt is not None:
        err = ((positions - gt).pow(2).sum(1, keepdim=True) + 1e-6).sqrt()
        epe = (err * valid).sum() / denom
        epe_px = float(epe.detach())
        if epe_weight > 0:
            loss = loss + epe_weight * epe / max(a.shape[-2:])
    if parts:
        return loss, float(l1.detach()), epe_px
    return loss


def train_step(model, optimizer, batch, *, generator, epe_weight: float = 0.0, clip: float = 1.0) -> dict:
    """One optimisation step on ``batch = (a, b, gt, valid)``.

    Returns the values before the step: ``loss`` (optimised), ``recon`` (masked L1), ``epe`` (pixels).
    """
    import torch

    a, b, gt, valid = batch
    model.train()
    optimizer.zero_grad(set_to_none=True)
    positions = model(a, b, generator=generator)
    loss, recon, epe = reconstruction_loss(a, b, positions, valid, gt=gt, epe_weight=epe_weight, parts=True)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss.item()}; lower --lr or --temperature")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.features.parameters(), clip)
    optimizer.step()
    return dict(loss=float(loss.detach()), recon=recon, epe=epe)


# --------------------------------------------------------------------------- evaluation
def heldout_pairs(max_size: int):
    """The built-in pairs of ``compare`` at ``max_size`` (never trained on)."""
    from .pairs import BUILTIN_PAIRS, builtin_pair

    return [builtin_pair(name, max_size=max_size) for name in BUILTIN_PAIRS]


def _pair_metrics(pair, nnf: np.ndarray, recon: np.ndarray) -> dict:
    from .metrics import epe, psnr, within_1px

    recon = np.clip(recon, 0.0, 1.0)
    err = np.abs(recon - pair.a).mean(axis=2)
    mask = pair.valid if pair.valid is not None else np.ones(err.shape, bool)
    l1 = float(err[mask].mean()) if mask.any() else float(err.mean())
    return dict(loss=l1, recon=l1, psnr=psnr(pair.a, recon),
                epe=epe(nnf, pair.gt, pair.valid), within_1px=within_1px(nnf, pair.gt, pair.valid))


def _mean_rows(rows: list[dict]) -> dict:
    """Per-key mean over pairs, ignoring NaN (pairs without ground truth)."""
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


def evaluate_heldout(model, pairs, *, device: str, seed: int) -> dict:
    """Mean held-out ``loss`` (same masked L1 as training), ``psnr``, ``epe``, ``within_1px``.

    Each pair runs with its own generator seeded by ``seed``, so evaluations compare across steps.
    EPE and within-1px average over the pairs with ground truth (all built-in pairs have it).
    """
    import torch

    from .methods import to_torch

    rows = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for pair in pairs:
            a, b = to_torch(pair.a, device), to_torch(pair.b, device)
            gen = torch.Generator(device=device)
            gen.manual_seed(int(seed))
            pos = model(a, b, generator=gen)
            recon = model.reconstruct(b, pos)[0].permute(1, 2, 0).cpu().numpy()
            match = model.matches(pos, b.shape[-2:])
            rows.append(_pair_metrics(pair, match[0].permute(1, 2, 0).cpu().numpy(), recon))
    model.train(was_training)
    return _mean_rows(rows)


def evaluate_pm(pairs, *, iterations: int, seed: int, threads: int) -> dict:
    """Held-out means of classic PatchMatch after ``iterations`` (same metrics as :func:`evaluate_heldout`)."""
    from .methods import run_pm

    rows = []
    for pair in pairs:
        run = run_pm(pair, iterations=iterations, patch_size=7, seed=seed, threads=threads)
        rows.append(_pair_metrics(pair, run.nnfs[-1], run.reconstruct(run.nnfs[-1])))
    return _mean_rows(rows)


def final_evaluation(features, pairs, *, iterations: int, device: str, seed: int, threads: int,
                     progress: bool = True) -> "pandas.DataFrame":  # noqa: F821
    """Per-iteration held-out metrics of pm, dpm, dpm-learned (reference and learnt temperature).

    Every method runs ``iterations`` iterations with the seeds ``compare`` uses; the NNF after each
    iteration is scored with the suite's metrics (PSNR of the method's own reconstruction, EPE,
    within-1px). Methods: ``pm`` (classic), ``dpm`` (fixed features, reference temperature),
    ``dpm-learned`` (learnt features, reference temperature 1e10: only the features differ from
    ``dpm``), ``dpm-learned-soft`` (learnt features at the learnt temperature, as trained).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from . import methods
    from .learned import REFERENCE_TEMPERATURE, build_model

    configs = [("pm", None), ("dpm", methods.default_dpm(iterations=iterations, patch_size=7)),
               ("dpm-learned", build_model(features, iterations=iterations, temperature=REFERENCE_TEMPERATURE)),
               ("dpm-learned-soft", build_model(features, iterations=iterations, temperature=1.0))]
    rows = []
    bar = tqdm(total=len(pairs) * len(configs), desc="final held-out evaluation", unit="run",
               disable=not progress, dynamic_ncols=True, file=sys.stderr, leave=False)
    for pair in pairs:
        for method, model in configs:
            if model is None:
                run = methods.run_pm(pair, iterations=iterations, patch_size=7, seed=seed, threads=threads)
            else:
                run = methods.run_dpm(model, pair, method=method, device=device, seed=seed, patch_size=7)
            for it, nnf in zip(run.iterations, run.nnfs):
                rows.append(dict(pair=pair.name, method=method, iteration=it,
                                 **_pair_metrics(pair, run.matches(nnf), run.reconstruct(nnf))))
            bar.update()
    bar.close()
    return pd.DataFrame(rows)


def summarise(df, iteration: int):
    """Mean over pairs of psnr / epe / within_1px per method at one iteration."""
    sel = df[df["iteration"] == iteration]
    return sel.groupby("method", sort=False)[["psnr", "epe", "within_1px"]].mean()


# --------------------------------------------------------------------------- outputs
class _Log:
    """``train_log.csv``: rows appended (and flushed) as they are produced."""

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=LOG_FIELDS)
        self.writer.writeheader()
        self.rows: list[dict] = []

    def add(self, **row) -> None:
        row = {k: row.get(k, "") for k in LOG_FIELDS}
        self.writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.file.flush()
        self.rows.append(row)

    def close(self) -> None:
        self.file.close()


def plot_training(rows: list[dict], baselines: dict, path: Path, *, title: str = "") -> Path:
    """``training.png``: train/held-out loss, held-out PSNR, EPE and within-1px against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in rows if r["kind"] == "train"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    ax = axes[0, 0]
    if train:
        steps = np.array([r["step"] for r in train])
        loss = np.array([r["recon"] for r in train], float)
        ax.plot(steps, loss, color="0.75", lw=0.6, label="train (per step)")
        k = max(1, min(25, len(loss) // 10))
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, color="C0", lw=1.5, label=f"train ({k}-step mean)")
    styles = {"soft": ("C1", "dpm-learned, learnt T (as trained)"),
              "reference": ("C2", "dpm-learned, T = 1e10 (hard)")}
    for mode, (col, lab) in styles.items():
        ev = [r for r in rows if r["kind"] == "heldout" and r["mode"] == mode]
        if not ev:
            continue
        s = [r["step"] for r in ev]
        ax.plot(s, [r["recon"] for r in ev], "o-", color=col, ms=3, label="held-out, " + lab)
        for axx, key in ((axes[0, 1], "psnr"), (axes[1, 0], "epe"), (axes[1, 1], "within_1px")):
            axx.plot(s, [r[key] for r in ev], "o-", color=col, ms=3, label=lab)
    base_style = {"dpm": ("C3", "--", "dpm (fixed features, T = 1e10)"), "pm": ("k", ":", "pm (classic)")}
    for name, vals in baselines.items():
        col, ls, lab = base_style.get(name, ("C4", "-.", name))
        if "recon" in vals:
            axes[0, 0].axhline(vals["recon"], color=col, ls=ls, lw=1, label=f"held-out, {lab}")
        for axx, key in ((axes[0, 1], "psnr"), (axes[1, 0], "epe"), (axes[1, 1], "within_1px")):
            if key in vals and np.isfinite(vals[key]):
                axx.axhline(vals[key], color=col, ls=ls, lw=1, label=lab)
    axes[0, 0].set(title="reconstruction loss (mean L1 on valid pixels)", xlabel="step", ylabel="L1")
    axes[0, 1].set(title="held-out PSNR (mean over pairs)", xlabel="step", ylabel="dB")
    axes[1, 0].set(title="held-out end-point error", xlabel="step", ylabel="pixels")
    axes[1, 1].set(title="held-out matches within 1 px", xlabel="step", ylabel="fraction")
    for axx in axes.flat:
        axx.grid(alpha=0.3)
        axx.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- the run
def run(args) -> int:
    """Train, log, plot, save the checkpoint and compare on the held-out pairs. Returns 0.

    Global torch settings changed for the run (deterministic algorithms, threads, oneDNN off on CPU)
    are restored afterwards.
    """
    import torch

    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.get_num_threads(), torch.backends.mkldnn.enabled)
    try:
        # oneDNN's convolutions are not bitwise repeatable from one call to the next even with
        # deterministic algorithms requested; the native kernels are (and these convs are tiny)
        torch.backends.mkldnn.enabled = False
        return _run(args)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.set_num_threads(previous[2])
        torch.backends.mkldnn.enabled = previous[3]


def _run(args) -> int:
    import torch
    from tqdm.auto import tqdm

    from .learned import REFERENCE_TEMPERATURE, LearnedFeatures, build_model, count_parameters, save_checkpoint
    from .methods import default_dpm

    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    try:
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover - numba is a pinned dependency
        pass
    # deterministic kernels on CPU; on CUDA grid_sample's backward has no deterministic version
    torch.use_deterministic_algorithms(True, warn_only=device != "cpu")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    out.mkdir(parents=True, exist_ok=True)

    names = list(dict.fromkeys(args.images))
    train_images = {n: _load_sample(n) for n in names}
    check_disjoint(train_images)
    rng = np.random.default_rng(args.seed)
    sampler = PairSampler(list(train_images.values()), args.crop, rng)
    pairs = heldout_pairs(args.eval_size)

    init_gen = torch.Generator().manual_seed(args.seed)
    features = LearnedFeatures(channels=args.channels, hidden=args.hidden, temperature=args.temperature,
                               learn_temperature=args.learn_temperature, generator=init_gen).to(device)
    model = build_model(features, iterations=args.iterations, temperature=1.0).to(device)
    reference = build_model(features, iterations=args.iterations, temperature=REFERENCE_TEMPERATURE).to(device)
    optimizer = torch.optim.Adam(features.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / max(args.steps, 1))))
    dpm_gen = torch.Generator(device=device)
    dpm_gen.manual_seed(args.seed + 1)

    config = dict(model=dict(iterations=args.eval_iterations, evaluation="soft", temperature=REFERENCE_TEMPERATURE,
                             sample_count=1, window=[100, 100], patch_size=7, keep_current=False),
                  train=dict(steps=args.steps, seed=args.seed, device=device, threads=args.threads,
                             crop=args.crop, batch=args.batch, images=names, iterations=args.iterations,
                             temperature_init=args.temperature, learn_temperature=args.learn_temperature,
                             channels=args.channels, hidden=args.hidden, lr=args.lr, lr_schedule="cosine to 0.1x",
                             epe_weight=args.epe_weight, grad_clip=1.0, loss="masked L1 reconstruction",
                             eval_size=args.eval_size, eval_every=args.eval_every,
                             heldout=[p.name for p in pairs]),
                  command="python -m experiments train " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["train"] else []))
    (out / "config.json").write_text(json.dumps(dict(config, parameters=count_parameters(features)), indent=2))
    print(f"training {count_parameters(features)} parameters on {device} ({args.threads} threads): "
          f"{args.steps} steps x {args.batch} pairs of {args.crop}x{args.crop}, {args.iterations} DPM iterations; "
          f"held-out: {', '.join(p.name for p in pairs)} at {args.eval_size} px", flush=True)

    log = _Log(out / "train_log.csv")
    t0 = time.perf_counter()

    baselines = {}
    base = evaluate_heldout(default_dpm(iterations=args.iterations, patch_size=7).to(device), pairs,
                            device=device, seed=args.seed)
    baselines["dpm"] = base
    log.add(step=0, kind="baseline", mode="dpm", **base, elapsed_s=time.perf_counter() - t0)
    base = evaluate_pm(pairs, iterations=args.iterations, seed=args.seed, threads=args.threads)
    baselines["pm"] = base
    log.add(step=0, kind="baseline", mode="pm", **base, elapsed_s=time.perf_counter() - t0)

    def heldout(step: int) -> None:
        for mode, m in (("soft", model), ("reference", reference)):
            res = evaluate_heldout(m, pairs, device=device, seed=args.seed)
            log.add(step=step, kind="heldout", mode=mode, **res, temperature=features.temperature,
                    elapsed_s=time.perf_counter() - t0)

    heldout(0)
    step, running = 0, None
    bar = tqdm(total=args.steps, desc="train", unit="step", disable=not args.progress, dynamic_ncols=True,
               file=sys.stderr)
    try:
        for step in range(1, args.steps + 1):
            batch = sampler.batch(args.batch, device)
            res = train_step(model, optimizer, batch, generator=dpm_gen, epe_weight=args.epe_weight)
            lr = optimizer.param_groups[0]["lr"]
            schedule.step()
            running = res["loss"] if running is None else 0.95 * running + 0.05 * res["loss"]
            log.add(step=step, kind="train", mode="soft", **res, temperature=features.temperature, lr=lr,
                    elapsed_s=time.perf_counter() - t0)
            bar.set_postfix(loss=f"{running:.4f}", T=f"{features.temperature:.3g}")
            bar.update()
            if args.eval_every and step % args.eval_every == 0 and step != args.steps:
                heldout(step)
    except KeyboardInterrupt:
        bar.close()
        save_checkpoint(out / "dpm_learned.pt", features, config, seed=args.seed, step=step - 1)
        log.close()
        print(f"interrupted after {step - 1} steps: checkpoint and log saved in {out}/", file=sys.stderr)
        return 130
    bar.close()
    if args.steps:
        heldout(args.steps)
    train_s = time.perf_counter() - t0
    title = (f"{count_parameters(features)}-parameter features, {args.steps} steps, seed {args.seed}; "
             f"{args.iterations} DPM iteration(s) in training and in these held-out curves; "
             f"held-out pairs at {args.eval_size} px")
    plot_training(log.rows, baselines, out / "training.png", title=title)

    metrics = dict(train_s=round(train_s, 1), learned_temperature=features.temperature)
    last = {r["mode"]: r for r in log.rows if r["kind"] == "heldout"}
    metrics["heldout_train_iterations"] = {m: {k: r[k] for k in ("recon", "psnr", "epe", "within_1px")}
                                           for m, r in last.items()}
    save_checkpoint(out / "dpm_learned.pt", features, config, seed=args.seed, step=args.steps, metrics=metrics)
    print(f"trained {args.steps} steps in {train_s:.0f} s; learnt temperature {features.temperature:.3g}; "
          f"wrote {out / 'dpm_learned.pt'}, {out / 'train_log.csv'}, {out / 'training.png'}", flush=True)

    if args.final_eval:
        t1 = time.perf_counter()
        df = final_evaluation(features, pairs, iterations=args.eval_iterations, device=device, seed=args.seed,
                              threads=args.threads, progress=args.progress)
        df.to_csv(out / "final_eval.csv", index=False, float_format="%.6g")
        shown = sorted({args.iterations, args.eval_iterations} & set(df["iteration"]))
        summary = {}
        for it in shown:
            tab = summarise(df, it)
            summary[str(it)] = tab.round(4).to_dict(orient="index")
            print(f"\nheld-out ({', '.join(p.name for p in pairs)} at {args.eval_size} px), iteration {it}, "
                  "mean over pairs:")
            print(tab.to_string(float_format=lambda v: f"{v:.3f}"))
        metrics["final"] = dict(iterations=shown, eval_size=args.eval_size, summary=summary,
                                seconds=round(time.perf_counter() - t1, 1))
        save_checkpoint(out / "dpm_learned.pt", features, config, seed=args.seed, step=args.steps, metrics=metrics)
        print(f"\nwrote {out / 'final_eval.csv'}  [final evaluation {time.perf_counter() - t1:.0f} s]")
    log.close()
    (out / "config.json").write_text(json.dumps(dict(config, parameters=count_parameters(features),
                                                     metrics=metrics), indent=2, default=str))
    return 0

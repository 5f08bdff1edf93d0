"""Validation of learnt features during ``train``, with the suite's own per-iteration metrics.

Every NNF is scored by :func:`experiments.metrics.iteration_metrics` (the function behind each row
of ``compare``'s ``metrics.csv``) plus the training loss's masked L1 (``loss`` = ``recon``), and
every method runs through :mod:`experiments.methods` as in ``compare`` (same seeds, same
reconstructions), so held-out numbers and ``compare`` numbers are the same quantities.
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import diff_pm

from experiments import methods
from experiments.data.pairs import Pair
from experiments.methods.featured import module_features
from experiments.report.metrics import iteration_metrics

from .features import REFERENCE_TEMPERATURE, build_model

__all__ = ["masked_l1", "heldout_metrics", "evaluate_heldout", "evaluate_pm", "final_evaluation",
           "summarise"]


def masked_l1(pair: Pair, recon: np.ndarray) -> float:
    """Mean absolute error of ``clip(recon)`` against A on the pixels with ground truth.

    The numpy counterpart of the training loss's reconstruction term (all pixels without GT).
    """
    err = np.abs(np.clip(recon, 0.0, 1.0) - pair.a).mean(axis=2)
    mask = pair.valid if pair.valid is not None else np.ones(err.shape, bool)
    return float(err[mask].mean()) if mask.any() else float(err.mean())


def heldout_metrics(pair: Pair, nnf: np.ndarray, recon: np.ndarray, *, patch_size: int) -> dict:
    """``loss`` and ``recon`` (:func:`masked_l1`) and every column of :func:`iteration_metrics`
    (``nnf``: the method's matches, ``MethodRun.matches``)."""
    l1 = masked_l1(pair, recon)
    return dict(loss=l1, recon=l1, **iteration_metrics(pair, nnf, recon, patch_size=patch_size))


def _mean_rows(rows: list[dict]) -> dict:
    """Per-key mean over pairs, ignoring NaN (pairs without ground truth)."""
    def mean(values):
        finite = [v for v in values if not np.isnan(v)]
        return float(np.mean(finite)) if finite else float("nan")

    return {k: mean([r[k] for r in rows]) for k in rows[0]}


def _heldout_means(pairs: list[Pair], run_pair, *, patch_size: int) -> dict:
    """Mean :func:`heldout_metrics` over ``pairs`` of each ``run_pair(pair)``'s last iteration."""
    rows = []
    for pair in pairs:
        run = run_pair(pair)
        nnf = run.nnfs[-1]
        rows.append(heldout_metrics(pair, run.matches(nnf), run.reconstruct(nnf), patch_size=patch_size))
    return _mean_rows(rows)


def evaluate_heldout(model, pairs: list[Pair], *, device: str, seed: int, patch_size: int,
                     threads: int | None = None) -> dict:
    """Mean held-out metrics of a DPM after its own number of iterations (:func:`heldout_metrics`).

    Each pair runs through :func:`experiments.methods.run_dpm` with a generator seeded by ``seed``,
    so evaluations compare across steps; the model's training mode is restored afterwards. EPE and
    within-1px average over the pairs with ground truth (all built-in pairs have it).
    """
    was_training = model.training
    try:
        return _heldout_means(pairs, lambda pair: methods.run_dpm(
            model, pair, method="heldout", device=device, seed=seed, patch_size=patch_size, threads=threads),
            patch_size=patch_size)
    finally:
        model.train(was_training)


def evaluate_pm(pairs: list[Pair], *, iterations: int, seed: int, threads: int,
                patch_size: int, features=None) -> dict:
    """Held-out means of classic PatchMatch after ``iterations`` (as :func:`evaluate_heldout`);
    ``features``: a learnt feature module whose features it matches (None: RGB patches)."""
    function = None if features is None else module_features(features)
    try:
        return _heldout_means(pairs, lambda pair: methods.run_pm(
            pair, iterations=iterations, patch_size=patch_size, seed=seed, threads=threads, features=function),
            patch_size=patch_size)
    finally:
        if features is not None:
            features.train()


def final_evaluation(features, pairs: list[Pair], *, iterations: int, device: str, seed: int,
                     threads: int, patch_size: int, progress: bool = True) -> pd.DataFrame:
    """Per-iteration metrics of pm, pm-learned, dpm, dpm-learned (reference and learnt temperature).

    Every method runs ``iterations`` iterations with the seeds ``compare`` uses; the NNF after each
    iteration is scored with :func:`heldout_metrics`. Methods: ``pm`` (classic), ``pm-learned``
    (classic PatchMatch on the learnt features), ``dpm`` (fixed features, reference temperature),
    ``dpm-learned`` (learnt features, reference temperature 1e10: only the features differ from
    ``dpm``), ``dpm-learned-soft`` (learnt features at the learnt temperature).
    """
    function = module_features(features)
    configs = [("pm", None), ("pm-learned", None),
               ("dpm", diff_pm.DifferentiablePatchMatch(iterations=iterations, patch_size=patch_size)),
               ("dpm-learned", build_model(features, iterations=iterations, patch_size=patch_size,
                                           temperature=REFERENCE_TEMPERATURE)),
               ("dpm-learned-soft", build_model(features, iterations=iterations,
                                                patch_size=patch_size, temperature=1.0))]
    rows = []
    bar = tqdm(total=len(pairs) * len(configs), desc="final held-out evaluation", unit="run",
               disable=not progress, dynamic_ncols=True, file=sys.stderr, leave=False)
    for pair in pairs:
        for method, model in configs:
            if model is None:
                run = methods.run_pm(pair, iterations=iterations, patch_size=patch_size, seed=seed, threads=threads,
                                     features=function if method == "pm-learned" else None)
            else:
                run = methods.run_dpm(model, pair, method=method, device=device, seed=seed,
                                      patch_size=patch_size, threads=threads)
            for it, nnf in zip(run.iterations, run.nnfs):
                rows.append(dict(pair=pair.name, method=method, iteration=it,
                                 **heldout_metrics(pair, run.matches(nnf), run.reconstruct(nnf),
                                                   patch_size=patch_size)))
            bar.update()
    bar.close()
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, iteration: int) -> pd.DataFrame:
    """Mean over pairs of psnr / epe / within_1px per method at one iteration."""
    sel = df[df["iteration"] == iteration]
    return sel.groupby("method", sort=False)[["psnr", "epe", "within_1px"]].mean()

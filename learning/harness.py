"""Feature sets x matchers on pairs with ground truth: the measurement behind the learning study.

A :class:`FeatureSet` names what is compared (raw patches, normalised patches of some area, an
untrained or a trained network); a *matcher* is how (:data:`MATCHERS`, all in hard mode): the exact
NNF, classic PatchMatch, DPM keeping its current offset (``dpm-keep``), and DPM as the original
(``dpm-reference``: ``reference_quirks=True``, argmax evaluation). Every run goes through the timed
runs of :mod:`experiments.methods` (``features=``), so the numbers are those of ``compare``; the
reconstruction always votes 7 x 7 RGB patches of B at the matches. :func:`evaluate` returns one
row per (pair, feature set, matcher, seed) with the mean and median end-point error, the fraction
within 1 px and the PSNR, plus the ``zero`` and ``random`` baselines.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import diff_pm
from experiments.devices import thread_scope
from experiments.methods import run_dpm, run_exact, run_pm
from experiments.methods.featured import module_features, normalised_patches
from experiments.methods.timed import baseline_matches, classic_vote
from experiments.report.metrics import end_point_errors, psnr

from .data import texture_class

__all__ = ["MATCHERS", "FeatureSet", "raw_set", "normalised_set", "module_set", "evaluate", "ROW_FIELDS"]

#: The matchers of the study, in table order.
MATCHERS = ("exact", "pm", "dpm-keep", "dpm-reference")
#: The columns of :func:`evaluate`'s rows.
ROW_FIELDS = ("split", "pair", "texture", "feature_set", "kind", "arm", "net", "train_seed", "step", "match_patch",
              "eps", "area", "matcher", "seed", "epe", "median_epe", "within_1px", "psnr", "time_s")
VOTE_PATCH = 7


@dataclass
class FeatureSet:
    """What a matcher compares.

    ``function(image (H, W, 3)) -> (H, W, F)`` (None: raw RGB patches of ``area`` x ``area``,
    matched as patches; else features matched pixel by pixel); ``kind``: ``raw``, ``normalised``,
    ``untrained`` or ``learned``; ``area``: side of the image area one comparison sees; ``step``,
    ``match_patch`` (learnt features) and ``eps`` (normalised patches): for the record.
    """

    name: str
    kind: str
    area: int
    function: Callable[[np.ndarray], np.ndarray] | None = None
    arm: str = ""
    net: str = ""
    train_seed: int | None = None
    step: int | None = None
    match_patch: int | None = None
    eps: float | None = None
    cache: dict = field(default_factory=dict, repr=False)

    def features(self, image: np.ndarray) -> np.ndarray:
        """``function(image)``, computed once per image object (the pairs live through a run)."""
        key = id(image)
        if key not in self.cache:
            self.cache[key] = (image, self.function(image))
        return self.cache[key][1]


def raw_set(patch_size: int = 7) -> FeatureSet:
    return FeatureSet(f"raw {patch_size}x{patch_size}", "raw", patch_size)


def normalised_set(area: int, *, eps: float) -> FeatureSet:
    return FeatureSet(f"normalised {area}x{area}", "normalised", area,
                      lambda image: normalised_patches(image, size=area, eps=eps), eps=eps)


def module_set(name: str, module, *, kind: str, arm: str = "", net: str = "", train_seed: int | None = None,
               step: int | None = None, device: str = "cpu") -> FeatureSet:
    """A feature set of a torch module with an ``area`` attribute (:class:`learning.nets.ConvFeatures`)."""
    return FeatureSet(name, kind, int(module.area), module_features(module, device=device), arm=arm, net=net,
                      train_seed=train_seed, step=step, match_patch=getattr(module, "match_patch", None))


def _dpm(matcher: str, fs: FeatureSet, iterations: int):
    patch = fs.area if fs.function is None else 1
    if matcher == "dpm-keep":
        return diff_pm.DifferentiablePatchMatch(iterations=iterations, patch_size=patch, evaluation="hard",
                                                keep_current=True)
    return diff_pm.DifferentiablePatchMatch(iterations=iterations, patch_size=patch, evaluation="hard",
                                            reference_quirks=True)


def _run(matcher: str, fs: FeatureSet, pair, *, seed, threads: int, device: str, pm_iterations: int,
         dpm_iterations: int):
    feats = None if fs.function is None else fs.features
    match_patch = fs.area if fs.function is None else 1
    if matcher == "exact":
        return run_exact(pair, patch_size=VOTE_PATCH, device=device, threads=threads, features=feats,
                         match_patch=match_patch)
    if matcher == "pm":
        return run_pm(pair, iterations=pm_iterations, patch_size=VOTE_PATCH, seed=seed, threads=threads,
                      features=feats, match_patch=match_patch)
    model = _dpm(matcher, fs, dpm_iterations)
    return run_dpm(model, pair, device=device, seed=seed, patch_size=VOTE_PATCH, threads=threads, method=matcher,
                   features=feats)


def _scores(pair, matches: np.ndarray, recon: np.ndarray) -> dict:
    err = end_point_errors(matches, pair.gt, pair.valid)
    return dict(epe=float(err.mean()), median_epe=float(np.median(err)), within_1px=float((err <= 1.0).mean()),
                psnr=psnr(pair.a, np.clip(recon, 0.0, 1.0)))


def evaluate(feature_sets: list[FeatureSet], pairs: list, *, split: str, seeds: dict[str, list[int]],
             threads: int, device: str = "cpu", pm_iterations: int = 5, dpm_iterations: int = 21,
             matchers_of: Callable[[FeatureSet], tuple[str, ...]] | None = None, baselines: bool = True,
             progress: bool = True, log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Every feature set with every matcher on every pair: one row per run (:data:`ROW_FIELDS`).

    ``seeds``: the seeds of each seeded matcher (``pm``, ``dpm-keep``, ``dpm-reference``; the exact
    NNF runs once); ``matchers_of(feature_set)``: the matchers it is run with (default: those
    ``seeds`` names plus ``exact``). ``baselines``: add the ``zero`` (once) and ``random`` (per
    ``pm`` seed) baselines, feature set ``-``. Pairs need ground truth. ``time_s``: the timed run
    (features included on their first use of a pair).
    """
    matchers_of = matchers_of or (lambda fs: tuple(m for m in MATCHERS if m == "exact" or m in seeds))
    rows: list[dict] = []
    total = sum(len(pairs) * sum(len(seeds.get(m, [None])) for m in matchers_of(fs)) for fs in feature_sets)
    bar = tqdm(total=total, desc=f"{split} evaluation", unit="run", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, leave=False)
    with thread_scope(threads):
        for pair in pairs:
            texture = texture_class(pair)
            base = dict(split=split, pair=pair.name, texture=texture)
            if baselines:
                for kind, kseeds in (("zero", [None]), ("random", seeds.get("pm", [0]))):
                    for seed in kseeds:
                        nnf = baseline_matches(pair.a.shape, pair.b.shape, kind=kind, seed=seed)
                        rows.append(dict(base, feature_set="-", kind="baseline", arm="", net="", area=0,
                                         matcher=kind, seed=seed, time_s=0.0,
                                         **_scores(pair, nnf, classic_vote(pair.b, VOTE_PATCH)(nnf))))
            for fs in feature_sets:
                for matcher in matchers_of(fs):
                    for seed in (seeds.get(matcher, [None]) if matcher != "exact" else [None]):
                        t0 = time.perf_counter()
                        run = _run(matcher, fs, pair, seed=seed, threads=threads, device=device,
                                   pm_iterations=pm_iterations, dpm_iterations=dpm_iterations)
                        elapsed = time.perf_counter() - t0
                        nnf = run.nnfs[-1]
                        rows.append(dict(base, feature_set=fs.name, kind=fs.kind, arm=fs.arm, net=fs.net,
                                         train_seed=fs.train_seed, step=fs.step, match_patch=fs.match_patch,
                                         eps=fs.eps, area=fs.area, matcher=matcher, seed=seed,
                                         time_s=elapsed, **_scores(pair, run.matches(nnf), run.reconstruct(nnf))))
                        bar.update()
                fs.cache.clear()
            if log is not None:
                log(f"  {split} {pair.name} done ({texture})")
    bar.close()
    return pd.DataFrame(rows, columns=list(ROW_FIELDS))

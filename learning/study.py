"""``python -m experiments learn-study``: what the gradients buy, measured with honest splits.

Phases (every choice on the validation pairs, the test pairs only measured at the end):

1. **Selection training**: every arm (:data:`learning.settings.ARMS`) with every net (``rf7``,
   ``rf15``), training seed 0, ``steps`` steps; snapshots at a third, two thirds and the end.
2. **Validation**: classic PatchMatch (the target matcher) on the validation pairs with every
   snapshot's features at every matching patch side (``match_patches``), and with normalised
   patches at every ``eps`` of ``eps_choices``; per arm the (net, step count, patch side) of lowest
   mean end-point error, per area the best ``eps``.
3. **Final training**: each arm's chosen setting with the other training seeds (the same schedule,
   stopped at the chosen step count). The best arm on validation gives the study's checkpoint.
4. **Test**: raw 7 x 7 patches, normalised patches (7 x 7 and the area of each arm's features), an
   untrained net, and every arm's trained nets, with the exact NNF, classic PatchMatch, DPM
   keeping its current offset and the reference DPM (:mod:`learning.harness`), plus the ``zero``
   and ``random`` baselines, on :func:`learning.data.test_pairs` and any ``--data``.
5. **Report** (:mod:`learning.study_report`): tables, paired differences with standard errors,
   the target check, a figure.

Trained features are cached in ``OUT/checkpoints/`` (a rerun with the same settings reuses them);
``validation.csv``, ``test.csv``, ``choices.json`` and ``timings.json`` hold everything the report
shows.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from experiments.devices import resolve_device
from experiments.errors import UserError

from .arms import build_features, with_match_patch
from .checkpoint import load_checkpoint, save_checkpoint
from .data import TRAIN_IMAGES, test_pairs, validation_pairs
from .harness import MATCHERS, evaluate, module_set, normalised_set, raw_set
from .settings import QUICK, StudySettings, TrainSettings
from .train import fit, model_config, training_images, training_scope

__all__ = ["StudySettings", "run_study", "QUICK"]


def PM_ONLY(fs) -> tuple[str, ...]:  # noqa: N802 - a constant function: validation runs PatchMatch only
    return ("pm",)


class _Clock:
    """Seconds per phase, for ``timings.json`` and the report."""

    def __init__(self):
        self.times: dict[str, float] = {}
        self.t0 = time.perf_counter()

    def phase(self, name: str, since: float) -> None:
        self.times[name] = round(self.times.get(name, 0.0) + time.perf_counter() - since, 1)


def _checkpoint_path(out: Path, s: TrainSettings, step: int) -> Path:
    return out / "checkpoints" / f"{s.arm}-{s.net}-s{s.seed}-{step}.pt"


def _train(st: StudySettings, s: TrainSettings, steps: tuple[int, ...], *, out: Path, device: str, images,
           log) -> dict[int, torch.nn.Module]:
    """The features of run ``s`` at each of ``steps`` (trained now, or read from ``OUT/checkpoints``
    when a checkpoint of the same settings is there); each snapshot is saved there."""
    config = model_config(s, iterations=21)
    found = {}
    for step in steps:
        path = _checkpoint_path(out, s, step)
        if path.exists():
            model, info = load_checkpoint(path, device=device)
            if info["config"].get("train") == json.loads(json.dumps(config["train"])) and info["step"] == step:
                found[step] = model.features
    if len(found) == len(steps):
        log(f"  {s.arm} {s.net} seed {s.seed}: reused {len(steps)} checkpoint(s)")
        return found
    snaps: dict[int, torch.nn.Module] = {}

    def keep(step, features):
        snap = copy.deepcopy(features).eval()
        snaps[step] = snap
        save_checkpoint(_checkpoint_path(out, s, step), snap, config, seed=s.seed, step=step)

    t0 = time.perf_counter()
    fit(s, device=device, images=images, snapshots=steps, on_snapshot=keep, stop_at=max(steps),
        progress=st.progress)
    log(f"  {s.arm} {s.net} seed {s.seed}: {max(steps)} steps in {time.perf_counter() - t0:.0f} s")
    return snaps


def _label(arm: str, net: str, p: int) -> str:
    return f"{arm} ({net}, {p}x{p})"


def _choose(df: pd.DataFrame, keys: list[str]) -> dict:
    """The row (of mean EPE per ``keys`` setting over pairs and seeds) with the lowest mean EPE."""
    means = df.groupby(keys, dropna=False)["epe"].mean().reset_index().sort_values("epe", kind="stable")
    return means.iloc[0].to_dict()


def run_study(st: StudySettings, *, log: Callable[[str], None] = print) -> Path:
    """Run the study of ``st`` (see the module docstring); returns the path of ``REPORT.md``."""
    from .study_report import write_report  # deferred: matplotlib

    if st.quick:
        st = replace(st, **{k: v for k, v in QUICK.items()})
    device = resolve_device(st.device)
    out = Path(st.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    clock = _Clock()
    with training_scope(st.threads, device):
        t = time.perf_counter()
        images = training_images(TRAIN_IMAGES)
        val = validation_pairs(st.size, per_image=st.val_per_image)
        test = test_pairs(st.size, extra_per_image=st.test_extra) + _dataset_pairs(st, log)
        clock.phase("data", t)
        log(f"splits: {len(images)} training images, {len(val)} validation pairs, {len(test)} test pairs "
            f"at {st.size} px; {st.threads} threads on {device}")

        # 1. selection training ------------------------------------------------------------------
        t = time.perf_counter()
        snaps = {(arm, net): _train(st, st.train_settings(arm, net, st.train_seeds[0]), st.snapshot_steps(),
                                    out=out, device=device, images=images, log=log)
                 for arm in st.arms for net in st.nets}
        clock.phase("selection training", t)

        # 2. validation ----------------------------------------------------------------------------
        t = time.perf_counter()
        sets = [raw_set(7)]
        for net in st.nets:
            untrained = build_features(st.train_settings("contrastive", net, st.train_seeds[0]),
                                       generator=torch.Generator().manual_seed(st.train_seeds[0]))
            sets += [module_set(_label("untrained", net, p), with_match_patch(untrained, p), kind="untrained", net=net)
                     for p in st.match_patches]
        for (arm, net), by_step in snaps.items():
            for step, feats in by_step.items():
                for p in st.match_patches:
                    sets.append(module_set(f"{_label(arm, net, p)} {step} steps", with_match_patch(feats, p),
                                           kind="learned", arm=arm, net=net, train_seed=st.train_seeds[0], step=step))
        vdf = _evaluate(sets, val, st, "validation", dict(pm=list(st.val_seeds)), device, baselines=True,
                        matchers_of=PM_ONLY)
        choices = {}
        for arm in st.arms:
            best = _choose(vdf[vdf["arm"] == arm], ["net", "step", "match_patch"])
            choices[arm] = dict(net=best["net"], step=int(best["step"]), match_patch=int(best["match_patch"]),
                                validation_epe=float(best["epe"]))
        areas = sorted({7} | {with_match_patch(snaps[(a, c["net"])][c["step"]], c["match_patch"]).area
                              for a, c in choices.items()})
        nsets = [normalised_set(a, eps=e) for a in areas for e in st.eps_choices]
        for fs in nsets:
            fs.name += f" eps {fs.eps:g}"
        ndf = _evaluate(nsets, val, st, "validation", dict(pm=list(st.val_seeds)), device, baselines=False,
                        matchers_of=PM_ONLY)
        eps = {int(a): float(_choose(ndf[ndf["area"] == a], ["eps"])["eps"]) for a in areas}
        vdf = pd.concat([vdf, ndf], ignore_index=True)
        clock.phase("validation", t)
        log("chosen on validation: " + "; ".join(f"{a}: {c['net']}, {c['step']} steps, {c['match_patch']}x"
                                                 f"{c['match_patch']} (EPE {c['validation_epe']:.2f})"
                                                 for a, c in choices.items())
            + "; eps " + ", ".join(f"{a}: {e:g}" for a, e in eps.items()))

        # 3. final training -------------------------------------------------------------------------
        t = time.perf_counter()
        trained = {}
        for arm, c in choices.items():
            for seed in st.train_seeds:
                if seed == st.train_seeds[0]:
                    feats = snaps[(arm, c["net"])][c["step"]]
                else:
                    s = st.train_settings(arm, c["net"], seed)
                    feats = _train(st, s, (c["step"],), out=out, device=device, images=images, log=log)[c["step"]]
                trained[(arm, seed)] = with_match_patch(feats, c["match_patch"])
        clock.phase("final training", t)
        t = time.perf_counter()
        fsets = [module_set(f"{arm} s{seed}", f, kind="learned", arm=arm, net=choices[arm]["net"], train_seed=seed)
                 for (arm, seed), f in trained.items()]
        fdf = _evaluate(fsets, val, st, "validation-final", dict(pm=list(st.val_seeds)), device, baselines=False,
                        matchers_of=PM_ONLY)
        by_arm = fdf.groupby("arm")["epe"].mean()
        best_arm = str(by_arm.idxmin())
        best_seed = int(fdf[fdf["arm"] == best_arm].groupby("train_seed")["epe"].mean().idxmin())
        vdf = pd.concat([vdf, fdf], ignore_index=True)
        clock.phase("validation", t)
        best_path = _save_best(st, out, trained[(best_arm, best_seed)], choices[best_arm], best_arm, best_seed,
                               by_arm.to_dict())
        log(f"best arm on validation: {best_arm} (seed {best_seed}); checkpoint {best_path}")

        # 4. test -------------------------------------------------------------------------------------
        t = time.perf_counter()
        c = choices[best_arm]
        untrained = build_features(st.train_settings(best_arm, c["net"], st.train_seeds[0]),
                                   generator=torch.Generator().manual_seed(st.train_seeds[0]), match_patch=c["match_patch"])
        tsets = [raw_set(7)] + [normalised_set(a, eps=eps[a]) for a in areas]
        tsets.append(module_set(_label("untrained", c["net"], c["match_patch"]), untrained, kind="untrained",
                                net=c["net"]))
        tsets += [module_set(_label(arm, choices[arm]["net"], choices[arm]["match_patch"]) + f" s{seed}", f,
                             kind="learned", arm=arm, net=choices[arm]["net"], train_seed=seed)
                  for (arm, seed), f in trained.items()]
        seeds = dict(pm=list(st.eval_seeds), **{m: list(st.dpm_seeds) for m in MATCHERS if m.startswith("dpm")})
        tdf = _evaluate(tsets, test, st, "test", seeds, device, baselines=True,
                        matchers_of=lambda fs: MATCHERS if fs.kind != "normalised" or fs.area <= 7 else ("exact", "pm"))
        clock.phase("test", t)
    vdf.to_csv(out / "validation.csv", index=False, float_format="%.6g")
    tdf.to_csv(out / "test.csv", index=False, float_format="%.6g")
    clock.times["total"] = round(time.perf_counter() - clock.t0, 1)
    meta = dict(settings=st.to_dict(), device=device, choices=choices, eps=eps, best_arm=best_arm, best_seed=best_seed,
                validation_by_arm=by_arm.to_dict(), checkpoint=str(best_path), areas=areas,
                pairs=dict(validation=[p.name for p in val], test=[p.name for p in test]))
    (out / "choices.json").write_text(json.dumps(meta, indent=2, default=str))
    (out / "timings.json").write_text(json.dumps(clock.times, indent=2))
    return write_report(out, vdf, tdf, meta, clock.times)


def _evaluate(sets, pairs, st: StudySettings, split: str, seeds: dict, device: str, *, baselines: bool,
              matchers_of=None) -> pd.DataFrame:
    """:func:`learning.harness.evaluate` with the study's threads and progress bar."""
    return evaluate(sets, pairs, split=split, seeds=seeds, threads=st.threads, device=device, baselines=baselines,
                    matchers_of=matchers_of, progress=st.progress)


def _save_best(st: StudySettings, out: Path, features, choice: dict, arm: str, seed: int, by_arm: dict) -> Path:
    """The chosen features as ``OUT/best.pt`` (and ``st.save_best``), a ``dpm-learned`` checkpoint."""
    s = st.train_settings(arm, choice["net"], seed, match_patch=choice["match_patch"])
    s = replace(s, steps=st.steps, command=st.command)
    config = model_config(s, iterations=21)
    config["train"].update(stopped_at=choice["step"], study=st.out)
    metrics = dict(validation_epe_by_arm=by_arm, chosen=choice)
    paths = [out / "best.pt"] + ([Path(st.save_best)] if st.save_best else [])
    for path in paths:
        save_checkpoint(path, features, config, seed=seed, step=choice["step"], metrics=metrics, arm=arm)
    return paths[-1]


def _dataset_pairs(st: StudySettings, log) -> list:
    """The ``--data`` test pairs at the study's size (ground truth required)."""
    if not st.data:
        return []
    from experiments.data import resolve_data  # deferred: dataset readers

    pairs = [src.load(st.size) for src in resolve_data(list(st.data), limit=st.limit, log=log)]
    missing = [p.name for p in pairs if p.gt is None]
    if missing:
        raise UserError(f"--data: pair {missing[0]!r} has no ground truth; the study needs it on every test pair")
    return pairs

"""The training loop (:func:`fit`) and ``python -m experiments train`` (:func:`run`).

What is trained
---------------
The features of :func:`learning.arms.build_features` (``--net``: a dilated 3 x 3 convolution net
with a 7 x 7 or 15 x 15 receptive field, :class:`learning.nets.ConvFeatures`, or the earlier 7 x 7
projection, :class:`learning.features.LearnedFeatures`), with the loss of ``--arm``
(:mod:`learning.arms`: ``contrastive`` without DPM, ``dpm-ce`` through DPM's hard choice, ``recon``
the earlier soft-DPM reconstruction loss). Each step draws a batch of training pairs
(:class:`learning.data.PairSampler`); Adam, cosine decay of the learning rate to 0.1x, gradient
norm clipped at 1.

Outputs of ``train`` (``--out``)
--------------------------------
``dpm_learned.pt`` (checkpoint, :mod:`learning.checkpoint`), ``train_log.csv`` (one row per step
and per validation evaluation, appended as they happen), ``training.png`` (:mod:`learning.plots`),
``final_eval.csv`` (per-iteration validation metrics of pm, pm-learned, dpm, dpm-learned) and
``config.json``. Validation pairs: :func:`learning.data.validation_pairs` (never the test pairs).

Reproducibility: one ``numpy`` Generator for the data, ``torch.Generator`` s for the initial
weights and for the losses' draws (DPM's particles, anchors, negatives),
``torch.use_deterministic_algorithms`` on CPU, oneDNN off, and the whole run under one
:func:`experiments.devices.thread_scope`: the same seed and threads give the same weights on CPU.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from experiments.devices import resolve_device, thread_scope
from experiments.errors import UserError

from .arms import arm_config, build_features, train_step, with_match_patch
from .checkpoint import save_checkpoint
from .data import (VALIDATION_IMAGES, PairSampler, check_splits, heldout_sources, load_sample,
                   validation_pairs)
from .evaluation import evaluate_heldout, evaluate_pm, final_evaluation, summarise
from .features import PATCH_SIZE, REFERENCE_TEMPERATURE, SEARCH_DEFAULTS, build_model, count_parameters
from .plots import save_training_plot
from .settings import TrainSettings

__all__ = ["fit", "run", "training_scope", "model_config", "TrainLog", "LOG_FIELDS"]

LOG_FIELDS = ("step", "kind", "mode", "loss", "recon", "psnr", "epe", "within_1px", "temperature", "lr",
              "elapsed_s")


@contextlib.contextmanager
def training_scope(threads: int, device: str):
    """Deterministic CPU training for the block: deterministic algorithms (warn-only off CPU),
    oneDNN off (its convolutions are not bitwise repeatable), ``threads`` numba/torch threads;
    every global setting restored afterwards."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.mkldnn.enabled)
    try:
        torch.backends.mkldnn.enabled = False
        torch.use_deterministic_algorithms(True, warn_only=device != "cpu")
        with thread_scope(threads):
            yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.mkldnn.enabled = previous[2]


def training_images(names) -> dict[str, np.ndarray]:
    """The named training images, checked disjoint from the validation and the test images."""
    images = {n: load_sample(n) for n in names}
    check_splits(training=images, validation={n: load_sample(n) for n in VALIDATION_IMAGES}, test=heldout_sources())
    return images


def fit(s: TrainSettings, *, device: str = "cpu", images: dict | None = None,
        on_step: Callable[[int, dict], None] | None = None,
        snapshots: tuple[int, ...] = (), on_snapshot: Callable[[int, torch.nn.Module], None] | None = None,
        stop_at: int | None = None, progress: bool = False):
    """Train the features of ``s`` for ``s.steps`` steps; returns them (on ``device``, eval mode).

    ``stop_at``: stop after that many steps, the learning-rate schedule still that of ``s.steps``
    (so a run stopped at step k has the weights of step k of the full run).
    ``on_step(step, row)``: after each step (``row``: loss, the arm's extras, temperature, lr);
    ``on_snapshot(step, features)`` at each step of ``snapshots`` (the features as they are then).
    Call inside :func:`training_scope` for reproducible weights. Ctrl-C propagates
    (``KeyboardInterrupt``); a caller that wants the features of an interrupted run keeps them from
    ``on_snapshot``.
    """
    images = training_images(s.images) if images is None else images
    sampler = PairSampler(list(images.values()), s.crop, np.random.default_rng(s.seed))
    features = build_features(s, generator=torch.Generator().manual_seed(s.seed)).to(device)
    optimizer = torch.optim.Adam(features.parameters(), lr=s.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(k, s.steps) / max(s.steps, 1))))
    gen = torch.Generator(device=device)
    gen.manual_seed(s.seed + 1)
    last = s.steps if stop_at is None else min(int(stop_at), s.steps)
    bar = tqdm(total=last, desc=f"train {s.arm} {s.net} s{s.seed}", unit="step", disable=not progress,
               dynamic_ncols=True, file=sys.stderr, leave=False)
    running = None
    for step in range(1, last + 1):
        res = train_step(s, features, optimizer, sampler.batch(s.batch, device), generator=gen)
        lr = optimizer.param_groups[0]["lr"]
        schedule.step()
        running = res["loss"] if running is None else 0.95 * running + 0.05 * res["loss"]
        bar.set_postfix(loss=f"{running:.4f}", T=f"{features.temperature:.3g}")
        bar.update()
        if on_step is not None:
            on_step(step, dict(res, temperature=features.temperature, lr=lr))
        if step in snapshots and on_snapshot is not None:
            on_snapshot(step, features)
    bar.close()
    return features.eval()


def model_config(s: TrainSettings, *, iterations: int) -> dict:
    """The checkpoint's ``config``: the DPM it runs as (``dpm-learned``: DPM's default search with
    these features, practically hard) and every training option."""
    train = dict(s.to_dict(), **arm_config(s), lr_schedule="cosine to 0.1x", grad_clip=1.0)
    train.pop("command", None)
    return dict(model=dict(iterations=iterations, evaluation="soft", temperature=REFERENCE_TEMPERATURE,
                           patch_size=PATCH_SIZE, **SEARCH_DEFAULTS), train=train, command=s.command)


class TrainLog:
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


def run(settings: TrainSettings) -> int:
    """``train``: train, log, validate, plot, save the checkpoint, compare on validation. Returns 0
    (130 after Ctrl-C, checkpoint and log of the steps done saved)."""
    device = resolve_device(settings.device)
    with training_scope(settings.threads, device):
        return _run(settings, device)


def _run(s: TrainSettings, device: str) -> int:
    out = Path(s.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    out.mkdir(parents=True, exist_ok=True)
    images = training_images(s.images)
    pairs = validation_pairs(s.eval_size)
    config = model_config(s, iterations=s.eval_iterations)
    config["train"].update(eval_size=s.eval_size, eval_every=s.eval_every, validation=[p.name for p in pairs])
    log = TrainLog(out / "train_log.csv")
    t0 = time.perf_counter()
    probe = build_features(s)
    print(f"training {count_parameters(probe)} parameters ({s.arm}, {s.net}) on {device} ({s.threads} threads): "
          f"{s.steps} steps x {s.batch} pairs of {s.crop}x{s.crop}; validation: {len(pairs)} pairs at "
          f"{s.eval_size} px", flush=True)

    def validate(trained, step: int) -> None:
        features = with_match_patch(trained, s.match_patch)
        pm = evaluate_pm(pairs, iterations=5, seed=s.seed, threads=s.threads, patch_size=PATCH_SIZE,
                         features=features)
        log.add(step=step, kind="heldout", mode="pm", **pm, temperature=features.temperature,
                elapsed_s=time.perf_counter() - t0)
        dpm = build_model(features, iterations=s.eval_iterations, temperature=REFERENCE_TEMPERATURE)
        res = evaluate_heldout(dpm, pairs, device=device, seed=s.seed, patch_size=PATCH_SIZE)
        trained.train()
        log.add(step=step, kind="heldout", mode="dpm", **res, temperature=features.temperature,
                elapsed_s=time.perf_counter() - t0)

    baselines = dict(pm=evaluate_pm(pairs, iterations=5, seed=s.seed, threads=s.threads, patch_size=PATCH_SIZE))
    log.add(step=0, kind="baseline", mode="pm", **baselines["pm"], elapsed_s=time.perf_counter() - t0)
    state = {"features": None, "done": 0}

    def on_step(step, row):
        state["done"] = step
        log.add(step=step, kind="train", mode=s.arm, **row, elapsed_s=time.perf_counter() - t0)

    def on_snapshot(step, features):
        state["features"] = with_match_patch(features, s.match_patch)
        if step != s.steps:
            validate(features, step)

    every = tuple(range(s.eval_every, s.steps + 1, s.eval_every)) if s.eval_every else ()
    try:
        features = fit(s, device=device, images=images, on_step=on_step, snapshots=every + (s.steps,),
                       on_snapshot=on_snapshot, progress=s.progress)
    except KeyboardInterrupt:
        if state["features"] is not None:
            save_checkpoint(out / "dpm_learned.pt", state["features"], config, seed=s.seed, step=state["done"])
        log.close()
        print(f"interrupted after {state['done']} steps: log (and the last validated checkpoint) in {out}/",
              file=sys.stderr)
        return 130
    validate(features, s.steps)
    features = with_match_patch(features, s.match_patch)
    train_s = time.perf_counter() - t0
    title = (f"{count_parameters(features)}-parameter features ({s.arm}, {s.net}), {s.steps} steps, seed {s.seed}; "
             f"validation pairs at {s.eval_size} px")
    save_training_plot(log.rows, baselines, out / "training.png", title=title)
    last = {r["mode"]: r for r in log.rows if r["kind"] == "heldout"}
    metrics = dict(train_s=round(train_s, 1), learned_temperature=features.temperature,
                   validation={m: {k: r[k] for k in ("recon", "psnr", "epe", "within_1px")} for m, r in last.items()})
    save_checkpoint(out / "dpm_learned.pt", features, config, seed=s.seed, step=s.steps, metrics=metrics)
    print(f"trained {s.steps} steps in {train_s:.0f} s; wrote {out / 'dpm_learned.pt'}, {out / 'train_log.csv'}, "
          f"{out / 'training.png'}", flush=True)
    if s.final_eval:
        t1 = time.perf_counter()
        df = final_evaluation(features, pairs, iterations=s.eval_iterations, device=device, seed=s.seed,
                              threads=s.threads, patch_size=PATCH_SIZE, progress=s.progress)
        df.to_csv(out / "final_eval.csv", index=False, float_format="%.6g")
        tab = summarise(df, s.eval_iterations)
        print(f"\nvalidation ({len(pairs)} pairs at {s.eval_size} px), last iteration, mean over pairs:")
        print(tab.to_string(float_format=lambda v: f"{v:.3f}"))
        metrics["final"] = dict(iterations=s.eval_iterations, summary=tab.round(4).to_dict(orient="index"),
                                seconds=round(time.perf_counter() - t1, 1))
        save_checkpoint(out / "dpm_learned.pt", features, config, seed=s.seed, step=s.steps, metrics=metrics)
        print(f"\nwrote {out / 'final_eval.csv'}  [final evaluation {time.perf_counter() - t1:.0f} s]")
    log.close()
    (out / "config.json").write_text(json.dumps(dict(config, parameters=count_parameters(features),
                                                     metrics=metrics), indent=2, default=str))
    return 0

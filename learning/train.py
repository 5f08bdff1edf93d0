"""The training loop of ``python -m experiments train``: learn DPM features end to end.

What is trained
---------------
:class:`learning.features.LearnedFeatures` (a 7 x 7 projection to 16 channels, a residual 1 x 1
MLP and a log-parameterised softmax temperature; about 3k parameters) replaces DPM's fixed
147-channel neighbourhood features. Each step draws a batch of training pairs
(:class:`learning.data.PairSampler`), runs :class:`diff_pm.DifferentiablePatchMatch` (soft
evaluation at the learnt temperature, ``--iterations`` unrolled iterations, otherwise DPM's
default search), rebuilds A from B's pixels with :func:`diff_pm.reconstruct`, and
minimises :func:`learning.loss.reconstruction_loss`: the mean L1 reconstruction error on pixels of
A whose true match lies inside B (plus ``--epe-weight`` x the mean end-point error). Gradients
reach the features through the softmax weights of every evaluation step.

Why soft during training: at the reference temperature (``1e10``) the softmax is one-hot, so the
chosen offset does not depend on the scores and the features receive no gradient. Training uses a
moderate, learnt temperature; held-out evaluation (:mod:`learning.evaluation`) reports both that
soft setting and the reference (practically hard) temperature, at equal iterations with the
fixed-feature ``dpm`` and ``pm``.

Outputs (``--out``)
-------------------
``dpm_learned.pt`` (checkpoint, see :mod:`learning.checkpoint`), ``train_log.csv`` (one row per
training step and one per held-out evaluation, appended as they happen), ``training.png``
(:mod:`learning.plots`), ``final_eval.csv`` (per-iteration held-out metrics of pm, dpm and
dpm-learned at equal iterations) and ``config.json``.

Reproducibility: one ``numpy`` Generator for the data, explicit ``torch.Generator`` s for the initial
weights and for DPM's particles, ``torch.use_deterministic_algorithms`` on CPU, and the whole run
under one :func:`experiments.devices.thread_scope`: the same seed and threads give the same weights
on CPU.
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import diff_pm
from experiments.devices import resolve_device, thread_scope
from experiments.errors import UserError

from .checkpoint import save_checkpoint
from .data import PairSampler, check_disjoint, heldout_pairs, load_sample
from .evaluation import evaluate_heldout, evaluate_pm, final_evaluation, summarise
from .features import PATCH_SIZE, REFERENCE_TEMPERATURE, SEARCH_DEFAULTS, LearnedFeatures, build_model, count_parameters
from .loss import reconstruction_loss
from .plots import save_training_plot
from .settings import TrainSettings

__all__ = ["run", "train_step", "TrainLog", "LOG_FIELDS"]

LOG_FIELDS = ("step", "kind", "mode", "loss", "recon", "psnr", "epe", "within_1px", "temperature", "lr",
              "elapsed_s")


def train_step(model, optimizer, batch, *, generator, epe_weight: float = 0.0, clip: float = 1.0,
               patch_size: int = PATCH_SIZE) -> dict:
    """One optimisation step on ``batch = (a, b, gt, valid)``.

    Returns the values before the step: ``loss`` (optimised), ``recon`` (masked L1), ``epe`` (pixels).
    """
    a, b, gt, valid = batch
    model.train()
    optimizer.zero_grad(set_to_none=True)
    positions = model(a, b, generator=generator)
    loss, recon, epe = reconstruction_loss(a, b, positions, valid, gt=gt, epe_weight=epe_weight,
                                           patch_size=patch_size, parts=True)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss.item()}; lower --lr or --temperature")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.features.parameters(), clip)
    optimizer.step()
    return dict(loss=float(loss.detach()), recon=recon, epe=epe)


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
    """Train, log, plot, save the checkpoint and compare on the held-out pairs. Returns 0.

    Global settings changed for the run (deterministic algorithms, oneDNN off on CPU, and the
    numba and torch thread counts, set to ``--threads`` by one :func:`thread_scope`) are restored
    afterwards.
    """
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.mkldnn.enabled)
    try:
        # oneDNN's convolutions are not bitwise repeatable from one call to the next even with
        # deterministic algorithms requested; the native kernels are (and these convs are tiny)
        torch.backends.mkldnn.enabled = False
        with thread_scope(settings.threads):
            return _run(settings)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.mkldnn.enabled = previous[2]


def _run(s: TrainSettings) -> int:
    device = resolve_device(s.device)
    # deterministic kernels on CPU; on CUDA grid_sample's backward has no deterministic version
    torch.use_deterministic_algorithms(True, warn_only=device != "cpu")
    out = Path(s.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    out.mkdir(parents=True, exist_ok=True)

    names = list(s.images)
    train_images = {n: load_sample(n) for n in names}
    check_disjoint(train_images)
    rng = np.random.default_rng(s.seed)
    sampler = PairSampler(list(train_images.values()), s.crop, rng)
    pairs = heldout_pairs(s.eval_size)

    init_gen = torch.Generator().manual_seed(s.seed)
    features = LearnedFeatures(channels=s.channels, hidden=s.hidden, temperature=s.temperature,
                               learn_temperature=s.learn_temperature, generator=init_gen).to(device)
    model = build_model(features, iterations=s.iterations, temperature=1.0, patch_size=PATCH_SIZE).to(device)
    reference = build_model(features, iterations=s.iterations, temperature=REFERENCE_TEMPERATURE,
                            patch_size=PATCH_SIZE).to(device)
    optimizer = torch.optim.Adam(features.parameters(), lr=s.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(k, s.steps) / max(s.steps, 1))))
    dpm_gen = torch.Generator(device=device)
    dpm_gen.manual_seed(s.seed + 1)

    config = dict(model=dict(iterations=s.eval_iterations, evaluation="soft", temperature=REFERENCE_TEMPERATURE,
                             patch_size=PATCH_SIZE, **SEARCH_DEFAULTS),
                  train=dict(steps=s.steps, seed=s.seed, device=device, threads=s.threads,
                             crop=s.crop, batch=s.batch, images=names, iterations=s.iterations,
                             temperature_init=s.temperature, learn_temperature=s.learn_temperature,
                             channels=s.channels, hidden=s.hidden, lr=s.lr, lr_schedule="cosine to 0.1x",
                             epe_weight=s.epe_weight, grad_clip=1.0, loss="masked L1 reconstruction + epe_weight x EPE / crop side",
                             eval_size=s.eval_size, eval_every=s.eval_every,
                             heldout=[p.name for p in pairs]),
                  command=s.command)
    (out / "config.json").write_text(json.dumps(dict(config, parameters=count_parameters(features)), indent=2))
    print(f"training {count_parameters(features)} parameters on {device} ({s.threads} threads): "
          f"{s.steps} steps x {s.batch} pairs of {s.crop}x{s.crop}, {s.iterations} DPM iterations; "
          f"held-out: {', '.join(p.name for p in pairs)} at {s.eval_size} px", flush=True)

    log = TrainLog(out / "train_log.csv")
    t0 = time.perf_counter()

    baselines = {}
    fixed = diff_pm.DifferentiablePatchMatch(iterations=s.iterations, patch_size=PATCH_SIZE)
    base = evaluate_heldout(fixed.to(device), pairs,
                            device=device, seed=s.seed, patch_size=PATCH_SIZE)
    baselines["dpm"] = base
    log.add(step=0, kind="baseline", mode="dpm", **base, elapsed_s=time.perf_counter() - t0)
    base = evaluate_pm(pairs, iterations=s.iterations, seed=s.seed, threads=s.threads,
                       patch_size=PATCH_SIZE)
    baselines["pm"] = base
    log.add(step=0, kind="baseline", mode="pm", **base, elapsed_s=time.perf_counter() - t0)

    def heldout(step: int) -> None:
        for mode, m in (("soft", model), ("reference", reference)):
            res = evaluate_heldout(m, pairs, device=device, seed=s.seed, patch_size=PATCH_SIZE)
            log.add(step=step, kind="heldout", mode=mode, **res, temperature=features.temperature,
                    elapsed_s=time.perf_counter() - t0)

    heldout(0)
    done, running = 0, None  # done: optimisation steps whose update reached the weights
    bar = tqdm(total=s.steps, desc="train", unit="step", disable=not s.progress, dynamic_ncols=True,
               file=sys.stderr)
    try:
        for step in range(1, s.steps + 1):
            batch = sampler.batch(s.batch, device)
            res = train_step(model, optimizer, batch, generator=dpm_gen, epe_weight=s.epe_weight,
                             patch_size=PATCH_SIZE)
            done = step
            lr = optimizer.param_groups[0]["lr"]
            schedule.step()
            running = res["loss"] if running is None else 0.95 * running + 0.05 * res["loss"]
            log.add(step=step, kind="train", mode="soft", **res, temperature=features.temperature, lr=lr,
                    elapsed_s=time.perf_counter() - t0)
            bar.set_postfix(loss=f"{running:.4f}", T=f"{features.temperature:.3g}")
            bar.update()
            if s.eval_every and step % s.eval_every == 0 and step != s.steps:
                heldout(step)
    except KeyboardInterrupt:
        bar.close()
        save_checkpoint(out / "dpm_learned.pt", features, config, seed=s.seed, step=done)
        log.close()
        print(f"interrupted after {done} steps: checkpoint and log saved in {out}/", file=sys.stderr)
        return 130
    bar.close()
    if s.steps:
        heldout(s.steps)
    train_s = time.perf_counter() - t0
    title = (f"{count_parameters(features)}-parameter features, {s.steps} steps, seed {s.seed}; "
             f"{s.iterations} DPM iteration(s) in training and in these held-out curves; "
             f"held-out pairs at {s.eval_size} px")
    save_training_plot(log.rows, baselines, out / "training.png", title=title)

    metrics = dict(train_s=round(train_s, 1), learned_temperature=features.temperature)
    last = {r["mode"]: r for r in log.rows if r["kind"] == "heldout"}
    metrics["heldout_train_iterations"] = {m: {k: r[k] for k in ("recon", "psnr", "epe", "within_1px")}
                                           for m, r in last.items()}
    save_checkpoint(out / "dpm_learned.pt", features, config, seed=s.seed, step=s.steps, metrics=metrics)
    print(f"trained {s.steps} steps in {train_s:.0f} s; learnt temperature {features.temperature:.3g}; "
          f"wrote {out / 'dpm_learned.pt'}, {out / 'train_log.csv'}, {out / 'training.png'}", flush=True)

    if s.final_eval:
        t1 = time.perf_counter()
        df = final_evaluation(features, pairs, iterations=s.eval_iterations, device=device, seed=s.seed,
                              threads=s.threads, patch_size=PATCH_SIZE, progress=s.progress)
        df.to_csv(out / "final_eval.csv", index=False, float_format="%.6g")
        shown = sorted({s.iterations, s.eval_iterations} & set(df["iteration"]))
        summary = {}
        for it in shown:
            tab = summarise(df, it)
            summary[str(it)] = tab.round(4).to_dict(orient="index")
            print(f"\nheld-out ({', '.join(p.name for p in pairs)} at {s.eval_size} px), iteration {it}, "
                  "mean over pairs:")
            print(tab.to_string(float_format=lambda v: f"{v:.3f}"))
        metrics["final"] = dict(iterations=shown, eval_size=s.eval_size, summary=summary,
                                seconds=round(time.perf_counter() - t1, 1))
        save_checkpoint(out / "dpm_learned.pt", features, config, seed=s.seed, step=s.steps, metrics=metrics)
        print(f"\nwrote {out / 'final_eval.csv'}  [final evaluation {time.perf_counter() - t1:.0f} s]")
    log.close()
    (out / "config.json").write_text(json.dumps(dict(config, parameters=count_parameters(features),
                                                     metrics=metrics), indent=2, default=str))
    return 0

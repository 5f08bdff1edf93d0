"""Benchmark: Differentiable PatchMatch's one fast path against the materialising path, on the motorcycle pair.

Run ``.venv/bin/python -m benchmarks.diff [--device auto|cpu|cuda] [--threads N] [--quick]``.

The Middlebury motorcycle pair (scikit-image ``stereo_motorcycle``, 500 x 741, A = left, B = right),
21-iteration configurations, timed over ``--iterations`` iterations. Every measurement runs in its
own subprocess so that its peak memory is its own, under ``--threads`` threads for torch and numba
(default 2):

* ``default``: ``DifferentiablePatchMatch()``; ``reference``: ``reference_quirks=True`` (the original
  end to end); ``reflect``: ``outside="reflect"``; ``learned``: the committed checkpoint's learnt
  features (``data/dpm_learned.pt`` as ``learning.checkpoint.load_checkpoint`` builds it: for a
  ``ConvFeatures`` checkpoint, DPM's fused scoring on the feature maps, ``FeatureMapDPM``); ``materialize``: the default
  with ``materialize=True`` (the reference's own evaluation: ``K x 147 x H x W`` features per step),
  the baseline of the ratios.
* forward (no gradients), and forward + backward of one iteration at the reference temperature
  (1e10: the softmax is one-hot, its gradient almost zero) and at a training temperature (10).

Peak memory: CPU, peak resident set (``VmHWM`` after resetting it via ``/proc/self/clear_refs``;
``ru_maxrss`` where that is unavailable) minus the resident set just before the timed run (inputs
loaded, kernels compiled by a warm-up on a crop); CUDA, ``torch.cuda.max_memory_allocated`` minus the
allocation before the run. Seconds per iteration (forward): the median of the per-iteration callback
stamps after the first iteration, which also pays the run's one-off costs (for ``materialize`` the
features of A and B; for every path the first touch of its buffers) and is reported apart
(``first_iteration_s``); every forward measurement times at least 2 iterations, so the ratios
compare steady-state iterations. Forward + backward of one iteration: the whole run's time. Agreement: the fraction of
pixels whose positions from the fast and the materialising paths differ by at most 1e-3 px after the
same iterations with the same random draws. Speeds are ratios within this run; the table and the
JSON (``--output``) carry the run's metadata.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments.options import int_at_least

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "data" / "dpm_learned.pt"
TRAINING_TEMPERATURE = 10.0


def _pair(quick: bool):
    from skimage import data
    left, right, _ = data.stereo_motorcycle()
    if quick:
        left, right = left[::2, ::2], right[::2, ::2]
    return [np.ascontiguousarray(x, dtype=np.float32) / 255.0 for x in (left, right)]


def _rss_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _model(spec: dict, iterations: int, device):
    """The configuration ``spec["config"]`` at ``spec["temperature"]`` (None: its own)."""
    import diff_pm

    kw = dict(iterations=iterations)
    if spec["temperature"] is not None:
        kw["temperature"] = spec["temperature"]
    if spec["config"] == "learned":
        from learning.checkpoint import load_checkpoint  # deferred: only this configuration needs it
        model, _ = load_checkpoint(CHECKPOINT, device=str(device), **kw)
        return model
    extra = {"default": {}, "reference": dict(reference_quirks=True), "reflect": dict(outside="reflect"),
             "materialize": dict(materialize=True)}
    return diff_pm.DifferentiablePatchMatch(**kw, **extra[spec["config"]]).to(device)


def _worker(spec: dict) -> dict:
    """One measurement in this (fresh) process; returns a flat record."""
    import resource

    import torch

    from experiments.devices import thread_scope

    device = torch.device(spec["device"])
    left, right = _pair(spec["quick"])
    a = torch.from_numpy(left).permute(2, 0, 1)[None].to(device)
    b = torch.from_numpy(right).permute(2, 0, 1)[None].to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    backward = spec["mode"] == "forward+backward"
    with thread_scope(spec["threads"]) as used:
        # warm-up: compile kernels / initialise libraries on a crop, both passes when timed
        crop_a, crop_b = (a[..., :40, :40].clone().requires_grad_(backward), b[..., :40, :40].clone())
        with torch.set_grad_enabled(backward):
            out = _model(spec, 1, device)(crop_a, crop_b)
            if backward:
                out.sum().backward()
        model = _model(spec, spec["iterations"], device)
        if backward:
            a.requires_grad_(True)
            b.requires_grad_(True)
        if device.type == "cuda":
            sync()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        else:
            exact = _reset_peak()
            base = _rss_kb("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        stamps = []

        def callback(iteration, positions):
            sync()
            stamps.append(time.perf_counter())

        generator = torch.Generator(device=device).manual_seed(spec["seed"])
        sync()
        start = time.perf_counter()
        cpu0 = time.process_time()
        with torch.set_grad_enabled(backward):
            positions = model(a, b, generator=generator, callback=callback)
            if backward:
                positions.sum().backward()
        sync()
        total = time.perf_counter() - start
        cpu = time.process_time() - cpu0
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        peak_kb = _rss_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = (peak_kb - base) / 1024
    steps = np.diff([start] + stamps)
    steady = steps[1:] if len(steps) > 1 else steps  # the first iteration also pays one-off costs
    if spec.get("positions_file"):
        np.save(spec["positions_file"], positions.detach().cpu().numpy())
    return dict(label=spec["label"], config=spec["config"], mode=spec["mode"], temperature=spec["temperature"],
                iterations=spec["iterations"],
                seconds_per_iteration=float(statistics.median(steady)) if not backward else total / spec["iterations"],
                seconds_per_iteration_min=float(np.min(steady)) if not backward else float("nan"),
                seconds_per_iteration_max=float(np.max(steady)) if not backward else float("nan"),
                first_iteration_s=float(steps[0]) if not backward else float("nan"),
                cpu_seconds_per_iteration=cpu / spec["iterations"], peak_memory_mib=float(peak),
                torch_threads=used.torch, numba_threads=used.numba)


def _run(spec: dict) -> dict:
    """Run one measurement in a subprocess; a failure becomes a NaN record with the reason."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.diff", "--worker", json.dumps(spec)],
                          capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0 or not proc.stdout.strip():
        sys.stderr.write(proc.stderr[-2000:])
        nan = float("nan")
        return dict(label=spec["label"], config=spec["config"], mode=spec["mode"], temperature=spec["temperature"],
                    iterations=spec["iterations"], seconds_per_iteration=nan, seconds_per_iteration_min=nan,
                    seconds_per_iteration_max=nan, first_iteration_s=nan, cpu_seconds_per_iteration=nan, peak_memory_mib=nan,
                    error=(proc.stderr.strip().splitlines() or ["no output"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def score_implementations(device: str, threads: int, repeats: int = 3) -> list[dict]:
    """Seconds per call of every implementation of the score formula on the same candidates.

    A 160 x 240 crop of the pair, 4 particles per pixel propagated horizontally (12 candidates per
    pixel), the default features; the composition ``propagate -> points -> scores`` for all but the
    fused propagation kernel. Each implementation's result is checked against the materialising one.
    """
    import torch

    import diff_pm
    from diff_pm import evaluation

    from experiments.devices import thread_scope

    left, right = _pair(False)
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x[100:260, 200:440])).permute(2, 0, 1)[None].to(device)  # noqa: E731
    a, b = t(left), t(right)
    g = torch.Generator(device=device).manual_seed(0)
    sx = (torch.rand(1, 4, 160, 240, generator=g, device=device) - 0.5) * 100
    sy = (torch.rand(1, 4, 160, 240, generator=g, device=device) - 0.5) * 20
    size = (160, 240)
    cx, cy = diff_pm.propagate(sx, sy, direction="horizontal")
    bx, by = diff_pm.particle_positions(cx, cy, size, size)
    fa, fb = diff_pm.neighbourhood_features(a), diff_pm.neighbourhood_features(b)
    impls = {
        "materialized_scores (the reference's computation)": lambda: diff_pm.materialized_scores(fa, fb, bx, by),
        "tiled_scores (any features)": lambda: diff_pm.tiled_scores(fa, fb, bx, by),
        "patch_scores, torch backend (CUDA's path)": lambda: diff_pm.patch_scores(a, b, bx, by, backend="torch"),
    }
    if evaluation._cpu_kernels.available(a):
        impls["patch_scores, compiled (CPU, any candidates)"] = lambda: diff_pm.patch_scores(a, b, bx, by,
                                                                                           backend="compiled")
        impls["propagated_scores, compiled (CPU, shares work)"] = lambda: diff_pm.propagated_scores(
            a, b, sx, sy, direction="horizontal")
    out = []
    with torch.no_grad(), thread_scope(threads):
        ref = impls[next(iter(impls))]()
        for name, fn in impls.items():
            fn()  # warm-up (JIT)
            times = []
            for _ in range(repeats):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()  # the warm-up's or previous repeat's kernels out of this timing
                t0 = time.perf_counter()
                res = fn()
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            out.append(dict(implementation=name, seconds=float(np.median(times)),
                            max_abs_diff=float((res - ref).abs().max())))
    return out


def _metadata(device: str, quick: bool, threads: int) -> dict:
    from experiments import provenance
    from experiments.devices import thread_scope

    with thread_scope(threads):
        return provenance.record(
            device=device, threads=threads, paths=(*provenance.CODE_PATHS, "benchmarks"),
            image="motorcycle (half size)" if quick else "motorcycle 500x741",
            configurations="21-iteration DPM; default = sample_count 1, window 100 x 100, temperature "
                           "1e10, soft, 7 x 7 RGB features")


def plan(iterations: int, materialize_iterations: int, *, learned: bool) -> list[dict]:
    """The measurements, in order (``label`` names each)."""
    fwd = dict(mode="forward", temperature=None)
    out = [dict(label="default", config="default", iterations=iterations, **fwd),
           dict(label="reference", config="reference", iterations=iterations, **fwd),
           dict(label="reflect", config="reflect", iterations=iterations, **fwd)]
    if learned:
        out.append(dict(label="learned", config="learned", iterations=iterations, **fwd))
    out += [dict(label="materialize", config="materialize", iterations=materialize_iterations, agree=True, **fwd),
            dict(label="default, as materialize", config="default", iterations=materialize_iterations, agree=True,
                 **fwd)]
    for t in (None, TRAINING_TEMPERATURE):
        name = "T=1e10" if t is None else f"T={t:g}"
        out.append(dict(label=f"default fwd+bwd {name}", config="default", mode="forward+backward", temperature=t,
                        iterations=1))
    out.append(dict(label=f"materialize fwd+bwd T={TRAINING_TEMPERATURE:g}", config="materialize",
                    mode="forward+backward", temperature=TRAINING_TEMPERATURE, iterations=1))
    return out


def summarise(records: list[dict]) -> dict:
    by = {r["label"]: r for r in records}

    def ratio(slow, fast, key):
        if slow in by and fast in by and by[fast][key] > 0:
            return by[slow][key] / by[fast][key]
        return float("nan")

    bwd = f"fwd+bwd T={TRAINING_TEMPERATURE:g}"
    return {
        "forward speedup (materialize / default)": ratio("materialize", "default", "seconds_per_iteration"),
        "forward memory ratio (materialize / default)": ratio("materialize", "default", "peak_memory_mib"),
        "reference / default time per iteration": ratio("reference", "default", "seconds_per_iteration"),
        "outside=reflect / default time per iteration": ratio("reflect", "default", "seconds_per_iteration"),
        "learned / default time per iteration": ratio("learned", "default", "seconds_per_iteration"),
        f"{bwd} speedup (materialize / default)": ratio(f"materialize {bwd}", f"default {bwd}",
                                                          "seconds_per_iteration"),
        f"{bwd} memory ratio (materialize / default)": ratio(f"materialize {bwd}", f"default {bwd}",
                                                               "peak_memory_mib"),
        "backward cost at T=10 / at T=1e10": ratio(f"default {bwd}", "default fwd+bwd T=1e10",
                                                   "seconds_per_iteration"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.diff", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int_at_least(1, "--threads"), default=2,
                        help="torch and numba threads (default 2)")
    parser.add_argument("--iterations", type=int_at_least(2, "--iterations"), default=None,
                        help="timed iterations of the fast paths (default 10; 2 with --quick)")
    parser.add_argument("--materialize-iterations", type=int_at_least(2, "--materialize-iterations"), default=2,
                        help="timed iterations of the materialising path (slow, several GB)")
    parser.add_argument("--quick", action="store_true", help="half-size pair, fewer iterations")
    parser.add_argument("--output", type=Path, default=Path("reports/bench_diff.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0
    from experiments.devices import resolve_device
    from experiments.errors import UserError
    try:
        device = resolve_device(args.device)
    except UserError as exc:
        parser.error(str(exc))
    fast_iters = args.iterations or (2 if args.quick else 10)
    mat_iters = min(args.materialize_iterations, fast_iters)
    meta = _metadata(device, args.quick, args.threads)
    from experiments.provenance import summary

    print("metadata: " + summary(meta), flush=True)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for spec in plan(fast_iters, mat_iters, learned=CHECKPOINT.is_file()):
            spec = dict(spec, device=device, quick=args.quick, seed=0, threads=args.threads)
            if spec.pop("agree", False):
                spec["positions_file"] = str(Path(tmp) / f"{len(files)}.npy")
                files[spec["config"]] = spec["positions_file"]
            rec = _run(spec)
            records.append(rec)
            print(f"  {rec['label']:>28}: {rec['seconds_per_iteration']:8.3f} s/it  "
                  f"{rec['peak_memory_mib']:9.1f} MiB" + (f"  ERROR {rec['error']}" if "error" in rec else ""),
                  flush=True)
        agreement = float("nan")
        try:
            fast, slow = np.load(files["default"]), np.load(files["materialize"])
            agreement = float((np.abs(fast - slow).max(axis=1) <= 1e-3).mean())
        except (KeyError, OSError):
            pass
    summary = summarise(records)
    scores = score_implementations(device, args.threads)
    result = {"metadata": meta, "records": records, "ratios": summary, "agreement_fraction": agreement,
              "agreement_iterations": mat_iters, "score_implementations": scores}
    print()
    print(f"{'measurement':>28} {'iters':>5} {'s/iter':>9} {'min':>7} {'max':>7} {'1st iter':>8} {'cpu s/iter':>10} "
          f"{'peak MiB':>9}")
    for rec in records:
        print(f"{rec['label']:>28} {rec['iterations']:5d} {rec['seconds_per_iteration']:9.3f} "
              f"{rec['seconds_per_iteration_min']:7.3f} {rec['seconds_per_iteration_max']:7.3f} "
              f"{rec['first_iteration_s']:8.3f} "
              f"{rec['cpu_seconds_per_iteration']:10.3f} {rec['peak_memory_mib']:9.1f}")
    print()
    for k, v in summary.items():
        print(f"{k}: {v:.2f}x")
    print(f"agreement of default and materialize (same draws, {mat_iters} iterations): {agreement:.4f}")
    print("\nthe score formula, one call on 160 x 240 pixels x 12 candidates:")
    for rec in scores:
        print(f"  {rec['implementation']:>50}: {rec['seconds']:8.4f} s  (max |diff| to materialized "
              f"{rec['max_abs_diff']:.1e})")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

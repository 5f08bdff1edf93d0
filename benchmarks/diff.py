"""Benchmark: memory-saving vs materialising Differentiable PatchMatch on the Middlebury motorcycle pair.

Run ``.venv/bin/python -m benchmarks.diff [--device auto|cpu|cuda] [--iterations N] [--quick]``.

Reference configuration (sample_count=1, window 100 x 100, temperature 1e10, soft evaluation,
7 x 7 RGB features), A = left, B = right (scikit-image ``stereo_motorcycle``, 500 x 741). Each
measurement runs in its own subprocess, so peak memory is that path's own:

* CPU: peak resident set (``VmHWM`` after resetting it via ``/proc/self/clear_refs``; ``ru_maxrss``
  where that is unavailable) minus the resident set just before the timed run (inputs loaded,
  kernels compiled by a warm-up on a small crop).
* CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation before the run; timings synchronise.

Seconds per iteration are medians over the timed iterations (callback timestamps, forward alone;
forward + backward is the whole run divided by its iteration count). Agreement is the fraction of
pixels whose positions from the two paths differ by at most 1e-3 px after the same iterations with
the same random draws. Records are printed as a table and written as JSON with metadata.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


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


def _worker(spec: dict) -> dict:
    """One measurement in this (fresh) process; returns a flat record."""
    import resource

    import torch

    import diff_pm

    device = torch.device(spec["device"])
    left, right = _pair(spec["quick"])
    a = torch.from_numpy(left).permute(2, 0, 1)[None].to(device)
    b = torch.from_numpy(right).permute(2, 0, 1)[None].to(device)
    kw = dict(iterations=spec["iterations"], materialize=spec["materialize"])
    model = diff_pm.DifferentiablePatchMatch(**kw).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    # warm-up: compile kernels / initialise libraries on a small crop
    with torch.no_grad():
        diff_pm.DifferentiablePatchMatch(iterations=1, materialize=spec["materialize"])(a[..., :32, :32], b[..., :32, :32])
    backward = spec["mode"] == "forward+backward"
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
    np.save(spec["positions_file"], positions.detach().cpu().numpy())
    return {
        "path": "materialize" if spec["materialize"] else "memory-saving",
        "mode": spec["mode"],
        "iterations": spec["iterations"],
        "seconds_per_iteration": float(statistics.median(steps)) if not backward else total / spec["iterations"],
        "seconds_per_iteration_spread": float(np.ptp(steps)) if not backward else float("nan"),
        "cpu_seconds_per_iteration": cpu / spec["iterations"],
        "peak_memory_mib": float(peak),
    }


def _run(spec: dict) -> dict:
    """Run one measurement in a subprocess; a failure becomes a NaN record."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.diff", "--worker", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        sys.stderr.write(proc.stderr[-2000:])
        return {"path": "materialize" if spec["materialize"] else "memory-saving", "mode": spec["mode"],
                "iterations": spec["iterations"], "seconds_per_iteration": float("nan"),
                "seconds_per_iteration_spread": float("nan"), "cpu_seconds_per_iteration": float("nan"),
                "peak_memory_mib": float("nan"), "error": proc.stderr.strip().splitlines()[-1:] or ["no output"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _metadata(device: str, quick: bool) -> dict:
    import numba
    import torch

    from experiments import provenance
    git = provenance.git_state(paths=("diff_pm", "benchmarks"))
    versions = provenance.package_versions()
    return {
        "commit": git["commit"], "dirty": git["dirty"], "python": versions["python"], "torch": versions["torch"],
        "numba": versions["numba"], "numpy": versions["numpy"], "device": device,
        "gpu": provenance.gpu_name(device), "cpu": provenance.cpu_name(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads(),
        "image": "motorcycle (half size)" if quick else "motorcycle 500x741",
        "config": "sample_count=1, window=(100, 100), temperature=1e10, soft, patch 7, 147 channels",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.diff", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--iterations", type=int, default=None,
                        help="timed iterations of the memory-saving path (default 5; 2 with --quick)")
    parser.add_argument("--materialize-iterations", type=int, default=2,
                        help="timed iterations of the materialising path (slow, several GB)")
    parser.add_argument("--quick", action="store_true", help="half-size pair, fewer iterations")
    parser.add_argument("--output", type=Path, default=Path("reports/bench_diff.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0
    import torch
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    fast_iters = args.iterations or (2 if args.quick else 5)
    mat_iters = min(args.materialize_iterations, fast_iters) if not args.quick else 1
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        plan = [(False, "forward", fast_iters), (False, "forward", mat_iters), (True, "forward", mat_iters),
                (False, "forward+backward", 1), (True, "forward+backward", 1)]
        for materialize, mode, iters in plan:
            name = f"{int(materialize)}_{mode}_{iters}.npy"
            spec = dict(device=device, quick=args.quick, materialize=materialize, mode=mode, iterations=iters,
                        seed=0, positions_file=str(Path(tmp) / name))
            rec = _run(spec)
            files[(materialize, mode, iters)] = spec["positions_file"]
            print(f"  {rec['path']:>13} {mode:>16} {iters:2d} it: {rec['seconds_per_iteration']:8.3f} s/it "
                  f"{rec['peak_memory_mib']:9.1f} MiB", flush=True)
            records.append(rec)
        agreement = float("nan")
        try:
            fast = np.load(files[(False, "forward", mat_iters)])
            slow = np.load(files[(True, "forward", mat_iters)])
            agreement = float((np.abs(fast - slow).max(axis=1) <= 1e-3).mean())
        except OSError:
            pass
    # keep the long run's record for the memory-saving forward, the matched run only for agreement
    by_key = {}
    for rec in records:
        key = (rec["path"], rec["mode"])
        if key not in by_key or rec["iterations"] > by_key[key]["iterations"]:
            by_key[key] = rec
    summary = {}
    for mode in ("forward", "forward+backward"):
        fast, slow = by_key.get(("memory-saving", mode)), by_key.get(("materialize", mode))
        if fast and slow:
            summary[mode] = {
                "speedup": slow["seconds_per_iteration"] / fast["seconds_per_iteration"],
                "memory_ratio": slow["peak_memory_mib"] / max(fast["peak_memory_mib"], 1e-9),
            }
    result = {"metadata": _metadata(device, args.quick), "records": records, "ratios": summary,
              "agreement_fraction": agreement, "agreement_iterations": mat_iters}
    print()
    print(f"{'path':>13} {'mode':>16} {'iters':>5} {'s/iter':>9} {'cpu s/iter':>10} {'peak MiB':>9}")
    for rec in records:
        print(f"{rec['path']:>13} {rec['mode']:>16} {rec['iterations']:5d} {rec['seconds_per_iteration']:9.3f} "
              f"{rec['cpu_seconds_per_iteration']:10.3f} {rec['peak_memory_mib']:9.1f}")
    for mode, s in summary.items():
        print(f"{mode}: materialize / memory-saving = {s['speedup']:.1f}x time, {s['memory_ratio']:.1f}x peak memory")
    print(f"agreement (same draws, {mat_iters} iterations): {agreement:.4f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

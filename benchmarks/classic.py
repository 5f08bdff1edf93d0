"""Benchmark of classic PatchMatch and the kd-tree NNF on the Middlebury motorcycle pair.

Run ``python -m benchmarks.classic`` (``make bench``); ``--quick`` for a shorter run. A = left
view, B = right view (scikit-image, 500 x 741, 8-bit), 7 x 7 patches, 5 iterations. Every speed
figure is a ratio against a reference timed in the same run, the two alternating, so that
machine load hits both alike. Prints:

* metadata (git commit, package versions, CPU, thread settings, load average);
* JIT compile (or numba cache load) time of the first calls, in a fresh process;
* **kernels, before and after**: the kernels of commit ``--previous`` (default 697971d, the
  float32 kernels before exact 8-bit distances), loaded from git into a temporary package, timed
  beside the current ones: seconds per iteration = (t[iterations=5] - t[iterations=0]) / 5 for
  the faithful search (``refine_radius=0``) and the default, on 1 and 2 threads; the ratio
  new / previous (median of the per-round ratios); the 5-iteration interior energies of both and
  the fraction of identical matches; and the ratios to Barnes' C++ these imply (bridged through
  the previous kernels' ratios measured against the C++ build, issue 19);
* energy after each iteration (mean squared difference per pixel and channel, [0, 1] scale);
* **kd_nnf against 5 default PatchMatch iterations**, alternating, on 1 and 2 threads: time
  ratio, energies, and the gap to the exact NNF: exact (exhaustive ``exact_nnf``) on the
  half-size pair (quarter with ``--quick``), and estimated on the full pair by
  ``sampled_exact_energy`` (1000 pixels, 95% interval), beside the full pair's exact energy
  measured once (``REFERENCE_EXACT_ENERGY``);
* the targets of issues 2 and 19.

Wall-clock time is the figure of merit; CPU time is shown beside it where it helps.
"""

import argparse
import csv
import json
import math
import time
import sys

import numpy as np

import classic_pm
from experiments import provenance
from experiments.devices import resolve_device

from ._classic_support import (_compile_times, _fmt, _load_pair, _median, _previous_classic_pm,
                               _thread_cpu_seconds, _threading_layer, _timed, metadata)

PATCH = 7
ITERATIONS = 5
PREVIOUS_COMMIT = "697971d"
# Issue 2's reference figures (a C++ build of Barnes' PatchMatch 2.1 on the issue author's
# machine): threads=1 seconds per iteration and its 5-iteration interior energy.
TARGET_S_PER_ITER = 0.17
TARGET_ENERGY = 0.00158
TARGET_SPEEDUP = 1.7  # threads=2 over threads=1
# Issue 19: Barnes' C++ (motorcycle, 7 x 7, 5 iterations) took 0.1725 s/iteration on one core;
# the kernels of 697971d took, relative to it (same machine, same run):
CPP_S_PER_ITER = 0.1725
PREVIOUS_TO_CPP = {("faithful", 1): 0.86, ("default", 1): 1.05, ("default", 2): 0.55 / 0.54}
CPP_TARGET = {("faithful", 1): 0.8, ("default", 2): 1.0}  # new / C++ (2 threads: the 2-tile mode)
# Interior energy of the exact NNF of the full pair: classic_pm.exact_nnf on the CPU (torch,
# float32 matrix products; 781 s), 2026-12-03, Intel Xeon (Rocket Lake), commit 1736f19. Its
# sampled gap to the exhaustive numba search (sampled_exact_energy, 1000 pixels) was 0.
REFERENCE_EXACT_ENERGY = 0.0013131
KD_TARGET_GAP = 0.05


# ------------------------------------------------------------------------------ helpers


def _per_iteration(module, a, b, seed, threads, refine_radius):
    """One timed round of ``module.patchmatch``, per iteration: (t[5 iterations] - t[0]) / 5.

    Returns (wall seconds, CPU seconds of all threads, CPU seconds of the busiest thread or NaN,
    nnf); the busiest thread's CPU time is insensitive to other processes on the machine (it
    includes barrier spinning).
    """
    kw = dict(patch_size=PATCH, seed=seed, threads=threads, refine_radius=refine_radius)
    t_a = _thread_cpu_seconds()
    _, w0, c0 = _timed(lambda: module.patchmatch(a, b, iterations=0, **kw))
    t_b = _thread_cpu_seconds()
    nnf, w5, c5 = _timed(lambda: module.patchmatch(a, b, iterations=ITERATIONS, **kw))
    t_c = _thread_cpu_seconds()
    busiest = float("nan")
    if t_a is not None and t_b is not None and t_c is not None:
        busiest = max((t_c[k] - t_b.get(k, 0.0)) - (t_b.get(k, 0.0) - t_a.get(k, 0.0))
                      for k in t_c) / ITERATIONS
    return (w5 - w0) / ITERATIONS, (c5 - c0) / ITERATIONS, busiest, nnf


# ------------------------------------------------------------------------------ sections

def _section_kernels(a, b, args, previous, record):
    """Previous kernels against the current ones, alternating; returns {(mode, threads): row}."""
    configs = [("faithful", 1), ("default", 1), ("default", 2), ("faithful", 2)]
    refine = {"faithful": 0, "default": classic_pm.core._kernels.RS_REFINE}
    print(f"\nKernels: commit {args.previous} (previous) against this checkout (new), alternating; "
          f"s/iter = (t[{ITERATIONS} it] - t[0 it]) / {ITERATIONS}, {args.repeats} rounds")
    print("  mode      threads  previous s/it   new s/it   new/previous   energy prev -> new "
          "(interior)   same matches")
    out = {}
    for mode, threads in configs:
        times = {"previous": [], "new": []}
        cpu, busiest = [], []
        nnfs = {}
        for rep in range(args.repeats):
            for name, module in (("previous", previous), ("new", classic_pm)):
                if module is None:
                    continue
                try:
                    s, c, t_busy, nnf = _per_iteration(module, a, b, args.seed, threads, refine[mode])
                    nnfs[name] = nnf
                except Exception as e:  # noqa: BLE001 - a failure becomes a NaN row
                    print(f"  {name} {mode} threads={threads} round {rep}: failed: {e!r}")
                    s = c = t_busy = float("nan")
                times[name].append(s)
                if name == "new":
                    cpu.append(c)
                    busiest.append(t_busy)
                record(kind="time", version=name, mode=mode, threads=threads, repeat=rep,
                       seconds_per_iteration=s)
        ratios = [n / p for n, p in zip(times["new"], times["previous"])] if previous else []
        e_new = classic_pm.energy(a, b, nnfs["new"], interior=True) if "new" in nnfs else float("nan")
        e_prev = classic_pm.energy(a, b, nnfs["previous"], interior=True) if "previous" in nnfs \
            else float("nan")
        same = float((nnfs["new"] == nnfs["previous"]).all(-1).mean()) if len(nnfs) == 2 else float("nan")
        row = dict(mode=mode, threads=threads, previous=_median(times["previous"]),
                   new=_median(times["new"]), ratio=_median(ratios), energy_previous=e_prev,
                   energy_new=e_new, same_matches=same, new_min=float(np.nanmin(times["new"])),
                   new_max=float(np.nanmax(times["new"])), new_cpu=_median(cpu),
                   new_busiest=_median(busiest))
        out[(mode, threads)] = row
        print(f"  {mode:9} {threads:>7}  {_fmt(row['previous']):>13}  {_fmt(row['new']):>9}   "
              f"{_fmt(row['ratio'], '.3f'):>12}   {_fmt(e_prev, '.7f')} -> {_fmt(e_new, '.7f')}   "
              f"{_fmt(same, '.4f')}")
        record(kind="kernels", **row)
    print("  new kernels, s/iter: median (min, max); CPU time of all threads; CPU time of the "
          "busiest thread")
    for (mode, threads), row in out.items():
        print(f"    {mode:9} threads={threads}: {_fmt(row['new'])} ({_fmt(row['new_min'])}, "
              f"{_fmt(row['new_max'])}); CPU {_fmt(row['new_cpu'])}; busiest thread "
              f"{_fmt(row['new_busiest'])}")
    if ("default", 1) in out and ("default", 2) in out:
        est = out[("default", 1)]["new_busiest"] / out[("default", 2)]["new_busiest"]
        print(f"    speedup estimate threads=2 / threads=1 (default) from the busiest thread's CPU "
              f"time: {_fmt(est, '.2f')} (insensitive to other processes; includes barrier spinning)")
        record(kind="speedup_cpu_estimate", speedup=est)
    print("  Ratios to Barnes' C++ implied by the previous kernels' ratios measured against it "
          f"(issue 19; C++ {CPP_S_PER_ITER} s/it on one core):")
    for key, prev_to_cpp in PREVIOUS_TO_CPP.items():
        if key in out:
            implied = out[key]["ratio"] * prev_to_cpp
            target = CPP_TARGET.get(key)
            what = "C++ 2-tile mode" if key[1] == 2 else "C++ one core"
            print(f"    {key[0]:9} threads={key[1]}: previous {prev_to_cpp:.2f}x {what} -> new "
                  f"{_fmt(implied, '.2f')}x" + (f"   (target <= {target:.2f})" if target else ""))
            record(kind="implied_cpp_ratio", mode=key[0], threads=key[1], ratio=implied)
    return out


def _section_energy(a, b, args, record):
    print("\nEnergy after each iteration (mean squared difference per pixel and channel, "
          "images on [0, 1])")
    final = {}
    for threads in (1, 2):
        rows = []

        def callback(it, nnf, rows=rows):
            rows.append((it, classic_pm.energy(a, b, nnf, patch_size=PATCH),
                         classic_pm.energy(a, b, nnf, patch_size=PATCH, interior=True)))

        callback(0, classic_pm.patchmatch(a, b, iterations=0, seed=args.seed, threads=threads))
        nnf = classic_pm.patchmatch(a, b, iterations=ITERATIONS, seed=args.seed, threads=threads,
                                    callback=callback)
        print(f"  threads={threads}: iteration  energy(all)  energy(interior)")
        for it, e_all, e_int in rows:
            print(f"              {it:>9}  {e_all:.6f}     {e_int:.6f}")
            record(kind="energy", threads=threads, iteration=it, energy=e_all, energy_interior=e_int)
        final[threads] = rows[-1][2]
        r = PATCH // 2
        inside_b = ((nnf[..., 0] >= r) & (nnf[..., 0] < b.shape[0] - r)
                    & (nnf[..., 1] >= r) & (nnf[..., 1] < b.shape[1] - r))
        both = classic_pm.energy(a, b, nnf, patch_size=PATCH, interior=True, where=inside_b)
        to_border = float(1 - inside_b[r:-r, r:-r].mean())
        print(f"              {to_border:.2%} of the interior pixels match a patch crossing "
              f"B's border; over the others the energy is {both:.6f}")
    return final


def _section_kd(a, b, args, record):
    """kd_nnf against 5 default PatchMatch iterations (alternating), then the gaps to exact."""
    print(f"\nkd_nnf (defaults) against patchmatch({ITERATIONS} iterations, defaults), alternating, "
          f"{args.repeats} rounds; whole calls (setup included)")
    out = {}
    for threads in (1, 2):
        times = {"kd": [], "pm": []}
        nnfs = {}
        for rep in range(args.repeats):
            for name in ("pm", "kd"):
                if name == "pm":
                    nnf, w, _ = _timed(lambda: classic_pm.patchmatch(
                        a, b, iterations=ITERATIONS, seed=args.seed, threads=threads))
                else:
                    nnf, w, _ = _timed(lambda: classic_pm.kd_nnf(a, b, seed=args.seed, threads=threads))
                times[name].append(w)
                nnfs[name] = nnf
        stages = []
        t0 = time.perf_counter()
        classic_pm.kd_nnf(a, b, seed=args.seed, threads=threads,
                          callback=lambda s, f: stages.append((s, time.perf_counter() - t0, f)))
        stage_e = [(s, t, classic_pm.energy(a, b, f, interior=True)) for s, t, f in stages]
        ratio = _median([k / p for k, p in zip(times["kd"], times["pm"])])
        e_kd = classic_pm.energy(a, b, nnfs["kd"], interior=True)
        e_pm = classic_pm.energy(a, b, nnfs["pm"], interior=True)
        out[threads] = dict(threads=threads, kd_s=_median(times["kd"]), pm_s=_median(times["pm"]),
                            ratio=ratio, energy_kd=e_kd, energy_pm=e_pm, nnf_kd=nnfs["kd"],
                            nnf_pm=nnfs["pm"])
        print(f"  threads={threads}: kd_nnf {_fmt(out[threads]['kd_s'], '.3f')} s, patchmatch "
              f"{_fmt(out[threads]['pm_s'], '.3f')} s, kd / pm {_fmt(ratio, '.3f')} (target <= 1)")
        print(f"             interior energy: kd_nnf {e_kd:.7f}, patchmatch {e_pm:.7f}")
        print("             kd_nnf stages (one more run with a callback; seconds since the call, "
              "energy): " + ", ".join(f"{s}: {t:.3f} s {e:.7f}" for s, t, e in stage_e))
        for s, t, e in stage_e:
            record(kind="kd_stage", threads=threads, stage=s, seconds=t, energy=e)
        record(kind="kd_time", threads=threads, kd_seconds=out[threads]["kd_s"],
               pm_seconds=out[threads]["pm_s"], ratio=ratio, energy_kd=e_kd, energy_pm=e_pm)
    return out


def _section_exact(args, record):
    scale = 0.25 if args.quick else 0.5
    sa, sb = _load_pair(scale)
    print(f"\nGap to the exact NNF, {sa.shape[0]} x {sa.shape[1]} pair (scale {scale}, 8-bit), "
          f"interior energies")
    device = resolve_device("auto")
    try:
        exact, wall, _ = _timed(lambda: classic_pm.exact_nnf(sa, sb, patch_size=PATCH, device=device))
        e_exact = classic_pm.energy(sa, sb, exact, interior=True)
    except Exception as e:  # noqa: BLE001 - a failure becomes a NaN row
        print(f"  exact_nnf failed: {e!r}")
        e_exact = wall = float("nan")
    print(f"  exact_nnf: {_fmt(wall, '.1f')} s on {device}, energy {_fmt(e_exact, '.7f')}")
    kd = classic_pm.kd_nnf(sa, sb, seed=args.seed)
    pm = classic_pm.patchmatch(sa, sb, iterations=ITERATIONS, seed=args.seed)
    e_exact_all = classic_pm.energy(sa, sb, exact) if math.isfinite(e_exact) else float("nan")
    for name, nnf in (("kd_nnf", kd), (f"patchmatch {ITERATIONS} it", pm)):
        e = classic_pm.energy(sa, sb, nnf, interior=True)
        e_all = classic_pm.energy(sa, sb, nnf)
        print(f"  {name:16} energy {e:.7f}   gap {_fmt(e / e_exact - 1, '+.2%')}   (all pixels: "
              f"{e_all:.7f}, exact {_fmt(e_exact_all, '.7f')})")
        record(kind="exact_gap", scale=scale, method=name, energy=e, energy_exact=e_exact,
               energy_all=e_all, energy_exact_all=e_exact_all, gap=e / e_exact - 1,
               exact_seconds=wall, device=device)


def _section_sampled(a, b, kd_rows, args, record):
    n = 300 if args.quick else 1000
    print(f"\nGap to the exact NNF on the full pair, estimated on {n} interior pixels "
          f"(sampled_exact_energy, seed {args.seed}, 95% interval); the full exact NNF's interior "
          f"energy is {REFERENCE_EXACT_ENERGY} (measured once, see REFERENCE_EXACT_ENERGY)")
    for name, key in (("kd_nnf", "nnf_kd"), (f"patchmatch {ITERATIONS} it", "nnf_pm")):
        nnf = kd_rows[1][key]
        res, wall, _ = _timed(lambda: classic_pm.sampled_exact_energy(
            a, b, nnf, patch_size=PATCH, samples=n, seed=args.seed, threads=2))
        full_gap = classic_pm.energy(a, b, nnf, interior=True) / REFERENCE_EXACT_ENERGY - 1
        lo, hi = res.gap_ci95
        print(f"  {name:16} sampled gap {res.gap:+.2%} (95% {lo:+.2%} .. {hi:+.2%}), "
              f"{res.exact_fraction:.1%} of the sampled matches exact; gap of the full energy to "
              f"the reference {full_gap:+.2%}   ({wall:.1f} s)")
        record(kind="sampled_gap", method=name, samples=res.samples, gap=res.gap, gap_se=res.gap_se,
               ci_low=lo, ci_high=hi, exact_fraction=res.exact_fraction, full_gap=full_gap,
               seconds=wall)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.classic", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds per comparison (default 5, --quick 3)")
    parser.add_argument("--quick", action="store_true",
                        help="3 rounds, exact NNF at quarter scale, 300 sampled pixels, no compile-time run")
    parser.add_argument("--previous", default=PREVIOUS_COMMIT,
                        help="git commit whose classic_pm is the 'previous' kernels "
                             f"(default {PREVIOUS_COMMIT})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", default=None, help="also write the flat result records to this CSV")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    records = []

    def record(**row):
        records.append(row)

    a, b = _load_pair()
    print("classic_pm benchmark: Middlebury motorcycle (scikit-image), A = left, B = right, 8-bit")
    print(f"  A {a.shape}, B {b.shape}, patch {PATCH}, {ITERATIONS} iterations, seed {args.seed}, "
          f"rounds {args.repeats}")
    meta = metadata()
    print(f"  metadata: {provenance.summary(meta)}")

    if not args.quick:
        print("\nJIT compile time (fresh process, empty numba cache; first calls on a 40 x 40 image)")
        try:
            for key, val in _compile_times().items():
                print(f"  {key}: {val:.2f} s")
                record(kind="jit", what=key, seconds=val)
        except Exception as e:  # noqa: BLE001 - a failure becomes a NaN row
            print(f"  failed: {e!r}")
            record(kind="jit", what="all", seconds=float("nan"))

    try:
        previous = _previous_classic_pm(args.previous)
    except Exception as e:  # noqa: BLE001 - no git, unknown commit: new kernels only
        print(f"\nprevious kernels ({args.previous}) unavailable: {e!r}")
        previous = None
    tiny_a, tiny_b = a[:40, :40], b[:40, :40]
    _, wall, _ = _timed(lambda: [m.patchmatch(tiny_a, tiny_b, iterations=2, threads=t, refine_radius=rr)
                                 for m in (classic_pm, previous) if m is not None
                                 for t in (1, 2) for rr in (0, 8)]
                        + [classic_pm.kd_nnf(tiny_a, tiny_b, threads=t) for t in (1, 2)]
                        + [classic_pm.sampled_exact_energy(tiny_a, tiny_b, np.zeros((40, 40, 2), np.int32),
                                                           samples=4, threads=t) for t in (1, 2)])
    print(f"\nwarm-up (first calls in this process, numba cache on disk): {wall:.2f} s; "
          f"numba threading layer: {_threading_layer()}")
    meta["numba_threading_layer"] = _threading_layer()

    kernels = _section_kernels(a, b, args, previous, record)
    final = _section_energy(a, b, args, record)
    kd_rows = _section_kd(a, b, args, record)
    _section_exact(args, record)
    _section_sampled(a, b, kd_rows, args, record)

    # ---- targets
    t1, t2 = kernels[("default", 1)]["new"], kernels[("default", 2)]["new"]
    print("\nAgainst the targets of issues 2 and 19 (full scale)")
    print(f"  default threads=1 s/iter {_fmt(t1)}  (issue 2's C++ build: {TARGET_S_PER_ITER})")
    print(f"  energy (interior, {ITERATIONS} it, threads=1) {final[1]:.6f}  target <= {TARGET_ENERGY}   "
          f"(exact NNF: {REFERENCE_EXACT_ENERGY})")
    est = kernels[("default", 1)]["new_busiest"] / kernels[("default", 2)]["new_busiest"]
    print(f"  speedup threads=2 / threads=1 (default) {_fmt(t1 / t2, '.2f')} wall, {_fmt(est, '.2f')} "
          f"from busiest-thread CPU time  target >= {TARGET_SPEEDUP}   "
          f"(numba may run at most {meta['numba_num_threads']} threads here)")
    faithful = kernels[("faithful", 1)]
    print(f"  faithful threads=1: new / previous {_fmt(faithful['ratio'], '.3f')} "
          f"(issue 19 asks for about 0.8 or less)")
    kd1 = kd_rows[1]
    print(f"  kd_nnf threads=1: {_fmt(kd1['ratio'], '.3f')} x the time of {ITERATIONS} PatchMatch iterations "
          f"(target <= 1), full-pair energy gap {kd1['energy_kd'] / REFERENCE_EXACT_ENERGY - 1:+.2%} "
          f"(target <= {KD_TARGET_GAP:.0%})")
    record(kind="summary", s_per_iter_t1=t1, s_per_iter_t2=t2, speedup=t1 / t2, energy_t1=final[1],
           energy_t2=final[2], faithful_ratio=faithful["ratio"], kd_ratio=kd1["ratio"],
           kd_gap=kd1["energy_kd"] / REFERENCE_EXACT_ENERGY - 1)

    if args.csv:
        keys = sorted({k for r in records for k in r} | set(meta))
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            for r in records:
                writer.writerow({**{k: json.dumps(v) if isinstance(v, dict) else v for k, v in meta.items()}, **r})
        print(f"\nrecords written to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

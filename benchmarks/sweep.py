"""Benchmark of ``python -m experiments sweep``: units per minute, 2 workers against 1.

Run ``python -m benchmarks.sweep`` (``make bench``). Runs the example study
(``experiments/specs/dpm_vs_pm.toml``) without timing repeats (``repeats = 1``) on an embedded
``LocalCluster`` of 1 worker process, then of 2, in this one invocation, each into a fresh
temporary folder (nothing resumed). Units per minute = units run / seconds from the cluster
being up to the last result written (each worker's warm-up included, the cluster's start
excluded). By default the first seed only (a third of the spec's units, a few minutes);
``--seeds 3`` runs all of them.

Prints metadata (:mod:`experiments.provenance`: git commit, package versions, CPU, cores, load
average), both rates and their ratio against the target (>= 1.7x with 2 workers on 2 cores).
Other work on the machine lowers the ratio: the load average before and after each run is shown.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from pathlib import Path

from experiments import provenance
from experiments.devices import available_cores
from experiments.sweep import load_spec, run_sweep

SPEC = Path(__file__).resolve().parents[1] / "experiments" / "specs" / "dpm_vs_pm.toml"
TARGET_RATIO = 1.7


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def metadata() -> dict:
    git = provenance.git_state()
    versions = provenance.package_versions()
    return dict(git_commit=git["commit"][:7] + (" (dirty)" if git["dirty"] else ""),
                **{k: versions.get(k) for k in ("python", "numpy", "numba", "torch", "dask",
                                                "distributed", "pyarrow")},
                cpu=provenance.cpu_name(), cores=available_cores(), cpu_count=os.cpu_count())


def measure(spec, workers: int) -> dict:
    """One sweep of ``spec`` on a fresh LocalCluster of ``workers`` processes."""
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as out:
        before = _load()
        res = run_sweep(spec, out=out, workers=workers, log=lambda m: None, report=False)
        after = _load()
    return dict(workers=workers, units=res.done + res.failed, failed=res.failed,
                work_s=round(res.meta["work_s"], 2),
                units_per_minute=round(res.units_per_minute, 2), load_before=round(before, 2),
                load_after=round(after, 2))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default=str(SPEC), help="study spec (default: the example)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="keep the spec's first N seeds (default 1; 3 = the whole example)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec).with_overrides(repeats=1)
    spec = dataclasses.replace(spec, seeds=spec.seeds[: max(1, args.seeds)], timing="shared")
    meta = metadata()
    print(f"sweep benchmark: {Path(args.spec).name}, repeats 1, seeds {spec.seeds}")
    for k, v in meta.items():
        print(f"  {k}: {v}")
    with tempfile.TemporaryDirectory(prefix="bench-sweep-registry-") as registry:
        os.environ["PATCHMATCH_SWEEP_REGISTRY"] = registry  # the benchmark's units only
        runs = []
        for workers in (1, 2):
            r = measure(spec, workers)
            runs.append(r)
            print(f"  {workers} worker{'s' if workers > 1 else ' '}: {r['units']} units in "
                  f"{r['work_s']:.1f} s = {r['units_per_minute']:.1f} units/min (load average "
                  f"{r['load_before']:.2f} before, {r['load_after']:.2f} after"
                  + (f"; {r['failed']} failed" if r["failed"] else "") + ")")
    ratio = runs[1]["units_per_minute"] / runs[0]["units_per_minute"]
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(f"\n  2 workers / 1 worker: {ratio:.2f}x ({verdict} the target >= {TARGET_RATIO}x; "
          f"{meta['cores']} cores here)")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(metadata=meta, runs=runs, ratio=ratio,
                                                   target=TARGET_RATIO), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

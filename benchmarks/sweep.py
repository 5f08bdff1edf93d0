"""Benchmark of ``python -m experiments sweep``: units per minute, 2 workers against 1.

Run ``python -m benchmarks.sweep`` (``make bench``). The example study
(``experiments/specs/dpm_vs_pm.toml``) without timing repeats (``repeats = 1``), on two embedded
``LocalCluster`` s (:func:`experiments.sweep.engine.local_cluster`) started side by side in this
one invocation: 1 worker process and 2 worker
processes (one thread each). The study is cut into chunks, one per pair, and each chunk runs on
both clusters in turn (alternating which goes first, each into a fresh folder: nothing resumed),
so that a change of load on the machine hits both alike. Units per minute = units run / seconds
from submitting a chunk's first unit to writing its last result, summed over chunks (each
worker's warm-up included, the clusters' start excluded). By default the first seed only (a
third of the units, a few minutes); ``--seeds 3`` runs all of them.

Prints metadata (:mod:`experiments.provenance`: git commit, package versions, CPU, cores), both
rates, their ratio against the target (>= 1.7x with 2 workers on 2 cores), the cores the sweep
used (CPU time of this process and its workers / wall time) and the cores that *other* programs
used meanwhile (all CPU time of the machine, from ``/proc/stat``, minus the sweep's): on a shared
machine that is what keeps the ratio from 2.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import psutil
from distributed import Client

from experiments import provenance
from experiments.devices import available_cores
from experiments.options import int_at_least
from experiments.run import load_spec, run_sweep
from experiments.run.cluster import local_cluster

SPEC = Path(__file__).resolve().parents[1] / "experiments" / "specs" / "dpm_vs_pm.toml"
TARGET_RATIO = 1.7


def metadata() -> dict:
    """The run's metadata record (:func:`experiments.provenance.record`) and the cores in use."""
    return provenance.record(paths=(*provenance.CODE_PATHS, "benchmarks"), cores=available_cores())


@contextlib.contextmanager
def _env(name: str, value: str):
    """Environment variable ``name`` set to ``value`` inside the block (the workers inherit it),
    restored on exit."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _machine_busy_s() -> float:
    """CPU seconds spent by the whole machine (all cores, not idle) since boot."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this process and its children (the workers), alive ones."""
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default=str(SPEC), help="study spec (default: the example)")
    parser.add_argument("--seeds", type=int_at_least(1, "--seeds"), default=1,
                        help="keep the spec's first N seeds (default 1; 3 = the whole example)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec).with_overrides(repeats=1, timing="shared")
    spec = dataclasses.replace(spec, seeds=spec.seeds[: args.seeds])
    chunks = [dataclasses.replace(spec, data=[source]) for source in spec.data]
    meta = metadata()
    print(f"sweep benchmark: {Path(args.spec).name}, repeats 1, seeds {spec.seeds}, "
          f"{len(chunks)} chunks (one per pair) alternating between the two clusters")
    print(f"  metadata: {provenance.summary(meta)}")
    totals = {n: dict(workers=n, units=0, failed=0, work_s=0.0, own_cpu_s=0.0, others_cpu_s=0.0)
              for n in (1, 2)}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        with _env("PATCHMATCH_SWEEP_REGISTRY", str(Path(tmp) / "registry")), local_cluster(1) as c1, local_cluster(2) as c2, \
                Client(c1) as k1, Client(c2) as k2:
            clients = {1: k1, 2: k2}
            for i, chunk in enumerate(chunks):
                for n in ((1, 2) if i % 2 == 0 else (2, 1)):
                    busy0, own0, t0 = _machine_busy_s(), _own_cpu_s(), time.perf_counter()
                    res = run_sweep(chunk, out=Path(tmp) / f"{n}-{i}", client=clients[n],
                                    log=lambda m: None)
                    wall = time.perf_counter() - t0
                    own = _own_cpu_s() - own0
                    others = (_machine_busy_s() - busy0) - own
                    t = totals[n]
                    t["own_cpu_s"] += own * res.meta["work_s"] / wall
                    t["units"] += res.done  # a failed unit is no throughput
                    t["failed"] += res.failed
                    t["work_s"] += res.meta["work_s"]
                    t["others_cpu_s"] += max(0.0, others) * res.meta["work_s"] / wall
                print(f"  chunk {i + 1}/{len(chunks)} ({chunk.data[0]}): done", flush=True)
    runs = []
    for n, t in totals.items():
        t["units_per_minute"] = t["units"] / t["work_s"] * 60
        t["others_cores"] = t["others_cpu_s"] / t["work_s"]
        t["own_cores"] = t["own_cpu_s"] / t["work_s"]
        runs.append(t)
        print(f"  {n} worker{'s' if n > 1 else ' '}: {t['units']} units in {t['work_s']:.1f} s = "
              f"{t['units_per_minute']:.1f} units/min; the sweep used {t['own_cores']:.2f} "
              f"cores, other programs {t['others_cores']:.2f}"
              + (f"; {t['failed']} failed" if t["failed"] else ""))
    ratio = runs[1]["units_per_minute"] / runs[0]["units_per_minute"]
    failed = sum(t["failed"] for t in runs)
    verdict = (f"not judged against the target: {failed} units failed" if failed else
               f"{'meets' if ratio >= TARGET_RATIO else 'misses'} the target >= {TARGET_RATIO}x")
    print(f"\n  2 workers / 1 worker: {ratio:.2f}x ({verdict}; {meta['cores']} cores here)")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(metadata=meta, runs=runs, ratio=ratio,
                                                   target=TARGET_RATIO), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

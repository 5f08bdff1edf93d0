"""The client side of a study: plan the units, send them to Dask, write what comes back.

* Plan: :func:`experiments.run.planning.plan` (settings resolved, checkpoints read once, data found).
* Data: each pair is loaded here, once per size, and handed to the cluster
  (``Client.scatter`` to every worker, so a lost worker takes no pair with it), so workers need
  neither the data nor a shared file system; so is each
  checkpoint's content (read once by the plan). Results come back to this process, which writes
  them (:class:`~experiments.run.store.UnitStore`).
* Units are submitted a few at a time (twice the cluster's threads), pair by pair, so the client
  holds only the pairs in use. Where they run: :mod:`.cluster`; what a worker does: :mod:`.worker`.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import math
import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import provenance
from ..data.pairs import Pair, check_pair
from ..devices import resolve_device
from ..errors import UserError, one_line
from .cluster import SYNCHRONOUS, open_executor
from .planning import Plan, plan
from .spec import Spec
from .store import UnitStore
from .units import Unit, setting_key


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did: counts, the results table and where the report is."""

    out: Path
    units: int
    already_done: int
    done: int
    failed: int
    skipped: int
    results: object = None  # pandas.DataFrame
    report: Path | None = None
    wall_s: float = 0.0
    units_per_minute: float = math.nan
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- the run
def run_sweep(spec: Spec, *, out: str | Path, workers: int | None = None,
              scheduler: str | None = None, client=None, fresh: bool = False,
              log: Callable = print, checkpoint_loader: Callable | None = None,
              command: str = "", report: Callable | None = None) -> SweepOutcome:
    """Run (or resume) a study and write its outputs (see :mod:`experiments.run.store`).

    Parameters
    ----------
    spec : Spec
        A parsed spec (:func:`~experiments.run.spec.load_spec`).
    out : path
        Output folder; finished units found there are not run again (unless ``fresh``).
    workers : int, optional
        Worker processes of the local cluster (default: one per ``spec.threads`` cores).
    scheduler : str, optional
        ``tcp://HOST:PORT`` of an existing Dask scheduler, or ``"synchronous"``.
    client : distributed.Client, optional
        Run on this client's cluster (instead of ``workers`` / ``scheduler``); left open.
    checkpoint_loader : callable, optional
        ``loader(data: bytes, *, device, options) -> (model, info)`` for DPM settings with a
        ``checkpoint``; sent to the workers (so it must be importable there).
    report : callable, optional
        ``report(out, results, plan, meta, log=log) -> path``: writes the figures and
        ``REPORT.md`` at the end (the command line hands in
        :func:`experiments.report.sweep.write_report`).
    """
    t_begin = time.perf_counter()
    p = plan(spec, loader=checkpoint_loader, log=log)
    remote = client is not None or scheduler not in (None, SYNCHRONOUS)
    if spec.device == "cuda" and not remote:
        resolve_device("cuda")  # the units run on this machine: it must have CUDA
    store = UnitStore(out)
    if store.out.exists() and not store.out.is_dir():
        raise UserError(f"--out {store.out} is a file; choose a folder")
    done_before = set() if fresh or not store.units.is_dir() else store.done_keys()
    todo = [u for u in p.units if u.key not in done_before]
    already = len(p.units) - len(todo)
    stray = len(done_before - {u.key for u in p.units})
    log(f"{len(p.units)} units ({len(p.sources)} pairs x {len(spec.max_sizes)} sizes x "
        f"{len(p.settings)} settings, seeds {spec.seeds}): {already} already done, "
        f"{len(todo)} to run" + (f"; {stray} unit files in {store.units} belong to no unit of "
                                 "this spec (kept, not in the results)" if stray else ""))
    meta = _meta(spec, p, out, command, fresh)
    git = meta["provenance"]["git"]
    counts = dict(done=0, failed=0, skipped=0)
    skipped: dict[str, str] = {}
    t_work = time.perf_counter()
    # the cluster first: an unreachable scheduler fails before --out is touched
    with (open_executor(scheduler=scheduler, workers=workers, threads=spec.threads, log=log,
                        client=client)
          if todo else contextlib.nullcontext()) as ex:
        store.prepare(fresh=fresh)
        (store.out / "spec.toml").write_text(spec.text)
        if ex is not None:
            meta["cluster"] = ex.info()
            _write_json(store.out / "sweep.json", dict(meta, status="running"))
            t_work = time.perf_counter()
            try:
                _execute(ex, p, todo, store, counts, skipped, log=log, loader=checkpoint_loader,
                         code=git["commit"] + ("-dirty" if git["dirty"] else ""))
            except KeyboardInterrupt:
                _write_json(store.out / "sweep.json", dict(meta, status="interrupted",
                                                           counts=counts))
                raise
    work_s = time.perf_counter() - t_work
    ran = counts["done"] + counts["failed"]
    upm = ran / work_s * 60 if todo and work_s > 0 else math.nan

    results = store.consolidate(p.units, labels=p.labels, datasets=p.datasets)
    keys = {u.key for u in p.units}
    failures = store.failures(keys)
    _write_failures(Path(out) / "failures.csv", failures)
    complete = not failures and results["unit"].nunique() == len(p.units) - len(skipped)
    meta.update(status="complete" if complete else "incomplete", wall_s=round(
        time.perf_counter() - t_begin, 2), work_s=round(work_s, 2), units_per_minute=upm,
        counts=dict(units=len(p.units), already_done=already, **counts),
        skipped=skipped, failures=failures)
    report_path = None
    if report is not None:
        report_path = report(Path(out), results, p, meta, log=log)
        meta["report"] = report_path.name
    _write_json(Path(out) / "sweep.json", meta)
    return SweepOutcome(Path(out), len(p.units), already, counts["done"], counts["failed"],
                        counts["skipped"], results, report_path,
                        time.perf_counter() - t_begin, upm, meta)


def _execute(ex, p: Plan, todo: list[Unit], store: UnitStore, counts: dict,
             skipped: dict, *, log, loader, code: str) -> None:
    """Submit ``todo`` a window at a time, pair by pair; write each result as it comes.

    ``code``: the git commit (``-dirty`` appended for uncommitted changes) stamped on each row.
    """
    sources = {s.source.name: s.source for s in p.sources}
    groups: OrderedDict = OrderedDict()
    for u in todo:
        groups.setdefault((u.pair, u.max_size), []).append(u)
    needed = {u.checkpoint_sha256 for u in todo} - {None}
    checkpoints = {sha: ex.put(p.checkpoints[sha]) for sha in needed}  # read once, by the plan
    loader = loader if checkpoints else None
    total = len(todo)
    in_flight = dict.fromkeys(groups, 0)  # submitted and not yet back, per (pair, size)
    pairs: dict = {}  # (pair, size) -> the pair as the executor holds it

    def log_result(unit: Unit, res: dict) -> None:
        n = counts["done"] + counts["failed"] + counts["skipped"]
        what = (f"{unit.pair} {unit.max_size or 'native'}px {p.labels[unit.setting_key]}"
                + ("" if unit.seed is None else f" seed {unit.seed}"))
        tally = f"done {counts['done']}, failed {counts['failed']}, left {total - n}"
        if res["status"] == "done":
            last = res["rows"][-1]
            log(f"[{n}/{total}] {what}: PSNR {last['psnr']:.2f} dB, {last['cum_time_s']:.3g} s "
                f"(median of {unit.repeats}) on {res['worker']}  | {tally}")
        elif res["status"] == "skipped":
            log(f"[{n}/{total}] {what}: skipped ({res['reason']})  | {tally}")
        else:
            log(f"[{n}/{total}] {what}: FAILED ({res['error']})  | {tally}")

    def record(unit: Unit, res: dict) -> None:
        if res["status"] == "done":
            store.write_unit(unit.key, [dict(r, code=code) for r in res["rows"]])
            counts["done"] += 1
        elif res["status"] == "skipped":  # the method's own rule (the exact NNF's size limit)
            skipped[unit.key] = f"{unit.pair} {unit.max_size or 'native'}px: {res['reason']}"
            counts["skipped"] += 1
        else:
            store.write_failure(unit, dict(error=res["error"], host=res.get("host"),
                                           worker=res.get("worker"),
                                           when=_dt.datetime.now().isoformat(timespec="seconds")))
            counts["failed"] += 1
        log_result(unit, res)

    def release_if_unused(g) -> None:
        if g in pairs and in_flight[g] == 0 and not (queue and (queue[0].pair,
                                                                 queue[0].max_size) == g):
            ex.release(pairs.pop(g))

    queue = deque(u for us in groups.values() for u in us)  # grouped: a pair's units in a row
    window = 2 * ex.threads()
    while queue or ex.pending():
        while queue and ex.pending() < window:
            u = queue.popleft()
            g = (u.pair, u.max_size)
            if g not in pairs:
                pair, error = _load(sources[u.pair], u.max_size, groups[g])
                if error is not None:
                    for v in [u] + [v for v in queue if (v.pair, v.max_size) == g]:
                        record(v, dict(status="failed", error=error, host=None,
                                       worker="client"))
                    queue = deque(v for v in queue if (v.pair, v.max_size) != g)
                    continue
                pairs[g] = ex.put(pair)
            in_flight[g] += 1
            ex.submit(u, pairs[g], checkpoints.get(u.checkpoint_sha256), loader)
        if ex.pending():
            unit, res = ex.next_done()
            record(unit, res)
            g = (unit.pair, unit.max_size)
            in_flight[g] -= 1
            release_if_unused(g)


def _load(source, max_size, units) -> tuple[Pair | None, str | None]:
    """Load a pair at a size on the client: ``(pair, None)`` or ``(None, one-line reason)``."""
    try:
        pair = source.load(max_size)
        check_pair(pair, max(u.patch_size for u in units))
    except Exception as exc:  # noqa: BLE001 - an unreadable pair fails its units, not the sweep
        return None, one_line(exc)
    return pair, None


def _meta(spec: Spec, p: Plan, out, command: str, fresh: bool) -> dict:
    return dict(
        title=spec.title, spec=str(spec.path), command=command, out=str(out), fresh=fresh,
        started=_dt.datetime.now().isoformat(timespec="seconds"),
        settings=dict(max_sizes=spec.max_sizes, seeds=spec.seeds, repeats=spec.repeats,
                      device=spec.device, threads=spec.threads, timing=spec.timing),
        data=dict(sources=spec.data, limit=spec.limit, select=spec.select,
                  pairs={s.source.name: dict(dataset=s.dataset, origin=s.source.origin)
                         for s in p.sources}),
        method_settings=[dict(method=s.method, name=s.name, label=p.labels[k], setting_key=k,
                              given=dict(s.given), params=dict(s.resolved))
                         for s, k in ((s, setting_key(s)) for s in p.settings)],
        provenance=provenance.record(),
    )


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, (set, frozenset)):
        return list(o)
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def _write_failures(path: Path, failures: list[dict]) -> None:
    cols = ["unit", "pair", "method", "params", "max_size", "seed", "error", "host", "worker",
            "when"]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for f in failures:
            w.writerow([json.dumps(f.get(c), default=list) if c == "params" else f.get(c)
                        for c in cols])
    os.replace(tmp, path)

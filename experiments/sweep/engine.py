"""The client side of a sweep: plan the units, send them to Dask, write what comes back.

* Cluster: an in-process ``distributed.LocalCluster`` by default (``workers`` processes of one
  thread each; default one per ``threads`` cores), an existing Dask scheduler by address
  (``tcp://HOST:PORT``, e.g. one started with ``dask scheduler`` and ``dask worker``), or
  ``"synchronous"``: Dask's synchronous scheduler in this process (no cluster; for debugging).
* Data: each pair is loaded here, once per size, and handed to the cluster
  (``Client.scatter``), so workers need neither the data nor a shared file system; results come
  back to this process, which writes them (:class:`~experiments.sweep.store.UnitStore`).
* Units are submitted a few at a time (twice the cluster's threads), pair by pair, so the client
  holds only the pairs in use. A unit whose worker dies is run again by the scheduler (Dask's
  ``distributed.scheduler.allowed-failures`` times); a unit that raises comes back as failed.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import logging
import math
import os
import socket
import sys
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import provenance
from ..devices import available_cores, resolve_device
from ..errors import UserError, one_line
from ..data import Pair, check_pair
from .spec import (Source, Spec, Unit, expand, resolve_settings, resolve_sources,
                   setting_key, setting_labels)
from .store import UnitStore
from .worker import run_unit

SYNCHRONOUS = "synchronous"
#: Keyword arguments of every embedded ``LocalCluster``: no dashboard, the scheduler's HTTP
#: server on a free port (two clusters on one host do not compete for 8787), quiet logs.
LOCAL_CLUSTER_OPTIONS = dict(dashboard_address=None, silence_logs=logging.ERROR,
                             scheduler_kwargs=dict(dashboard_address="127.0.0.1:0"))


def local_cluster(workers: int):
    """An in-process ``distributed.LocalCluster``: ``workers`` processes of one thread each.

    Its worker processes start without the ``MALLOC_TRIM_THRESHOLD_=65536`` that Dask's nanny
    sets by default: with it, glibc hands freed memory back at once and takes it again for the
    next array, which cost these array-heavy units about 40% more CPU (page faults, measured:
    69 against 48 CPU-seconds of the worker for one pair of the example study).
    """
    import dask  # deferred: heavy import
    from distributed import LocalCluster

    env = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
           if k != "MALLOC_TRIM_THRESHOLD_"}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):  # read by each nanny
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            **LOCAL_CLUSTER_OPTIONS)


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


# --------------------------------------------------------------------------- executors
class _Synchronous:
    """Units one at a time in this process through Dask's synchronous scheduler."""

    def __init__(self):
        self.queue: deque = deque()

    def threads(self) -> int:
        return 1

    def info(self) -> dict:
        return dict(scheduler=SYNCHRONOUS, workers={})

    def put(self, value):
        return value

    def release(self, handle) -> None:
        pass

    def submit(self, unit: Unit, pair, checkpoint, loader):
        import dask  # deferred: heavy import

        task = dask.delayed(run_unit, pure=False)(unit, pair, checkpoint=checkpoint, loader=loader)
        self.queue.append((unit, task))

    def pending(self) -> int:
        return len(self.queue)

    def next_done(self) -> tuple[Unit, dict]:
        unit, task = self.queue.popleft()
        return unit, task.compute(scheduler="synchronous")

    def close(self) -> None:
        pass


class _Distributed:
    """Units as ``distributed`` futures on a cluster (local or remote)."""

    def __init__(self, client, cluster=None, own: bool = True):
        from distributed import as_completed  # deferred: heavy import

        self.client, self.cluster, self.own = client, cluster, own
        self.done = as_completed()
        self.units: dict = {}

    def threads(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def info(self) -> dict:
        info = self.client.scheduler_info()
        workers = {addr: dict(host=w.get("host"), nthreads=w.get("nthreads"), name=w.get("name"))
                   for addr, w in info.get("workers", {}).items()}
        return dict(scheduler=self.client.scheduler.address, workers=workers)

    def put(self, value):
        return self.client.scatter(value, hash=False)

    def release(self, handle) -> None:
        with contextlib.suppress(Exception):
            handle.release()

    def submit(self, unit: Unit, pair, checkpoint, loader):
        fut = self.client.submit(run_unit, unit, pair, checkpoint=checkpoint, loader=loader,
                                 key=f"unit-{unit.key}-{uuid.uuid4().hex[:8]}", pure=False)
        self.units[fut.key] = unit
        self.done.add(fut)

    def pending(self) -> int:
        return len(self.units)

    def next_done(self) -> tuple[Unit, dict]:
        fut = next(self.done)
        unit = self.units.pop(fut.key)
        if fut.status == "finished":
            return unit, fut.result()
        exc = fut.exception() if fut.status == "error" else None
        text = one_line(exc) if exc is not None else f"task {fut.status}"
        return unit, dict(status="failed", error=text, host=None,
                          worker=None)

    def close(self) -> None:
        if not self.own:
            return
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()


def default_workers(threads: int) -> int:
    """One worker process per ``threads`` cores (at least one)."""
    return max(1, available_cores() // max(1, threads))


@contextlib.contextmanager
def open_executor(*, scheduler: str | None, workers: int | None, threads: int, log,
                  client=None):
    """The executor of a sweep (see the module docstring); closed on exit.

    ``client``: an existing ``distributed.Client`` to use (left open).
    """
    if client is not None:
        yield _Distributed(client, own=False)
        return
    if scheduler == SYNCHRONOUS:
        log("Dask synchronous scheduler: units run one at a time in this process")
        ex = _Synchronous()
        yield ex
        return
    from distributed import Client  # deferred: heavy import

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except Exception as exc:  # noqa: BLE001 - unreachable, refused, not an address: one line
            raise UserError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there "
                            f"({one_line(exc)}); start one with `dask scheduler` and workers with `dask worker "
                            f"{scheduler} --nthreads 1`") from None
        ex = _Distributed(client)
        nthreads = client.nthreads()
        if not nthreads:
            log(f"scheduler {scheduler} has no worker yet: units wait until one connects")
        for addr, n in nthreads.items():
            if n > 1:
                log(f"note: worker {addr} runs {n} threads: units running side by side in one "
                    "process share torch's thread setting; start workers with --nthreads 1")
        log(f"Dask cluster at {scheduler}: {len(nthreads)} workers, "
            f"{sum(nthreads.values())} threads")
    else:
        n = workers or default_workers(threads)
        cluster = local_cluster(n)
        client = Client(cluster)
        ex = _Distributed(client, cluster)
        pids = client.run(os.getpid)
        log(f"LocalCluster: {n} worker process{'es' if n > 1 else ''} of 1 thread each "
            f"(pids {', '.join(str(p) for p in pids.values())})")
    try:
        yield ex
    finally:
        ex.close()


# --------------------------------------------------------------------------- planning
@dataclass
class Plan:
    """The units of a spec (in run order), their pair sources and presentation labels."""

    spec: Spec
    sources: list[Source]
    units: list[Unit]
    labels: dict[str, str]
    datasets: dict[str, str]


def plan(spec: Spec, *, checkpoint_loader=None, log=print) -> Plan:
    """Check the spec against the installed methods, resolve its data and list its units.

    Raises :class:`UserError` (one line) before any work.
    """
    resolve_settings(spec, checkpoint_loader=checkpoint_loader)
    sources = resolve_sources(spec, log=log)
    units = expand(spec, sources)
    return Plan(spec, sources, units, setting_labels(spec.settings),
                {s.source.name: s.dataset for s in sources})


# --------------------------------------------------------------------------- the run
def run_sweep(spec: Spec, *, out: str | Path, workers: int | None = None,
              scheduler: str | None = None, client=None, fresh: bool = False,
              log: Callable = print, checkpoint_loader: Callable | None = None,
              command: str = "", report: bool = True) -> SweepOutcome:
    """Run (or resume) a study and write its outputs (see :mod:`experiments.sweep`).

    Parameters
    ----------
    spec : Spec
        A checked spec (:func:`~experiments.sweep.spec.load_spec`).
    out : path
        Output folder; finished units found there are not run again (unless ``fresh``).
    workers : int, optional
        Worker processes of the local cluster (default: one per ``spec.threads`` cores).
    scheduler : str, optional
        ``tcp://HOST:PORT`` of an existing Dask scheduler, or ``"synchronous"``.
    client : distributed.Client, optional
        Run on this client's cluster (instead of ``workers`` / ``scheduler``); left open.
    checkpoint_loader : callable, optional
        ``loader(data: bytes, *, device, options) -> DifferentiablePatchMatch`` for DPM settings
        with a ``checkpoint``; sent to the workers (so it must be importable there).
    report : bool
        Write the figures and ``REPORT.md`` at the end.
    """
    t_begin = time.perf_counter()
    p = plan(spec, checkpoint_loader=checkpoint_loader, log=log)
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
        f"{len(spec.settings)} settings, seeds {spec.seeds}): {already} already done, "
        f"{len(todo)} to run" + (f"; {stray} unit files in {store.units} belong to no unit of "
                                 "this spec (kept, not in the results)" if stray else ""))
    git = provenance.git_state()
    meta = _meta(spec, p, out, command, fresh, git)
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
                _execute(ex, p, todo, store, counts, skipped, log=log,
                         checkpoint_loader=checkpoint_loader,
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
    if report:
        from .report import write_report  # deferred: matplotlib

        report_path = write_report(Path(out), results, p, meta, log=log)
        meta["report"] = report_path.name
    _write_json(Path(out) / "sweep.json", meta)
    return SweepOutcome(Path(out), len(p.units), already, counts["done"], counts["failed"],
                        counts["skipped"], results, report_path,
                        time.perf_counter() - t_begin, upm, meta)


def _execute(ex, p: Plan, todo: list[Unit], store: UnitStore, counts: dict,
             skipped: dict, *, log, checkpoint_loader, code: str) -> None:
    """Submit ``todo`` a window at a time, pair by pair; write each result as it comes.

    ``code``: the git commit (``-dirty`` appended for uncommitted changes) stamped on each row.
    """
    spec = p.spec
    sources = {s.source.name: s.source for s in p.sources}
    groups: OrderedDict = OrderedDict()
    for u in todo:
        groups.setdefault((u.pair, u.max_size), []).append(u)
    checkpoints: dict[str, object] = {}
    for u in todo:
        sha = u.checkpoint_sha256
        if sha is not None and sha not in checkpoints:
            checkpoints[sha] = ex.put(Path(dict(u.given)["checkpoint"]).read_bytes())
    loader = checkpoint_loader if checkpoints else None
    total = len(todo)
    in_flight = dict.fromkeys(groups, 0)  # submitted and not yet back, per (pair, size)
    pairs: dict = {}  # (pair, size) -> the pair as the executor holds it
    shapes: dict = {}

    def log_result(unit: Unit, res: dict) -> None:
        n = counts["done"] + counts["failed"]
        remaining = total - n - counts["skipped"]
        what = (f"{unit.pair} {unit.max_size or 'native'}px {p.labels[unit.setting_key]}"
                + ("" if unit.seed is None else f" seed {unit.seed}"))
        tally = f"done {counts['done']}, failed {counts['failed']}, left {remaining}"
        if res["status"] == "done":
            last = res["rows"][-1]
            log(f"[{n}/{total}] {what}: PSNR {last['psnr']:.2f} dB, {last['cum_time_s']:.3g} s "
                f"(median of {unit.repeats}) on {res['worker']}  | {tally}")
        else:
            log(f"[{n}/{total}] {what}: FAILED ({res['error']})  | {tally}")

    def record(unit: Unit, res: dict) -> None:
        if res["status"] == "done":
            store.write_unit(unit.key, [dict(r, code=code) for r in res["rows"]])
            counts["done"] += 1
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
            if g not in shapes:
                pair, error = _load(sources[u.pair], u.max_size, groups[g])
                if error is not None:
                    for v in [u] + [v for v in queue if (v.pair, v.max_size) == g]:
                        record(v, dict(status="failed", error=error, host=None,
                                       worker="client"))
                    queue = deque(v for v in queue if (v.pair, v.max_size) != g)
                    continue
                pairs[g] = ex.put(pair)
                shapes[g] = (pair.a.shape, pair.b.shape)
            reason = _exact_skip(u, shapes[g], spec.exact_max_pixels)
            if reason is not None:
                skipped[u.key] = f"{u.pair} {u.max_size or 'native'}px: {reason}"
                counts["skipped"] += 1
                log(f"skipped {skipped[u.key]}")
                release_if_unused(g)
                continue
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


def _exact_skip(unit: Unit, shapes, limit: int) -> str | None:
    if unit.method != "exact" or limit <= 0:
        return None
    (ha, wa, _), (hb, wb, _) = shapes
    size = math.sqrt(ha * wa * hb * wb)
    if size <= limit:
        return None
    return (f"exact NNF skipped: sqrt(pixels of A x pixels of B) = {size:.0f} > max_pixels "
            f"{limit} (raise methods.exact.max_pixels)")


# --------------------------------------------------------------------------- records
def _meta(spec: Spec, p: Plan, out, command: str, fresh: bool, git: dict) -> dict:
    keys = [setting_key(s) for s in spec.settings]
    return dict(
        title=spec.title, spec=str(spec.path), command=command, out=str(out), fresh=fresh,
        started=_dt.datetime.now().isoformat(timespec="seconds"),
        settings=dict(max_sizes=spec.max_sizes, seeds=spec.seeds, repeats=spec.repeats,
                      device=spec.device, threads=spec.threads, timing=spec.timing,
                      exact_max_pixels=spec.exact_max_pixels),
        data=dict(sources=spec.data, limit=spec.limit, select=spec.select,
                  pairs={s.source.name: dict(dataset=s.dataset, origin=s.source.origin)
                         for s in p.sources}),
        method_settings=[dict(method=s.method, label=p.labels[k], setting_key=k,
                              given=dict(s.given), params=dict(s.resolved))
                         for s, k in zip(spec.settings, keys)],
        git=git, versions=provenance.package_versions(),
        client=dict(host=socket.gethostname(), cpu=provenance.cpu_name(), cpu_count=os.cpu_count(),
                    python=sys.version.split()[0]),
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

"""What a worker does with one unit: warm up, time the method ``repeats`` times, measure.

:func:`run_unit` is the task that :mod:`experiments.run.sweep` sends to Dask. It runs
anywhere (a ``LocalCluster`` worker process, a ``dask worker`` on another host, or in the client
under Dask's synchronous scheduler) and returns plain data; it never writes results.

It runs the unit through the same steps as ``compare`` (:mod:`experiments.run.execute`): the
method's skip rule, its preparation (a checkpoint model built once per process from the bytes the
client read, through the loader the command line handed in), the warm-up, ``repeats`` timed runs,
then the one row builder; this module adds where and beside what the unit ran.

Contention: every unit registers itself on its host (:class:`HostRegistry`, a folder of small
files under the host's temporary folder shared by every worker process there, and by other
sweeps), so that a unit can count the other units that ran on its host during its timed section,
exactly: those that were running at any moment of it (``concurrent_units``) and those that were
in their own timed section (``concurrent_timed``). With ``timing = "exclusive"`` the timed
sections of one host take a ``distributed.Lock`` named after the host, so ``concurrent_timed``
is 0; warm-ups, metrics and reconstructions still overlap.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..data.pairs import Pair
from ..devices import available_cores, resolve_device
from ..errors import one_line
from ..methods.registry import Context
from .execute import prepare, skip_reason, timed_runs, unit_rows, warm
from .units import Unit, param_values

#: Finished entries of the host registry older than this are deleted (seconds).
REGISTRY_KEEP_S = 3600.0


#: Name of the per-host timing lock of ``timing = "exclusive"`` (the host name is appended).
LOCK_PREFIX = "patchmatch-bench-timing-"


# --------------------------------------------------------------------------- host registry
class HostRegistry:
    """Units running on this host, one JSON file each: pid, start, timed section, end.

    The folder is ``$PATCHMATCH_SWEEP_REGISTRY`` or ``<tmp>/patchmatch-bench-units-<uid>``: the
    same for every process of a user on a host. A running unit's file is ``<pid>-<key>-<id>.json``;
    when the unit ends it becomes ``....done.json`` (written at its end, so a unit that ended
    before a timed section began is recognised by the file's age without reading it). Entries of
    dead processes count until their file's last change; finished entries are pruned after
    :data:`REGISTRY_KEEP_S`.
    """

    def __init__(self, root: str | Path | None = None):
        default = Path(tempfile.gettempdir()) / f"patchmatch-bench-units-{os.getuid()}"
        self.root = Path(root or os.environ.get("PATCHMATCH_SWEEP_REGISTRY") or default)

    @contextlib.contextmanager
    def running(self, key: str) -> Iterator["_Entry"]:
        self.root.mkdir(parents=True, exist_ok=True)
        entry = _Entry(self.root / f"{os.getpid()}-{key}-{uuid.uuid4().hex[:8]}.json", key)
        entry.write()
        try:
            yield entry
        finally:
            entry.data["end"] = time.time()
            done = entry.path.with_suffix(".done.json")
            entry.write(done)
            entry.path.unlink(missing_ok=True)
            self.prune()

    def others(self, entry: "_Entry", since: float) -> list[dict]:
        """Entries of other units that were running at or after ``since`` (seconds, epoch)."""
        out = {}
        for path in self.root.glob("*.json"):
            if path == entry.path:
                continue
            found = _read_entry(path, since)
            if found is None and not path.name.endswith(".done.json"):
                found = _read_entry(path.with_suffix(".done.json"), since)  # it just ended
            if found is not None:
                out[(found.get("pid"), found.get("key"), found.get("start"))] = found
        return list(out.values())

    def overlap(self, entry: "_Entry") -> dict:
        """Other units beside ``entry``'s timed section [t0, t1].

        Returns ``concurrent_units`` (other units running at some moment of it),
        ``concurrent_max`` (the most of them running at one moment) and ``concurrent_timed``
        (those whose own timed section overlapped it).
        """
        t0, t1 = entry.data["timed_start"], entry.data["timed_end"]
        now = time.time()
        running = timed = 0
        events = []
        for d in self.others(entry, t0):
            end = d.get("end") or now
            if d["start"] <= t1 and end >= t0:
                running += 1
                events += [(max(d["start"], t0), 1), (min(end, t1), -1)]
                ts = d.get("timed_start")
                te = d.get("timed_end") or d.get("end") or now
                if ts is not None and ts <= t1 and te >= t0:
                    timed += 1
        level = peak = 0
        for _, step in sorted(events, key=lambda e: (e[0], -e[1])):  # starts before ends
            level += step
            peak = max(peak, level)
        return dict(concurrent_units=running, concurrent_max=peak, concurrent_timed=timed)

    def prune(self) -> None:
        """Delete old entries of finished units and of dead processes (never a running one)."""
        limit = time.time() - REGISTRY_KEEP_S
        for path in self.root.glob("*.json"):
            try:
                if path.stat().st_mtime >= limit:
                    continue
                if not path.name.endswith(".done.json"):
                    pid = path.name.split("-", 1)[0]
                    if _alive(pid):
                        continue
                path.unlink()
            except OSError:
                pass


class _Entry:
    def __init__(self, path: Path, key: str):
        self.path = path
        self.data = dict(pid=os.getpid(), pid_start=_process_start(os.getpid()), key=key,
                         start=time.time(), timed_start=None, timed_end=None, end=None)

    def write(self, path: Path | None = None) -> None:
        path = path or self.path
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, path)

    def mark(self, what: str) -> None:
        self.data[what] = time.time()
        self.write()


def _read_entry(path: Path, since: float) -> dict | None:
    """A registry entry, or None when it ended before ``since`` or is gone."""
    try:
        mtime = path.stat().st_mtime
        if path.name.endswith(".done.json") and mtime < since:
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("end") is None and not _alive(data.get("pid"), data.get("pid_start")):
        data["end"] = mtime  # its process died
    return data


def _process_start(pid) -> int | None:
    """When process ``pid`` started (clock ticks since boot, from /proc; None elsewhere)."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid, started: int | None = None) -> bool:
    """Process ``pid`` exists (and, when ``started`` is known, is the same process: not a later
    one that reuses the number)."""
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return started is None or _process_start(pid) in (None, started)


# --------------------------------------------------------------------------- where we run
def worker_name() -> str:
    """The Dask worker's address, or ``"synchronous"`` outside a distributed worker."""
    try:
        from distributed import get_worker  # deferred: only a distributed worker needs it

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "synchronous"


@contextlib.contextmanager
def exclusive_timing(mode: str, host: str) -> Iterator[bool]:
    """Hold the host's ``distributed.Lock`` when ``mode == "exclusive"`` on a Dask worker.

    Yields whether a lock is held. Under the synchronous scheduler units run one at a time in
    the client, so there is nothing to exclude (within this sweep).
    """
    if mode != "exclusive" or worker_name() == "synchronous":
        yield False
        return
    from distributed import Lock  # deferred: as above

    with Lock(LOCK_PREFIX + host):
        yield True


# --------------------------------------------------------------------------- the task
def run_unit(unit: Unit, pair: Pair, *, checkpoint: bytes | None = None,
             loader: Callable | None = None) -> dict:
    """Run one unit; return its rows (``status="done"``), why it was skipped (``"skipped"``) or its
    one-line reason (``"failed"``).

    Never raises for a failure of the unit itself (bad option, out of memory ...): the client
    records it and a later run of the sweep tries it again. A lost worker process is Dask's
    business: the scheduler runs the task again elsewhere.

    Returns
    -------
    dict
        ``status``, ``host``, ``worker``, and ``rows`` (list of dicts, one per iteration),
        ``reason`` (skipped) or ``error`` (failed, one line).
    """
    host, worker = socket.gethostname(), worker_name()
    try:
        device = resolve_device(unit.device)
        reason = skip_reason(unit, pair, device)
        if reason is not None:
            return dict(status="skipped", reason=reason, host=host, worker=worker)
        checkpoints = {unit.checkpoint_sha256: checkpoint} if checkpoint is not None else {}
        ctx = Context(device, unit.threads, checkpoints, loader)
        rows = _run(unit, pair, ctx, host=host, worker=worker, registry=HostRegistry())
    except Exception as exc:  # noqa: BLE001 - a failed unit is a result, not a crash
        return dict(status="failed", error=one_line(exc), host=host, worker=worker)
    return dict(status="done", rows=rows, host=host, worker=worker)


def _run(unit: Unit, pair: Pair, ctx: Context, *, host: str, worker: str,
         registry: HostRegistry) -> list[dict]:
    with registry.running(unit.key) as entry:
        run = prepare(unit, ctx)
        warm_s = warm(unit, ctx, run, pair)
        with exclusive_timing(unit.timing, host) as locked:
            entry.mark("timed_start")
            runs = timed_runs(unit, pair, run)
            entry.mark("timed_end")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        agree = all(np.array_equal(r.nnfs[-1], runs[0].nnfs[-1], equal_nan=True) for r in runs)
        context = dict(
            unit=unit.key, setting_key=unit.setting_key, origin=unit.origin,
            max_size=unit.max_size, repeats=unit.repeats, timing=unit.timing,
            timing_locked=bool(locked), host=host, worker=worker, host_cores=available_cores(),
            **registry.overlap(entry), load_avg_1m=load, warmup_s=warm_s, repeats_agree=bool(agree),
            finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **param_values(unit))
        return [dict(row, **context) for row, _, _ in unit_rows(unit, pair, runs, device=ctx.device)]

"""Where a study's units run: Dask ``distributed`` (a local or existing cluster) or in-process.

* Cluster: an in-process ``distributed.LocalCluster`` by default (``workers`` processes of one
  thread each; default one per ``threads`` cores), an existing Dask scheduler by address
  (``tcp://HOST:PORT``, e.g. one started with ``dask scheduler`` and ``dask worker``), or
  ``"synchronous"``: Dask's synchronous scheduler in this process (no cluster; for debugging).
* An executor takes units (:func:`experiments.run.worker.run_unit` tasks) and hands back their
  results in the order they finish; a unit whose worker dies is run again by the scheduler
  (Dask's ``distributed.scheduler.allowed-failures`` times); a unit that raises comes back as
  failed.
"""
from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections import deque

from ..devices import available_cores
from ..errors import UserError, one_line
from .units import Unit
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
        # on every worker: a worker lost mid-study (killed, preempted) takes no pair with it
        return self.client.scatter(value, hash=False, broadcast=True)

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
        exc = None
        if fut.status == "finished":
            try:
                return unit, fut.result()
            except Exception as e:  # lost between finishing and fetching: a failed unit, retried next run
                exc = e
        elif fut.status == "error":
            exc = fut.exception()
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
